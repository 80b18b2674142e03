//! Paged list responses: `{"value": [...], "nextLink": "..."}` as in Azure Digital
//! Twins. The continuation token is opaque to clients (URL-safe base64 of the last key
//! returned), and `nextLink` is an absolute URL when the request named its host.

use super::api_error::{ApiError, ApiResult};
use axum::http::{header, HeaderMap};
use base64::Engine;
use serde_json::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    pub continuation_token: Option<String>,
    /// Kept as text: numbers inside `#[serde(flatten)]` query structs do not parse.
    pub max_items_per_page: Option<String>,
}

pub fn decode_token(token: Option<&str>) -> ApiResult<Option<Vec<u8>>> {
    token
        .map(|t| {
            B64.decode(t).map_err(|_| {
                ApiError::bad_request("continuationToken is not a token this server issued")
            })
        })
        .transpose()
}

pub fn encode_token(key: &[u8]) -> String {
    B64.encode(key)
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

/// Pages through one tenant's records of `family` across all data shards, in shard
/// then key order: up to `size` records that `keep` maps to an item, resuming after a
/// continuation token (the shard, 4 bytes BE, then the last key returned). Returns the
/// items and the token of the next page, if one more item exists.
///
/// Scanning is bounded: a filter that rejects everything still ends after one pass
/// over the tenant's records.
pub fn scan_tenant_shards<T>(
    storage: &dyn doppel_twins::StateRead,
    family: doppel_twins::keys::Family,
    tenant: &str,
    shard_count: u32,
    token: Option<&str>,
    size: usize,
    mut keep: impl FnMut(&[u8]) -> ApiResult<Option<T>>,
) -> ApiResult<(Vec<T>, Option<String>)> {
    scan_shards(
        storage,
        family,
        shard_count,
        |shard| doppel_twins::keys::tenant_prefix(shard, tenant),
        token,
        size,
        |_, v| keep(v),
    )
}

/// Pages through the records of `family` under `prefix_of(shard)` for every data
/// shard `0..shard_count`, in shard then key order. `keep` gets each record's key
/// after the prefix and its value, and maps it to an item or skips it. Paging as in
/// [`scan_tenant_shards`]: the token is the shard (4 bytes BE) then the last key
/// returned, so a listing whose entries are spread over shards (such as a twin's
/// incoming relationships, indexed on their sources' shards) pages across them.
pub fn scan_shards<T>(
    storage: &dyn doppel_twins::StateRead,
    family: doppel_twins::keys::Family,
    shard_count: u32,
    prefix_of: impl Fn(u32) -> Vec<u8>,
    token: Option<&str>,
    size: usize,
    mut keep: impl FnMut(&[u8], &[u8]) -> ApiResult<Option<T>>,
) -> ApiResult<(Vec<T>, Option<String>)> {
    let (mut shard, mut after) = match decode_token(token)? {
        Some(tok) if tok.len() >= 4 => (
            u32::from_be_bytes([tok[0], tok[1], tok[2], tok[3]]),
            Some(tok[4..].to_vec()),
        ),
        Some(_) => {
            return Err(ApiError::bad_request(
                "continuationToken is not a token this server issued",
            ))
        }
        None => (0, None),
    };
    let mut items = Vec::new();
    let mut last_returned: Option<(u32, Vec<u8>)> = None;
    while shard < shard_count {
        let prefix = prefix_of(shard);
        loop {
            let rows = storage.scan(family, &prefix, after.as_deref(), 256)?;
            let done = rows.len() < 256;
            for (k, v) in rows {
                after = Some(k.clone());
                let Some(item) = keep(&k[prefix.len()..], &v)? else {
                    continue;
                };
                if items.len() == size {
                    // One more exists: the next page resumes after the last one returned.
                    let next = last_returned.map(|(s, key)| {
                        let mut tok = s.to_be_bytes().to_vec();
                        tok.extend_from_slice(&key);
                        encode_token(&tok)
                    });
                    return Ok((items, next));
                }
                items.push(item);
                last_returned = Some((shard, k));
            }
            if done {
                break;
            }
        }
        shard += 1;
        after = None;
    }
    Ok((items, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_twins::keys::{self, Family};
    use doppel_twins::MemState;

    /// Incoming-relationship index entries of `target` spread over shards (as they are:
    /// each on its source's shard), with a neighbouring twin's entries in between.
    fn spread_index() -> MemState {
        let mut m = MemState::default();
        for (shard, source) in [(0, "a"), (0, "b"), (2, "c"), (5, "d"), (5, "e"), (7, "f")] {
            for target in ["t", "t2"] {
                m.data.insert(
                    (
                        Family::RelIn,
                        keys::rel_in(shard, "acme", target, source, "r"),
                    ),
                    Vec::new(),
                );
            }
        }
        m
    }

    fn list(m: &MemState, size: usize) -> (Vec<String>, usize) {
        let (mut all, mut pages, mut token) = (Vec::new(), 0, None::<String>);
        loop {
            let (items, next) = scan_shards(
                m,
                Family::RelIn,
                8,
                |s| keys::rel_in_prefix(s, "acme", "t"),
                token.as_deref(),
                size,
                |tail, _| Ok(keys::split_rel_in_tail(tail).map(|(s, r)| format!("{s}/{r}"))),
            )
            .unwrap();
            pages += 1;
            assert!(items.len() <= size);
            all.extend(items);
            match next {
                Some(t) => token = Some(t),
                None => return (all, pages),
            }
        }
    }

    #[test]
    fn scan_shards_pages_one_prefix_across_shards() {
        let m = spread_index();
        let want = ["a/r", "b/r", "c/r", "d/r", "e/r", "f/r"];
        assert_eq!(list(&m, 100), (want.map(String::from).to_vec(), 1));
        assert_eq!(list(&m, 1), (want.map(String::from).to_vec(), 6));
        assert_eq!(list(&m, 4), (want.map(String::from).to_vec(), 2));
        // Exactly one page's worth: no empty trailing page.
        assert_eq!(list(&m, 6), (want.map(String::from).to_vec(), 1));
    }
}
