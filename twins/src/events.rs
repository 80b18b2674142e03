//! Change events: what a committed command did, for apps that watch twins.
//!
//! Event types follow Azure Digital Twins' event notifications
//! (`Microsoft.DigitalTwins.Twin.Create`, `…Twin.Update`, `…Twin.Delete`,
//! `…Relationship.Create|Update|Delete`) plus `Telemetry`. An event is derived purely
//! from a command and its outcome ([`change_event`]); the storage shell publishes it
//! only after the command's group is durable, so a watcher never sees a change that a
//! crash could take back.

use crate::command::{Command, Outcome, Stamp};
use serde::Serialize;
use serde_json::Value;

pub const TWIN_CREATE: &str = "Microsoft.DigitalTwins.Twin.Create";
pub const TWIN_UPDATE: &str = "Microsoft.DigitalTwins.Twin.Update";
pub const TWIN_DELETE: &str = "Microsoft.DigitalTwins.Twin.Delete";
pub const RELATIONSHIP_CREATE: &str = "Microsoft.DigitalTwins.Relationship.Create";
pub const RELATIONSHIP_UPDATE: &str = "Microsoft.DigitalTwins.Relationship.Update";
pub const RELATIONSHIP_DELETE: &str = "Microsoft.DigitalTwins.Relationship.Delete";
pub const TELEMETRY: &str = "Microsoft.DigitalTwins.Telemetry";
/// Device registry changes (doppel's own types; the edge cuts disabled devices off).
pub const DEVICE_CREATE: &str = "doppel.Device.Create";
pub const DEVICE_UPDATE: &str = "doppel.Device.Update";
pub const DEVICE_DELETE: &str = "doppel.Device.Delete";
pub const DEVICE_CONNECTED: &str = "doppel.Device.Connected";
pub const DEVICE_DISCONNECTED: &str = "doppel.Device.Disconnected";

/// One committed change of a twin (or of one of its relationships).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEvent {
    #[serde(skip)]
    pub tenant: String,
    /// One of the `*_CREATE`/`*_UPDATE`/`*_DELETE`/`TELEMETRY` constants.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The twin the event is about (the source twin for relationships).
    pub twin_id: String,
    /// The twin's model, when known (not for deletes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub time: String,
    /// The twin / relationship as it now is, the telemetry message, or for deletes
    /// the id of what was deleted.
    pub data: Value,
    /// For updates: the JSON Patch that was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<Value>,
}

/// Every event type, for turning a stored or transmitted type name back into its constant.
pub const ALL_KINDS: [&str; 12] = [
    TWIN_CREATE,
    TWIN_UPDATE,
    TWIN_DELETE,
    RELATIONSHIP_CREATE,
    RELATIONSHIP_UPDATE,
    RELATIONSHIP_DELETE,
    TELEMETRY,
    DEVICE_CREATE,
    DEVICE_UPDATE,
    DEVICE_DELETE,
    DEVICE_CONNECTED,
    DEVICE_DISCONNECTED,
];

/// A [`ChangeEvent`] as it travels in a Raft log entry (every field owned, JSON values
/// as text so that any binary codec carries them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct WireEvent {
    pub tenant: String,
    pub kind: String,
    pub twin_id: String,
    pub model: Option<String>,
    pub time: String,
    pub data: String,
    pub patch: Option<String>,
}

impl From<&ChangeEvent> for WireEvent {
    fn from(e: &ChangeEvent) -> Self {
        WireEvent {
            tenant: e.tenant.clone(),
            kind: e.kind.to_owned(),
            twin_id: e.twin_id.clone(),
            model: e.model.clone(),
            time: e.time.clone(),
            data: e.data.to_string(),
            patch: e.patch.as_ref().map(|p| p.to_string()),
        }
    }
}

impl WireEvent {
    /// Back to a [`ChangeEvent`]; `None` for an unknown type or unparsable JSON (an
    /// entry written by a newer release), which the caller logs and skips.
    pub fn to_event(&self) -> Option<ChangeEvent> {
        let kind = ALL_KINDS.iter().find(|k| **k == self.kind)?;
        Some(ChangeEvent {
            tenant: self.tenant.clone(),
            kind,
            twin_id: self.twin_id.clone(),
            model: self.model.clone(),
            time: self.time.clone(),
            data: serde_json::from_str(&self.data).ok()?,
            patch: match &self.patch {
                Some(p) => Some(serde_json::from_str(p).ok()?),
                None => None,
            },
        })
    }
}

