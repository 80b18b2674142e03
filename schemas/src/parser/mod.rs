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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Primitive, Schema};
    use serde_json::json;

    fn parse(docs: &[Value]) -> Result<Vec<(Dtmi, Value, InterfaceModel)>, ModelErrors> {
        parse_batch(docs, &NoModels, &ParseOptions::default())
    }

    fn iface(id: &str, extra: Value) -> Value {
        let mut v = json!({"@context": "dtmi:dtdl:context;3", "@id": id, "@type": "Interface"});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        v
    }

    #[test]
    fn thermostat_is_flattened_with_inheritance_and_components() {
        let base = iface(
            "dtmi:ex:Device;1",
            json!({"contents": [{"@type": "Property", "name": "serial", "schema": "string"}]}),
        );
        let info = iface(
            "dtmi:ex:Info;1",
            json!({"contents": [{"@type": "Telemetry", "name": "uptime", "schema": "long"}]}),
        );
        let thermo = iface(
            "dtmi:ex:Thermostat;1",
            json!({
                "extends": "dtmi:ex:Device;1",
                "contents": [
                    {"@type": "Property", "name": "setPoint", "schema": "double", "writable": true},
                    {"@type": "Component", "name": "info", "schema": "dtmi:ex:Info;1"},
                    {"@type": "Command", "name": "reboot",
                     "request": {"name": "delay", "schema": "duration"}},
                    {"@type": "Relationship", "name": "feeds", "target": "dtmi:ex:Line;1",
                     "maxMultiplicity": 3,
                     "properties": [{"@type": "Property", "name": "since", "schema": "dateTime"}]}
                ]
            }),
        );
        let out = parse(&[json!([base, info]), thermo]).expect("valid batch");
        assert_eq!(out.len(), 3);
        let (id, raw, m) = &out[2];
        assert_eq!(id, "dtmi:ex:Thermostat;1");
        assert_eq!(raw["@id"], "dtmi:ex:Thermostat;1");
        assert_eq!(out[0].1["@id"], "dtmi:ex:Device;1");
        assert!(m.properties["serial"].schema == Schema::Primitive(Primitive::String));
        assert!(m.properties["setPoint"].writable);
        assert_eq!(m.components["info"].interface.id, "dtmi:ex:Info;1");
        assert_eq!(m.ancestors, vec!["dtmi:ex:Device;1"]);
        assert!(m.dependencies.contains(&"dtmi:ex:Info;1".to_owned()));
        assert!(m.is_or_extends("dtmi:ex:Device;1"));
        let rel = &m.relationships["feeds"];
        assert_eq!(rel.max_multiplicity, Some(3));
        assert!(rel.properties.contains_key("since"));
        let req = m.commands["reboot"].request.as_ref().expect("request");
        assert_eq!(req.schema, Schema::Primitive(Primitive::Duration));
    }

    #[test]
    fn schemas_by_id_and_inline() {
        let doc = iface(
            "dtmi:ex:Line;1",
            json!({
                "schemas": [{"@id": "dtmi:ex:Line:state;1", "@type": "Enum", "valueSchema": "string",
                             "enumValues": [{"name": "on", "enumValue": "On"}]}],
                "contents": [
                    {"@type": "Telemetry", "name": "state", "schema": "dtmi:ex:Line:state;1"},
                    {"@type": "Property", "name": "tags", "schema": {"@type": "Map",
                        "mapKey": {"name": "k", "schema": "string"},
                        "mapValue": {"name": "v", "schema": {"@type": "Array", "elementSchema": "integer"}}}}
                ]
            }),
        );
        let out = parse(&[doc]).expect("valid");
        let m = &out[0].2;
        assert!(matches!(m.telemetry["state"].schema, Schema::Enum { .. }));
        let tags = &m.properties["tags"].schema;
        assert!(crate::validate_value(tags, &json!({"a": [1, 2]})).is_ok());
        assert!(crate::validate_value(tags, &json!({"a": ["x"]})).is_err());
    }

    #[test]
    fn extends_cycle_is_rejected() {
        let a = iface("dtmi:ex:A;1", json!({"extends": "dtmi:ex:B;1"}));
        let b = iface("dtmi:ex:B;1", json!({"extends": "dtmi:ex:A;1"}));
        let e = parse(&[a, b]).expect_err("cycle");
        assert!(e.to_string().contains("cycle"), "{e}");
    }

    #[test]
    fn extends_depth_limit() {
        let mut docs = vec![iface("dtmi:ex:L0;1", json!({}))];
        for i in 1..=10 {
            docs.push(iface(
                &format!("dtmi:ex:L{i};1"),
                json!({"extends": format!("dtmi:ex:L{};1", i - 1)}),
            ));
        }
        let e = parse(&docs).expect_err("11 levels");
        assert!(e.to_string().contains("deeper than 10"), "{e}");
        docs.pop();
        assert!(parse(&docs).is_ok(), "10 levels are allowed");
    }

    #[test]
    fn long_reference_chains_do_not_overflow_the_stack() {
        let docs: Vec<Value> = (0..5000)
            .map(|i| {
                iface(
                    &format!("dtmi:ex:C{i};1"),
                    json!({"extends": format!("dtmi:ex:C{};1", i + 1)}),
                )
            })
            .collect();
        assert!(parse(&docs).is_err());
    }

    #[test]
    fn errors_name_dtmi_path_and_rule() {
        let doc = iface(
            "dtmi:ex:Bad;1",
            json!({"contents": [
                {"@type": "Property", "name": "ok", "schema": "double"},
                {"@type": "Property", "name": "2bad", "schema": "double"},
                {"@type": "Telemetry", "name": "t", "schema": "dtmi:ex:missing;1"}
            ]}),
        );
        let e = parse(&[doc]).expect_err("invalid");
        let text = e.to_string();
        assert!(
            text.contains("dtmi:ex:Bad;1 at $[0].contents[1].name: name `2bad`"),
            "{text}"
        );
        assert!(
            text.contains(
                "dtmi:ex:Bad;1 at $[0].contents[2].schema: `dtmi:ex:missing;1` is not defined"
            ),
            "{text}"
        );
        assert_eq!(e.0.len(), 2, "all errors are reported");
    }

    #[test]
    fn duplicates_in_batch_are_rejected_but_registered_ids_are_not_checked() {
        let a = iface("dtmi:ex:A;1", json!({}));
        assert!(parse(&[a.clone(), a.clone()]).is_err());
        let registered = |id: &str| (id == "dtmi:ex:A;1").then(|| iface("dtmi:ex:A;1", json!({})));
        let child = iface("dtmi:ex:B;1", json!({"extends": "dtmi:ex:A;1"}));
        let out = parse_batch(&[a, child.clone()], &registered, &ParseOptions::default())
            .expect("re-upload is the caller's business");
        assert_eq!(out.len(), 2);
        let out = parse_batch(&[child], &registered, &ParseOptions::default())
            .expect("parent comes from the registry");
        assert_eq!(out.len(), 1, "registered models are not returned");
        assert_eq!(out[0].2.ancestors, vec!["dtmi:ex:A;1"]);
    }

    #[test]
    fn semantic_types_and_units_need_the_extension() {
        let mk = |ctx: Value, unit: &str| {
            json!({"@context": ctx, "@id": "dtmi:ex:T;1", "@type": "Interface",
                   "contents": [{"@type": ["Telemetry", "Temperature"], "name": "t",
                                 "schema": "double", "unit": unit}]})
        };
        let qt = json!([
            "dtmi:dtdl:context;3",
            "dtmi:dtdl:extension:quantitativeTypes;1"
        ]);
        let out = parse(&[mk(qt.clone(), "degreeCelsius")]).expect("valid");
        let t = &out[0].2.telemetry["t"];
        assert_eq!(t.semantic_types, vec!["Temperature"]);
        assert_eq!(t.unit.as_deref(), Some("degreeCelsius"));
        assert!(
            parse(&[mk(qt, "metrePerSecond")]).is_err(),
            "wrong unit type"
        );
        assert!(parse(&[mk(json!("dtmi:dtdl:context;3"), "degreeCelsius")]).is_err());
    }

    #[test]
    fn undefined_extensions_follow_the_option() {
        let doc = json!({"@context": ["dtmi:dtdl:context;3", "dtmi:acme:ext;1"],
                         "@id": "dtmi:ex:T;1", "@type": ["Interface", "AcmeThing"], "acme": 1});
        assert!(parse(std::slice::from_ref(&doc)).is_err());
        let lax = ParseOptions {
            allow_undefined_extensions: true,
        };
        assert!(parse_batch(&[doc], &NoModels, &lax).is_ok());
    }

    #[test]
    fn dtdl_v2_documents_parse() {
        let doc = json!({"@context": "dtmi:dtdl:context;2", "@id": "dtmi:ex:V2;1", "@type": "Interface",
                         "contents": [{"@type": ["Telemetry", "Temperature"], "name": "t",
                                       "schema": "double", "unit": "degreeCelsius"},
                                      {"@type": "Command", "name": "c",
                                       "request": {"name": "r", "schema": "string"}}]});
        let out = parse(&[doc]).expect("valid v2");
        assert_eq!(out[0].2.dtdl_version, 2);
        let arr = json!({"@context": "dtmi:dtdl:context;2", "@id": "dtmi:ex:V2b;1", "@type": "Interface",
                         "contents": [{"@type": "Property", "name": "p",
                                       "schema": {"@type": "Array", "elementSchema": "string"}}]});
        assert!(parse(&[arr]).is_err(), "v2 Properties cannot hold Arrays");
    }

    #[test]
    fn nothing_panics_on_odd_input() {
        for v in [
            json!(null),
            json!(1),
            json!("x"),
            json!([]),
            json!([[]]),
            json!({}),
            json!([{"@context": 5}]),
        ] {
            assert!(parse(&[v]).is_err());
        }
        assert!(parse(&[]).is_err());
    }
}
