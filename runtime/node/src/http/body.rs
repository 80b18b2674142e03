//! Request bodies: read up to the configured limit, parse as JSON (or YAML when the
//! Content-Type says so), and turn every
//! failure into a precise ADT-style error (413 for too large, 400 naming the line and
//! column of a syntax error).

use super::api_error::ApiError;
use crate::node::Node;
use axum::extract::{FromRequest, Request};
use doppel_twins::ErrorCode;
use serde_json::Value;

/// A JSON request body.
pub struct JsonBody(pub Value);

/// A request body that may be empty (`None`), e.g. a command without a request.
pub struct OptionalJsonBody(pub Option<Value>);

impl FromRequest<Node> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Node) -> Result<Self, Self::Rejection> {
        read_json(req, state).await?.map(JsonBody).ok_or_else(|| {
            ApiError::bad_request("the request body is empty; a JSON document is required")
        })
    }
}

impl FromRequest<Node> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Node) -> Result<Self, Self::Rejection> {
        read_json(req, state).await.map(OptionalJsonBody)
    }
}

/// Reads the body up to the limit and parses it; `None` for an empty body.
async fn read_json(req: Request, state: &Node) -> Result<Option<Value>, ApiError> {
    let limit = state.config.max_body_bytes;
    let yaml = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("yaml"));
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("length limit"))
                || e.to_string().contains("length limit");
            if too_large {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the request body exceeds the limit of {limit} bytes"),
                )
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
    if bytes.is_empty() {
        return Ok(None);
    }
    let bytes = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(&bytes);
    if yaml {
        // DTDL (and any other body) may be written in YAML: same document, other spelling.
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::bad_request("the YAML body is not UTF-8"))?;
        return doppel_schemas::check::parse_text(std::path::Path::new("body.yaml"), text)
            .map(Some)
            .map_err(|e| {
                ApiError::bad_request(format!("malformed YAML in the request body: {e}"))
            });
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON in the request body: {e}")))
}