/// The event a successfully applied command produced, if any.
pub fn change_event(cmd: &Command, outcome: &Outcome, stamp: &Stamp) -> Option<ChangeEvent> {
    let event = |tenant: &str, kind, twin_id: &str, model: Option<&str>, data, patch| ChangeEvent {
        tenant: tenant.to_owned(),
        kind,
        twin_id: twin_id.to_owned(),
        model: model.map(str::to_owned),
        time: stamp.now.clone(),
        data,
        patch,
    };
    match (cmd, outcome) {
        (Command::PutTwin { tenant, .. }, Outcome::Twin { twin, created, .. }) => Some(event(
            tenant,
            if *created { TWIN_CREATE } else { TWIN_UPDATE },
            &twin.id,
            Some(&twin.model),
            twin.to_json(),
            None,
        )),
        (Command::PatchTwin { tenant, patch, .. }, Outcome::Twin { twin, changed, .. }) => {
            // A patch that changed nothing keeps the etag: nothing to announce.
            if !changed {
                return None;
            }
            Some(event(
                tenant,
                TWIN_UPDATE,
                &twin.id,
                Some(&twin.model),
                twin.to_json(),
                Some(patch.clone()),
            ))
        }
        (
            Command::DeleteTwin {
                tenant, twin_id, ..
            },
            Outcome::Done,
        ) => Some(event(
            tenant,
            TWIN_DELETE,
            twin_id,
            None,
            serde_json::json!({ "$dtId": twin_id }),
            None,
        )),
        (Command::PutRelationship { tenant, .. }, Outcome::Relationship { rel, created }) => {
            Some(event(
                tenant,
                if *created {
                    RELATIONSHIP_CREATE
                } else {
                    RELATIONSHIP_UPDATE
                },
                &rel.source,
                None,
                rel.to_json(),
                None,
            ))
        }
        (
            Command::DeleteRelationship {
                tenant,
                source,
                rel_id,
                ..
            },
            Outcome::Done,
        ) => Some(event(
            tenant,
            RELATIONSHIP_DELETE,
            source,
            None,
            serde_json::json!({ "$sourceId": source, "$relationshipId": rel_id }),
            None,
        )),
        (
            Command::RecordTelemetry {
                tenant,
                twin_id,
                body,
                ..
            },
            Outcome::Done,
        ) => Some(event(tenant, TELEMETRY, twin_id, None, body.clone(), None)),
        (Command::PutDevice { tenant, .. }, Outcome::Device { device, created }) => Some(event(
            tenant,
            if *created {
                DEVICE_CREATE
            } else {
                DEVICE_UPDATE
            },
            &device.id,
            None,
            // Never the keys: events reach every reader of the tenant.
            device.to_json(false),
            None,
        )),
        (
            Command::DeleteDevice {
                tenant, device_id, ..
            },
            Outcome::Done,
        ) => Some(event(
            tenant,
            DEVICE_DELETE,
            device_id,
            None,
            serde_json::json!({ "deviceId": device_id }),
            None,
        )),
        (
            Command::SetConnection {
                tenant,
                twin_id,
                connected,
                ..
            },
            Outcome::Twin {
                twin,
                changed: true,
                ..
            },
        ) => Some(event(
            tenant,
            if *connected {
                DEVICE_CONNECTED
            } else {
                DEVICE_DISCONNECTED
            },
            twin_id,
            Some(&twin.model),
            twin.connection
                .as_ref()
                .map_or(Value::Null, |c| c.to_json()),
            None,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Condition, RelationshipRecord, TwinRecord};

    fn stamp() -> Stamp {
        Stamp {
            now: "2026-01-01T00:00:00Z".into(),
            nonce: 7,
        }
    }

    fn twin() -> TwinRecord {
        TwinRecord {
            id: "t1".into(),
            etag: "W/\"1\"".into(),
            model: "dtmi:x:M;1".into(),
            last_update_time: "2026-01-01T00:00:00Z".into(),
            root: Default::default(),
            components: Default::default(),
            desired_version: 0,
            connection: None,
        }
    }

    #[test]
    fn twin_commands_announce_create_update_and_delete() {
        let put = Command::PutTwin {
            tenant: "a".into(),
            twin_id: "t1".into(),
            body: Value::Null,
            condition: Condition::Always,
        };
        let created = Outcome::Twin {
            twin: twin(),
            created: true,
            changed: true,
        };
        let e = change_event(&put, &created, &stamp()).unwrap();
        assert_eq!(
            (e.kind, e.twin_id.as_str(), e.tenant.as_str()),
            (TWIN_CREATE, "t1", "a")
        );
        assert_eq!(e.model.as_deref(), Some("dtmi:x:M;1"));
        let patch = Command::PatchTwin {
            tenant: "a".into(),
            twin_id: "t1".into(),
            patch: serde_json::json!([{"op": "remove", "path": "/x"}]),
            condition: Condition::Always,
        };
        let unchanged = Outcome::Twin {
            twin: twin(),
            created: false,
            changed: false,
        };
        assert_eq!(change_event(&patch, &unchanged, &stamp()), None);
        let changed = Outcome::Twin {
            twin: twin(),
            created: false,
            changed: true,
        };
        let e = change_event(&patch, &changed, &stamp()).unwrap();
        assert_eq!(e.kind, TWIN_UPDATE);
        assert!(e.patch.is_some());
        let del = Command::DeleteTwin {
            tenant: "a".into(),
            twin_id: "t1".into(),
            condition: Condition::Always,
        };
        assert_eq!(
            change_event(&del, &Outcome::Done, &stamp()).unwrap().kind,
            TWIN_DELETE
        );
    }

    #[test]
    fn relationship_put_tells_create_from_update_and_meta_commands_are_silent() {
        let rel = RelationshipRecord {
            id: "r".into(),
            source: "s".into(),
            target: "t".into(),
            name: "feeds".into(),
            etag: "e".into(),
            last_update_time: "x".into(),
            properties: Default::default(),
        };
        let put = Command::PutRelationship {
            tenant: "a".into(),
            source: "s".into(),
            rel_id: "r".into(),
            body: Value::Null,
            condition: Condition::Always,
        };
        let out = |created| Outcome::Relationship {
            rel: rel.clone(),
            created,
        };
        assert_eq!(
            change_event(&put, &out(true), &stamp()).unwrap().kind,
            RELATIONSHIP_CREATE
        );
        assert_eq!(
            change_event(&put, &out(false), &stamp()).unwrap().kind,
            RELATIONSHIP_UPDATE
        );
        let upload = Command::UploadModels {
            tenant: "a".into(),
            documents: vec![],
        };
        assert_eq!(
            change_event(&upload, &Outcome::Models(vec![]), &stamp()),
            None
        );
    }
}
