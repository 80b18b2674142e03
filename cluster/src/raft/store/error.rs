//! The Raft stores' errors: [`RaftStoreError`] says what went wrong below openraft, and
//! travels inside openraft's [`RaftStorageError`] (a `StorageIOError` naming the subject
//! and verb) to the Raft core.

use super::FORMAT_V1;
use crate::raft::{GroupId, LogId, NodeId};
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};

/// openraft's storage error, as every storage trait method returns it.
pub type RaftStorageError = openraft::StorageError<NodeId>;

/// What can go wrong below openraft's error type; carried inside its `StorageIOError`.
#[derive(Debug, thiserror::Error)]
pub enum RaftStoreError {
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(
        "group {group}: {record} has format version {version}; this build reads version \
         {FORMAT_V1}"
    )]
    UnknownFormat {
        group: GroupId,
        record: &'static str,
        version: u8,
    },
    #[error("group {group}: {record} is corrupt: {reason}")]
    Corrupt {
        group: GroupId,
        record: &'static str,
        reason: String,
    },
    #[error("group {group}: cannot encode {record}: {reason}")]
    Encode {
        group: GroupId,
        record: &'static str,
        reason: String,
    },
    #[error(
        "group {group}: {origin} writes {family} key {key} outside the group's prefix {prefix}"
    )]
    ForeignKey {
        group: GroupId,
        origin: String,
        family: &'static str,
        key: String,
        prefix: String,
    },
    #[error("group {group}: snapshot belongs to group {found}")]
    WrongGroup { group: GroupId, found: GroupId },
    #[error("group {group}: snapshot data is at {data:?} but its meta says {meta:?}")]
    SnapshotMismatch {
        group: GroupId,
        data: Option<LogId>,
        meta: Option<LogId>,
    },
    #[error("group {group}: snapshot names unknown column family {family:?}")]
    UnknownFamily { group: GroupId, family: String },
    #[error("group {group}: storage task failed: {reason}")]
    Task { group: GroupId, reason: String },
}

pub(super) fn sto_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: RaftStoreError,
) -> RaftStorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
