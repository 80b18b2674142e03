//! Point reads of stored records (a twin, its device, a relationship), shared by the
//! command handlers and exported for the read side.

use crate::codec::decode;
use crate::error::TwinError;
use crate::keys::{self, shard_of, Family};
use crate::store::StateRead;
use crate::{DeviceRecord, RelationshipRecord, TwinRecord};

/// Reads and decodes one record, `None` when absent.
pub(super) fn load_record<T: serde::de::DeserializeOwned>(
    state: &dyn StateRead,
    family: Family,
    key: &[u8],
    kind: &'static str,
) -> Result<Option<T>, TwinError> {
    match state.get(family, key)? {
        Some(b) => Ok(Some(decode(kind, &b)?)),
        None => Ok(None),
    }
}

pub fn load_twin(
    state: &dyn StateRead,
    shard: u32,
    tenant: &str,
    id: &str,
) -> Result<Option<TwinRecord>, TwinError> {
    load_record(state, Family::Twins, &keys::twin(shard, tenant, id), "twin")
}

/// The device bound to twin `id` (stored on the twin's shard).
pub fn load_device(
    state: &dyn StateRead,
    shard: u32,
    tenant: &str,
    id: &str,
) -> Result<Option<DeviceRecord>, TwinError> {
    load_record(
        state,
        Family::Devices,
        &keys::twin(shard, tenant, id),
        "device",
    )
}

pub fn load_relationship(
    state: &dyn StateRead,
    shard_count: u32,
    tenant: &str,
    source: &str,
    rel_id: &str,
) -> Result<Option<RelationshipRecord>, TwinError> {
    let key = keys::rel_out(
        shard_of(tenant, source, shard_count),
        tenant,
        source,
        rel_id,
    );
    load_record(state, Family::RelOut, &key, "relationship")
}
