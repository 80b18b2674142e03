//! Versioned encoding of every record doppel persists.
//!
//! A record is one format-version byte followed by its JSON body. JSON because twin
//! values are arbitrary JSON documents; the version byte so that a later release can
//! read what this one wrote (a new version gets a new decoder; old ones stay).
//!
//! Contract: `decode(encode(x)) == x`; a record with an unknown version or a body that
//! does not parse is reported as corrupt with the record kind, never a panic.

use serde::{de::DeserializeOwned, Serialize};

/// Current format version of all record kinds.
pub const FORMAT_V1: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt {kind} record: {reason}")]
pub struct CorruptRecord {
    pub kind: &'static str,
    pub reason: String,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // Serializing plain structs of strings, numbers and JSON values cannot fail.
    serde_json::to_writer(&mut out, value).expect("record serialization is infallible");
    out
}

pub fn decode<T: DeserializeOwned>(kind: &'static str, bytes: &[u8]) -> Result<T, CorruptRecord> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => serde_json::from_slice(body).map_err(|e| CorruptRecord {
            kind,
            reason: e.to_string(),
        }),
        Some((v, _)) => Err(CorruptRecord {
            kind,
            reason: format!("unknown format version {v}"),
        }),
        None => Err(CorruptRecord {
            kind,
            reason: "empty record".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_unknown_versions() {
        let v = serde_json::json!({"a": [1, 2]});
        let bytes = encode(&v);
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(decode::<serde_json::Value>("x", &bytes).unwrap(), v);
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(decode::<serde_json::Value>("x", &bad)
            .unwrap_err()
            .reason
            .contains("version 9"));
        assert!(decode::<serde_json::Value>("x", &[]).is_err());
    }
}
