//! Errors of twin, relationship, model and token operations.
//!
//! Each variant carries the ids a caller needs to act on it, and maps to a stable,
//! Azure-Digital-Twins-style [`ErrorCode`] ([`TwinError::code`]) and an [`ErrorKind`].
//! [`ErrorCode`] is the one list of codes doppel answers with, on every edge (the
//! node's own codes — overload, leadership, auth — are in it too); the one mapping
//! to an HTTP status lives in the node's HTTP edge, the one to an MQTT reason in
//! `doppel_protocols::iothub::inbound`.

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

/// Declares [`ErrorCode`] from one list, so the enum, [`ErrorCode::ALL`] and
/// [`ErrorCode::as_str`] cannot disagree. The last code is what an unknown code reads as.
macro_rules! error_codes {
    ($($code:ident),+ ; unknown: $other:ident) => {
        /// Every error code doppel answers with (`{"error":{"code": …}}` over HTTP, the
        /// `code` of an IoT Hub twin response, the code a forwarded command's rejection
        /// travels with). Serialized as its name, which is the code clients see; a code
        /// this build does not know (from a newer node) reads as `InternalServerError`.
        #[allow(clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum ErrorCode {
            $($code,)+
            #[serde(other)]
            $other,
        }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$code,)+ ErrorCode::$other];

            /// The code as clients see it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$code => stringify!($code),)+
                    ErrorCode::$other => stringify!($other),
                }
            }
        }
    };
}

error_codes!(
    // Decided by the state machine (Azure Digital Twins' codes where it has one).
    InvalidArgument,
    ValidationFailed,
    ModelNotFound,
    ModelDecommissioned,
    ModelIdAlreadyExists,
    ModelInUse,
    ModelReferencesNotDeleted,
    ModelBeingDeleted,
    ModelDeleteNotBegun,
    DigitalTwinBeingDeleted,
    DigitalTwinDeleteNotBegun,
    DTDLParserError,
    DigitalTwinNotFound,
    DigitalTwinHasRelationships,
    RelationshipNotFound,
    PreconditionFailed,
    TokenNotFound,
    DeviceNotFound,
    DigitalTwinHasDevice,
    // Decided by the node and its edges.
    NotFound,
    Unauthorized,
    Forbidden,
    PayloadTooLarge,
    TooManyRequests,
    TenantSuspended,
    NotLeader,
    ServiceUnavailable,
    TwinActorFailed,
    DeviceNotOnline,
    GatewayTimeout,
    BadGateway;
    unknown: InternalServerError
);

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller may do after a failed request, whatever the protocol it came by.
/// HTTP, MQTT, the external broker and forwarding between nodes all map from this
/// (with the [`ErrorKind`] of a rejection), so they agree on what may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Disposition {
    /// The request itself is wrong or conflicts with state: sent again, it fails again.
    Rejected,
    /// Nothing was applied and the same request may succeed later (overload, no
    /// leader yet, a suspended tenant).
    Retry,
    /// It may or may not have been applied (a leader lost while it was in flight, a
    /// twin actor that failed while running it); a retry should be conditional.
    Unknown,
    /// The server failed.
    Internal,
}

/// Lets tests and logs compare a code with the text clients see.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
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
        code: ErrorCode,
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
    pub fn code(&self) -> ErrorCode {
        use ErrorCode as C;
        use TwinError::*;
        match self {
            Remote { code, .. } => *code,
            InvalidId { .. } | InvalidArgument(_) => C::InvalidArgument,
            Validation { .. } => C::ValidationFailed,
            ModelNotFound { .. } | TwinModelUnknown { .. } => C::ModelNotFound,
            ModelDecommissioned { .. } => C::ModelDecommissioned,
            ModelExists { .. } => C::ModelIdAlreadyExists,
            ModelInUse { .. } => C::ModelInUse,
            ModelReferenced { .. } => C::ModelReferencesNotDeleted,
            ModelBeingDeleted { .. } => C::ModelBeingDeleted,
            ModelDeleteNotBegun { .. } => C::ModelDeleteNotBegun,
            TwinBeingDeleted { .. } => C::DigitalTwinBeingDeleted,
            TwinDeleteNotBegun { .. } => C::DigitalTwinDeleteNotBegun,
            ModelInvalid(_) => C::DTDLParserError,
            TwinNotFound { .. } => C::DigitalTwinNotFound,
            TwinHasRelationships { .. } => C::DigitalTwinHasRelationships,
            RelationshipNotFound { .. } => C::RelationshipNotFound,
            PreconditionFailed(_) => C::PreconditionFailed,
            TokenNotFound { .. } => C::TokenNotFound,
            DeviceNotFound { .. } => C::DeviceNotFound,
            TwinHasDevice { .. } => C::DigitalTwinHasDevice,
            Store(_) | Corrupt(_) => C::InternalServerError,
        }
    }

    /// An error another node decided, from its class, code and message as they travelled.
    pub fn remote(kind: ErrorKind, code: ErrorCode, message: String) -> Self {
        TwinError::Remote {
            kind,
            code,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_travel_as_their_names() {
        let mut seen = std::collections::HashSet::new();
        assert_eq!(ErrorCode::ALL.len(), 32);
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} listed twice");
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn a_code_from_a_newer_node_reads_as_internal() {
        let code: ErrorCode = serde_json::from_str("\"SomethingNew\"").unwrap();
        assert_eq!(code, ErrorCode::InternalServerError);
    }

    #[test]
    fn remote_errors_keep_kind_code_and_message() {
        let e = TwinError::remote(ErrorKind::Conflict, ErrorCode::ModelInUse, "m".into());
        assert_eq!(
            (e.kind(), e.code(), e.to_string()),
            (ErrorKind::Conflict, ErrorCode::ModelInUse, "m".to_owned())
        );
    }
}
