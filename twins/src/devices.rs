//! The device registry: credentials of the physical device bound to a twin.
//!
//! A device is bound to exactly one twin and carries that twin's id (as an IoT Hub
//! device id names its device twin); its record lives on the twin's shard, so binding
//! and the twin's existence are checked atomically. A device authenticates with one of
//! two symmetric keys (SAS tokens, as Azure IoT Hub devices do). A disabled device
//! keeps its record and its twin's data; the edge refuses it and cuts its connection.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Whether a device may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The device id, which is the id of the twin it is bound to.
    pub id: String,
    pub etag: String,
    pub status: DeviceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Base64 symmetric keys (16–64 bytes each).
    pub primary_key: String,
    pub secondary_key: String,
    /// Lower-case hex SHA-256 of the device's X.509 certificate (DER), when it may
    /// authenticate with a client certificate instead of a SAS token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_thumbprint: Option<String>,
    pub created: String,
    pub last_update_time: String,
}

/// What a caller asks for when creating or updating a device. Fields left out keep
/// their current value; on create, status defaults to enabled and missing keys are
/// taken from `fresh_keys`, which the proposer draws at random (the state machine has
/// no randomness of its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub status: Option<DeviceStatus>,
    pub status_reason: Option<String>,
    pub primary_key: Option<String>,
    pub secondary_key: Option<String>,
    /// `Some("")` removes the thumbprint; `None` keeps it.
    #[serde(default)]
    pub x509_thumbprint: Option<String>,
    pub fresh_keys: (String, String),
}

impl DeviceRecord {
    /// The REST shape. Keys are included only when asked for (they are secrets).
    pub fn to_json(&self, include_keys: bool) -> Value {
        let mut v = json!({
            "deviceId": self.id,
            "twinId": self.id,
            "etag": self.etag,
            "status": self.status,
            "created": self.created,
            "lastUpdateTime": self.last_update_time,
        });
        if let Some(r) = &self.status_reason {
            v["statusReason"] = Value::String(r.clone());
        }
        if include_keys {
            v["authentication"] = json!({
                "type": if self.x509_thumbprint.is_some() { "selfSigned" } else { "sas" },
                "symmetricKey": { "primaryKey": self.primary_key, "secondaryKey": self.secondary_key }
            });
            if let Some(t) = &self.x509_thumbprint {
                v["authentication"]["x509Thumbprint"] = json!({ "primaryThumbprint": t });
            }
        }
        v
    }
}

/// Checks that `key` is base64 of 16 to 64 bytes.
pub fn check_key(key: &str) -> Result<(), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|e| format!("is not valid base64 ({e})"))?;
    if !(16..=64).contains(&bytes.len()) {
        return Err(format!(
            "decodes to {} bytes; a key must be 16 to 64 bytes",
            bytes.len()
        ));
    }
    Ok(())
}

/// Checks and normalises a SHA-256 certificate thumbprint (64 hex digits, any case,
/// colons allowed) to lower-case hex.
pub fn normalize_thumbprint(t: &str) -> Result<String, String> {
    let hex: String = t
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "'{t}' is not a SHA-256 thumbprint (64 hex digits of the certificate's DER)"
        ));
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_base64_of_16_to_64_bytes() {
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        assert!(check_key(&b64(32)).is_ok());
        assert!(check_key(&b64(16)).is_ok());
        assert!(check_key(&b64(64)).is_ok());
        assert!(check_key(&b64(15)).unwrap_err().contains("15 bytes"));
        assert!(check_key(&b64(65)).is_err());
        assert!(check_key("not base64!").unwrap_err().contains("base64"));
    }

    #[test]
    fn thumbprints_are_sha256_hex() {
        let t = "AB".repeat(32);
        assert_eq!(normalize_thumbprint(&t).unwrap(), "ab".repeat(32));
        let colons: Vec<String> = (0..32).map(|_| "AB".to_string()).collect();
        assert_eq!(
            normalize_thumbprint(&colons.join(":")).unwrap(),
            "ab".repeat(32)
        );
        assert!(normalize_thumbprint("abcd").is_err());
        assert!(normalize_thumbprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn keys_are_shown_only_on_request() {
        let d = DeviceRecord {
            id: "pump-1".into(),
            etag: "e".into(),
            status: DeviceStatus::Disabled,
            status_reason: Some("stolen".into()),
            primary_key: "p".into(),
            secondary_key: "s".into(),
            x509_thumbprint: None,
            created: "c".into(),
            last_update_time: "u".into(),
        };
        assert!(d.to_json(false).get("authentication").is_none());
        assert_eq!(
            d.to_json(true)["authentication"]["symmetricKey"]["primaryKey"],
            "p"
        );
        assert_eq!(d.to_json(false)["status"], "disabled");
    }
}
