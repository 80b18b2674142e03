//! Following a server-sent event stream (`GET /events`, `text/event-stream`): each
//! event is a type (`event:`) and JSON data (`data:`).
//!
//! Key items: [`ApiClient::events`] opens a stream, [`EventStream::next`] reads one event.
//!
//! Contract: keep-alive comments and events without a type are skipped; an event whose
//! data is not JSON is an error, not a silent drop; an event larger than
//! [`EventStream::max_event_bytes`] (default [`DEFAULT_MAX_EVENT_BYTES`]) ends the
//! stream with an error instead of buffering without bound. `next` returns `Ok(None)`
//! once the server closes the stream.

use crate::error::{transport_error, ClientError};
use crate::http::{api_error, ApiClient};
use crate::raw::RawRequest;
use reqwest::{Method, Url};
use serde_json::Value;

/// Largest event accepted unless [`EventStream::set_max_event_bytes`] says otherwise.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One event of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The `event:` field (e.g. `Microsoft.DigitalTwins.Twin.Update`).
    pub kind: String,
    /// The `data:` lines, joined and parsed as JSON.
    pub data: Value,
    /// The `id:` field, if the server sent one.
    pub id: Option<String>,
}

/// An open event stream.
pub struct EventStream {
    url: Url,
    response: reqwest::Response,
    buf: Vec<u8>,
    max_event_bytes: usize,
}

impl ApiClient {
    /// Opens an event stream at `target` (a path such as `/events?type=…`, see
    /// [`ApiClient::raw`]); a non-2xx answer or another content type is an error.
    pub async fn events(&self, target: &str) -> Result<EventStream, ClientError> {
        EventStream::open(self.raw(Method::GET, target)).await
    }
}

impl EventStream {
    /// Opens the stream `request` asks for (it may carry extra headers).
    pub async fn open(request: RawRequest<'_>) -> Result<EventStream, ClientError> {
        let (url, response) = request
            .header("accept", "text/event-stream")
            .start()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response
                .bytes()
                .await
                .map_err(|e| transport_error(&url, &e))?;
            return Err(api_error(status, &body));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("text/event-stream") {
            return Err(ClientError::BadResponse {
                url: url.to_string(),
                what: format!("content type {content_type:?} is not text/event-stream"),
            });
        }
        Ok(EventStream {
            url,
            response,
            buf: Vec::new(),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        })
    }

    /// The largest event this stream accepts.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    pub fn set_max_event_bytes(&mut self, limit: usize) {
        self.max_event_bytes = limit;
    }

    /// The next event; `Ok(None)` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            while let Some((block, rest)) = split_block(&self.buf) {
                let event = parse_block(&self.buf[..block]);
                self.buf.drain(..rest);
                match event {
                    Ok(Some(event)) => return Ok(Some(event)),
                    Ok(None) => continue,
                    Err(what) => {
                        return Err(ClientError::BadResponse {
                            url: self.url.to_string(),
                            what,
                        })
                    }
                }
            }
            if self.buf.len() > self.max_event_bytes {
                return Err(ClientError::BadResponse {
                    url: self.url.to_string(),
                    what: format!(
                        "an event exceeds the client's limit of {} bytes (max_event_bytes)",
                        self.max_event_bytes
                    ),
                });
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) => return Ok(None),
                Err(e) => return Err(transport_error(&self.url, &e)),
            }
        }
    }
}

/// The end of the first event block in `buf` (before its blank line) and the offset
/// just after that blank line; lines end with `\n`, `\r\n` or `\r`.
fn split_block(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    let mut line_start = 0;
    while i < buf.len() {
        let eol_len = match buf[i] {
            b'\n' => 1,
            b'\r' if buf.get(i + 1) == Some(&b'\n') => 2,
            // A lone `\r` at the end of what was read may be the first half of `\r\n`.
            b'\r' if i + 1 == buf.len() => return None,
            b'\r' => 1,
            _ => {
                i += 1;
                continue;
            }
        };
        if i == line_start {
            return Some((line_start, i + eol_len));
        }
        i += eol_len;
        line_start = i;
    }
    None
}

/// An event from one block's lines; `None` for comments-only or typeless blocks.
fn parse_block(block: &[u8]) -> Result<Option<Event>, String> {
    let text = std::str::from_utf8(block).map_err(|e| format!("event is not UTF-8: {e}"))?;
    let mut kind = None;
    let mut id = None;
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => kind = Some(value.to_owned()),
            "id" => id = Some(value.to_owned()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    let Some(kind) = kind else {
        return Ok(None);
    };
    let raw = data.unwrap_or_default();
    let data = serde_json::from_str(&raw)
        .map_err(|e| format!("data of event {kind:?} is not JSON: {e}"))?;
    Ok(Some(Event { kind, data, id }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events_of(stream: &[u8]) -> Vec<Result<Option<Event>, String>> {
        let mut out = Vec::new();
        let mut buf = stream.to_vec();
        while let Some((block, rest)) = split_block(&buf) {
            out.push(parse_block(&buf[..block]));
            buf.drain(..rest);
        }
        out
    }

    #[test]
    fn events_are_split_on_blank_lines_whatever_the_line_ending() {
        let stream = b": keep-alive\n\nevent: a\ndata: {\"x\":1}\n\nevent: b\r\nid: 7\r\ndata: [1,\r\ndata: 2]\r\n\r\n";
        let got = events_of(stream);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Ok(None), "a comment is no event");
        assert_eq!(
            got[1],
            Ok(Some(Event {
                kind: "a".into(),
                data: json!({"x": 1}),
                id: None
            }))
        );
        assert_eq!(
            got[2],
            Ok(Some(Event {
                kind: "b".into(),
                data: json!([1, 2]),
                id: Some("7".into())
            }))
        );
    }

    #[test]
    fn an_unfinished_block_waits_for_more_bytes() {
        assert_eq!(split_block(b"event: a\ndata: 1\n"), None);
        assert_eq!(split_block(b"event: a\ndata: 1\r"), None);
        assert_eq!(split_block(b"event: a\ndata: 1\r\r\n"), Some((17, 19)));
    }

    #[test]
    fn data_that_is_not_json_is_an_error_naming_the_event() {
        let got = events_of(b"event: a\ndata: {oops\n\n");
        let err = got[0].clone().unwrap_err();
        assert!(err.contains("\"a\"") && err.contains("not JSON"), "{err}");
    }
}
