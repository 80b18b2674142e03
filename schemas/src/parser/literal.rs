//! Reading JSON-LD literal values: plain strings, booleans and integers, their JSON-LD
//! value-object spelling (`{"@value": 3, "@type": "xsd:integer"}`), and localizable
//! strings (a string, a language map, a value object or an array of those).
//!
//! Each reader returns the value or a message naming the rule broken; the caller adds
//! the DTMI and path.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

const XSD: &str = "http://www.w3.org/2001/XMLSchema#";

/// Unwrap `{"@value": v, "@type": "xsd:<datatype>"}` (type optional) into `v`.
fn value_object<'a>(o: &'a Map<String, Value>, datatype: &str) -> Result<&'a Value, String> {
    for k in o.keys() {
        if k != "@value" && k != "@type" {
            return Err(format!(
                "a value object may hold only @value and @type, not `{k}`"
            ));
        }
    }
    let v = o.get("@value").ok_or("a value object must have @value")?;
    if let Some(t) = o.get("@type") {
        let t = match t {
            Value::Array(a) if a.len() == 1 => &a[0],
            other => other,
        };
        let ok = t.as_str().is_some_and(|t| {
            t.strip_prefix("xsd:")
                .or_else(|| t.strip_prefix(XSD))
                .is_some_and(|d| d == datatype)
        });
        if !ok {
            return Err(format!(
                "the @type of this value object must be xsd:{datatype}"
            ));
        }
    }
    Ok(v)
}

/// Remove one level of single-element array wrapping.
fn single(v: &Value) -> Result<&Value, String> {
    match v {
        Value::Array(a) if a.len() == 1 => Ok(&a[0]),
        Value::Array(_) => Err("expected a single value, not an array".into()),
        other => Ok(other),
    }
}

pub fn read_string(v: &Value, max_len: usize) -> Result<String, String> {
    let v = single(v)?;
    let s = match v {
        Value::String(s) => s,
        Value::Object(o) => value_object(o, "string")?
            .as_str()
            .ok_or("the @value must be a string")?,
        _ => return Err("expected a string".into()),
    };
    if s.chars().count() > max_len {
        return Err(format!("longer than {max_len} characters"));
    }
    Ok(s.to_owned())
}

pub fn read_bool(v: &Value) -> Result<bool, String> {
    match single(v)? {
        Value::Bool(b) => Ok(*b),
        Value::Object(o) => value_object(o, "boolean")?
            .as_bool()
            .ok_or_else(|| "the @value must be a boolean".into()),
        _ => Err("expected a boolean".into()),
    }
}

pub fn read_int(v: &Value) -> Result<i64, String> {
    let v = match single(v)? {
        Value::Object(o) => value_object(o, "integer")?,
        other => other,
    };
    v.as_i64().ok_or_else(|| "expected an integer".into())
}

/// An integer or string literal (Enum `enumValue`).
pub fn read_literal(v: &Value) -> Result<Value, String> {
    match single(v)? {
        Value::String(_) => Ok(single(v)?.clone()),
        Value::Number(n) if n.is_i64() => Ok(single(v)?.clone()),
        Value::Object(o) => {
            if let Ok(s) = value_object(o, "string").cloned() {
                if s.is_string() {
                    return Ok(s);
                }
            }
            let i = value_object(o, "integer")?;
            if i.is_i64() {
                Ok(i.clone())
            } else {
                Err("expected an integer or string".into())
            }
        }
        _ => Err("expected an integer or a string".into()),
    }
}

/// BCP 47-shaped language tag: a 2–3 letter primary tag and 1–8 character subtags.
pub fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let Some(primary) = parts.next() else {
        return false;
    };
    (2..=3).contains(&primary.len())
        && primary.bytes().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_alphanumeric()))
}

/// A localizable string, as language → text (no language = `"en"`).
pub fn read_lang_string(v: &Value, max_len: usize) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let put = |lang: Option<&str>, text: &str, out: &mut BTreeMap<String, String>| {
        if text.chars().count() > max_len {
            return Err(format!("longer than {max_len} characters"));
        }
        let key = lang.unwrap_or("en");
        if out.insert(key.to_owned(), text.to_owned()).is_some() {
            return Err(match lang {
                Some(l) => format!("language `{l}` given twice"),
                None => "more than one string in the default language (en)".into(),
            });
        }
        Ok(())
    };
    let lang_value = |o: &Map<String, Value>| -> Result<(Option<String>, String), String> {
        for k in o.keys() {
            if k != "@value" && k != "@language" {
                return Err(format!(
                    "a localized value may hold only @value and @language, not `{k}`"
                ));
            }
        }
        let text = o
            .get("@value")
            .ok_or("a localized value must have @value")?
            .as_str()
            .ok_or("@value must be a string")?;
        let lang = match o.get("@language") {
            None => None,
            Some(Value::String(l)) if is_language_tag(l) => Some(l.clone()),
            Some(_) => return Err("@language must be a language tag".into()),
        };
        Ok((lang, text.to_owned()))
    };
    match v {
        Value::String(s) => put(None, s, &mut out)?,
        Value::Object(o) if o.contains_key("@value") => {
            return Err("a localized value object must be inside an array".into());
        }
        Value::Object(o) => {
            for (lang, text) in o {
                if !is_language_tag(lang) {
                    return Err(format!("`{lang}` is not a language tag"));
                }
                let text = text
                    .as_str()
                    .ok_or_else(|| format!("the `{lang}` string must be a string"))?;
                put(Some(lang), text, &mut out)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => put(None, s, &mut out)?,
                    Value::Object(o) => {
                        let (lang, text) = lang_value(o)?;
                        put(lang.as_deref(), &text, &mut out)?;
                    }
                    _ => return Err("each element must be a string or a value object".into()),
                }
            }
        }
        _ => return Err("expected a string, a language map or an array".into()),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn value_objects() {
        assert_eq!(
            read_int(&json!({"@value": 3, "@type": "xsd:integer"})),
            Ok(3)
        );
        assert!(read_int(&json!({"@value": 3, "@type": "xsd:string"})).is_err());
        assert!(read_int(&json!({"@value": 3, "@id": "dtmi:a;1"})).is_err());
        assert_eq!(read_bool(&json!([true])), Ok(true));
        assert!(read_string(&json!({"@type": "xsd:string"}), 10).is_err());
    }

    #[test]
    fn localizable_strings() {
        let m = read_lang_string(&json!("hi"), 512).expect("plain string");
        assert_eq!(m.get("en").map(String::as_str), Some("hi"));
        assert!(read_lang_string(&json!(["a", "b"]), 512).is_err());
        assert!(read_lang_string(&json!({"English": "x"}), 512).is_err());
        assert!(read_lang_string(&json!({"sr-Latn-RS": "x"}), 512).is_ok());
        assert!(read_lang_string(&json!("abc"), 2).is_err());
    }
}
