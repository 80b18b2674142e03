//! JSON-LD `@context` handling: which DTDL version is in force and which language
//! extensions are active for an element and its descendants.
//!
//! Key type: [`Scope`]. A document's top-level `@context` must start with the DTDL
//! context (`dtmi:dtdl:context;2` or `;3`); nested elements may add contexts. Every
//! context is a versioned DTMI. A context that is neither DTDL nor a known extension
//! is an *undefined extension*: an error unless `allow_undefined_extensions`, in which
//! case the scope is *open* and unknown co-types (and, on elements carrying one,
//! unknown properties) are tolerated.

use crate::dtmi;
use serde_json::Value;

/// A feature extension this parser understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    QuantitativeTypes,
    Historization,
    Annotation,
    Overriding,
    Mqtt,
}

impl Extension {
    fn from_context(ctx: &str) -> Option<Extension> {
        Some(match ctx {
            "dtmi:dtdl:extension:quantitativeTypes;1" => Extension::QuantitativeTypes,
            "dtmi:dtdl:extension:historization;1" => Extension::Historization,
            "dtmi:dtdl:extension:annotation;1" => Extension::Annotation,
            "dtmi:dtdl:extension:overriding;1" => Extension::Overriding,
            "dtmi:dtdl:extension:mqtt;1" => Extension::Mqtt,
            _ => return None,
        })
    }

    /// Co-types this extension defines (semantic types are looked up separately).
    pub fn cotypes(self) -> &'static [&'static str] {
        match self {
            Extension::QuantitativeTypes => &[],
            Extension::Historization => &["Historized"],
            Extension::Annotation => &["ValueAnnotation"],
            Extension::Overriding => &["Override"],
            Extension::Mqtt => &["Mqtt", "Idempotent", "Cacheable", "Indexed"],
        }
    }

    /// Properties a co-type of this extension adds.
    pub fn props(self, cotype: &str) -> &'static [&'static str] {
        match (self, cotype) {
            (Extension::QuantitativeTypes, _) => &["unit"],
            (Extension::Annotation, "ValueAnnotation") => &["annotates"],
            (Extension::Overriding, "Override") => &["overrides"],
            (Extension::Mqtt, "Mqtt") => &["telemetryTopic", "commandTopic", "payloadFormat"],
            (Extension::Mqtt, "Cacheable") => &["ttl"],
            (Extension::Mqtt, "Indexed") => &["index"],
            _ => &[],
        }
    }
}

/// The context in force for an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// DTDL language version (2 or 3).
    pub version: u8,
    pub extensions: Vec<Extension>,
    /// An (allowed) undefined extension is in scope.
    pub open: bool,
}

/// Apply an `@context` value to `parent` (None = document top level).
pub fn apply(
    value: &Value,
    parent: Option<&Scope>,
    allow_undefined: bool,
) -> Result<Scope, String> {
    let entries: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        Value::String(_) => vec![value],
        _ => return Err("@context must be a string or an array of strings".into()),
    };
    let mut scope = parent.cloned();
    let mut seen_extension = false;
    for entry in &entries {
        let Some(ctx) = entry.as_str() else {
            return Err("every @context entry must be a string".into());
        };
        let parsed = dtmi::parse(ctx).filter(|d| d.major.is_some());
        if parsed.is_none() {
            return Err(format!("@context `{ctx}` is not a DTMI with a version"));
        }
        if let Some(v) = ctx.strip_prefix("dtmi:dtdl:context;") {
            if seen_extension {
                return Err("the DTDL context must come before any extension context".into());
            }
            let version = match v {
                "2" => 2,
                "3" => 3,
                _ => return Err(format!("unsupported DTDL version in `{ctx}`")),
            };
            match &mut scope {
                Some(s) if s.version != version => {
                    *s = Scope {
                        version,
                        extensions: Vec::new(),
                        open: false,
                    }
                }
                Some(_) => {}
                None => {
                    scope = Some(Scope {
                        version,
                        extensions: Vec::new(),
                        open: false,
                    })
                }
            }
            continue;
        }
        seen_extension = true;
        let Some(s) = scope.as_mut() else {
            return Err("the first @context of a document must be the DTDL context".into());
        };
        match Extension::from_context(ctx) {
            Some(ext) if s.version >= 3 => {
                if !s.extensions.contains(&ext) {
                    s.extensions.push(ext);
                }
            }
            _ if allow_undefined => s.open = true,
            _ => return Err(format!("undefined extension context `{ctx}`")),
        }
    }
    scope.ok_or_else(|| "@context must include the DTDL context".into())
}
