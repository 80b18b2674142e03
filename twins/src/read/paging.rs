//! Paging through stored records: continuation tokens and bounded scans.
//!
//! A listing walks one key range (a tenant's models, a twin's outgoing relationships)
//! or the same range on every data shard (a tenant's twins, the relationships into a
//! twin, which are indexed on their sources' shards). A page ends after `size` items;
//! its continuation token says where the next one resumes. Tokens are opaque to
//! clients and keep the format doppel has always issued — URL-safe base64 without
//! padding of:
//!
//! ```text
//!   lists across data shards   shard (u32 BE) | last key returned     scan_shards
//!   single-range lists         last key returned                      scan_prefix
//! ```
//!
//! Key types: [`Page`], [`scan_shards`], [`scan_tenant_shards`], [`scan_prefix`].
//!
//! Contract:
//! - items come in (shard, key) order, and paging with any page size yields the same
//!   sequence, each item once;
//! - a page holds at most `size` items, and has a token exactly when one more item
//!   exists (no empty last page);
//! - scanning is bounded: the store is read in batches of [`SCAN_BATCH`], and a filter
//!   that rejects everything still ends after one pass over the ranges;
//! - a token that this listing could not have issued (not base64, too short, a shard
//!   that does not exist, a key outside the listing's range) is refused with
//!   [`TwinError::InvalidArgument`] ([`FOREIGN_TOKEN`]), so that it can neither skip
//!   nor repeat items.

use crate::error::TwinError;
use crate::keys::{self, Family};
use crate::store::StateRead;
use base64::Engine;

/// How many entries one read of the store asks for.
pub const SCAN_BATCH: usize = 256;

/// The message of a refused continuation token.
pub const FOREIGN_TOKEN: &str = "continuationToken is not a token this server issued";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The continuation token of the next page; `None` on the last page.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// The same page with each item mapped (e.g. to its JSON shape).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

fn foreign() -> TwinError {
    TwinError::InvalidArgument(FOREIGN_TOKEN.into())
}

