//! The resolution pass: follows references between the walked elements, checks the
//! rules that span elements (reference targets and their classes, `extends` cycles and
//! limits, component nesting, schema self-reference and depth, content-name clashes
//! across inheritance), and builds the flattened [`InterfaceModel`]s.
//!
//! Key type: [`Builder`]. It memoizes each Interface so diamonds in `extends` and
//! shared component schemas are built once.

use super::vocab::{Class, COMPLEX_SCHEMA_CLASSES, CONTENT_CLASSES};
use super::walker::{Elem, Ref, Walker};
use crate::error::ModelError;
use crate::model::*;
use std::collections::{BTreeMap, HashMap};

/// DTDL limits on `extends`.
const MAX_EXTENDS_DEPTH: usize = 10;
const MAX_EXTENDS_TOTAL: usize = 1024;
/// Maximum nesting of complex schemas.
const MAX_SCHEMA_DEPTH: usize = 5;
/// Maximum number of elements in an Interface's contents hierarchy.
const MAX_ELEMENTS: usize = 100_000;
/// Guard against deep recursion through long reference chains.
const MAX_BUILD_NESTING: usize = 64;

enum State {
    Building,
    Done(Option<Box<Built>>),
}

#[derive(Clone)]
struct Built {
    model: InterfaceModel,
    /// Content name → element id, to tell a clash from the same inherited element.
    content_ids: BTreeMap<String, String>,
    depth: usize,
}

pub struct Builder<'w> {
    w: &'w Walker<'w>,
    pub errors: Vec<ModelError>,
    state: HashMap<usize, State>,
    elements_per_partition: HashMap<usize, usize>,
    /// Interfaces currently being built (recursion depth).
    active: usize,
}

impl<'w> Builder<'w> {
    pub fn new(w: &'w Walker<'w>) -> Self {
        let mut elements_per_partition = HashMap::new();
        for e in &w.elems {
            *elements_per_partition.entry(e.partition).or_insert(0) += 1;
        }
        Builder {
            w,
            errors: Vec::new(),
            state: HashMap::new(),
            elements_per_partition,
            active: 0,
        }
    }

