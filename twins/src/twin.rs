//! Twin state as stored, and its Azure-Digital-Twins JSON shape.
//!
//! A [`TwinRecord`] holds a twin's model, etag, and for the root and each component a
//! [`PropertyBag`]: property values plus per-property metadata. Writable properties
//! additionally carry the IoT Plug and Play desired/ack bookkeeping.
//!
//! ```text
//! {
//!   "$dtId": "pump-1", "$etag": "W/\"…\"",
//!   "speed": 1200,
//!   "motor": { "temp": 61.5, "$metadata": { "temp": { "lastUpdateTime": "…" } } },
//!   "$metadata": {
//!     "$model": "dtmi:example:Pump;1", "$lastUpdateTime": "…",
//!     "speed": { "lastUpdateTime": "…", "desiredValue": 1200, "desiredVersion": 3,
//!                "ackVersion": 2, "ackCode": 200, "ackDescription": "ok" }
//!   }
//! }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwinRecord {
    pub id: String,
    pub etag: String,
    pub model: String,
    pub last_update_time: String,
    /// The highest `desiredVersion` handed out to any writable property of this twin.
    /// A new desired value gets the next one, so a property's versions only increase,
    /// even across its removal: a late device ack of an old value can never pass for
    /// an ack of a newer one. (Records written before this field read as 0; the
    /// per-property versions then still bound the next one from below.)
    #[serde(default)]
    pub desired_version: u64,
    #[serde(default)]
    pub root: PropertyBag,
    #[serde(default)]
    pub components: BTreeMap<String, PropertyBag>,
    /// The bound device's connection, once it has ever connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
}

/// A device's connection state, kept on its twin (`$metadata.$connection`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub connected: bool,
    pub last_connect_time: Option<String>,
    pub last_disconnect_time: Option<String>,
    /// The last time the device was heard from (connect, message, disconnect).
    pub last_activity_time: String,
    /// The cluster node the device last connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
}

impl Connection {
    /// `$metadata.$connection` as a twin shows it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "state": if self.connected { "connected" } else { "disconnected" },
            "lastConnectTime": self.last_connect_time,
            "lastDisconnectTime": self.last_disconnect_time,
            "lastActivityTime": self.last_activity_time,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PropertyBag {
    #[serde(default)]
    pub values: Map<String, Value>,
    #[serde(default)]
    pub meta: BTreeMap<String, PropertyMeta>,
}

/// Per-property metadata; the desired/ack fields exist only for writable properties.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PropertyMeta {
    pub last_update_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_description: Option<String>,
}

impl PropertyMeta {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "lastUpdateTime".into(),
            Value::String(self.last_update_time.clone()),
        );
        if let Some(t) = &self.source_time {
            m.insert("sourceTime".into(), Value::String(t.clone()));
        }
        if let Some(v) = &self.desired_value {
            m.insert("desiredValue".into(), v.clone());
        }
        if let Some(v) = self.desired_version {
            m.insert("desiredVersion".into(), v.into());
        }
        if let Some(v) = self.ack_version {
            m.insert("ackVersion".into(), v.into());
        }
        if let Some(v) = self.ack_code {
            m.insert("ackCode".into(), v.into());
        }
        if let Some(v) = &self.ack_description {
            m.insert("ackDescription".into(), Value::String(v.clone()));
        }
        Value::Object(m)
    }
}

impl PropertyBag {
    fn write_json(&self, out: &mut Map<String, Value>, metadata: &mut Map<String, Value>) {
        for (k, v) in &self.values {
            out.insert(k.clone(), v.clone());
        }
        for (k, m) in &self.meta {
            metadata.insert(k.clone(), m.to_json());
        }
    }

    /// The values alone, as a JSON object (the view JSON Patch operates on).
    pub fn values_json(&self) -> Value {
        Value::Object(self.values.clone())
    }
}

impl TwinRecord {
    /// The Azure-Digital-Twins JSON representation.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("$dtId".into(), Value::String(self.id.clone()));
        out.insert("$etag".into(), Value::String(self.etag.clone()));
        let mut metadata = Map::new();
        metadata.insert("$model".into(), Value::String(self.model.clone()));
        if let Some(c) = &self.connection {
            metadata.insert("$connection".into(), c.to_json());
        }
        metadata.insert(
            "$lastUpdateTime".into(),
            Value::String(self.last_update_time.clone()),
        );
        self.root.write_json(&mut out, &mut metadata);
        for (name, bag) in &self.components {
            let mut comp = Map::new();
            let mut comp_meta = Map::new();
            bag.write_json(&mut comp, &mut comp_meta);
            comp.insert("$metadata".into(), Value::Object(comp_meta));
            out.insert(name.clone(), Value::Object(comp));
        }
        out.insert("$metadata".into(), Value::Object(metadata));
        Value::Object(out)
    }

    /// The user-editable view JSON Patch applies to: root property values and one
    /// object per component holding its property values. No `$` keys.
    pub fn patch_view(&self) -> Value {
        let mut out = self.root.values.clone();
        for (name, bag) in &self.components {
            out.insert(name.clone(), bag.values_json());
        }
        Value::Object(out)
    }
}
