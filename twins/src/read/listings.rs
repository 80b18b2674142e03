//! The listings of the REST API, one function each: a tenant's twins (optionally of
//! one model), models, devices and tokens; a twin's outgoing relationships (optionally
//! of one name) and incoming relationships.
//!
//! ```text
//!   listing                  range(s) scanned                       token
//!   twins, devices           tenant prefix on every data shard      shard | key
//!   incoming relationships   rel_in prefix of the twin, every shard shard | key
//!   outgoing relationships   rel_out prefix of the twin, its shard  key
//!   models                   the tenant's models (meta shard)       key
//!   tokens                   every token (meta shard), unpaged      —
//! ```
//!
//! Contract: as [`super::paging`] (order, page bounds, bounded scans, foreign tokens
//! refused); a listing under a twin first checks that the twin exists.

use super::paging::{self, Page, SCAN_BATCH};
use super::Reader;
use crate::codec::{decode, CorruptRecord};
use crate::devices::DeviceRecord;
use crate::error::TwinError;
use crate::keys::{self, shard_of, Family, MetaKind, SYSTEM_TENANT};
use crate::models::ModelRecord;
use crate::relationship::RelationshipRecord;
use crate::state_machine::load_relationship;
use crate::tenancy::TokenRecord;
use crate::twin::TwinRecord;

impl Reader<'_> {
    /// The tenant's twins, shard by shard; only those of `model` when given.
    pub fn twins(
        &self,
        tenant: &str,
        model: Option<&str>,
        token: Option<&str>,
        size: usize,
    ) -> Result<Page<TwinRecord>, TwinError> {
        paging::scan_tenant_shards(
            self.state,
            Family::Twins,
            tenant,
            self.shard_count,
            token,
            size,
            |v| {
                let twin: TwinRecord = decode("twin", v)?;
                Ok(model.is_none_or(|m| m == twin.model).then_some(twin))
            },
        )
    }

    /// The tenant's models in id order (the caller chooses whether to show their
    /// definitions: [`ModelRecord::to_json`]).
    pub fn models(
        &self,
        tenant: &str,
        token: Option<&str>,
        size: usize,
    ) -> Result<Page<ModelRecord>, TwinError> {
        paging::scan_prefix(
            self.state,
            Family::Meta,
            &keys::meta_prefix(tenant, MetaKind::Model),
            token,
            size,
            |_, v| Ok(Some(decode("model", v)?)),
        )
    }

    /// The relationships of twin `source` in id order; only those named `name` when
    /// given. The twin must exist.
    pub fn outgoing_relationships(
        &self,
        tenant: &str,
        source: &str,
        name: Option<&str>,
        token: Option<&str>,
        size: usize,
    ) -> Result<Page<RelationshipRecord>, TwinError> {
        self.twin(tenant, source)?;
        let shard = shard_of(tenant, source, self.shard_count);
        paging::scan_prefix(
            self.state,
            Family::RelOut,
            &keys::rel_out_prefix(shard, tenant, source),
            token,
            size,
            |_, v| {
                let rel: RelationshipRecord = decode("relationship", v)?;
                Ok(name.is_none_or(|n| n == rel.name).then_some(rel))
            },
        )
    }

    /// The relationships that target twin `target`, from the index on every data
    /// shard (each entry lives on its source's shard), shard by shard. The twin must
    /// exist. Show them with [`RelationshipRecord::to_incoming_json`].
    pub fn incoming_relationships(
        &self,
        tenant: &str,
        target: &str,
        token: Option<&str>,
        size: usize,
    ) -> Result<Page<RelationshipRecord>, TwinError> {
        self.twin(tenant, target)?;
        paging::scan_shards(
            self.state,
            Family::RelIn,
            self.shard_count,
            |shard| keys::rel_in_prefix(shard, tenant, target),
            token,
            size,
            |tail, _| {
                let (source, rel_id) =
                    keys::split_rel_in_tail(tail).ok_or_else(|| CorruptRecord {
                        kind: "incoming-relationship index",
                        reason: "the entry's key names no source and relationship id".into(),
                    })?;
                load_relationship(self.state, self.shard_count, tenant, &source, &rel_id)
            },
        )
    }

    /// The tenant's devices, shard by shard (show them without keys:
    /// [`DeviceRecord::to_json`]`(false)`).
    pub fn devices(
        &self,
        tenant: &str,
        token: Option<&str>,
        size: usize,
    ) -> Result<Page<DeviceRecord>, TwinError> {
        paging::scan_tenant_shards(
            self.state,
            Family::Devices,
            tenant,
            self.shard_count,
            token,
            size,
            |v| Ok(Some(decode("device", v)?)),
        )
    }

    /// Every token of the tenant, in id order, unpaged (a tenant has a handful). Tokens
    /// of all tenants share one range, so this reads them all.
    pub fn tokens(&self, tenant: &str) -> Result<Vec<TokenRecord>, TwinError> {
        let prefix = keys::meta_prefix(SYSTEM_TENANT, MetaKind::Token);
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = self
                .state
                .scan(Family::Meta, &prefix, after.as_deref(), SCAN_BATCH)?;
            let done = rows.len() < SCAN_BATCH;
            after = rows.last().map(|(k, _)| k.clone());
            for (_, v) in rows {
                let token: TokenRecord = decode("token", &v)?;
                if token.tenant == tenant {
                    out.push(token);
                }
            }
            if done {
                return Ok(out);
            }
        }
    }
}
