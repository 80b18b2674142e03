//! `Command`: the only way doppel's state changes.
//!
//! A command is decided by a proposer (the REST handler, later the twin actor) and
//! applied by the deterministic [`crate::StateMachine`] on every replica. Everything
//! non-deterministic — the clock, random etags, token secrets — is fixed by the
//! proposer in the [`Stamp`] and the command itself, so replicas that apply the same
//! commands in the same order reach byte-identical state.

use crate::tenancy::TokenRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A conditional-request precondition (HTTP `If-Match` / `If-None-Match: *`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    #[default]
    Always,
    /// Apply only if the current etag equals this one (`*` = if it exists at all).
    IfMatch(String),
    /// Apply only if the target does not exist yet (`If-None-Match: *`).
    IfNoneMatchAny,
}

/// Values the proposer fixes so that applying is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// RFC 3339 UTC time of the proposal; becomes `lastUpdateTime`s.
    pub now: String,
    /// Random bits; etags and sequence numbers are derived from it.
    pub nonce: u64,
}

impl Stamp {
    pub fn etag(&self) -> String {
        format!("W/\"{:016x}\"", self.nonce)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Create the tenant if it does not exist yet (idempotent).
    EnsureTenant {
        tenant: String,
    },
    /// Store a token (its tenant is created if needed).
    PutToken {
        token: TokenRecord,
    },
    RevokeToken {
        tenant: String,
        token_id: String,
    },
    /// Upload a batch of DTDL documents; all or nothing.
    UploadModels {
        tenant: String,
        documents: Vec<Value>,
    },
    /// Removes a model (it must be unused: no twin and no other model uses it).
    /// Deleting through the API is three steps (see `BeginModelDelete`).
    DeleteModel {
        tenant: String,
        model: String,
    },
    /// Step 1 of deleting a model across shards: mark it so that no twin may start
    /// using it (meta group). Idempotent. (References from other models are meta
    /// state, checked atomically by the final `DeleteModel`.)
    BeginModelDelete {
        tenant: String,
        model: String,
    },
    /// Step 2, once per data shard, evaluated by that shard's leader: the shard has
    /// no twin of the model, and none can be created any more (the mark is visible
    /// to the shard's evaluation from here on). Writes nothing.
    CheckModelUnused {
        tenant: String,
        model: String,
        shard: u32,
    },
    /// Step 2 or 3 failed: lift the mark (meta group). Idempotent.
    AbortModelDelete {
        tenant: String,
        model: String,
    },
    SetModelDecommissioned {
        tenant: String,
        model: String,
        decommissioned: bool,
    },
    /// Create or replace a twin from its ADT JSON body.
    PutTwin {
        tenant: String,
        twin_id: String,
        body: Value,
        condition: Condition,
    },
    /// Apply an RFC 6902 JSON Patch to a twin.
    PatchTwin {
        tenant: String,
        twin_id: String,
        patch: Value,
        condition: Condition,
    },
    DeleteTwin {
        tenant: String,
        twin_id: String,
        condition: Condition,
    },
    /// Step 1 of deleting a twin that relationships on other shards may target: the
    /// twin exists (and meets `condition`), has no device and no outgoing
    /// relationship; mark it so that no relationship may start to target it (the
    /// twin's shard). Idempotent.
    BeginTwinDelete {
        tenant: String,
        twin_id: String,
        condition: Condition,
    },
    /// Step 2, once per data shard, evaluated by that shard's leader: no relationship
    /// of the shard targets the twin, and none can start to. Writes nothing.
    CheckNoIncoming {
        tenant: String,
        twin_id: String,
        shard: u32,
    },
    /// Step 1 of giving a twin a new model: mark it so that no relationship may start
    /// to target it (the twin's shard); the `PutTwin` that changes the model lifts it.
    BeginTwinRemodel {
        tenant: String,
        twin_id: String,
    },
    /// Step 2, once per data shard, evaluated by that shard's leader: every
    /// relationship of the shard that targets the twin accepts a twin of `model`.
    /// Writes nothing.
    CheckIncomingFit {
        tenant: String,
        twin_id: String,
        model: String,
        shard: u32,
    },
    /// Step 2 or 3 failed: lift the mark (the twin's shard). Idempotent.
    AbortTwinDelete {
        tenant: String,
        twin_id: String,
    },
    PutRelationship {
        tenant: String,
        source: String,
        rel_id: String,
        body: Value,
        condition: Condition,
    },
    DeleteRelationship {
        tenant: String,
        source: String,
        rel_id: String,
        condition: Condition,
    },
    /// A device reports property values (IoT Plug and Play): plain values for
    /// read-only properties, `{"value", "ac", "av", "ad"}` acknowledgements for
    /// writable ones, components marked `"__t": "c"`, `null` to clear a value.
    ReportProperties {
        tenant: String,
        twin_id: String,
        reported: Value,
    },
    /// The bound device connected or disconnected. `last_activity` is when it was
    /// last heard from (for a disconnect: its last message), defaulting to the stamp.
    /// `node` is the cluster node that holds (held) the connection: a disconnect
    /// reported by another node than the one the device last connected to is stale
    /// (the device moved) and changes nothing.
    SetConnection {
        tenant: String,
        twin_id: String,
        connected: bool,
        last_activity: Option<String>,
        #[serde(default)]
        node: Option<u64>,
    },
    /// Create or update the device bound to twin `device_id`.
    PutDevice {
        tenant: String,
        device_id: String,
        spec: crate::devices::DeviceSpec,
        condition: Condition,
    },
    DeleteDevice {
        tenant: String,
        device_id: String,
        condition: Condition,
    },
    /// Validate telemetry against the twin's model and append it to its history.
    RecordTelemetry {
        tenant: String,
        twin_id: String,
        body: Value,
        source_time: Option<String>,
    },
}

impl Command {
    /// The tenant the command acts in (for `PutToken`, the token's tenant).
    pub fn tenant(&self) -> &str {
        match self {
            Command::EnsureTenant { tenant }
            | Command::RevokeToken { tenant, .. }
            | Command::UploadModels { tenant, .. }
            | Command::DeleteModel { tenant, .. }
            | Command::BeginModelDelete { tenant, .. }
            | Command::CheckModelUnused { tenant, .. }
            | Command::AbortModelDelete { tenant, .. }
            | Command::BeginTwinDelete { tenant, .. }
            | Command::CheckNoIncoming { tenant, .. }
            | Command::AbortTwinDelete { tenant, .. }
            | Command::BeginTwinRemodel { tenant, .. }
            | Command::CheckIncomingFit { tenant, .. }
            | Command::SetModelDecommissioned { tenant, .. }
            | Command::PutTwin { tenant, .. }
            | Command::PatchTwin { tenant, .. }
            | Command::DeleteTwin { tenant, .. }
            | Command::PutRelationship { tenant, .. }
            | Command::DeleteRelationship { tenant, .. }
            | Command::RecordTelemetry { tenant, .. }
            | Command::PutDevice { tenant, .. }
            | Command::DeleteDevice { tenant, .. }
            | Command::ReportProperties { tenant, .. }
            | Command::SetConnection { tenant, .. } => tenant,
            Command::PutToken { token } => &token.tenant,
        }
    }

