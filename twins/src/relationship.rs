//! Relationships (edges of the twin graph) as stored, and their ADT JSON shape.
//!
//! The outgoing record (`rel_out`) and an index entry keyed by target (`rel_in`) both
//! live on the source twin's shard, the shard whose command writes them; "who points
//! at me" is answered by one prefix scan of `rel_in` per data shard (see `keys`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelationshipRecord {
    pub id: String,
    pub source: String,
    pub target: String,
    pub name: String,
    pub etag: String,
    pub last_update_time: String,
    #[serde(default)]
    pub properties: Map<String, Value>,
}

impl RelationshipRecord {
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("$relationshipId".into(), Value::String(self.id.clone()));
        out.insert("$sourceId".into(), Value::String(self.source.clone()));
        out.insert("$targetId".into(), Value::String(self.target.clone()));
        out.insert("$relationshipName".into(), Value::String(self.name.clone()));
        out.insert("$etag".into(), Value::String(self.etag.clone()));
        for (k, v) in &self.properties {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }

    /// The `incomingrelationships` shape of ADT (no properties).
    pub fn to_incoming_json(&self) -> Value {
        serde_json::json!({
            "$relationshipId": self.id,
            "$sourceId": self.source,
            "$relationshipName": self.name,
            "$relationshipLink": format!("/digitaltwins/{}/relationships/{}", self.source, self.id),
        })
    }
}
