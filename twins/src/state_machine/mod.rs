//! The deterministic per-shard state machine: `apply(command) -> (outcome, writes)`.
//!
//! ```text
//!   proposer ──Command+Stamp──▶ StateMachine::apply ──reads──▶ StateRead (overlay)
//!                                     │
//!                                     └──writes──▶ Overlay ──▶ one fsynced write batch
//! ```
//!
//! Contract:
//! - deterministic: the result depends only on the command, its stamp and the state
//!   read (no clock, no randomness, no I/O besides reads);
//! - all or nothing: on `Err` the caller drops the overlay the command wrote into, so
//!   a rejected command leaves no trace;
//! - every rule a user can break (ids, model conformance, multiplicity, etags, models
//!   in use) is checked here, so every replica agrees on what was rejected.
//!
//! Layout: `apply` below only dispatches; each subject adds its operations to
//! [`StateMachine`] in its own file:
//!
//! ```text
//!   mod.rs           StateMachine, apply (dispatch), load_record
//!   preconditions    id rules and If-Match / If-None-Match, checked by every command
//!   tenancy          tenants and API tokens (meta shard)
//!   models           upload, delete, decommission models; resolving a twin's model
//!   twins            PUT / PATCH / DELETE of twins; the checks of a model change
//!   properties       validating and stamping property values (PUT, PATCH, reports)
//!   relationships    PUT / DELETE of relationships; multiplicity and target rules
//!   incoming_index   the relationships into a twin, merged over every data shard
//!   coordination     mark / check / abort steps of changes that every shard agrees to
//!   device_twin      what a bound device changes on its twin: reports, connection
//!   devices          the device registry
//!   telemetry        validated telemetry history
//! ```

mod coordination;
mod device_twin;
mod devices;
mod incoming_index;
mod models;
mod preconditions;
mod properties;
mod records;
mod relationships;
mod telemetry;
mod tenancy;
mod twins;

pub use records::{load_device, load_relationship, load_twin};

use crate::command::{Command, Outcome, Stamp};
use crate::error::TwinError;
use crate::ids;
use crate::models::ModelCache;
use crate::store::Overlay;
use preconditions::check_id;

pub struct StateMachine {
    shard_count: u32,
    models: ModelCache,
}

impl StateMachine {
    pub fn new(shard_count: u32) -> Self {
        StateMachine {
            shard_count: shard_count.max(1),
            models: ModelCache::default(),
        }
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// Applies one command. On error nothing written to `out` may be kept.
    pub fn apply(
        &mut self,
        cmd: &Command,
        stamp: &Stamp,
        out: &mut Overlay<'_>,
    ) -> Result<Outcome, TwinError> {
        // Keys are `tenant \0 …`: a tenant name outside the tenant alphabet (a `\0`, or
        // the empty system tenant) could address another tenant's or the node's keys.
        check_id("tenant", cmd.tenant(), ids::check_tenant)?;
        match cmd {
            Command::EnsureTenant { tenant } => {
                tenancy::ensure_tenant(out, tenant, stamp)?;
                Ok(Outcome::Done)
            }
            Command::PutToken { token } => tenancy::put_token(out, token, stamp),
            Command::RevokeToken { tenant, token_id } => {
                tenancy::revoke_token(out, tenant, token_id)
            }
            Command::UploadModels { tenant, documents } => {
                self.upload_models(out, tenant, documents, stamp)
            }
            Command::DeleteModel { tenant, model } => self.delete_model(out, tenant, model),
            Command::BeginModelDelete { tenant, model } => {
                self.begin_model_delete(out, tenant, model)
            }
            Command::AbortModelDelete { tenant, model } => {
                self.abort_model_delete(out, tenant, model)
            }
            Command::BeginTwinDelete {
                tenant,
                twin_id,
                condition,
            } => self.begin_twin_delete(out, tenant, twin_id, condition),
            Command::BeginTwinRemodel { tenant, twin_id } => {
                self.begin_twin_remodel(out, tenant, twin_id)
            }
            Command::CheckIncomingFit {
                tenant,
                twin_id,
                model,
                shard,
            } => self.check_incoming_fit(out, tenant, twin_id, model, *shard),
            Command::AbortTwinDelete { tenant, twin_id } => {
                self.abort_twin_delete(out, tenant, twin_id)
            }
            Command::CheckNoIncoming {
                tenant,
                twin_id,
                shard,
            } => self.check_no_incoming(out, tenant, twin_id, *shard),
            Command::CheckModelUnused {
                tenant,
                model,
                shard,
            } => self.check_model_unused(out, tenant, model, *shard),
            Command::SetModelDecommissioned {
                tenant,
                model,
                decommissioned,
            } => self.set_model_decommissioned(out, tenant, model, *decommissioned),
            Command::PutTwin {
                tenant,
                twin_id,
                body,
                condition,
            } => self.put_twin(out, tenant, twin_id, body, condition, stamp),
            Command::PatchTwin {
                tenant,
                twin_id,
                patch,
                condition,
            } => self.patch_twin(out, tenant, twin_id, patch, condition, stamp),
            Command::DeleteTwin {
                tenant,
                twin_id,
                condition,
            } => self.delete_twin(out, tenant, twin_id, condition),
            Command::PutRelationship {
                tenant,
                source,
                rel_id,
                body,
                condition,
            } => self.put_relationship(out, tenant, source, rel_id, body, condition, stamp),
            Command::DeleteRelationship {
                tenant,
                source,
                rel_id,
                condition,
            } => self.delete_relationship(out, tenant, source, rel_id, condition),
            Command::SetConnection {
                tenant,
                twin_id,
                connected,
                last_activity,
                node,
            } => self.set_connection(
                out,
                tenant,
                twin_id,
                *connected,
                last_activity.as_deref(),
                *node,
                stamp,
            ),
            Command::ReportProperties {
                tenant,
                twin_id,
                reported,
            } => self.report_properties(out, tenant, twin_id, reported, stamp),
            Command::PutDevice {
                tenant,
                device_id,
                spec,
                condition,
            } => self.put_device(out, tenant, device_id, spec, condition, stamp),
            Command::DeleteDevice {
                tenant,
                device_id,
                condition,
            } => self.delete_device(out, tenant, device_id, condition),
            Command::RecordTelemetry {
                tenant,
                twin_id,
                body,
                source_time,
            } => self.record_telemetry(out, tenant, twin_id, body, source_time.as_deref(), stamp),
        }
    }
}
