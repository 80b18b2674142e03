//! The syntactic pass: walks each JSON document, checks every element against the
//! rules that need no other document (types, properties, literals, names, ids,
//! contexts), and records the elements in an arena for the resolver.
//!
//! Key types: [`Walker`] (the pass and its arena), [`Elem`] (one DTDL element),
//! [`Ref`] (an element-valued property value: inline, by DTMI, or a primitive).
//!
//! Contract: every problem is pushed as a `ModelError` naming the enclosing Interface
//! and the JSON path; the walk always continues so that all errors are reported.

use super::context::{self, Extension, Scope};
use super::literal;
use super::quantitative_types;
use super::vocab::{self, Class, PropKind};
use crate::dtmi;
use crate::error::ModelError;
use crate::model::Primitive;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// An element-valued property value.
#[derive(Debug, Clone)]
pub enum Ref {
    /// Defined inline: index into the arena.
    Inline(usize),
    /// Given by DTMI, resolved later.
    Id {
        id: String,
        path: String,
    },
    Primitive(Primitive),
}

/// One DTDL element.
#[derive(Debug, Clone)]
pub struct Elem {
    pub class: Class,
    pub id: String,
    pub path: String,
    /// The nearest enclosing Interface (itself for an Interface).
    pub partition: usize,
    pub version: u8,
    /// Semantic types and other co-types, as terms.
    pub cotypes: Vec<String>,
    pub name: Option<String>,
    pub display_name: BTreeMap<String, String>,
    pub description: BTreeMap<String, String>,
    pub writable: bool,
    pub min_multiplicity: Option<i64>,
    pub max_multiplicity: Option<i64>,
    pub target: Option<String>,
    pub enum_value: Option<Value>,
    pub value_schema: Option<Primitive>,
    pub unit: Option<String>,
    pub refs: HashMap<&'static str, Vec<Ref>>,
    /// Index of the input document this element came from; `None` = registered model.
    pub doc: Option<usize>,
    /// Serialized size of an Interface's text.
    pub size: usize,
}

impl Elem {
    pub fn refs(&self, prop: &str) -> &[Ref] {
        self.refs.get(prop).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Where an element appears, which decides the classes it may have.
struct Position<'a> {
    classes: &'a [Class],
    /// Parent id, the property name and whether it is plural (for generated ids).
    parent: Option<(&'a str, &'a str, bool)>,
    partition: Option<usize>,
    /// `@id` is mandatory here (top level, Interface `schemas`).
    id_required: bool,
}

pub struct Walker<'o> {
    pub elems: Vec<Elem>,
    pub ids: HashMap<String, usize>,
    pub errors: Vec<ModelError>,
    allow_undefined: bool,
    /// Top-level Interfaces: (document index, arena index).
    pub roots: Vec<(usize, usize)>,
    doc: Option<usize>,
    current_dtmi: Option<String>,
    _opts: std::marker::PhantomData<&'o ()>,
}

fn child_path(path: &str, key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        format!("{path}.{key}")
    } else {
        format!("{path}['{}']", key.replace('\'', "\\'"))
    }
}

fn generated_id(parent: &str, prop: &str, name: Option<&str>) -> String {
    let (base, ver) = match parent.split_once(';') {
        Some((b, v)) => (b, Some(v)),
        None => (parent, None),
    };
    let mut id = format!("{base}:_{prop}");
    if let Some(n) = name {
        id.push_str(":__");
        id.push_str(n);
    }
    if let Some(v) = ver {
        id.push(';');
        id.push_str(v);
    }
    id
}

pub fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphabetic()
                && l.is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        }
        _ => false,
    }
}

/// A key or type string: a plain term, a DTMI, or neither.
enum Word<'a> {
    Term(&'a str),
    Dtmi(&'a str),
    BadDtmi,
    Other,
}

fn word(s: &str) -> Word<'_> {
    if s.starts_with("dtmi:") {
        if dtmi::is_valid_dtmi(s) {
            Word::Dtmi(s)
        } else {
            Word::BadDtmi
        }
    } else if s.contains(':') || s.starts_with('@') || s.is_empty() {
        Word::Other
    } else {
        Word::Term(s)
    }
}

impl<'o> Walker<'o> {
    pub fn new(allow_undefined: bool) -> Self {
        Walker {
            elems: Vec::new(),
            ids: HashMap::new(),
            errors: Vec::new(),
            allow_undefined,
            roots: Vec::new(),
            doc: None,
            current_dtmi: None,
            _opts: std::marker::PhantomData,
        }
    }

