//! The read façade: what the HTTP handlers (and every other reader of committed state)
//! ask of storage, answered with records and typed errors.
//!
//! ```text
//!   handler ──Reader::twin / ::twins / ::incoming_relationships …──▶ Result<T | Page<T>, TwinError>
//!                     │
//!                     └── shard_of → key → StateRead::get / bounded scans → decode
//! ```
//!
//! A handler never computes a shard, builds a key, scans a column family or decodes a
//! record: it makes one call and shapes JSON. [`Reader`] holds the read view and the
//! shard count; its point reads return the record or the not-found error of its kind
//! (`DigitalTwinNotFound`, `RelationshipNotFound`, `DeviceNotFound`, `ModelNotFound`,
//! `TokenNotFound`); its listings return a [`Page`] (see [`paging`] for the
//! continuation tokens).
//!
//! Items are the stored records ([`TwinRecord`], [`RelationshipRecord`],
//! [`ModelRecord`], [`DeviceRecord`], [`TokenRecord`]), not JSON: one record has
//! several JSON shapes chosen by the request (a model with or without its definition,
//! a device with or without its keys, a relationship as outgoing or incoming), the
//! handler may need more than the JSON (a twin's etag for the `ETag` header), and
//! tests compare typed values. Shaping is one `to_json` per item, e.g.
//! `page.map(|r| r.to_json())`.
//!
//! Contract:
//! - reads only: nothing here writes, and every answer reflects the read view given;
//! - the not-found errors are those the handlers gave before (the relationship reads
//!   check the twin first, so a missing twin is `DigitalTwinNotFound`, not an empty
//!   list or a missing relationship);
//! - a corrupt record is [`TwinError::Corrupt`] (an internal error), never a panic;
//! - listings are bounded as described in [`paging`].

mod listings;
pub mod paging;

pub use paging::{Page, FOREIGN_TOKEN, SCAN_BATCH};

use crate::codec::decode;
use crate::devices::DeviceRecord;
use crate::error::TwinError;
use crate::keys::{self, shard_of, MetaKind, SYSTEM_TENANT};
use crate::models::{self, ModelRecord};
use crate::relationship::RelationshipRecord;
use crate::state_machine::{load_device, load_relationship, load_twin};
use crate::store::StateRead;
use crate::tenancy::TokenRecord;
use crate::twin::TwinRecord;
use doppel_schemas::InterfaceModel;

/// Reads of committed state, over one read view and the cluster's shard count.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    state: &'a dyn StateRead,
    shard_count: u32,
}

impl<'a> Reader<'a> {
    pub fn new(state: &'a dyn StateRead, shard_count: u32) -> Self {
        Reader {
            state,
            shard_count: shard_count.max(1),
        }
    }

    /// Twin `id` of `tenant`.
    pub fn twin(&self, tenant: &str, id: &str) -> Result<TwinRecord, TwinError> {
        self.find_twin(tenant, id)?
            .ok_or_else(|| TwinError::TwinNotFound {
                twin: id.to_owned(),
            })
    }

    /// Twin `id` of `tenant`, `None` when it does not exist (for a create-or-replace).
    pub fn find_twin(&self, tenant: &str, id: &str) -> Result<Option<TwinRecord>, TwinError> {
        load_twin(
            self.state,
            shard_of(tenant, id, self.shard_count),
            tenant,
            id,
        )
    }

    /// Relationship `rel_id` of twin `source`; the twin must exist.
    pub fn relationship(
        &self,
        tenant: &str,
        source: &str,
        rel_id: &str,
    ) -> Result<RelationshipRecord, TwinError> {
        self.twin(tenant, source)?;
        load_relationship(self.state, self.shard_count, tenant, source, rel_id)?.ok_or_else(|| {
            TwinError::RelationshipNotFound {
                source_twin: source.to_owned(),
                rel: rel_id.to_owned(),
            }
        })
    }

    /// The device bound to twin `id`.
    pub fn device(&self, tenant: &str, id: &str) -> Result<DeviceRecord, TwinError> {
        load_device(
            self.state,
            shard_of(tenant, id, self.shard_count),
            tenant,
            id,
        )?
        .ok_or_else(|| TwinError::DeviceNotFound {
            device: id.to_owned(),
        })
    }

    /// Model `id` of `tenant`, as stored.
    pub fn model(&self, tenant: &str, id: &str) -> Result<ModelRecord, TwinError> {
        models::load_record(self.state, tenant, id)?.ok_or_else(|| TwinError::ModelNotFound {
            model: id.to_owned(),
        })
    }

    /// Model `id` of `tenant`, resolved (its properties, commands, components, … with
    /// those it extends).
    pub fn resolved_model(&self, tenant: &str, id: &str) -> Result<InterfaceModel, TwinError> {
        models::resolve(self.state, tenant, &self.model(tenant, id)?)
    }

    /// The models a client needs to understand the models named in `ids` (ADT's
    /// `dependenciesFor`: comma-separated DTMIs): each of them and every model it
    /// depends on through `extends` and components, each once, in the order first met.
    pub fn dependencies_for(&self, tenant: &str, ids: &str) -> Result<Vec<ModelRecord>, TwinError> {
        let mut wanted: Vec<String> = Vec::new();
        for id in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let model = self.resolved_model(tenant, id)?;
            for dep in std::iter::once(id.to_owned()).chain(model.dependencies) {
                if !wanted.contains(&dep) {
                    wanted.push(dep);
                }
            }
        }
        if wanted.is_empty() {
            return Err(TwinError::InvalidArgument(
                "dependenciesFor must name at least one model id".into(),
            ));
        }
        let mut out = Vec::with_capacity(wanted.len());
        for id in wanted {
            if let Some(rec) = models::load_record(self.state, tenant, &id)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// The token with id `id`, of any tenant: authentication looks a token up before it
    /// knows the caller's tenant (and answers an unknown one as unauthorized, not as
    /// not found). Whoever acts on a token of a tenant checks [`TokenRecord::tenant`].
    pub fn token(&self, id: &str) -> Result<TokenRecord, TwinError> {
        let key = keys::meta(SYSTEM_TENANT, MetaKind::Token, id);
        match self.state.get(keys::Family::Meta, &key)? {
            Some(bytes) => Ok(decode("token", &bytes)?),
            None => Err(TwinError::TokenNotFound { id: id.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests;