/// A continuation token for `bytes` (see the module docs for what they hold).
pub fn encode_token(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The bytes of a continuation token; a token that is not URL-safe base64 is refused.
pub fn decode_token(token: Option<&str>) -> Result<Option<Vec<u8>>, TwinError> {
    token
        .map(|t| B64.decode(t).map_err(|_| foreign()))
        .transpose()
}

/// Pages through one tenant's records of `family` across all data shards, in shard
/// then key order. `keep` maps a record's value to an item or skips it. Paging as in
/// [`scan_shards`].
pub fn scan_tenant_shards<T>(
    state: &dyn StateRead,
    family: Family,
    tenant: &str,
    shard_count: u32,
    token: Option<&str>,
    size: usize,
    mut keep: impl FnMut(&[u8]) -> Result<Option<T>, TwinError>,
) -> Result<Page<T>, TwinError> {
    scan_shards(
        state,
        family,
        shard_count,
        |shard| keys::tenant_prefix(shard, tenant),
        token,
        size,
        |_, v| keep(v),
    )
}

/// Pages through the records of `family` under `prefix_of(shard)` for every data
/// shard `0..shard_count`, in shard then key order. `keep` gets each record's key
/// after the prefix and its value, and maps it to an item or skips it. The token is
/// the shard (4 bytes BE) then the last key returned, so a listing whose entries are
/// spread over shards (such as a twin's incoming relationships, indexed on their
/// sources' shards) pages across them.
pub fn scan_shards<T>(
    state: &dyn StateRead,
    family: Family,
    shard_count: u32,
    prefix_of: impl Fn(u32) -> Vec<u8>,
    token: Option<&str>,
    size: usize,
    keep: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, TwinError>,
) -> Result<Page<T>, TwinError> {
    let (first, after) = match decode_token(token)? {
        None => (0, None),
        Some(tok) => {
            let (shard, key) = tok.split_first_chunk::<4>().ok_or_else(foreign)?;
            let shard = u32::from_be_bytes(*shard);
            if shard >= shard_count || !key.starts_with(&prefix_of(shard)) {
                return Err(foreign());
            }
            (shard, Some(key.to_vec()))
        }
    };
    let ranges = (first..shard_count).map(|shard| (shard, prefix_of(shard)));
    let (items, last) = scan_ranges(state, family, ranges, after, size, keep)?;
    let next = last.map(|(shard, key)| {
        let mut tok = shard.to_be_bytes().to_vec();
        tok.extend_from_slice(&key);
        encode_token(&tok)
    });
    Ok(Page { items, next })
}

/// Pages through the records of `family` under one `prefix`, in key order. `keep` gets
/// each record's key after the prefix and its value. The token is the last key
/// returned.
pub fn scan_prefix<T>(
    state: &dyn StateRead,
    family: Family,
    prefix: &[u8],
    token: Option<&str>,
    size: usize,
    keep: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, TwinError>,
) -> Result<Page<T>, TwinError> {
    let after = decode_token(token)?;
    if after.as_ref().is_some_and(|key| !key.starts_with(prefix)) {
        return Err(foreign());
    }
    let ranges = std::iter::once((0, prefix.to_vec()));
    let (items, last) = scan_ranges(state, family, ranges, after, size, keep)?;
    let next = last.map(|(_, key)| encode_token(&key));
    Ok(Page { items, next })
}

/// Where the next page resumes: the shard of the last item returned and its key.
type Resume = (u32, Vec<u8>);

/// The engine of both listings: up to `size` kept items from `ranges` in order,
/// starting after key `after` in the first range; and, when one more kept item
/// exists, the range and key of the last item returned (where the next page resumes).
fn scan_ranges<T>(
    state: &dyn StateRead,
    family: Family,
    ranges: impl Iterator<Item = (u32, Vec<u8>)>,
    mut after: Option<Vec<u8>>,
    size: usize,
    mut keep: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, TwinError>,
) -> Result<(Vec<T>, Option<Resume>), TwinError> {
    if size == 0 {
        return Err(TwinError::InvalidArgument(
            "a page holds at least one item".into(),
        ));
    }
    let mut items = Vec::new();
    let mut last_returned: Option<Resume> = None;
    for (shard, prefix) in ranges {
        loop {
            let rows = state.scan(family, &prefix, after.as_deref(), SCAN_BATCH)?;
            let done = rows.len() < SCAN_BATCH;
            for (k, v) in rows {
                after = Some(k.clone());
                let Some(item) = keep(&k[prefix.len()..], &v)? else {
                    continue;
                };
                if items.len() == size {
                    // One more exists: the next page resumes after the last one returned.
                    return Ok((items, last_returned));
                }
                items.push(item);
                last_returned = Some((shard, k));
            }
            if done {
                break;
            }
        }
        after = None;
    }
    Ok((items, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Entry, MemState, StoreError};
    use std::cell::Cell;

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
            let page = scan_shards(
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
            assert!(page.items.len() <= size);
            all.extend(page.items);
            match page.next {
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

    #[test]
    fn tokens_keep_the_format_issued_before() {
        let m = spread_index();
        let page = scan_shards(
            &m,
            Family::RelIn,
            8,
            |s| keys::rel_in_prefix(s, "acme", "t"),
            None,
            3,
            |_, _| Ok(Some(())),
        )
        .unwrap();
        // Shard 2 (4 bytes BE) then the full key of the last entry returned ("c").
        let mut want = 2u32.to_be_bytes().to_vec();
        want.extend(keys::rel_in(2, "acme", "t", "c", "r"));
        assert_eq!(page.next, Some(B64.encode(&want)));
        assert!(!page.next.unwrap().contains(['=', '+', '/']));
    }

    /// Counts the reads of the store and the entries they return.
    struct Counting<'a> {
        inner: &'a MemState,
        reads: Cell<usize>,
        entries: Cell<usize>,
    }

    impl StateRead for Counting<'_> {
        fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(family, key)
        }

        fn scan(
            &self,
            family: Family,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<Entry>, StoreError> {
            assert!(limit <= SCAN_BATCH, "reads are batched");
            let rows = self.inner.scan(family, prefix, after, limit)?;
            self.reads.set(self.reads.get() + 1);
            self.entries.set(self.entries.get() + rows.len());
            Ok(rows)
        }
    }

    #[test]
    fn a_filter_that_rejects_everything_ends_after_one_pass() {
        let mut m = MemState::default();
        let per_shard = 600;
        for shard in 0..4 {
            for i in 0..per_shard {
                m.data.insert(
                    (
                        Family::Twins,
                        keys::twin(shard, "acme", &format!("x{i:04}")),
                    ),
                    Vec::new(),
                );
            }
        }
        let counting = Counting {
            inner: &m,
            reads: Cell::new(0),
            entries: Cell::new(0),
        };
        let page = scan_tenant_shards(&counting, Family::Twins, "acme", 4, None, 10, |_| {
            Ok(None::<()>)
        })
        .unwrap();
        assert_eq!(
            page,
            Page::<()> {
                items: vec![],
                next: None
            }
        );
        // Every entry read once: 600 per shard in batches of 256 (256, 256, 88).
        assert_eq!(counting.entries.get(), 4 * per_shard);
        assert_eq!(counting.reads.get(), 4 * 3);
    }

    #[test]
    fn foreign_tokens_are_refused() {
        let m = spread_index();
        let prefix_of = |s| keys::rel_in_prefix(s, "acme", "t");
        let scan = |token: &str| {
            scan_shards(&m, Family::RelIn, 8, prefix_of, Some(token), 2, |_, _| {
                Ok(Some(()))
            })
        };
        let with_shard = |shard: u32, key: &[u8]| {
            let mut t = shard.to_be_bytes().to_vec();
            t.extend_from_slice(key);
            encode_token(&t)
        };
        for token in [
            "not base64!".to_owned(),
            encode_token(&[0, 0, 1]),
            // A shard that does not exist.
            with_shard(8, &prefix_of(8)),
            // Another twin's range (a token of its listing).
            with_shard(2, &keys::rel_in(2, "acme", "t2", "c", "r")),
            // Another tenant's range.
            with_shard(2, &keys::rel_in(2, "other", "t", "c", "r")),
        ] {
            let e = scan(&token).unwrap_err();
            assert_eq!(e.code(), "InvalidArgument", "{token}");
            assert_eq!(e.to_string(), FOREIGN_TOKEN);
        }
        let e = scan_prefix(
            &m,
            Family::RelIn,
            &keys::rel_in_prefix(0, "acme", "t"),
            Some(&encode_token(&keys::rel_in(0, "acme", "t2", "a", "r"))),
            2,
            |_, _| Ok(Some(())),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), FOREIGN_TOKEN);
    }

    #[test]
    fn a_page_of_no_items_is_refused() {
        let m = spread_index();
        let e = scan_prefix(&m, Family::RelIn, b"", None, 0, |_, _| Ok(Some(()))).unwrap_err();
        assert_eq!(e.code(), "InvalidArgument");
    }
}