    /// The shard whose state machine applies this command.
    pub fn shard(&self, shard_count: u32) -> u32 {
        use crate::keys::{shard_of, META_SHARD};
        if let Some((tenant, twin_id)) = self.twin() {
            return shard_of(tenant, twin_id, shard_count);
        }
        match self {
            Command::PutRelationship { tenant, source, .. }
            | Command::DeleteRelationship { tenant, source, .. } => {
                shard_of(tenant, source, shard_count)
            }
            Command::PutDevice {
                tenant, device_id, ..
            }
            | Command::DeleteDevice {
                tenant, device_id, ..
            } => shard_of(tenant, device_id, shard_count),
            Command::CheckModelUnused { shard, .. }
            | Command::CheckNoIncoming { shard, .. }
            | Command::CheckIncomingFit { shard, .. } => *shard,
            Command::BeginTwinDelete {
                tenant, twin_id, ..
            }
            | Command::AbortTwinDelete { tenant, twin_id }
            | Command::BeginTwinRemodel { tenant, twin_id } => {
                shard_of(tenant, twin_id, shard_count)
            }
            _ => META_SHARD,
        }
    }

    /// The tenant and id of the twin whose record this command writes (twin
    /// commands, telemetry, reported properties, connection state), if any.
    pub fn twin(&self) -> Option<(&str, &str)> {
        match self {
            Command::PutTwin {
                tenant, twin_id, ..
            }
            | Command::PatchTwin {
                tenant, twin_id, ..
            }
            | Command::DeleteTwin {
                tenant, twin_id, ..
            }
            | Command::RecordTelemetry {
                tenant, twin_id, ..
            }
            | Command::ReportProperties {
                tenant, twin_id, ..
            }
            | Command::SetConnection {
                tenant, twin_id, ..
            } => Some((tenant, twin_id)),
            _ => None,
        }
    }
}

/// What applying a command produced, for the caller's response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    /// `changed` is false when a patch left the twin as it was (no write, same etag).
    Twin {
        twin: crate::TwinRecord,
        created: bool,
        changed: bool,
    },
    Relationship {
        rel: crate::RelationshipRecord,
        created: bool,
    },
    Models(Vec<crate::ModelRecord>),
    Token(TokenRecord),
    Device {
        device: crate::devices::DeviceRecord,
        created: bool,
    },
}
