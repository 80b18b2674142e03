//! What a twin's actor knows of its twin's durable state: [`CommittedTwin`] (its etag
//! and desired-property version) and the [`Change`] a finished command made to it.
//! Shared by the entity that keeps it and the messages that report it.
//!
//! Contract: both are only ever built from what storage returned or from a committed
//! `Outcome`; a rejected or failed proposal is [`Change::Unchanged`].

use doppel_cluster::ProposeError;
use doppel_twins::{Outcome, TwinRecord};

/// What memory holds of a committed twin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedTwin {
    pub etag: Box<str>,
    /// The highest `desiredVersion` handed out (see `TwinRecord::desired_version`).
    pub desired_version: u64,
}

impl CommittedTwin {
    pub fn of(twin: &TwinRecord) -> Self {
        CommittedTwin {
            etag: twin.etag.as_str().into(),
            desired_version: twin.desired_version,
        }
    }
}

/// What one finished command did to the durable twin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Replaced(CommittedTwin),
    Deleted,
    Unchanged,
}

impl Change {
    /// The change a command's result records. A rejected or failed proposal changed
    /// nothing on disk, so it changes nothing here.
    pub fn of(deletes: bool, result: &Result<Outcome, ProposeError>) -> Change {
        match result {
            Ok(Outcome::Twin { twin, .. }) => Change::Replaced(CommittedTwin::of(twin)),
            Ok(_) if deletes => Change::Deleted,
            _ => Change::Unchanged,
        }
    }
}
