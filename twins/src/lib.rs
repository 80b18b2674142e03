//! doppel-twins: twin state, the `Command`s that change it, and the deterministic
//! per-shard state machine that applies them.
//!
//! Nothing here does I/O: the state machine reads through [`StateRead`] and emits
//! [`Write`]s; `doppel-cluster` persists them through its Raft groups.
//! Readers of committed state (the HTTP handlers) go through the read façade,
//! [`read::Reader`], never through raw column families.
//! Key types: [`Command`], [`Stamp`], [`StateMachine`], [`Reader`], [`TwinRecord`],
//! [`RelationshipRecord`], [`ModelRecord`], [`TokenRecord`], [`TwinError`].

pub mod codec;
pub mod command;
pub mod devices;
pub mod error;
pub mod events;
pub mod ids;
pub mod keys;
pub mod models;
pub mod read;
pub mod relationship;
pub mod state_machine;
pub mod store;
pub mod tenancy;
pub mod twin;

pub use command::{Command, Condition, Outcome, Stamp};
pub use devices::{DeviceRecord, DeviceSpec, DeviceStatus};
pub use error::{Disposition, ErrorCode, ErrorKind, TwinError};
pub use events::{change_event, ChangeEvent, WireEvent};
pub use models::ModelRecord;
pub use read::{Page, Reader};
pub use relationship::RelationshipRecord;
pub use state_machine::{load_device, load_relationship, load_twin, StateMachine};
pub use store::{Entry, MemState, Overlay, StateRead, StoreError, Write};
pub use tenancy::{Role, TenantRecord, TokenRecord};
pub use twin::{Connection, PropertyBag, PropertyMeta, TwinRecord};
