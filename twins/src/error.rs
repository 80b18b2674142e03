//! Errors of twin, relationship, model and token operations.
//!
//! Each variant carries the ids a caller needs to act on it, and maps to a stable,
//! Azure-Digital-Twins-style error code ([`TwinError::code`]) and an [`ErrorKind`].
//! The one mapping from kind to HTTP status (or MQTT reason code) lives in the runtime.

use crate::codec::CorruptRecord;
use crate::store::StoreError;
use doppel_schemas::ModelErrors;

/// The class of an error, independent of any protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    /// The request is malformed or violates the model (HTTP 400).
    Invalid,
    /// The thing addressed does not exist (404).
    NotFound,
    /// The request conflicts with current state (409).
    Conflict,
    /// An `If-Match` / `If-None-Match` precondition failed (412).
    PreconditionFailed,
    /// The server failed (500).
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    #[error("invalid {what} '{id}': {reason}")]
    InvalidId {
        what: &'static str,
        id: String,
        reason: String,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("twin '{twin}' does not conform to model {model}: {path}: {message}")]
    Validation {
        twin: String,
        model: String,
        path: String,
        message: String,
    },
    #[error("model {model} does not exist")]
    ModelNotFound { model: String },
    #[error("model {model} is not registered; upload it before creating twins of it")]
    TwinModelUnknown { model: String },
    #[error("model {model} is decommissioned; new twins cannot use it")]
    ModelDecommissioned { model: String },
    #[error("model {model} already exists")]
    ModelExists { model: String },
    #[error("model {model} is used by twin '{twin}' (and possibly others); delete or re-model those twins first")]
    ModelInUse { model: String, twin: String },
    #[error("model {model} is being deleted; new twins cannot use it (if the deletion was interrupted, DELETE the model again)")]
    ModelBeingDeleted { model: String },
    #[error("the deletion of model {model} has not begun as far as this shard can see; retry the DELETE")]
    ModelDeleteNotBegun { model: String },
    #[error("digital twin '{twin}' is being deleted or given a new model; no relationship may start to target it meanwhile (if that was interrupted, repeat the DELETE or the PUT)")]
    TwinBeingDeleted { twin: String },
    #[error("the deletion or new model of digital twin '{twin}' has not begun as far as this shard can see; retry")]
    TwinDeleteNotBegun { twin: String },
    #[error("model {model} is referenced by model {by}; delete {by} first")]
    ModelReferenced { model: String, by: String },
    #[error("invalid models:\n{0}")]
    ModelInvalid(ModelErrors),
    #[error("digital twin '{twin}' does not exist")]
    TwinNotFound { twin: String },
    #[error(
        "digital twin '{twin}' has {direction} relationships (e.g. '{example}'); delete them first"
    )]
    TwinHasRelationships {
        twin: String,
        direction: &'static str,
        example: String,
    },
    #[error("relationship '{rel}' of twin '{source_twin}' does not exist")]
    RelationshipNotFound { source_twin: String, rel: String },
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("token '{id}' does not exist")]
    TokenNotFound { id: String },
    #[error("device '{device}' does not exist")]
    DeviceNotFound { device: String },
    #[error("digital twin '{twin}' has a device bound to it; delete the device first (DELETE /devices/{twin})")]
    TwinHasDevice { twin: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
    /// An error decided on another node (the shard leader a request was forwarded to),
    /// carried with its class, code and message.
    #[error("{message}")]
    Remote {
        kind: ErrorKind,
        code: &'static str,
        message: String,
    },
}

impl TwinError {
    pub fn kind(&self) -> ErrorKind {
        use TwinError::*;
        match self {
            InvalidId { .. }
            | InvalidArgument(_)
            | Validation { .. }
            | TwinModelUnknown { .. }
            | ModelDecommissioned { .. }
            | ModelInvalid(_) => ErrorKind::Invalid,
            ModelNotFound { .. }
            | TwinNotFound { .. }
            | RelationshipNotFound { .. }
            | TokenNotFound { .. }
            | DeviceNotFound { .. } => ErrorKind::NotFound,
            ModelExists { .. }
            | ModelInUse { .. }
            | ModelReferenced { .. }
            | ModelBeingDeleted { .. }
            | ModelDeleteNotBegun { .. }
            | TwinBeingDeleted { .. }
            | TwinDeleteNotBegun { .. }
            | TwinHasRelationships { .. }
            | TwinHasDevice { .. } => ErrorKind::Conflict,
            PreconditionFailed(_) => ErrorKind::PreconditionFailed,
            Store(_) | Corrupt(_) => ErrorKind::Internal,
            Remote { kind, .. } => *kind,
        }
    }

    /// The stable error code, as in Azure Digital Twins where it has one.
    pub fn code(&self) -> &'static str {
        use TwinError::*;
        match self {
            Remote { code, .. } => code,
            InvalidId { .. } | InvalidArgument(_) => "InvalidArgument",
            Validation { .. } => "ValidationFailed",
            ModelNotFound { .. } | TwinModelUnknown { .. } => "ModelNotFound",
            ModelDecommissioned { .. } => "ModelDecommissioned",
            ModelExists { .. } => "ModelIdAlreadyExists",
            ModelInUse { .. } => "ModelInUse",
            ModelReferenced { .. } => "ModelReferencesNotDeleted",
            ModelBeingDeleted { .. } => "ModelBeingDeleted",
            ModelDeleteNotBegun { .. } => "ModelDeleteNotBegun",
            TwinBeingDeleted { .. } => "DigitalTwinBeingDeleted",
            TwinDeleteNotBegun { .. } => "DigitalTwinDeleteNotBegun",
            ModelInvalid(_) => "DTDLParserError",
            TwinNotFound { .. } => "DigitalTwinNotFound",
            TwinHasRelationships { .. } => "DigitalTwinHasRelationships",
            RelationshipNotFound { .. } => "RelationshipNotFound",
            PreconditionFailed(_) => "PreconditionFailed",
            TokenNotFound { .. } => "TokenNotFound",
            DeviceNotFound { .. } => "DeviceNotFound",
            TwinHasDevice { .. } => "DigitalTwinHasDevice",
            Store(_) | Corrupt(_) => "InternalServerError",
        }
    }

    /// An error another node decided, from its class, code and message as they travelled.
    pub fn remote(kind: ErrorKind, code: &str, message: String) -> Self {
        const CODES: [&str; 21] = [
            "InvalidArgument",
            "DigitalTwinBeingDeleted",
            "DigitalTwinDeleteNotBegun",
            "ModelBeingDeleted",
            "ModelDeleteNotBegun",
            "ValidationFailed",
            "ModelNotFound",
            "ModelDecommissioned",
            "ModelIdAlreadyExists",
            "ModelInUse",
            "ModelReferencesNotDeleted",
            "DTDLParserError",
            "DigitalTwinNotFound",
            "DigitalTwinHasRelationships",
            "RelationshipNotFound",
            "PreconditionFailed",
            "TokenNotFound",
            "DeviceNotFound",
            "DigitalTwinHasDevice",
            "InternalServerError",
            "ServiceUnavailable",
        ];
        TwinError::Remote {
            kind,
            code: CODES
                .iter()
                .find(|c| **c == code)
                .copied()
                .unwrap_or("InternalServerError"),
            message,
        }
    }

    pub(crate) fn validation(
        twin: &str,
        model: &str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        TwinError::Validation {
            twin: twin.to_owned(),
            model: model.to_owned(),
            path: path.into(),
            message: message.into(),
        }
    }
}
