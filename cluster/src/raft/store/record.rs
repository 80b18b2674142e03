//! The on-disk records of the Raft stores: the format-version byte and bincode body of
//! every value, the keys of `raft_log` and `raft_state`, and reading one `raft_state`
//! record back.
//!
//! Contract: every value written starts with [`FORMAT_V1`]; a record with another version
//! is refused with [`RaftStoreError::UnknownFormat`] rather than misread, and a record
//! with trailing bytes is corrupt.

use super::error::RaftStoreError;
use super::FORMAT_V1;
use crate::raft::{group_prefix, GroupId};
use crate::storage::{RaftCf, Storage};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub(super) const VOTE: &str = "vote";
pub(super) const COMMITTED: &str = "committed";
pub(super) const PURGED: &str = "purged";
pub(super) const APPLIED: &str = "applied";
pub(super) const MEMBERSHIP: &str = "membership";
pub(super) const SNAPSHOT: &str = "snapshot";
pub(super) const SNAPSHOT_META: &str = "snapshot_meta";

pub(super) fn encode<T: Serialize>(
    group: GroupId,
    record: &'static str,
    value: &T,
) -> Result<Vec<u8>, RaftStoreError> {
    let mut out = vec![FORMAT_V1];
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard()).map_err(
        |e| RaftStoreError::Encode {
            group,
            record,
            reason: e.to_string(),
        },
    )?;
    Ok(out)
}

pub(super) fn decode<T: DeserializeOwned>(
    group: GroupId,
    record: &'static str,
    bytes: &[u8],
) -> Result<T, RaftStoreError> {
    let corrupt = |reason: String| RaftStoreError::Corrupt {
        group,
        record,
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => {
            let (value, read) =
                bincode::serde::decode_from_slice(body, bincode::config::standard())
                    .map_err(|e| corrupt(e.to_string()))?;
            if read != body.len() {
                return Err(corrupt(format!("{} trailing bytes", body.len() - read)));
            }
            Ok(value)
        }
        Some((&version, _)) => Err(RaftStoreError::UnknownFormat {
            group,
            record,
            version,
        }),
        None => Err(corrupt("empty record".into())),
    }
}

pub(super) fn log_key(group: GroupId, index: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&group_prefix(group));
    k[4..].copy_from_slice(&index.to_be_bytes());
    k
}

/// An exclusive upper bound above every log key of `group` (log keys are exactly 12
/// bytes, so `group | u64::MAX | 0` sorts after all of them, even for the all-0xff meta
/// group).
pub(super) fn log_end(group: GroupId) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..12].copy_from_slice(&log_key(group, u64::MAX));
    k
}

pub(super) fn state_key(group: GroupId, name: &str) -> Vec<u8> {
    let mut k = group_prefix(group).to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// Reads and decodes one `raft_state` record.
pub(super) fn read_state<T: DeserializeOwned>(
    storage: &Storage,
    group: GroupId,
    name: &'static str,
) -> Result<Option<T>, RaftStoreError> {
    match storage.raft_get(RaftCf::State, &state_key(group, name))? {
        Some(bytes) => Ok(Some(decode(group, name, &bytes)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::store::test_support::log_id;
    use crate::raft::LogId;

    #[test]
    fn records_carry_a_format_version() {
        let bytes = encode(1, APPLIED, &log_id(2, 3)).unwrap();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(decode::<LogId>(1, APPLIED, &bytes).unwrap(), log_id(2, 3));
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(
            decode::<LogId>(1, APPLIED, &future),
            Err(RaftStoreError::UnknownFormat { version: 9, .. })
        ));
    }
}