    fn elem(&self, i: usize) -> &'w Elem {
        &self.w.elems[i]
    }

    fn err(&mut self, at: usize, path: &str, msg: impl Into<String>) {
        let partition = self.elem(at).partition;
        let dtmi = self.w.elems.get(partition).map(|e| e.id.as_str());
        self.errors.push(ModelError::new(dtmi, path, msg));
    }

    /// Resolve a reference made by element `from`, requiring one of `classes`.
    fn resolve(&mut self, r: &Ref, from: usize, classes: &[Class]) -> Option<usize> {
        match r {
            Ref::Inline(i) => Some(*i),
            Ref::Primitive(_) => None,
            Ref::Id { id, path } => {
                let Some(&target) = self.w.ids.get(id) else {
                    self.err(
                        from,
                        path,
                        format!("`{id}` is not defined (unresolved reference)"),
                    );
                    return None;
                };
                let t = self.elem(target);
                if !classes.contains(&t.class) {
                    let expected: Vec<&str> = classes.iter().map(|c| c.term()).collect();
                    self.err(
                        from,
                        path,
                        format!(
                            "`{id}` is a {}, but one of {} is required here",
                            t.class.term(),
                            expected.join(", ")
                        ),
                    );
                    return None;
                }
                if t.class != Class::Interface && t.partition != self.elem(from).partition {
                    self.err(
                        from,
                        path,
                        format!("`{id}` is defined in another Interface and cannot be referenced from here"),
                    );
                    return None;
                }
                Some(target)
            }
        }
    }

    /// The flattened model of Interface element `i`.
    pub fn interface(&mut self, i: usize) -> Option<InterfaceModel> {
        self.built(i).map(|b| b.model)
    }

    fn built(&mut self, i: usize) -> Option<Built> {
        match self.state.get(&i) {
            Some(State::Done(b)) => return b.as_deref().cloned(),
            Some(State::Building) => return None,
            None => {}
        }
        // Valid models nest only ~12 deep (extends depth 10, one component level);
        // stop long reference chains before they exhaust the stack.
        if self.active > MAX_BUILD_NESTING {
            let path = self.elem(i).path.clone();
            self.err(i, &path, "the `extends`/Component hierarchy is too deep");
            self.state.insert(i, State::Done(None));
            return None;
        }
        self.active += 1;
        self.state.insert(i, State::Building);
        let b = self.build_interface(i);
        self.active -= 1;
        self.state.insert(i, State::Done(b.clone().map(Box::new)));
        b
    }

    fn build_interface(&mut self, i: usize) -> Option<Built> {
        let e = self.elem(i);
        let mut ok = true;
        let mut model = InterfaceModel {
            id: e.id.clone(),
            dtdl_version: e.version,
            display_name: e.display_name.clone(),
            description: e.description.clone(),
            extends: Vec::new(),
            ancestors: Vec::new(),
            dependencies: Vec::new(),
            properties: BTreeMap::new(),
            telemetry: BTreeMap::new(),
            commands: BTreeMap::new(),
            relationships: BTreeMap::new(),
            components: BTreeMap::new(),
        };
        let mut content_ids: BTreeMap<String, String> = BTreeMap::new();
        let mut depth = 1;
        let mut element_count = self.elements_per_partition.get(&i).copied().unwrap_or(0);

        // Parents first, so own contents can be checked against inherited ones.
        let mut parents = Vec::new();
        for r in e.refs("extends").to_vec() {
            let Some(p) = self.resolve(&r, i, &[Class::Interface]) else {
                ok = false;
                continue;
            };
            if matches!(self.state.get(&p), Some(State::Building)) {
                self.err(
                    i,
                    &self.elem(i).path.clone(),
                    format!("`{}` extends itself (a cycle through `extends`)", e.id),
                );
                ok = false;
                continue;
            }
            match self.built(p) {
                Some(b) => parents.push(b),
                None => ok = false,
            }
        }
        for b in &parents {
            let pid = b.model.id.clone();
            if !model.extends.contains(&pid) {
                model.extends.push(pid.clone());
            }
            for a in std::iter::once(&pid).chain(b.model.ancestors.iter()) {
                if !model.ancestors.contains(a) {
                    model.ancestors.push(a.clone());
                }
            }
            depth = depth.max(b.depth + 1);
            element_count += b
                .model
                .ancestors
                .iter()
                .chain(std::iter::once(&pid))
                .filter_map(|a| self.w.ids.get(a))
                .map(|idx| self.elements_per_partition.get(idx).copied().unwrap_or(0))
                .sum::<usize>();
            for (name, id) in &b.content_ids {
                match content_ids.get(name) {
                    Some(existing) if existing != id => {
                        self.err(i, &e.path, format!("content name `{name}` is inherited twice with different definitions"));
                        ok = false;
                    }
                    _ => {
                        content_ids.insert(name.clone(), id.clone());
                    }
                }
            }
            model.properties.extend(b.model.properties.clone());
            model.telemetry.extend(b.model.telemetry.clone());
            model.commands.extend(b.model.commands.clone());
            model.relationships.extend(b.model.relationships.clone());
            model.components.extend(b.model.components.clone());
        }
        if depth > MAX_EXTENDS_DEPTH {
            self.err(
                i,
                &e.path,
                format!("the `extends` hierarchy is deeper than {MAX_EXTENDS_DEPTH} levels"),
            );
            ok = false;
        }
        if model.ancestors.len() > MAX_EXTENDS_TOTAL {
            self.err(
                i,
                &e.path,
                format!("more than {MAX_EXTENDS_TOTAL} Interfaces in the `extends` hierarchy"),
            );
            ok = false;
        }
        if element_count > MAX_ELEMENTS {
            self.err(
                i,
                &e.path,
                format!("more than {MAX_ELEMENTS} elements in the contents hierarchy"),
            );
            ok = false;
        }
        if model.ancestors.contains(&model.id) {
            self.err(i, &e.path, "an Interface cannot extend itself");
            ok = false;
        }

        // Own contents.
        let mut own_names: Vec<String> = Vec::new();
        for r in e.refs("contents").to_vec() {
            let Some(c) = self.resolve(&r, i, CONTENT_CLASSES) else {
                ok = false;
                continue;
            };
            let ce = self.elem(c);
            let Some(name) = ce.name.clone() else {
                ok = false;
                continue;
            };
            if own_names.contains(&name) {
                self.err(
                    c,
                    &ce.path,
                    format!("content name `{name}` is used twice in this Interface"),
                );
                ok = false;
                continue;
            }
            if let Some(existing) = content_ids.get(&name) {
                if *existing != ce.id {
                    self.err(
                        c,
                        &ce.path,
                        format!("content name `{name}` clashes with an inherited content"),
                    );
                    ok = false;
                    continue;
                }
            }
            own_names.push(name.clone());
            content_ids.insert(name.clone(), ce.id.clone());
            ok &= self.add_content(&mut model, c, &name);
        }
        // Schemas in `schemas` are checked even if unused.
        for r in e.refs("schemas").to_vec() {
            if let Some(s) = self.resolve(&r, i, COMPLEX_SCHEMA_CLASSES) {
                ok &= self
                    .schema(&Ref::Inline(s), i, 0, &mut Vec::new())
                    .is_some();
            }
        }

        // Dependencies: ancestors and component interfaces, transitively.
        let mut deps = model.ancestors.clone();
        for comp in model.components.values() {
            for d in std::iter::once(&comp.interface.id).chain(comp.interface.dependencies.iter()) {
                if !deps.contains(d) {
                    deps.push(d.clone());
                }
            }
        }
        model.dependencies = deps;
        ok.then_some(Built {
            model,
            content_ids,
            depth,
        })
    }

    fn add_content(&mut self, model: &mut InterfaceModel, c: usize, name: &str) -> bool {
        let ce = self.elem(c);
        match ce.class {
            Class::Property => match self.property(c) {
                Some(p) => {
                    model.properties.insert(name.to_owned(), p);
                    true
                }
                None => false,
            },
            Class::Telemetry => {
                let Some(schema) = self.element_schema(c) else {
                    return false;
                };
                let (semantic_types, unit) = semantics(ce);
                model.telemetry.insert(
                    name.to_owned(),
                    TelemetryDef {
                        name: name.to_owned(),
                        schema,
                        semantic_types,
                        unit,
                    },
                );
                true
            }
            Class::Command => {
                let request = self.payload(c, "request");
                let response = self.payload(c, "response");
                let (Some(request), Some(response)) = (request, response) else {
                    return false;
                };
                model.commands.insert(
                    name.to_owned(),
                    CommandDef {
                        name: name.to_owned(),
                        request,
                        response,
                    },
                );
                true
            }
            Class::Relationship => {
                let mut properties = BTreeMap::new();
                let mut ok = true;
                for r in ce.refs("properties").to_vec() {
                    let Some(p) = self.resolve(&r, c, &[Class::Property]) else {
                        ok = false;
                        continue;
                    };
                    match self.property(p) {
                        Some(def) => {
                            properties.insert(def.name.clone(), def);
                        }
                        None => ok = false,
                    }
                }
                model.relationships.insert(
                    name.to_owned(),
                    RelationshipDef {
                        name: name.to_owned(),
                        target: ce.target.clone(),
                        min_multiplicity: ce.min_multiplicity.and_then(|v| u64::try_from(v).ok()),
                        max_multiplicity: ce.max_multiplicity.and_then(|v| u64::try_from(v).ok()),
                        writable: ce.writable,
                        properties,
                    },
                );
                ok
            }
            Class::Component => {
                let Some(r) = ce.refs("schema").first().cloned() else {
                    return false;
                };
                let Some(target) = self.resolve(&r, c, &[Class::Interface]) else {
                    return false;
                };
                if matches!(self.state.get(&target), Some(State::Building)) {
                    self.err(
                        c,
                        &ce.path,
                        "a Component's schema cannot contain the Interface that holds it",
                    );
                    return false;
                }
                let Some(b) = self.built(target) else {
                    return false;
                };
                if !b.model.components.is_empty() {
                    self.err(c, &ce.path, format!("the schema of Component `{name}` ({}) contains a Component; Components cannot nest", b.model.id));
                    return false;
                }
                model.components.insert(
                    name.to_owned(),
                    ComponentDef {
                        name: name.to_owned(),
                        interface: Box::new(b.model),
                    },
                );
                true
            }
            _ => false,
        }
    }

    fn property(&mut self, p: usize) -> Option<PropertyDef> {
        let pe = self.elem(p);
        let schema = self.element_schema(p)?;
        let (semantic_types, unit) = semantics(pe);
        Some(PropertyDef {
            name: pe.name.clone()?,
            schema,
            writable: pe.writable,
            semantic_types,
            unit,
        })
    }

    /// A Command's request/response: `Ok(None)` if absent, `None` on error.
    fn payload(&mut self, c: usize, prop: &str) -> Option<Option<CommandPayload>> {
        let ce = self.elem(c);
        let Some(r) = ce.refs(prop).first().cloned() else {
            return Some(None);
        };
        let classes: &[Class] = if ce.version == 2 {
            &[Class::CommandPayload]
        } else if prop == "request" {
            &[Class::CommandRequest]
        } else {
            &[Class::CommandResponse]
        };
        let p = self.resolve(&r, c, classes)?;
        let schema = self.element_schema(p)?;
        Some(Some(CommandPayload {
            name: self.elem(p).name.clone()?,
            schema,
            nullable: false,
        }))
    }

    /// The resolved `schema` of element `e`.
    fn element_schema(&mut self, e: usize) -> Option<Schema> {
        let r = self.elem(e).refs("schema").first().cloned()?;
        let s = self.schema(&r, e, 0, &mut Vec::new())?;
        let el = self.elem(e);
        if el.version == 2 && el.class == Class::Property && contains_array(&s) {
            self.err(
                e,
                &el.path,
                "DTDL v2 does not allow an Array in a Property's schema",
            );
            return None;
        }
        Some(s)
    }

    /// Resolve a schema reference made by `from`; `depth` complex levels above it.
    fn schema(
        &mut self,
        r: &Ref,
        from: usize,
        depth: usize,
        stack: &mut Vec<usize>,
    ) -> Option<Schema> {
        if let Ref::Primitive(p) = r {
            return Some(Schema::Primitive(*p));
        }
        let s = self.resolve(r, from, COMPLEX_SCHEMA_CLASSES)?;
        let se = self.elem(s);
        if stack.contains(&s) {
            self.err(s, &se.path, format!("schema `{}` refers to itself", se.id));
            return None;
        }
        if depth + 1 > MAX_SCHEMA_DEPTH {
            self.err(
                s,
                &se.path,
                format!("complex schemas are nested deeper than {MAX_SCHEMA_DEPTH} levels"),
            );
            return None;
        }
        stack.push(s);
        let out = self.complex(s, depth + 1, stack);
        stack.pop();
        out
    }

    fn complex(&mut self, s: usize, depth: usize, stack: &mut Vec<usize>) -> Option<Schema> {
        let se = self.elem(s);
        match se.class {
            Class::Array => {
                let r = se.refs("elementSchema").first().cloned()?;
                let element = self.schema(&r, s, depth, stack)?;
                Some(Schema::Array {
                    element: Box::new(element),
                })
            }
            Class::Enum => {
                let mut values = Vec::new();
                for r in se.refs("enumValues").to_vec() {
                    let v = self.resolve(&r, s, &[Class::EnumValue])?;
                    let ve = self.elem(v);
                    values.push(EnumValue {
                        name: ve.name.clone()?,
                        value: ve.enum_value.clone()?,
                    });
                }
                Some(Schema::Enum {
                    value_schema: se.value_schema?,
                    values,
                })
            }
            Class::Map => {
                let kr = se.refs("mapKey").first().cloned()?;
                let vr = se.refs("mapValue").first().cloned()?;
                let k = self.resolve(&kr, s, &[Class::MapKey])?;
                let v = self.resolve(&vr, s, &[Class::MapValue])?;
                let sr = self.elem(v).refs("schema").first().cloned()?;
                let value = self.schema(&sr, v, depth, stack)?;
                Some(Schema::Map {
                    key_name: self.elem(k).name.clone()?,
                    value_name: self.elem(v).name.clone()?,
                    value: Box::new(value),
                })
            }
            Class::Object => {
                let mut fields = Vec::new();
                let mut ok = true;
                for r in se.refs("fields").to_vec() {
                    let Some(f) = self.resolve(&r, s, &[Class::Field]) else {
                        ok = false;
                        continue;
                    };
                    let Some(sr) = self.elem(f).refs("schema").first().cloned() else {
                        ok = false;
                        continue;
                    };
                    match (self.elem(f).name.clone(), self.schema(&sr, f, depth, stack)) {
                        (Some(name), Some(schema)) => fields.push(Field { name, schema }),
                        _ => ok = false,
                    }
                }
                ok.then_some(Schema::Object { fields })
            }
            _ => None,
        }
    }
}

fn semantics(e: &Elem) -> (Vec<String>, Option<String>) {
    (e.cotypes.clone(), e.unit.clone())
}

fn contains_array(s: &Schema) -> bool {
    match s {
        Schema::Array { .. } => true,
        Schema::Map { value, .. } => contains_array(value),
        Schema::Object { fields } => fields.iter().any(|f| contains_array(&f.schema)),
        _ => false,
    }
}
