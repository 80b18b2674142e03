//! The resolved shape of a DTDL Interface, as the rest of doppel sees it.
//!
//! The parser (`crate::parser`) turns DTDL documents (v2 or v3, JSON or YAML) into
//! [`InterfaceModel`]s. An `InterfaceModel` is *flattened*: the contents it inherits
//! through `extends` are merged into its own maps, and each Component carries the
//! resolved Interface it uses as its schema. Consumers (twin validation, the REST API)
//! never walk `extends` chains themselves.
//!
//! Contract: every `Schema` here is fully resolved (no dangling DTMI references), so
//! `crate::value::validate_value` can check a JSON value against it without a registry.

use std::collections::BTreeMap;

/// A DTMI such as `dtmi:com:example:Thermostat;1`, already checked for syntax.
pub type Dtmi = String;

/// A fully resolved Interface (own contents plus everything inherited via `extends`).
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceModel {
    pub id: Dtmi,
    /// DTDL language version the document declared in its `@context` (2 or 3).
    pub dtdl_version: u8,
    /// `displayName` by language code (a plain string is stored under `"en"`).
    pub display_name: BTreeMap<String, String>,
    pub description: BTreeMap<String, String>,
    /// Direct parents, in document order.
    pub extends: Vec<Dtmi>,
    /// All ancestors through `extends`, transitively (no duplicates).
    pub ancestors: Vec<Dtmi>,
    /// Every Interface this one depends on: all ancestors and component schemas,
    /// transitively. Used to refuse deleting a model others still need.
    pub dependencies: Vec<Dtmi>,
    pub properties: BTreeMap<String, PropertyDef>,
    pub telemetry: BTreeMap<String, TelemetryDef>,
    pub commands: BTreeMap<String, CommandDef>,
    pub relationships: BTreeMap<String, RelationshipDef>,
    pub components: BTreeMap<String, ComponentDef>,
}

impl InterfaceModel {
    /// Whether `name` is any kind of content of this Interface.
    pub fn has_content(&self, name: &str) -> bool {
        self.properties.contains_key(name)
            || self.telemetry.contains_key(name)
            || self.commands.contains_key(name)
            || self.relationships.contains_key(name)
            || self.components.contains_key(name)
    }

    /// Whether this Interface is `id` or extends it (directly or transitively).
    pub fn is_or_extends(&self, id: &str) -> bool {
        self.id == id || self.ancestors.iter().any(|a| a == id)
    }
}

/// A Property (or a Relationship's property).
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyDef {
    pub name: String,
    pub schema: Schema,
    pub writable: bool,
    pub semantic_types: Vec<String>,
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryDef {
    pub name: String,
    pub schema: Schema,
    pub semantic_types: Vec<String>,
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandDef {
    pub name: String,
    pub request: Option<CommandPayload>,
    pub response: Option<CommandPayload>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandPayload {
    pub name: String,
    pub schema: Schema,
    /// DTDL v3 `nullable`: the payload may be JSON `null`.
    pub nullable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelationshipDef {
    pub name: String,
    /// The Interface the target twin must have (or extend); `None` = any twin.
    pub target: Option<Dtmi>,
    pub min_multiplicity: Option<u64>,
    pub max_multiplicity: Option<u64>,
    pub writable: bool,
    pub properties: BTreeMap<String, PropertyDef>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ComponentDef {
    pub name: String,
    /// The resolved Interface used as this component's schema.
    pub interface: Box<InterfaceModel>,
}

/// A resolved DTDL schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    Primitive(Primitive),
    Array {
        element: Box<Schema>,
    },
    Enum {
        /// `integer` or `string`.
        value_schema: Primitive,
        values: Vec<EnumValue>,
    },
    Map {
        key_name: String,
        value_name: String,
        value: Box<Schema>,
    },
    Object {
        fields: Vec<Field>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Primitive {
    Boolean,
    Date,
    DateTime,
    Double,
    Duration,
    Float,
    Integer,
    Long,
    String,
    Time,
    // DTDL v3 additions
    Byte,
    Bytes,
    Decimal,
    Short,
    UnsignedByte,
    UnsignedInteger,
    UnsignedLong,
    UnsignedShort,
    Uuid,
    // Geospatial (GeoJSON)
    Point,
    LineString,
    Polygon,
    MultiPoint,
    MultiLineString,
    MultiPolygon,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnumValue {
    pub name: String,
    /// An integer or a string, matching the Enum's `valueSchema`.
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub schema: Schema,
}
