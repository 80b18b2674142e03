//! The one place where doppel errors become HTTP responses.
//!
//! Every error body has Azure Digital Twins' shape: `{"error":{"code","message"}}`.

use crate::actors::ActorError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use doppel_cluster::ProposeError;
use doppel_twins::{ErrorKind, TwinError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            message,
        )
    }
}

impl From<TwinError> for ApiError {
    fn from(e: TwinError) -> Self {
        let status = match e.kind() {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "internal error");
        }
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<doppel_twins::StoreError> for ApiError {
    fn from(e: doppel_twins::StoreError) -> Self {
        TwinError::from(e).into()
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::Rejected(e) => e.into(),
            ProposeError::Overloaded => ApiError {
                retry_after_s: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    e.to_string(),
                )
            },
            ProposeError::NotLeader { .. } => ApiError {
                retry_after_s: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NotLeader", e.to_string())
            },
            ProposeError::Unavailable(_) => ApiError {
                retry_after_s: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    e.to_string(),
                )
            },
            ProposeError::StorageFailed(_) => {
                tracing::error!(error = %e, "write refused");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    e.to_string(),
                )
            }
        }
    }
}

impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> Self {
        match e {
            ActorError::Propose(e) => e.into(),
            ActorError::TenantSuspended { retry_after_s, .. } => ApiError {
                retry_after_s: Some(retry_after_s),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "TenantSuspended",
                    e.to_string(),
                )
            },
            ActorError::TwinOverloaded { .. } => ApiError {
                retry_after_s: Some(1),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    e.to_string(),
                )
            },
            ActorError::TwinFailed { .. } => {
                tracing::error!(error = %e, "twin actor failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "TwinActorFailed",
                    e.to_string(),
                )
            }
            ActorError::ActivationFailed { .. } | ActorError::NotATwinCommand { .. } => {
                ApiError::internal(e.to_string())
            }
            ActorError::Unavailable(_) => ApiError {
                retry_after_s: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    e.to_string(),
                )
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.code == "DeviceNotOnline" {
            resp.headers_mut().insert(
                crate::routing::DEVICE_OFFLINE_HEADER,
                HeaderValue::from_static("1"),
            );
        }
        if self.code == "NotLeader" {
            // Tells a forwarding node the request was not evaluated: safe to retry.
            resp.headers_mut().insert(
                crate::routing::NOT_LEADER_HEADER,
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
            (StatusCode::SERVICE_UNAVAILABLE, "TenantSuspended")
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
            (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
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
            (StatusCode::NOT_FOUND, "DigitalTwinNotFound")
        );
    }
}
