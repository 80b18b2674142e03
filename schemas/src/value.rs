//! Checking a JSON value against a resolved DTDL [`Schema`].
//!
//! Key items: [`validate_value`] and [`ValueError`]. Twins call this for every property,
//! telemetry message and command payload, so it must never panic and should be cheap.
//!
//! Contract (follows Azure Digital Twins):
//! - integer kinds are range-checked (`byte` = i8 … `unsignedLong` = u64); an integral
//!   float such as `5.0` is accepted as the integer 5;
//! - `float`/`double` take any JSON number (`float` must fit an f32);
//! - `date`, `time`, `dateTime` (RFC 3339), `duration` (ISO 8601), `uuid`, `bytes`
//!   (standard base64) are strings in those formats; `decimal` is a number or a
//!   decimal string;
//! - geospatial schemas are GeoJSON geometry objects of the matching `type`;
//! - Enum values must be one of the `enumValue`s;
//! - Object: unknown fields are errors, missing fields are allowed;
//! - Map: any string key, every value checked; Array: every element checked;
//! - `null` is never a valid value (callers treat it as "remove" before asking).
//!
//! [`ValueError::path`] is a JSON pointer (RFC 6901) into the value, `""` for the root.

use crate::model::{Primitive, Schema};
use serde_json::Value;
use std::fmt;

/// Why a value does not conform to its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValueError {
    /// JSON pointer inside the value (`""` = the value itself).
    pub path: String,
    pub message: String,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "at {}: {}", self.path, self.message)
        }
    }
}

/// Check `value` against `schema`; the first violation found is returned.
pub fn validate_value(schema: &Schema, value: &Value) -> Result<(), ValueError> {
    let mut path = String::new();
    check(schema, value, &mut path)
}

fn fail(path: &str, message: impl Into<String>) -> Result<(), ValueError> {
    Err(ValueError {
        path: path.to_owned(),
        message: message.into(),
    })
}

