//! Model commands: uploading a batch of DTDL interfaces, deleting an unused model,
//! decommissioning one; and resolving the model of a stored twin.
//!
//! Key types: [`ModelRecord`] (stored raw, in the meta shard) and the resolved
//! `InterfaceModel`s of the state machine's [`crate::models::ModelCache`].
//!
//! Contract:
//! - an upload is all or nothing: every document parses and resolves (against the
//!   batch and the registered models) and none is registered yet, or nothing is stored;
//! - a model is deleted only when no twin on any data shard uses it (`model_use`
//!   records, one per twin on the twin's shard) and no other model depends on it;
//! - decommissioning cannot be undone;
//! - every change to a model record invalidates its cache entry, so the cache never
//!   disagrees with storage (see `crate::models`).

use super::StateMachine;
use crate::command::{Outcome, Stamp};
use crate::error::TwinError;
use crate::keys::{self, Family, MetaKind};
use crate::models::{self, ModelRecord, StoredModels};
use crate::store::{Overlay, StateRead};
use crate::twin::TwinRecord;
use doppel_schemas::{parse_batch, InterfaceModel, ParseOptions};
use serde_json::Value;
use std::sync::Arc;

impl StateMachine {
    pub(super) fn upload_models(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        documents: &[Value],
        stamp: &Stamp,
    ) -> Result<Outcome, TwinError> {
        if documents.is_empty() {
            return Err(TwinError::InvalidArgument(
                "the request holds no models; send a JSON array of DTDL Interfaces".into(),
            ));
        }
        let source = StoredModels::new(out, tenant);
        let parsed = parse_batch(documents, &source, &ParseOptions::default());
        if let Some(e) = source.error.borrow_mut().take() {
            return Err(e.into());
        }
        let parsed = parsed.map_err(TwinError::ModelInvalid)?;
        let mut records = Vec::with_capacity(parsed.len());
        for (id, document, _) in parsed {
            if models::load_record(out, tenant, &id)?.is_some() {
                return Err(TwinError::ModelExists { model: id });
            }
            records.push(ModelRecord {
                id,
                document,
                upload_time: stamp.now.clone(),
                decommissioned: false,
                deleting: false,
            });
        }
        for rec in &records {
            models::store_record(out, tenant, rec);
        }
        Ok(Outcome::Models(records))
    }

    pub(super) fn delete_model(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        model: &str,
    ) -> Result<Outcome, TwinError> {
        if models::load_record(out, tenant, model)?.is_none() {
            return Err(TwinError::ModelNotFound {
                model: model.to_owned(),
            });
        }
        if let Some(twin) = first_twin_using(out, self.shard_count, tenant, model)? {
            return Err(TwinError::ModelInUse {
                model: model.to_owned(),
                twin,
            });
        }
        self.check_unreferenced(out, tenant, model)?;
        out.delete(Family::Meta, keys::meta(tenant, MetaKind::Model, model));
        self.models.invalidate(tenant, model);
        Ok(Outcome::Done)
    }

    /// No other model of the tenant depends on `model`.
    fn check_unreferenced(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        model: &str,
    ) -> Result<(), TwinError> {
        for other in models::all_records(out, tenant)? {
            if other.id == model {
                continue;
            }
            if let Some((m, _)) = self.models.get(out, tenant, &other.id)? {
                if m.dependencies.iter().any(|d| d == model) {
                    return Err(TwinError::ModelReferenced {
                        model: model.to_owned(),
                        by: other.id,
                    });
                }
            }
        }
        Ok(())
    }

    pub(super) fn model_of(
        &mut self,
        state: &dyn StateRead,
        tenant: &str,
        twin: &TwinRecord,
    ) -> Result<Arc<InterfaceModel>, TwinError> {
        // A twin's model cannot be deleted while the twin exists (model_use), so a
        // missing model here means the store is inconsistent.
        self.models
            .get(state, tenant, &twin.model)?
            .map(|(m, _)| m)
            .ok_or_else(|| {
                TwinError::Store(crate::StoreError(format!(
                    "model {} of twin '{}' is missing",
                    twin.model, twin.id
                )))
            })
    }

    pub(super) fn set_model_decommissioned(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        model: &str,
        decommissioned: bool,
    ) -> Result<Outcome, TwinError> {
        let mut rec =
            models::load_record(out, tenant, model)?.ok_or_else(|| TwinError::ModelNotFound {
                model: model.to_owned(),
            })?;
        if !decommissioned && rec.decommissioned {
            return Err(TwinError::InvalidArgument(format!(
                "model {model} is decommissioned; decommissioning cannot be undone"
            )));
        }
        rec.decommissioned = decommissioned;
        models::store_record(out, tenant, &rec);
        self.models.invalidate(tenant, model);
        Ok(Outcome::Models(vec![rec]))
    }
}

/// The twin that uses `model` with the smallest id, if any twin of `tenant` uses it.
///
/// `model_use` records live on their twin's shard, so every data shard is asked for its
/// first; the smallest of those is the first in id order over the whole tenant.
fn first_twin_using(
    state: &dyn StateRead,
    shard_count: u32,
    tenant: &str,
    model: &str,
) -> Result<Option<String>, TwinError> {
    let mut first: Option<Vec<u8>> = None;
    for shard in 0..shard_count {
        let prefix = keys::model_use_prefix(shard, tenant, model);
        if let Some((k, _)) = state.scan(Family::Meta, &prefix, None, 1)?.pop() {
            let twin = k[prefix.len()..].to_vec();
            if first.as_ref().is_none_or(|f| twin < *f) {
                first = Some(twin);
            }
        }
    }
    Ok(first.map(|t| String::from_utf8_lossy(&t).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemState;

    #[test]
    fn first_twin_using_a_model_is_the_smallest_id_over_all_shards() {
        let mut m = MemState::default();
        for (shard, twin) in [(3, "b"), (0, "c"), (6, "a2"), (6, "a1")] {
            m.data.insert(
                (Family::Meta, keys::model_use(shard, "t", "m", twin)),
                vec![],
            );
        }
        m.data
            .insert((Family::Meta, keys::model_use(1, "t", "m2", "a0")), vec![]);
        assert_eq!(
            first_twin_using(&m, 8, "t", "m").unwrap().as_deref(),
            Some("a1")
        );
        assert_eq!(first_twin_using(&m, 8, "t", "m3").unwrap(), None);
        // Shards beyond the shard count are not data shards.
        assert_eq!(
            first_twin_using(&m, 6, "t", "m").unwrap().as_deref(),
            Some("b")
        );
    }
}
