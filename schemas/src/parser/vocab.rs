//! The DTDL vocabulary: metamodel classes, the properties each class may carry, and
//! the kind of value each property takes, for DTDL v2 and v3.
//!
//! Key items: [`Class`], [`PropKind`], [`prop_kind`], [`primitive_from_term`].
//! Terms may also be written as their full DTMI (`dtmi:dtdl:class:Property;3`,
//! `dtmi:dtdl:property:schema;3`, `dtmi:dtdl:instance:Schema:double;3`,
//! `dtmi:standard:schema:geospatial:point;3`); [`term_of_dtmi`] maps those back.

use crate::model::Primitive;

/// A DTDL metamodel class that an element can be an instance of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Interface,
    Telemetry,
    Property,
    Command,
    CommandRequest,
    CommandResponse,
    CommandPayload,
    Relationship,
    Component,
    Array,
    Enum,
    EnumValue,
    Map,
    MapKey,
    MapValue,
    Object,
    Field,
}

pub const CONTENT_CLASSES: &[Class] = &[
    Class::Telemetry,
    Class::Property,
    Class::Command,
    Class::Relationship,
    Class::Component,
];
pub const COMPLEX_SCHEMA_CLASSES: &[Class] =
    &[Class::Array, Class::Enum, Class::Map, Class::Object];

impl Class {
    pub fn term(self) -> &'static str {
        match self {
            Class::Interface => "Interface",
            Class::Telemetry => "Telemetry",
            Class::Property => "Property",
            Class::Command => "Command",
            Class::CommandRequest => "CommandRequest",
            Class::CommandResponse => "CommandResponse",
            Class::CommandPayload => "CommandPayload",
            Class::Relationship => "Relationship",
            Class::Component => "Component",
            Class::Array => "Array",
            Class::Enum => "Enum",
            Class::EnumValue => "EnumValue",
            Class::Map => "Map",
            Class::MapKey => "MapKey",
            Class::MapValue => "MapValue",
            Class::Object => "Object",
            Class::Field => "Field",
        }
    }

    /// The concrete class named `term` in DTDL `version`.
    pub fn from_term(term: &str, version: u8) -> Option<Class> {
        let all = [
            Class::Interface,
            Class::Telemetry,
            Class::Property,
            Class::Command,
            Class::CommandRequest,
            Class::CommandResponse,
            Class::CommandPayload,
            Class::Relationship,
            Class::Component,
            Class::Array,
            Class::Enum,
            Class::EnumValue,
            Class::Map,
            Class::MapKey,
            Class::MapValue,
            Class::Object,
            Class::Field,
        ];
        let c = all.into_iter().find(|c| c.term() == term)?;
        let ok = match c {
            Class::CommandPayload => version == 2,
            Class::CommandRequest | Class::CommandResponse => version >= 3,
            _ => true,
        };
        ok.then_some(c)
    }

    /// Classes whose `@type` may be omitted where the position implies them.
    pub fn type_optional(self) -> bool {
        matches!(
            self,
            Class::CommandRequest
                | Class::CommandResponse
                | Class::CommandPayload
                | Class::EnumValue
                | Class::Field
                | Class::MapKey
                | Class::MapValue
        )
    }

    /// Properties (besides `comment`, `description`, `displayName`) of this class.
    pub fn props(self) -> &'static [&'static str] {
        match self {
            Class::Interface => &["contents", "extends", "schemas"],
            Class::Telemetry => &["name", "schema"],
            Class::Property => &["name", "schema", "writable"],
            Class::Command => &["name", "request", "response", "commandType"],
            Class::CommandRequest | Class::CommandResponse | Class::CommandPayload => {
                &["name", "schema"]
            }
            Class::Relationship => &[
                "name",
                "maxMultiplicity",
                "minMultiplicity",
                "properties",
                "target",
                "writable",
            ],
            Class::Component => &["name", "schema"],
            Class::Array => &["elementSchema"],
            Class::Enum => &["enumValues", "valueSchema"],
            Class::EnumValue => &["name", "enumValue"],
            Class::Map => &["mapKey", "mapValue"],
            Class::MapKey | Class::MapValue | Class::Field => &["name", "schema"],
            Class::Object => &["fields"],
        }
    }

    /// Properties that must be present.
    pub fn required(self, version: u8) -> &'static [&'static str] {
        match self {
            Class::Interface | Class::Command | Class::Relationship => {
                if self == Class::Interface {
                    &[]
                } else {
                    &["name"]
                }
            }
            Class::Telemetry
            | Class::Property
            | Class::Component
            | Class::CommandRequest
            | Class::CommandResponse
            | Class::CommandPayload
            | Class::MapKey
            | Class::MapValue
            | Class::Field => &["name", "schema"],
            Class::Array => &["elementSchema"],
            Class::Enum if version == 2 => &["valueSchema", "enumValues"],
            Class::Enum => &["valueSchema"],
            Class::EnumValue => &["name", "enumValue"],
            Class::Map => &["mapKey", "mapValue"],
            Class::Object if version == 2 => &["fields"],
            Class::Object => &[],
        }
    }

    pub fn is_complex_schema(self) -> bool {
        COMPLEX_SCHEMA_CLASSES.contains(&self)
    }
}