    fn err(&mut self, path: &str, msg: impl Into<String>) {
        let e = ModelError::new(self.current_dtmi.as_deref(), path, msg);
        self.errors.push(e);
    }

    /// Walk one input document (an Interface or an array of them).
    pub fn document(&mut self, value: &Value, path: &str, doc: Option<usize>) {
        self.doc = doc;
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.root(item, &format!("{path}[{i}]"), doc);
                }
            }
            _ => self.root(value, path, doc),
        }
    }

    fn root(&mut self, value: &Value, path: &str, doc: Option<usize>) {
        self.current_dtmi = value.get("@id").and_then(Value::as_str).map(str::to_owned);
        let pos = Position {
            classes: &[Class::Interface],
            parent: None,
            partition: None,
            id_required: true,
        };
        if let Some(i) = self.element(value, path, None, &pos) {
            if self.elems[i].class == Class::Interface {
                self.roots.push((doc.unwrap_or(usize::MAX), i));
            }
        }
    }

    /// Walk one element object; returns its arena index.
    fn element(
        &mut self,
        value: &Value,
        path: &str,
        scope: Option<&Scope>,
        pos: &Position<'_>,
    ) -> Option<usize> {
        let Some(obj) = value.as_object() else {
            self.err(path, "expected an element (a JSON object)");
            return None;
        };
        let parent_scope = scope;
        // Context.
        let scope = match (obj.get("@context"), scope) {
            (Some(c), parent) => match context::apply(c, parent, self.allow_undefined) {
                Ok(s) => s,
                Err(m) => {
                    self.err(&child_path(path, "@context"), m);
                    parent.cloned()?
                }
            },
            (None, Some(s)) => s.clone(),
            (None, None) => {
                self.err(
                    path,
                    "a top-level element must have an @context naming the DTDL version",
                );
                return None;
            }
        };
        let version = scope.version;

        // Types.
        let (class, cotypes, undefined_cotype) = self.types(obj, path, &scope, pos)?;
        if let Some(parent) = parent_scope {
            // An element of an older DTDL version may stand as a whole content, schema
            // or parent, but not as a part of a newer element (a MapKey, an EnumValue…).
            let whole = class == Class::Interface
                || vocab::CONTENT_CLASSES.contains(&class)
                || matches!(pos.parent.map(|p| p.1), Some("schema" | "elementSchema"));
            if version < parent.version && !whole {
                self.err(
                    path,
                    format!(
                        "a DTDL v{version} {} cannot be nested in a v{} element",
                        class.term(),
                        parent.version
                    ),
                );
                return None;
            }
        }

        // Identity.
        let id = self.identity(obj, path, class, pos, version);
        let partition_self = self.elems.len();
        let partition = if class == Class::Interface {
            partition_self
        } else {
            pos.partition.unwrap_or(partition_self)
        };
        let (id, explicit_id) = id?;
        let idx = self.elems.len();
        self.elems.push(Elem {
            class,
            id: id.clone(),
            path: path.to_owned(),
            partition,
            version,
            cotypes: cotypes.clone(),
            name: None,
            display_name: BTreeMap::new(),
            description: BTreeMap::new(),
            writable: false,
            min_multiplicity: None,
            max_multiplicity: None,
            target: None,
            enum_value: None,
            value_schema: None,
            unit: None,
            refs: HashMap::new(),
            doc: self.doc,
            size: 0,
        });
        if class == Class::Interface {
            self.elems[idx].size = serde_json::to_string(value).map(|s| s.len()).unwrap_or(0);
            if self.elems[idx].size > 1024 * 1024 {
                self.err(path, "the text of an Interface is limited to 1 MiB");
            }
        }
        if explicit_id {
            if self.ids.contains_key(&id) {
                // A registered model may repeat what the batch defines; the batch wins.
                if self.doc.is_some() {
                    self.err(
                        &child_path(path, "@id"),
                        format!("`{id}` is defined more than once"),
                    );
                }
            } else {
                self.ids.insert(id.clone(), idx);
            }
        } else {
            self.ids.entry(id.clone()).or_insert(idx);
        }

        // Properties.
        let props = self.properties(obj, path, class, &cotypes, undefined_cotype, &scope);
        let mut seen = Vec::new();
        for (prop, key, v) in &props {
            // An empty array is JSON-LD for "no value".
            if v.as_array().is_some_and(Vec::is_empty) {
                continue;
            }
            seen.push(*prop);
            let kpath = child_path(path, key);
            self.property(idx, prop, v, &kpath, &scope, &id);
        }
        for req in class.required(version) {
            if !seen.contains(req) {
                self.err(path, format!("{} requires property `{req}`", class.term()));
            }
        }
        self.semantic_checks(idx, path);
        Some(idx)
    }

    /// Returns (material class, co-types, has an undefined co-type).
    fn types(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        scope: &Scope,
        pos: &Position<'_>,
    ) -> Option<(Class, Vec<String>, bool)> {
        let tpath = child_path(path, "@type");
        let types: Vec<&str> = match obj.get("@type") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) if !a.is_empty() => {
                let mut out = Vec::new();
                for t in a {
                    match t.as_str() {
                        Some(s) => out.push(s),
                        None => {
                            self.err(&tpath, "@type must be a string or an array of strings");
                            return None;
                        }
                    }
                }
                out
            }
            Some(_) => {
                self.err(&tpath, "@type must be a string or an array of strings");
                return None;
            }
        };
        let mut classes: Vec<Class> = Vec::new();
        let mut cotypes = Vec::new();
        let mut undefined = false;
        let mut ok = true;
        for t in &types {
            let term = match word(t) {
                Word::Term(term) => Some(term),
                Word::Dtmi(d) => match vocab::term_of_dtmi(d, scope.version) {
                    Some(("class", term)) => Some(term),
                    _ => None,
                },
                Word::BadDtmi => {
                    self.err(&tpath, format!("`{t}` is not a valid DTMI"));
                    ok = false;
                    continue;
                }
                Word::Other => {
                    self.err(&tpath, format!("`{t}` is neither a DTMI nor a term"));
                    ok = false;
                    continue;
                }
            };
            if let Some(c) = term.and_then(|t| Class::from_term(t, scope.version)) {
                if !classes.contains(&c) {
                    classes.push(c);
                }
                continue;
            }
            if let Some(term) = term.filter(|t| self.known_cotype(t, scope)) {
                cotypes.push(term.to_owned());
                continue;
            }
            if scope.open {
                undefined = true;
                continue;
            }
            self.err(
                &tpath,
                format!("`{t}` is not a type defined in this context"),
            );
            ok = false;
        }
        if !ok {
            return None;
        }
        let class = match classes.as_slice() {
            [] => match pos.classes {
                [c] if c.type_optional() && types.is_empty() => *c,
                _ => {
                    self.err(
                        path,
                        format!(
                            "@type is required and must include one of: {}",
                            terms(pos.classes)
                        ),
                    );
                    return None;
                }
            },
            [c] if pos.classes.contains(c) => *c,
            [c] => {
                self.err(
                    &tpath,
                    format!(
                        "a {} is not allowed here; expected one of: {}",
                        c.term(),
                        terms(pos.classes)
                    ),
                );
                return None;
            }
            _ => {
                self.err(&tpath, "@type names more than one DTDL class");
                return None;
            }
        };
        Some((class, cotypes, undefined))
    }

    fn known_cotype(&self, term: &str, scope: &Scope) -> bool {
        if scope.version == 2 {
            return quantitative_types::semantic_type(term).is_some();
        }
        scope.extensions.iter().any(|e| match e {
            Extension::QuantitativeTypes => quantitative_types::semantic_type(term).is_some(),
            other => other.cotypes().contains(&term),
        })
    }

    fn identity(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        class: Class,
        pos: &Position<'_>,
        version: u8,
    ) -> Option<(String, bool)> {
        let ipath = child_path(path, "@id");
        match obj.get("@id") {
            Some(Value::String(id)) => {
                let ok = match dtmi::parse(id) {
                    None => {
                        self.err(&ipath, format!("`{id}` is not a valid DTMI"));
                        false
                    }
                    Some(d) if d.is_system() => {
                        self.err(
                            &ipath,
                            format!("`{id}` is a system DTMI (a segment starts with `_`)"),
                        );
                        false
                    }
                    Some(d) if version == 2 && (d.major.is_none() || d.minor.is_some()) => {
                        self.err(&ipath, "a DTDL v2 identifier needs a one-part version");
                        false
                    }
                    Some(_) if dtmi::is_reserved(id) => {
                        self.err(&ipath, format!("`{id}` uses a prefix reserved by DTDL"));
                        false
                    }
                    Some(_) => {
                        let max = if class == Class::Interface {
                            dtmi::MAX_INTERFACE_DTMI_LEN
                        } else {
                            dtmi::MAX_USER_DTMI_LEN
                        };
                        if id.len() > max {
                            self.err(&ipath, format!("the DTMI is longer than {max} characters"));
                            false
                        } else {
                            true
                        }
                    }
                };
                ok.then(|| (id.clone(), true))
            }
            Some(_) => {
                self.err(&ipath, "@id must be a single string");
                None
            }
            None if pos.id_required || class == Class::Interface => {
                self.err(path, format!("this {} requires an @id", class.term()));
                None
            }
            None => {
                let (parent, prop, plural) = pos.parent?;
                let name = obj.get("name").and_then(Value::as_str);
                Some((
                    generated_id(parent, prop, plural.then_some(name).flatten()),
                    false,
                ))
            }
        }
    }

    /// Classify the keys of an element: (canonical property, key, value).
    fn properties<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        path: &str,
        class: Class,
        cotypes: &[String],
        undefined_cotype: bool,
        scope: &Scope,
    ) -> Vec<(&'static str, &'v str, &'v Value)> {
        let mut out: Vec<(&'static str, &'v str, &'v Value)> = Vec::new();
        let allowed = |p: &str| -> Option<&'static str> {
            let own = ["comment", "description", "displayName"]
                .into_iter()
                .chain(class.props().iter().copied())
                .find(|x| *x == p);
            if own.is_some() {
                return own;
            }
            for ct in cotypes {
                if scope.version == 2 && p == "unit" {
                    return Some("unit");
                }
                for ext in &scope.extensions {
                    let applies = match ext {
                        Extension::QuantitativeTypes => {
                            quantitative_types::semantic_type(ct).is_some()
                        }
                        other => other.cotypes().contains(&ct.as_str()),
                    };
                    if applies {
                        if let Some(x) = ext.props(ct).iter().find(|x| **x == p) {
                            return Some(x);
                        }
                    }
                }
            }
            None
        };
        for (key, v) in obj {
            let kpath = child_path(path, key);
            if key == "@id" || key == "@type" || key == "@context" {
                continue;
            }
            if key.starts_with('@') {
                self.err(&kpath, format!("`{key}` is not allowed on a DTDL element"));
                continue;
            }
            let canonical = match word(key) {
                Word::Term(t) => allowed(t),
                Word::Dtmi(d) => match vocab::term_of_dtmi(d, scope.version) {
                    Some(("property", t)) => allowed(t),
                    _ => None,
                },
                Word::BadDtmi => {
                    self.err(&kpath, format!("`{key}` is not a valid DTMI"));
                    continue;
                }
                Word::Other => {
                    self.err(&kpath, format!("`{key}` is neither a DTMI nor a term"));
                    continue;
                }
            };
            match canonical {
                Some(p) => {
                    if out.iter().any(|(q, _, _)| *q == p) {
                        self.err(
                            &kpath,
                            format!("property `{p}` is given both as a term and as a DTMI"),
                        );
                    } else {
                        out.push((p, key.as_str(), v));
                    }
                }
                None if undefined_cotype => {}
                None => {
                    let what = if vocab::ALL_PROPS.contains(&key.as_str()) {
                        format!("property `{key}` does not apply to a {}", class.term())
                    } else {
                        format!("`{key}` is not a property defined for a {}", class.term())
                    };
                    self.err(&kpath, what);
                }
            }
        }
        out
    }

    fn property(
        &mut self,
        idx: usize,
        prop: &'static str,
        v: &Value,
        path: &str,
        scope: &Scope,
        id: &str,
    ) {
        let version = scope.version;
        let class = self.elems[idx].class;
        let text_max = 512;
        match vocab::prop_kind(prop) {
            PropKind::Text => {
                if let Err(m) = literal::read_string(v, text_max) {
                    self.err(path, format!("`{prop}`: {m}"));
                }
            }
            PropKind::LangText => {
                let max = if version == 2 && prop == "displayName" {
                    64
                } else {
                    512
                };
                match literal::read_lang_string(v, max) {
                    Ok(m) if prop == "displayName" => self.elems[idx].display_name = m,
                    Ok(m) => self.elems[idx].description = m,
                    Err(m) => self.err(path, format!("`{prop}`: {m}")),
                }
            }
            PropKind::Name => {
                let max = if version == 2 { 64 } else { 512 };
                match literal::read_string(v, max) {
                    Ok(n) if is_name(&n) => self.elems[idx].name = Some(n),
                    Ok(n) => self.err(
                        path,
                        format!("name `{n}` must hold only letters, digits and `_`, start with a letter and end with a letter or digit"),
                    ),
                    Err(m) => self.err(path, format!("`name`: {m}")),
                }
            }
            PropKind::Bool => match literal::read_bool(v) {
                Ok(b) => self.elems[idx].writable = b,
                Err(m) => self.err(path, format!("`{prop}`: {m}")),
            },
            PropKind::Int => match literal::read_int(v) {
                Ok(i) if prop == "minMultiplicity" => {
                    if i != 0 {
                        self.err(path, "minMultiplicity must be 0");
                    }
                    self.elems[idx].min_multiplicity = Some(i);
                }
                Ok(i) => {
                    if i < 1 {
                        self.err(path, "maxMultiplicity must be at least 1");
                    }
                    self.elems[idx].max_multiplicity = Some(i);
                }
                Err(m) => self.err(path, format!("`{prop}`: {m}")),
            },
            PropKind::DtmiRef => match v.as_array().filter(|a| a.len() == 1).map_or(v, |a| &a[0]) {
                Value::String(t) if dtmi::is_user_dtmi(t) => {
                    self.elems[idx].target = Some(t.clone())
                }
                Value::String(t) => {
                    self.err(path, format!("target `{t}` is not a valid user DTMI"))
                }
                _ => self.err(path, "target must be a DTMI string"),
            },
            PropKind::Literal => match literal::read_literal(v) {
                Ok(l) => self.elems[idx].enum_value = Some(l),
                Err(m) => self.err(path, format!("`enumValue`: {m}")),
            },
            PropKind::CommandType => {
                let ok = match v {
                    Value::Array(a) if a.len() == 1 => a[0].as_str(),
                    other => other.as_str(),
                }
                .is_some_and(|s| {
                    matches!(s, "synchronous" | "asynchronous")
                        || matches!(
                            vocab::term_of_dtmi(s, version),
                            Some(("commandType", "synchronous" | "asynchronous"))
                        )
                });
                if !ok {
                    self.err(path, "commandType must be `synchronous` or `asynchronous`");
                }
            }
            PropKind::ValueSchema => {
                let p = match v {
                    Value::Array(a) if a.len() == 1 => a[0].as_str(),
                    other => other.as_str(),
                }
                .and_then(|s| self.primitive(s, version));
                match p {
                    Some(p @ (Primitive::Integer | Primitive::String)) => {
                        self.elems[idx].value_schema = Some(p)
                    }
                    _ => self.err(path, "valueSchema must be `integer` or `string`"),
                }
            }
            PropKind::Unit => {
                let unit = v.as_str().map(str::to_owned);
                match unit {
                    Some(u) if quantitative_types::is_unit(&u) => self.elems[idx].unit = Some(u),
                    _ => self.err(path, "unit must be a unit term"),
                }
            }
            PropKind::Element | PropKind::Elements => {
                let plural = vocab::prop_kind(prop) == PropKind::Elements;
                let (classes, primitives) = vocab::element_range(class, prop, version);
                let items: Vec<(String, &Value)> = match v {
                    Value::Array(a) => a
                        .iter()
                        .enumerate()
                        .map(|(i, x)| (format!("{path}[{i}]"), x))
                        .collect(),
                    other => vec![(path.to_owned(), other)],
                };
                if !plural && items.len() != 1 {
                    self.err(path, format!("`{prop}` takes exactly one value"));
                    return;
                }
                let partition = self.elems[idx].partition;
                let mut refs = Vec::new();
                for (ipath, item) in items {
                    match item {
                        Value::String(s) => {
                            if primitives {
                                if let Some(p) = self.primitive(s, version) {
                                    if class == Class::MapKey && p != Primitive::String {
                                        self.err(&ipath, "the schema of a MapKey must be `string`");
                                    }
                                    refs.push(Ref::Primitive(p));
                                    continue;
                                }
                            }
                            if class == Class::MapKey {
                                self.err(&ipath, "the schema of a MapKey must be `string`");
                                continue;
                            }
                            if dtmi::is_valid_dtmi(s) {
                                refs.push(Ref::Id {
                                    id: s.clone(),
                                    path: ipath,
                                });
                            } else {
                                self.err(
                                    &ipath,
                                    format!("`{s}` is not a valid value for `{prop}`"),
                                );
                            }
                        }
                        Value::Object(_) => {
                            let pos = Position {
                                classes,
                                parent: Some((id, prop, plural)),
                                partition: Some(partition),
                                id_required: prop == "schemas",
                            };
                            let saved = self.current_dtmi.clone();
                            if prop == "extends" || (class == Class::Component && prop == "schema")
                            {
                                if let Some(s) = item.get("@id").and_then(Value::as_str) {
                                    self.current_dtmi = Some(s.to_owned());
                                }
                            }
                            if let Some(c) = self.element(item, &ipath, Some(scope), &pos) {
                                refs.push(Ref::Inline(c));
                            }
                            self.current_dtmi = saved;
                        }
                        _ => self.err(&ipath, format!("invalid value for `{prop}`")),
                    }
                }
                self.elems[idx].refs.insert(prop, refs);
            }
        }
    }

    fn primitive(&self, s: &str, version: u8) -> Option<Primitive> {
        if let Some(p) = vocab::primitive_from_term(s, version) {
            return Some(p);
        }
        match vocab::term_of_dtmi(s, version) {
            Some(("schema", t)) => vocab::primitive_from_term(t, version),
            _ => None,
        }
    }

    /// Checks that need the element's own properties together.
    fn semantic_checks(&mut self, idx: usize, path: &str) {
        let e = &self.elems[idx];
        let mut errs = Vec::new();
        if let (Some(min), Some(max)) = (e.min_multiplicity, e.max_multiplicity) {
            if max < min {
                errs.push("maxMultiplicity must not be less than minMultiplicity".to_owned());
            }
        }
        let semantic: Vec<_> = e
            .cotypes
            .iter()
            .filter_map(|c| quantitative_types::semantic_type(c))
            .collect();
        if !semantic.is_empty() {
            let can = matches!(
                e.class,
                Class::Telemetry
                    | Class::Property
                    | Class::CommandRequest
                    | Class::CommandResponse
                    | Class::CommandPayload
                    | Class::Field
                    | Class::MapValue
            );
            if !can {
                errs.push(format!("a {} cannot have a semantic type", e.class.term()));
            }
            if let Some(unit) = &e.unit {
                if !semantic.iter().any(|s| s.units.contains(&unit.as_str())) {
                    errs.push(format!(
                        "unit `{unit}` does not fit semantic type {}",
                        semantic[0].name
                    ));
                }
            }
        } else if e.unit.is_some() {
            errs.push("`unit` needs a semantic type".to_owned());
        }
        if e.class == Class::Enum {
            if let Some(vs) = e.value_schema {
                let mut names = Vec::new();
                let mut values = Vec::new();
                for r in e.refs("enumValues") {
                    if let Ref::Inline(i) = r {
                        let ev = &self.elems[*i];
                        if let Some(v) = &ev.enum_value {
                            let fits = match vs {
                                Primitive::Integer => {
                                    v.as_i64().is_some_and(|x| i32::try_from(x).is_ok())
                                }
                                _ => v.is_string(),
                            };
                            if !fits {
                                errs.push(format!(
                                    "enumValue {v} does not match the Enum's valueSchema"
                                ));
                            }
                            if values.contains(&v) {
                                errs.push(format!("enumValue {v} is used twice"));
                            }
                            values.push(v);
                        }
                        if let Some(n) = &ev.name {
                            if names.contains(&n) {
                                errs.push(format!("EnumValue name `{n}` is used twice"));
                            }
                            names.push(n);
                        }
                    }
                }
            }
        }
        for prop in ["fields", "properties"] {
            let mut names = Vec::new();
            for r in e.refs(prop) {
                if let Ref::Inline(i) = r {
                    if let Some(n) = &self.elems[*i].name {
                        if names.contains(&n) {
                            errs.push(format!("name `{n}` is used twice in `{prop}`"));
                        }
                        names.push(n);
                    }
                }
            }
        }
        for m in errs {
            self.err(path, m);
        }
    }
}

fn terms(classes: &[Class]) -> String {
    classes
        .iter()
        .map(|c| c.term())
        .collect::<Vec<_>>()
        .join(", ")
}
