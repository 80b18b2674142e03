//! Requests exactly as the caller writes them: any path and query, any header, any
//! body bytes, and the whole answer back whatever its status.
//!
//! Key items: [`RawRequest`] (from [`crate::ApiClient::raw`]), [`RawResponse`].
//!
//! Contract:
//! - the target is a path relative to the client's base URL (`/models?x=y`) or an
//!   absolute URL; an absolute URL on another origin is rebased onto the base origin,
//!   so the bearer token still only goes where `--url` points;
//! - nothing is added but the bearer token (no `api-version`, no `Accept`): a raw
//!   request is how tests and tools probe the server's handling of odd input;
//! - a non-2xx status is an answer, not an error; only a failure to get an answer
//!   (bad header, unreachable server, broken connection) is a [`ClientError`];
//! - [`crate::ApiClient::call`] is built on this layer, so both send the same way.

use crate::error::{transport_error, ClientError};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::time::Duration;

/// A request under construction; nothing is sent until [`RawRequest::send`].
#[must_use = "a request does nothing until it is sent"]
pub struct RawRequest<'c> {
    http: &'c reqwest::Client,
    authorization: Option<&'c HeaderValue>,
    method: Method,
    target: Result<Url, ClientError>,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
    /// The first header that could not be carried; reported by `send`.
    bad_header: Option<ClientError>,
}

/// A complete answer: status, headers and body bytes.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The `ETag` header, if present and printable.
    pub fn etag(&self) -> Option<&str> {
        self.headers
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; `None` if it is empty or not JSON.
    pub fn json(&self) -> Option<Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }
}

impl<'c> RawRequest<'c> {
    pub(crate) fn new(
        http: &'c reqwest::Client,
        authorization: Option<&'c HeaderValue>,
        method: Method,
        target: Result<Url, ClientError>,
    ) -> Self {
        RawRequest {
            http,
            authorization,
            method,
            target,
            headers: HeaderMap::new(),
            body: None,
            timeout: None,
            bad_header: None,
        }
    }

    /// Adds a header (a later one with the same name is sent as well).
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let (name, value) = (name.as_ref(), value.as_ref());
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => {
                self.bad_header.get_or_insert_with(|| {
                    ClientError::Usage(format!(
                        "header {name:?}: {value:?} cannot be carried by HTTP"
                    ))
                });
            }
        }
        self
    }

    /// The body `value` serialised, sent as `application/json` unless a Content-Type
    /// was set before (e.g. `application/json-patch+json`).
    pub fn json(mut self, value: &Value) -> Self {
        if !self.headers.contains_key(CONTENT_TYPE) {
            self.headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        self.body = Some(value.to_string().into_bytes());
        self
    }

    /// These bytes as the body, with whatever Content-Type was set by [`Self::header`].
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self
    }

    /// Gives up (a [`ClientError::Transport`]) if the whole exchange takes longer.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Sends the request and reads the whole answer.
    pub async fn send(self) -> Result<RawResponse, ClientError> {
        let (url, response) = self.start().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(&url, &e))?
            .to_vec();
        Ok(RawResponse {
            url,
            status,
            headers,
            body,
        })
    }

    /// Sends the request and hands back the answer with its body unread (a stream).
    pub(crate) async fn start(self) -> Result<(Url, reqwest::Response), ClientError> {
        if let Some(e) = self.bad_header {
            return Err(e);
        }
        let url = self.target?;
        let mut request = self
            .http
            .request(self.method, url.clone())
            .headers(self.headers);
        if let Some(auth) = self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        if let Some(body) = self.body {
            request = request.body(body);
        }
        if let Some(limit) = self.timeout {
            request = request.timeout(limit);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&url, &e))?;
        Ok((url, response))
    }
}
