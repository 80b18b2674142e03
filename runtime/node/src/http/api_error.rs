//! The one place where doppel errors become HTTP responses.
//!
//! Every error body has Azure Digital Twins' shape: `{"error":{"code","message"}}`.

use crate::actors::ActorError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use doppel_cluster::ProposeError;
use doppel_twins::{Disposition, ErrorCode, ErrorKind, TwinError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_s: Option<u32>,
}

/// The HTTP status of a rejection's class.
fn status_of_kind(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The HTTP status of a code, where the code alone decides it (a state machine's
/// rejection goes by its [`ErrorKind`]: `ModelNotFound` is 400 for a twin whose model
/// is unknown and 404 for `GET /models/{id}`).
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        InvalidArgument | ValidationFailed | DTDLParserError | ModelDecommissioned => {
            StatusCode::BAD_REQUEST
        }
        Unauthorized => StatusCode::UNAUTHORIZED,
        Forbidden => StatusCode::FORBIDDEN,
        NotFound | ModelNotFound | DigitalTwinNotFound | RelationshipNotFound | TokenNotFound
        | DeviceNotFound | DeviceNotOnline => StatusCode::NOT_FOUND,
        ModelIdAlreadyExists
        | ModelInUse
        | ModelReferencesNotDeleted
        | ModelBeingDeleted
        | ModelDeleteNotBegun
        | DigitalTwinBeingDeleted
        | DigitalTwinDeleteNotBegun
        | DigitalTwinHasRelationships
        | DigitalTwinHasDevice => StatusCode::CONFLICT,
        PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        TenantSuspended | NotLeader | ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        BadGateway => StatusCode::BAD_GATEWAY,
        GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        TwinActorFailed | InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// An error whose status follows from its code ([`status_of`]).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: status_of(code),
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// The same, telling the client when to try again.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalServerError, message)
    }
}

impl From<TwinError> for ApiError {
    fn from(e: TwinError) -> Self {
        let status = status_of_kind(e.kind());
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "internal error");
        }
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            retry_after_s: None,
        }
    }
}

impl From<doppel_twins::StoreError> for ApiError {
    fn from(e: doppel_twins::StoreError) -> Self {
        TwinError::from(e).into()
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        ActorError::Propose(e).into()
    }
}

impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> Self {
        let (code, disposition) = (e.code(), e.disposition());
        let status = match disposition {
            Disposition::Rejected => status_of_kind(e.kind()),
            _ => status_of(code),
        };
        let retry_after = match (&e, disposition) {
            (ActorError::TenantSuspended { retry_after_s, .. }, _) => Some(*retry_after_s),
            (_, Disposition::Retry) => Some(1),
            (_, Disposition::Unknown) if status == StatusCode::SERVICE_UNAVAILABLE => Some(1),
            _ => None,
        };
        if disposition == Disposition::Internal || status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "request failed");
        }
        ApiError {
            status,
            code,
            message: e.to_string(),
            retry_after_s: retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            serde_json::json!({ "error": { "code": self.code.as_str(), "message": self.message } });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.code == ErrorCode::DeviceNotOnline {
            resp.headers_mut().insert(
                super::headers::DEVICE_OFFLINE_HEADER,
                HeaderValue::from_static("1"),
            );
        }
        if self.code == ErrorCode::NotLeader {
            // Tells a forwarding node the request was not evaluated: safe to retry.
            resp.headers_mut().insert(
                super::headers::NOT_LEADER_HEADER,
                HeaderValue::from_static("1"),
            );
        }
        if let Some(s) = self.retry_after_s {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(resp: &Response) -> Option<&str> {
        resp.headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
    }

    #[test]
    fn a_suspended_tenant_is_503_with_retry_after_and_its_own_code() {
        let e = ApiError::from(ActorError::TenantSuspended {
            tenant: "acme".into(),
            retry_after_s: 7,
            max_restarts: 10,
            window_ms: 10_000,
        });
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::TenantSuspended)
        );
        assert!(e.message.contains("acme"), "{}", e.message);
        assert_eq!(retry_after(&e.into_response()), Some("7"));
    }

    #[test]
    fn an_overloaded_twin_is_429_with_retry_after() {
        let e = ApiError::from(ActorError::TwinOverloaded {
            tenant: "acme".into(),
            twin: "pump-1".into(),
            limit: 1000,
        });
        assert_eq!(
            (e.status, e.code),
            (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests)
        );
        assert!(e.message.contains("pump-1"), "{}", e.message);
        assert_eq!(retry_after(&e.into_response()), Some("1"));
    }

    #[test]
    fn state_machine_errors_keep_their_mapping_through_the_actors() {
        let e = ApiError::from(ActorError::Propose(ProposeError::Rejected(
            TwinError::TwinNotFound { twin: "x".into() },
        )));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::NOT_FOUND, ErrorCode::DigitalTwinNotFound)
        );
    }
}
