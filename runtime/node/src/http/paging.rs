//! Paged list responses: `{"value": [...], "nextLink": "..."}` as in Azure Digital
//! Twins. The continuation token is opaque to clients (made and checked by
//! `doppel_twins::read`), and `nextLink` is an absolute URL when the request named its
//! host.

use super::api_error::{ApiError, ApiResult};
use axum::http::{header, HeaderMap};
use serde_json::Value;

#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    pub continuation_token: Option<String>,
    /// Kept as text: numbers inside `#[serde(flatten)]` query structs do not parse.
    pub max_items_per_page: Option<String>,
}

/// The page size: `max-items-per-page` header (ADT), else `maxItemsPerPage`, else default.
pub fn page_size(
    headers: &HeaderMap,
    q: &PageQuery,
    default: usize,
    max: usize,
) -> ApiResult<usize> {
    let from_header = headers
        .get("max-items-per-page")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("max-items-per-page must be a positive integer")
                })
        })
        .transpose()?;
    let from_query = q
        .max_items_per_page
        .as_deref()
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| ApiError::bad_request("maxItemsPerPage must be a positive integer"))
        })
        .transpose()?;
    let n = from_header.or(from_query).unwrap_or(default);
    if n == 0 || n > max {
        return Err(ApiError::bad_request(format!(
            "page size must be between 1 and {max}, got {n}"
        )));
    }
    Ok(n)
}

/// Builds the page body; `next` is the continuation token when more items follow.
/// The `nextLink` repeats `extra_query` and a `maxItemsPerPage` given in the query
/// string (`q`), so that following it keeps the page size the client asked for (a
/// `max-items-per-page` header is the client's to resend, as in ADT).
pub fn page(
    headers: &HeaderMap,
    tls: bool,
    path: &str,
    extra_query: &[(&str, &str)],
    q: &PageQuery,
    items: Vec<Value>,
    next: Option<String>,
) -> Value {
    let mut body = serde_json::json!({ "value": items });
    if let Some(tok) = next {
        let size = q
            .max_items_per_page
            .as_deref()
            .map(|n| ("maxItemsPerPage", n));
        let mut query: Vec<String> = extra_query
            .iter()
            .copied()
            .chain(size)
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect();
        query.push(format!("continuationToken={tok}"));
        let rel = format!("{path}?{}", query.join("&"));
        let link = match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            Some(host) => {
                let scheme = if tls { "https" } else { "http" };
                format!("{scheme}://{host}{rel}")
            }
            None => rel,
        };
        body["nextLink"] = Value::String(link);
    }
    body
}
