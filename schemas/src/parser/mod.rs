//! Parsing, resolving and validating batches of DTDL (v3 and v2) documents.
//!
//! ```text
//!  docs ──walker──▶ element arena (+ errors)      one pass per document, no lookups
//!        pull in registered models for ids the batch references but lacks
//!  arena ──build──▶ flattened InterfaceModels     references, extends, components,
//!                                                 schema depth/cycles, name clashes
//! ```
//!
//! Key items: [`parse_batch`], [`ParseOptions`], [`ModelSource`], [`NoModels`].
//! Submodules: `context` (@context and extensions), `vocab` (classes and properties),
//! `literal` (strings, booleans, integers, localizable strings), `walker` (the
//! per-document pass), `build` (resolution and flattening), `quantitative_types`.
//!
//! Contract: all-or-nothing. `Ok` only if every document is valid; otherwise `Err`
//! with every error found, each naming the Interface DTMI and the JSON path rooted at
//! the batch (`$[i]…`). Nothing here panics on any input.

mod build;
pub mod context;
pub mod literal;
pub mod quantitative_types;
pub mod vocab;
mod walker;

use crate::error::{ModelError, ModelErrors};
use crate::model::{Dtmi, InterfaceModel};
use serde_json::Value;
use std::collections::HashSet;
use walker::{Ref, Walker};

/// Already-registered models that a batch may reference.
pub trait ModelSource {
    /// The raw JSON of the registered top-level Interface `id`, as uploaded.
    fn document(&self, id: &str) -> Option<Value>;
}

/// A [`ModelSource`] with nothing registered.
pub struct NoModels;

impl ModelSource for NoModels {
    fn document(&self, _id: &str) -> Option<Value> {
        None
    }
}

impl<F: Fn(&str) -> Option<Value>> ModelSource for F {
    fn document(&self, id: &str) -> Option<Value> {
        self(id)
    }
}

/// How strictly to parse. `Default` is strict.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Tolerate `@context` entries naming extensions this parser does not know; in
    /// their scope unknown co-types (and properties of elements carrying them) pass.
    pub allow_undefined_extensions: bool,
}

/// Parse, resolve and validate a batch of documents (each an Interface object or an
/// array of them). Returns every top-level Interface with its raw JSON and model.
pub fn parse_batch(
    docs: &[Value],
    registered: &dyn ModelSource,
    opts: &ParseOptions,
) -> Result<Vec<(Dtmi, Value, InterfaceModel)>, ModelErrors> {
    let mut w = Walker::new(opts.allow_undefined_extensions);
    for (i, d) in docs.iter().enumerate() {
        w.document(d, &format!("$[{i}]"), Some(i));
    }
    if w.roots.is_empty() && w.errors.is_empty() {
        w.errors
            .push(ModelError::new(None, "$", "no Interface in the batch"));
    }

    // Pull in registered models the batch needs, transitively.
    let mut asked: HashSet<String> = HashSet::new();
    loop {
        let mut missing: Vec<String> = Vec::new();
        for e in &w.elems {
            for refs in e.refs.values() {
                for r in refs {
                    if let Ref::Id { id, .. } = r {
                        if !w.ids.contains_key(id) && !asked.contains(id) && !missing.contains(id) {
                            missing.push(id.clone());
                        }
                    }
                }
            }
        }
        if missing.is_empty() {
            break;
        }
        for id in missing {
            asked.insert(id.clone());
            if let Some(doc) = registered.document(&id) {
                w.document(&doc, &format!("registered({id})"), None);
            }
        }
    }

    let mut b = build::Builder::new(&w);
    let mut out = Vec::new();
    // Build every Interface so that errors in inline ones are reported too.
    let interfaces: Vec<usize> = (0..w.elems.len())
        .filter(|&i| w.elems[i].class == vocab::Class::Interface && w.elems[i].doc.is_some())
        .collect();
    for i in interfaces {
        let _ = b.interface(i);
    }
    for &(doc, root) in &w.roots {
        let Some(raw) = docs.get(doc) else {
            continue;
        };
        let raw = match raw {
            Value::Array(items) => items
                .iter()
                .find(|item| item.get("@id").and_then(Value::as_str) == Some(&w.elems[root].id))
                .cloned()
                .unwrap_or(Value::Null),
            other => other.clone(),
        };
        if let Some(m) = b.interface(root) {
            out.push((m.id.clone(), raw, m));
        }
    }
    let mut errors = w.errors.clone();
    for e in b.errors {
        if !errors.contains(&e) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ModelErrors(errors))
    }
}
