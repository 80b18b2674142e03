//! The steps of changes that every data shard must agree to: deleting a model (its
//! twins live on the data shards), deleting a twin or giving it a new model
//! (relationships to it live on their sources' shards).
//!
//! ```text
//!   begin (mark)            check, once per data shard            finish / abort
//!   ───────────────         ──────────────────────────            ──────────────
//!   BeginModelDelete   ──▶  CheckModelUnused { shard }    ──▶  DeleteModel  | AbortModelDelete
//!   BeginTwinDelete    ──▶  CheckNoIncoming  { shard }    ──▶  DeleteTwin   | AbortTwinDelete
//!   BeginTwinRemodel   ──▶  CheckIncomingFit { shard }    ──▶  PutTwin      | AbortTwinDelete
//! ```
//!
//! Key types: the model record's `deleting` flag (meta shard) and the
//! `twin_deleting` mark (meta family, on the twin's shard).
//!
//! Contract:
//! - while marked, nothing new may come to depend on the thing: no twin may start to
//!   use a model being deleted; no relationship may start to target a marked twin;
//! - a check is evaluated by its shard's leader, ordered after everything the shard
//!   committed before, and refuses (`…DeleteNotBegun`) unless the mark is visible to
//!   it, so every later command of that shard sees the mark too; checks write nothing;
//! - begin and abort are idempotent, so a change cut short is finished or undone by
//!   repeating it.

use super::preconditions::check_id;
use super::StateMachine;
use crate::command::{Condition, Outcome};
use crate::error::TwinError;
use crate::ids;
use crate::keys::{self, shard_of, Family};
use crate::models;
use crate::store::{Overlay, StateRead};

impl StateMachine {
    pub(super) fn begin_model_delete(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        model: &str,
    ) -> Result<Outcome, TwinError> {
        let mut rec =
            models::load_record(out, tenant, model)?.ok_or_else(|| TwinError::ModelNotFound {
                model: model.to_owned(),
            })?;
        if !rec.deleting {
            rec.deleting = true;
            models::store_record(out, tenant, &rec);
            self.models.invalidate(tenant, model);
        }
        Ok(Outcome::Done)
    }

    pub(super) fn abort_model_delete(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        model: &str,
    ) -> Result<Outcome, TwinError> {
        if let Some(mut rec) = models::load_record(out, tenant, model)? {
            if rec.deleting {
                rec.deleting = false;
                models::store_record(out, tenant, &rec);
                self.models.invalidate(tenant, model);
            }
        }
        Ok(Outcome::Done)
    }

    pub(super) fn check_model_unused(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        model: &str,
        shard: u32,
    ) -> Result<Outcome, TwinError> {
        if shard >= self.shard_count {
            return Err(TwinError::InvalidArgument(format!(
                "shard {shard} does not exist (there are {})",
                self.shard_count
            )));
        }
        let rec =
            models::load_record(out, tenant, model)?.ok_or_else(|| TwinError::ModelNotFound {
                model: model.to_owned(),
            })?;
        // Whatever this evaluator cached of the model, it reads the record
        // again from here on, and so sees the mark.
        self.models.invalidate(tenant, model);
        if !rec.deleting {
            return Err(TwinError::ModelDeleteNotBegun {
                model: model.to_owned(),
            });
        }
        let prefix = keys::model_use_prefix(shard, tenant, model);
        if let Some((k, _)) = out.scan(Family::Meta, &prefix, None, 1)?.pop() {
            return Err(TwinError::ModelInUse {
                model: model.to_owned(),
                twin: String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
            });
        }
        Ok(Outcome::Done)
    }

    pub(super) fn begin_twin_delete(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        twin_id: &str,
        condition: &Condition,
    ) -> Result<Outcome, TwinError> {
        let (shard, _) = self.existing_twin(out, tenant, twin_id, condition)?;
        self.check_deletable_here(out, shard, tenant, twin_id)?;
        out.put(
            Family::Meta,
            keys::twin_deleting(shard, tenant, twin_id),
            Vec::new(),
        );
        Ok(Outcome::Done)
    }

    pub(super) fn begin_twin_remodel(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        twin_id: &str,
    ) -> Result<Outcome, TwinError> {
        let (shard, _) = self.existing_twin(out, tenant, twin_id, &Condition::Always)?;
        out.put(
            Family::Meta,
            keys::twin_deleting(shard, tenant, twin_id),
            Vec::new(),
        );
        Ok(Outcome::Done)
    }

    pub(super) fn check_incoming_fit(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        twin_id: &str,
        model: &str,
        shard: u32,
    ) -> Result<Outcome, TwinError> {
        self.check_mark_visible(out, tenant, twin_id, shard)?;
        let (resolved, _) =
            self.models
                .get(out, tenant, model)?
                .ok_or_else(|| TwinError::TwinModelUnknown {
                    model: model.to_owned(),
                })?;
        let prefix = keys::rel_in_prefix(shard, tenant, twin_id);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = out.scan(Family::RelIn, &prefix, after.as_deref(), 256)?;
            let done = page.len() < 256;
            after = page.last().map(|(k, _)| k.clone());
            for (k, _) in page {
                let Some((source, rel_id)) = keys::split_rel_in_tail(&k[prefix.len()..]) else {
                    continue;
                };
                self.check_incoming_fits(out, tenant, twin_id, &resolved, &source, &rel_id)?;
            }
            if done {
                break;
            }
        }
        Ok(Outcome::Done)
    }

    pub(super) fn abort_twin_delete(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        twin_id: &str,
    ) -> Result<Outcome, TwinError> {
        check_id("twin id", twin_id, ids::check_twin_id)?;
        let shard = shard_of(tenant, twin_id, self.shard_count);
        let mark = keys::twin_deleting(shard, tenant, twin_id);
        if out.get(Family::Meta, &mark)?.is_some() {
            out.delete(Family::Meta, mark);
        }
        Ok(Outcome::Done)
    }

    pub(super) fn check_no_incoming(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        twin_id: &str,
        shard: u32,
    ) -> Result<Outcome, TwinError> {
        self.check_mark_visible(out, tenant, twin_id, shard)?;
        let prefix = keys::rel_in_prefix(shard, tenant, twin_id);
        if let Some((k, _)) = out.scan(Family::RelIn, &prefix, None, 1)?.pop() {
            let example = keys::split_rel_in_tail(&k[prefix.len()..])
                .map(|(s, r)| format!("{s}/{r}"))
                .unwrap_or_default();
            return Err(TwinError::TwinHasRelationships {
                twin: twin_id.to_owned(),
                direction: "incoming",
                example,
            });
        }
        Ok(Outcome::Done)
    }

    /// A shard's check of a marked twin: the shard exists and the twin's mark is
    /// visible to this evaluation (its group's replica here may trail).
    fn check_mark_visible(
        &self,
        out: &Overlay<'_>,
        tenant: &str,
        twin_id: &str,
        shard: u32,
    ) -> Result<(), TwinError> {
        check_id("twin id", twin_id, ids::check_twin_id)?;
        if shard >= self.shard_count {
            return Err(TwinError::InvalidArgument(format!(
                "shard {shard} does not exist (there are {})",
                self.shard_count
            )));
        }
        let own = shard_of(tenant, twin_id, self.shard_count);
        if out
            .get(Family::Meta, &keys::twin_deleting(own, tenant, twin_id))?
            .is_none()
        {
            return Err(TwinError::TwinDeleteNotBegun {
                twin: twin_id.to_owned(),
            });
        }
        Ok(())
    }
}