/// Every property term of the core language (any class), for telling "defined but
/// irrelevant here" from "undefined".
pub const ALL_PROPS: &[&str] = &[
    "comment",
    "commandType",
    "contents",
    "description",
    "displayName",
    "elementSchema",
    "enumValue",
    "enumValues",
    "extends",
    "fields",
    "mapKey",
    "mapValue",
    "maxMultiplicity",
    "minMultiplicity",
    "name",
    "properties",
    "request",
    "response",
    "schema",
    "schemas",
    "target",
    "valueSchema",
    "writable",
    "unit",
];

/// What a property's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropKind {
    /// A plain string with a maximum length (`comment`).
    Text,
    /// A localizable string (`displayName`, `description`).
    LangText,
    /// The programming name of an element.
    Name,
    Bool,
    Int,
    /// A DTMI by reference (Relationship `target`).
    DtmiRef,
    /// An integer or string literal (`enumValue`).
    Literal,
    /// `synchronous` / `asynchronous`.
    CommandType,
    /// `integer` / `string`.
    ValueSchema,
    /// A QuantitativeTypes unit.
    Unit,
    /// One element (inline object or reference).
    Element,
    /// A set of elements.
    Elements,
}

pub fn prop_kind(prop: &str) -> PropKind {
    match prop {
        "comment" => PropKind::Text,
        "description" | "displayName" => PropKind::LangText,
        "name" => PropKind::Name,
        "writable" => PropKind::Bool,
        "maxMultiplicity" | "minMultiplicity" => PropKind::Int,
        "target" => PropKind::DtmiRef,
        "enumValue" => PropKind::Literal,
        "commandType" => PropKind::CommandType,
        "valueSchema" => PropKind::ValueSchema,
        "unit" => PropKind::Unit,
        "contents" | "extends" | "schemas" | "properties" | "enumValues" | "fields" => {
            PropKind::Elements
        }
        _ => PropKind::Element,
    }
}

/// For an element-valued property of `owner`, the classes its values may have and
/// whether primitive schemas are allowed.
pub fn element_range(owner: Class, prop: &str, version: u8) -> (&'static [Class], bool) {
    match (owner, prop) {
        (_, "contents") => (CONTENT_CLASSES, false),
        (_, "extends") => (&[Class::Interface], false),
        (_, "schemas") => (COMPLEX_SCHEMA_CLASSES, false),
        (Class::Component, "schema") => (&[Class::Interface], false),
        (_, "request") if version == 2 => (&[Class::CommandPayload], false),
        (_, "response") if version == 2 => (&[Class::CommandPayload], false),
        (_, "request") => (&[Class::CommandRequest], false),
        (_, "response") => (&[Class::CommandResponse], false),
        (_, "properties") => (&[Class::Property], false),
        (_, "enumValues") => (&[Class::EnumValue], false),
        (_, "fields") => (&[Class::Field], false),
        (_, "mapKey") => (&[Class::MapKey], false),
        (_, "mapValue") => (&[Class::MapValue], false),
        (Class::MapKey, "schema") => (&[], true),
        _ => (COMPLEX_SCHEMA_CLASSES, true),
    }
}

/// The primitive schema named `term` in DTDL `version`.
pub fn primitive_from_term(term: &str, version: u8) -> Option<Primitive> {
    use Primitive as P;
    let p = match term {
        "boolean" => P::Boolean,
        "date" => P::Date,
        "dateTime" => P::DateTime,
        "double" => P::Double,
        "duration" => P::Duration,
        "float" => P::Float,
        "integer" => P::Integer,
        "long" => P::Long,
        "string" => P::String,
        "time" => P::Time,
        "point" => P::Point,
        "lineString" => P::LineString,
        "polygon" => P::Polygon,
        "multiPoint" => P::MultiPoint,
        "multiLineString" => P::MultiLineString,
        "multiPolygon" => P::MultiPolygon,
        _ if version >= 4 => match term {
            "byte" => P::Byte,
            "bytes" => P::Bytes,
            "decimal" => P::Decimal,
            "short" => P::Short,
            "uuid" => P::Uuid,
            "unsignedByte" => P::UnsignedByte,
            "unsignedShort" => P::UnsignedShort,
            "unsignedInteger" => P::UnsignedInteger,
            "unsignedLong" => P::UnsignedLong,
            _ => return None,
        },
        _ => return None,
    };
    Some(p)
}

pub fn is_numeric(p: Primitive) -> bool {
    use Primitive as P;
    matches!(
        p,
        P::Double
            | P::Float
            | P::Integer
            | P::Long
            | P::Byte
            | P::Short
            | P::Decimal
            | P::UnsignedByte
            | P::UnsignedShort
            | P::UnsignedInteger
            | P::UnsignedLong
    )
}

/// What a language DTMI stands for, as `(namespace, term)`: e.g.
/// `dtmi:dtdl:property:schema;3` → `("property", "schema")`,
/// `dtmi:standard:schema:geospatial:point;3` → `("schema", "point")`.
pub fn term_of_dtmi(dtmi: &str, version: u8) -> Option<(&str, &str)> {
    let (body, ver) = dtmi.rsplit_once(';')?;
    if ver != version.to_string() {
        return None;
    }
    if let Some(rest) = body.strip_prefix("dtmi:dtdl:") {
        let (ns, term) = rest.rsplit_once(':')?;
        let ns = match ns {
            "class" => "class",
            "property" => "property",
            "instance:Schema" => "schema",
            "instance:CommandType" => "commandType",
            _ => return None,
        };
        return Some((ns, term));
    }
    body.strip_prefix("dtmi:standard:schema:geospatial:")
        .map(|term| ("schema", term))
}