fn push_token(path: &mut String, token: &str) {
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

fn check(schema: &Schema, value: &Value, path: &mut String) -> Result<(), ValueError> {
    match schema {
        Schema::Primitive(p) => check_primitive(*p, value, path),
        Schema::Array { element } => {
            let Some(items) = value.as_array() else {
                return fail(path, format!("expected an array, got {}", kind(value)));
            };
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                push_token(path, &i.to_string());
                check(element, item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Schema::Map { value: vs, .. } => {
            let Some(map) = value.as_object() else {
                return fail(
                    path,
                    format!("expected an object (map), got {}", kind(value)),
                );
            };
            for (k, v) in map {
                let len = path.len();
                push_token(path, k);
                check(vs, v, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Schema::Object { fields } => {
            let Some(map) = value.as_object() else {
                return fail(path, format!("expected an object, got {}", kind(value)));
            };
            for (k, v) in map {
                let len = path.len();
                push_token(path, k);
                match fields.iter().find(|f| f.name == *k) {
                    Some(field) => check(&field.schema, v, path)?,
                    None => return fail(path, format!("unknown field `{k}`")),
                }
                path.truncate(len);
            }
            Ok(())
        }
        Schema::Enum {
            value_schema,
            values,
        } => {
            check_primitive(*value_schema, value, path)?;
            let matches = |ev: &serde_json::Value| match (ev, value) {
                (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                (a, b) => a == b,
            };
            if values.iter().any(|ev| matches(&ev.value)) {
                Ok(())
            } else {
                let allowed: Vec<String> = values.iter().map(|v| v.value.to_string()).collect();
                fail(
                    path,
                    format!(
                        "{value} is not one of the enum values [{}]",
                        allowed.join(", ")
                    ),
                )
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value as an integer, if it is one (integral floats included).
fn as_integer(v: &Value) -> Option<i128> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    let f = n.as_f64()?;
    // 2^64 bounds every DTDL integer kind; beyond it the value is out of range anyway.
    if f.fract() == 0.0 && f.abs() < 1.9e19 {
        Some(f as i128)
    } else {
        None
    }
}

fn check_primitive(p: Primitive, value: &Value, path: &str) -> Result<(), ValueError> {
    use Primitive as P;
    let range = match p {
        P::Byte => Some((i128::from(i8::MIN), i128::from(i8::MAX))),
        P::Short => Some((i128::from(i16::MIN), i128::from(i16::MAX))),
        P::Integer => Some((i128::from(i32::MIN), i128::from(i32::MAX))),
        P::Long => Some((i128::from(i64::MIN), i128::from(i64::MAX))),
        P::UnsignedByte => Some((0, i128::from(u8::MAX))),
        P::UnsignedShort => Some((0, i128::from(u16::MAX))),
        P::UnsignedInteger => Some((0, i128::from(u32::MAX))),
        P::UnsignedLong => Some((0, i128::from(u64::MAX))),
        _ => None,
    };
    if let Some((lo, hi)) = range {
        let name = primitive_name(p);
        return match as_integer(value) {
            Some(i) if i >= lo && i <= hi => Ok(()),
            Some(i) => fail(
                path,
                format!("{i} is out of range for {name} ({lo}..={hi})"),
            ),
            None => fail(path, format!("expected {name}, got {}", describe(value))),
        };
    }
    type FormatCheck = (fn(&str) -> bool, &'static str);
    let string_check: Option<FormatCheck> = match p {
        P::String => Some((|_| true, "a string")),
        P::Date => Some((is_date, "a date (YYYY-MM-DD)")),
        P::Time => Some((is_time, "a time (hh:mm:ss[.fff][offset])")),
        P::DateTime => Some((is_date_time, "an RFC 3339 date-time")),
        P::Duration => Some((is_duration, "an ISO 8601 duration")),
        P::Uuid => Some((is_uuid, "a UUID")),
        P::Bytes => Some((is_base64, "base64-encoded bytes")),
        _ => None,
    };
    if let Some((ok, what)) = string_check {
        return match value.as_str() {
            Some(s) if ok(s) => Ok(()),
            _ => fail(path, format!("expected {what}, got {}", describe(value))),
        };
    }
    match p {
        P::Boolean => match value {
            Value::Bool(_) => Ok(()),
            _ => fail(path, format!("expected a boolean, got {}", describe(value))),
        },
        P::Double => match value.as_f64() {
            Some(f) if f.is_finite() => Ok(()),
            _ => fail(path, format!("expected a double, got {}", describe(value))),
        },
        P::Float => match value.as_f64() {
            Some(f) if f.is_finite() && f.abs() <= f64::from(f32::MAX) => Ok(()),
            Some(f) => fail(path, format!("{f} is out of range for float")),
            None => fail(path, format!("expected a float, got {}", describe(value))),
        },
        P::Decimal => match value {
            Value::Number(_) => Ok(()),
            Value::String(s) if is_decimal(s) => Ok(()),
            _ => fail(
                path,
                format!(
                    "expected a decimal number or string, got {}",
                    describe(value)
                ),
            ),
        },
        P::Point
        | P::LineString
        | P::Polygon
        | P::MultiPoint
        | P::MultiLineString
        | P::MultiPolygon => check_geo(p, value, path),
        _ => Ok(()),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() <= 64 => format!("\"{s}\""),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind(other).to_owned(),
    }
}

/// The DTDL name of a primitive schema, e.g. `unsignedShort`.
pub fn primitive_name(p: Primitive) -> &'static str {
    use Primitive as P;
    match p {
        P::Boolean => "boolean",
        P::Date => "date",
        P::DateTime => "dateTime",
        P::Double => "double",
        P::Duration => "duration",
        P::Float => "float",
        P::Integer => "integer",
        P::Long => "long",
        P::String => "string",
        P::Time => "time",
        P::Byte => "byte",
        P::Bytes => "bytes",
        P::Decimal => "decimal",
        P::Short => "short",
        P::UnsignedByte => "unsignedByte",
        P::UnsignedInteger => "unsignedInteger",
        P::UnsignedLong => "unsignedLong",
        P::UnsignedShort => "unsignedShort",
        P::Uuid => "uuid",
        P::Point => "point",
        P::LineString => "lineString",
        P::Polygon => "polygon",
        P::MultiPoint => "multiPoint",
        P::MultiLineString => "multiLineString",
        P::MultiPolygon => "multiPolygon",
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |acc, d| {
        acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10]))
    else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// `hh:mm:ss[.frac]` followed by what remains (an offset or nothing).
fn split_partial_time(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?);
    // 60 allows a leap second.
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[8..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    Some(rest)
}

fn is_offset(s: &str) -> bool {
    if s == "Z" || s == "z" {
        return true;
    }
    let b = s.as_bytes();
    if b.len() != 6 || !(b[0] == b'+' || b[0] == b'-') || b[3] != b':' {
        return false;
    }
    matches!((digits(&b[1..3]), digits(&b[4..6])), (Some(h), Some(m)) if h <= 23 && m <= 59)
}

fn is_time(s: &str) -> bool {
    match split_partial_time(s) {
        Some("") => true,
        Some(off) => is_offset(off),
        None => false,
    }
}

fn is_date_time(s: &str) -> bool {
    if s.len() < 11 || !s.is_char_boundary(10) || !s.is_char_boundary(11) {
        return false;
    }
    let (date, rest) = s.split_at(10);
    let Some(time) = rest.strip_prefix(['T', 't']) else {
        return false;
    };
    is_date(date) && split_partial_time(time).is_some_and(is_offset)
}

fn is_duration(s: &str) -> bool {
    let Some(body) = s.strip_prefix('P') else {
        return false;
    };
    let (date, time) = match body.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    // Parse `<number><designator>` groups in the allowed order.
    fn groups(mut s: &str, order: &[u8]) -> Option<usize> {
        let mut next = 0;
        let mut count = 0;
        while !s.is_empty() {
            let n = s
                .bytes()
                .take_while(|c| c.is_ascii_digit() || *c == b'.' || *c == b',')
                .count();
            let num = &s[..n];
            if num.is_empty() || !num.as_bytes()[0].is_ascii_digit() {
                return None;
            }
            if num.bytes().filter(|c| *c == b'.' || *c == b',').count() > 1
                || num.ends_with(['.', ','])
            {
                return None;
            }
            let d = *s.as_bytes().get(n)?;
            let pos = order[next..].iter().position(|o| *o == d)?;
            next += pos + 1;
            count += 1;
            s = &s[n + 1..];
        }
        Some(count)
    }
    let Some(dc) = groups(date, b"YMWD") else {
        return false;
    };
    match time {
        None => dc > 0,
        Some(t) => matches!(groups(t, b"HMS"), Some(tc) if tc > 0),
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_base64(s: &str) -> bool {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return false;
    }
    let body = s.trim_end_matches('=');
    if b.len() - body.len() > 2 {
        return false;
    }
    body.bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exp) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |x: &str| x.bytes().all(|c| c.is_ascii_digit());
    let mantissa_ok = (!int.is_empty() || !frac.is_empty()) && all_digits(int) && all_digits(frac);
    let exp_ok = match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && all_digits(e)
        }
    };
    mantissa_ok && exp_ok
}

fn check_geo(p: Primitive, value: &Value, path: &str) -> Result<(), ValueError> {
    use Primitive as P;
    let expected_type = match p {
        P::Point => "Point",
        P::LineString => "LineString",
        P::Polygon => "Polygon",
        P::MultiPoint => "MultiPoint",
        P::MultiLineString => "MultiLineString",
        _ => "MultiPolygon",
    };
    let Some(obj) = value.as_object() else {
        return fail(path, format!("expected a GeoJSON {expected_type} object"));
    };
    if obj.get("type").and_then(Value::as_str) != Some(expected_type) {
        return fail(path, format!("GeoJSON `type` must be \"{expected_type}\""));
    }
    let Some(coords) = obj.get("coordinates") else {
        return fail(path, "GeoJSON object lacks `coordinates`");
    };
    let ok = match p {
        P::Point => is_position(coords),
        P::LineString => is_line(coords),
        P::Polygon => is_polygon(coords),
        P::MultiPoint => every(coords, is_position),
        P::MultiLineString => every(coords, is_line),
        _ => every(coords, is_polygon),
    };
    if ok {
        Ok(())
    } else {
        fail(
            &format!("{path}/coordinates"),
            format!("invalid coordinates for a GeoJSON {expected_type}"),
        )
    }
}

fn every(v: &Value, f: fn(&Value) -> bool) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(f))
}

fn is_position(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| (2..=3).contains(&a.len()) && a.iter().all(Value::is_number))
}

fn is_line(v: &Value) -> bool {
    every(v, is_position) && v.as_array().is_some_and(|a| a.len() >= 2)
}

fn is_polygon(v: &Value) -> bool {
    every(v, |ring| {
        every(ring, is_position)
            && ring
                .as_array()
                .is_some_and(|a| a.len() >= 4 && a.first() == a.last())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EnumValue, Field};
    use serde_json::json;

    fn p(p: Primitive) -> Schema {
        Schema::Primitive(p)
    }

    fn ok(s: &Schema, v: Value) {
        if let Err(e) = validate_value(s, &v) {
            panic!("{v} should be valid for {s:?}: {e}");
        }
    }

    fn bad(s: &Schema, v: Value) -> ValueError {
        match validate_value(s, &v) {
            Ok(()) => panic!("{v} should be invalid for {s:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn integer_kinds_are_range_checked() {
        ok(&p(Primitive::Byte), json!(-128));
        bad(&p(Primitive::Byte), json!(128));
        ok(&p(Primitive::Short), json!(32767));
        bad(&p(Primitive::Short), json!(-32769));
        ok(&p(Primitive::Integer), json!(5.0));
        bad(&p(Primitive::Integer), json!(5.5));
        bad(&p(Primitive::Integer), json!(2147483648u64));
        ok(&p(Primitive::Long), json!(i64::MIN));
        ok(&p(Primitive::UnsignedLong), json!(u64::MAX));
        bad(&p(Primitive::UnsignedByte), json!(-1));
        ok(&p(Primitive::UnsignedShort), json!(65535));
        bad(&p(Primitive::UnsignedInteger), json!(4294967296u64));
        bad(&p(Primitive::Integer), json!("5"));
    }

    #[test]
    fn floats_booleans_strings() {
        ok(&p(Primitive::Double), json!(1e300));
        bad(&p(Primitive::Float), json!(1e300));
        ok(&p(Primitive::Float), json!(3));
        bad(&p(Primitive::Double), json!("1.0"));
        ok(&p(Primitive::Boolean), json!(true));
        bad(&p(Primitive::Boolean), json!(1));
        ok(&p(Primitive::String), json!(""));
        bad(&p(Primitive::String), json!(null));
    }

    #[test]
    fn temporal_formats() {
        ok(&p(Primitive::Date), json!("2024-02-29"));
        bad(&p(Primitive::Date), json!("2023-02-29"));
        bad(&p(Primitive::Date), json!("2023-13-01"));
        ok(&p(Primitive::Time), json!("23:59:59.123"));
        ok(&p(Primitive::Time), json!("08:00:00Z"));
        bad(&p(Primitive::Time), json!("24:00:00"));
        ok(
            &p(Primitive::DateTime),
            json!("2024-01-02T03:04:05.6+01:00"),
        );
        ok(&p(Primitive::DateTime), json!("2024-01-02T03:04:05Z"));
        bad(&p(Primitive::DateTime), json!("2024-01-02T03:04:05"));
        bad(&p(Primitive::DateTime), json!("2024-01-02"));
        ok(&p(Primitive::Duration), json!("P1Y2M3DT4H5M6.5S"));
        ok(&p(Primitive::Duration), json!("PT0S"));
        ok(&p(Primitive::Duration), json!("P2W"));
        bad(&p(Primitive::Duration), json!("P"));
        bad(&p(Primitive::Duration), json!("PT"));
        bad(&p(Primitive::Duration), json!("P1S"));
        bad(&p(Primitive::Duration), json!("PT1H2H"));
    }

    #[test]
    fn uuid_bytes_decimal() {
        ok(
            &p(Primitive::Uuid),
            json!("123e4567-e89b-12d3-a456-426614174000"),
        );
        bad(
            &p(Primitive::Uuid),
            json!("123e4567e89b12d3a456426614174000"),
        );
        ok(&p(Primitive::Bytes), json!("aGVsbG8="));
        bad(&p(Primitive::Bytes), json!("aGVsbG8"));
        bad(&p(Primitive::Bytes), json!("a==="));
        ok(&p(Primitive::Decimal), json!(1.5));
        ok(
            &p(Primitive::Decimal),
            json!("-12345678901234567890.123e-5"),
        );
        bad(&p(Primitive::Decimal), json!("1.2.3"));
        bad(&p(Primitive::Decimal), json!("."));
    }

    #[test]
    fn geospatial() {
        ok(
            &p(Primitive::Point),
            json!({"type": "Point", "coordinates": [1.0, 2.0]}),
        );
        bad(
            &p(Primitive::Point),
            json!({"type": "Point", "coordinates": [1.0]}),
        );
        bad(
            &p(Primitive::Point),
            json!({"type": "LineString", "coordinates": [1, 2]}),
        );
        ok(
            &p(Primitive::LineString),
            json!({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
        );
        let ring = json!([[0, 0], [1, 0], [1, 1], [0, 0]]);
        ok(
            &p(Primitive::Polygon),
            json!({"type": "Polygon", "coordinates": [ring]}),
        );
        ok(
            &p(Primitive::MultiPolygon),
            json!({"type": "MultiPolygon", "coordinates": [[ring]]}),
        );
        bad(
            &p(Primitive::Polygon),
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}),
        );
        ok(
            &p(Primitive::MultiPoint),
            json!({"type": "MultiPoint", "coordinates": [[1, 2]]}),
        );
        ok(
            &p(Primitive::MultiLineString),
            json!({"type": "MultiLineString", "coordinates": [[[1, 2], [3, 4]]]}),
        );
    }

    #[test]
    fn complex_schemas_report_pointer_paths() {
        let color = Schema::Enum {
            value_schema: Primitive::String,
            values: vec![EnumValue {
                name: "red".into(),
                value: json!("Red"),
            }],
        };
        ok(&color, json!("Red"));
        bad(&color, json!("Blue"));
        let level = Schema::Enum {
            value_schema: Primitive::Integer,
            values: vec![EnumValue {
                name: "one".into(),
                value: json!(1),
            }],
        };
        ok(&level, json!(1));
        bad(&level, json!(2));
        let obj = Schema::Object {
            fields: vec![
                Field {
                    name: "color".into(),
                    schema: color.clone(),
                },
                Field {
                    name: "tags".into(),
                    schema: Schema::Array {
                        element: Box::new(p(Primitive::String)),
                    },
                },
            ],
        };
        ok(&obj, json!({}));
        ok(&obj, json!({"color": "Red", "tags": ["a"]}));
        let e = bad(&obj, json!({"colour": "Red"}));
        assert_eq!(e.path, "/colour");
        let e = bad(&obj, json!({"tags": ["a", 3]}));
        assert_eq!(e.path, "/tags/1");
        let map = Schema::Map {
            key_name: "k".into(),
            value_name: "v".into(),
            value: Box::new(obj),
        };
        ok(&map, json!({"any key": {"color": "Red"}}));
        let e = bad(&map, json!({"a/b": {"color": "Green"}}));
        assert_eq!(e.path, "/a~1b/color");
        assert!(e.to_string().starts_with("at /a~1b/color: "));
        let e = bad(&map, json!([]));
        assert_eq!(e.path, "");
    }
}
