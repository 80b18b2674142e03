//! The relationships into one twin, read from the `rel_in` index of every data shard.
//!
//! An index entry lives on its *source*'s shard (the shard whose command writes it),
//! so the relationships into a twin are spread over all data shards. [`IncomingIndex`]
//! merges the per-shard prefix scans into one stream:
//!
//! ```text
//!   shard 0:  a\0r1  c\0r1 ─┐
//!   shard 1:  b\0r7        ─┼─▶ merge by key tail ─▶ a\0r1  b\0r7  c\0r1  d\0r2
//!   shard 2:  d\0r2        ─┘
//! ```
//!
//! Contract: entries come in `source \0 rel_id` order, each once — the order a single
//! index over all shards would have — whatever the page size; reads are bounded by
//! one page per shard ahead.

use crate::error::TwinError;
use crate::keys::{self, Family};
use crate::store::StateRead;

/// The incoming relationships of one twin, from the `rel_in` index of every data
/// shard (each entry lives on its source's shard), merged into one stream in
/// `source \0 rel_id` order: the order a single index over all shards would have.
pub(super) struct IncomingIndex<'a> {
    state: &'a dyn StateRead,
    page_size: usize,
    shards: Vec<IncomingCursor>,
}

/// One data shard's part of an [`IncomingIndex`]: a page of key tails read ahead.
struct IncomingCursor {
    prefix: Vec<u8>,
    after: Option<Vec<u8>>,
    page: std::collections::VecDeque<Vec<u8>>,
    done: bool,
}

impl<'a> IncomingIndex<'a> {
    pub(super) fn new(
        state: &'a dyn StateRead,
        shard_count: u32,
        tenant: &str,
        target: &str,
        page_size: usize,
    ) -> Self {
        IncomingIndex {
            state,
            page_size: page_size.max(1),
            shards: (0..shard_count)
                .map(|shard| IncomingCursor {
                    prefix: keys::rel_in_prefix(shard, tenant, target),
                    after: None,
                    page: Default::default(),
                    done: false,
                })
                .collect(),
        }
    }

    /// The next `source \0 rel_id` tail (see [`keys::split_rel_in_tail`]).
    pub(super) fn next_tail(&mut self) -> Result<Option<Vec<u8>>, TwinError> {
        let mut best: Option<usize> = None;
        for i in 0..self.shards.len() {
            let c = &mut self.shards[i];
            if c.page.is_empty() && !c.done {
                let rows = self.state.scan(
                    Family::RelIn,
                    &c.prefix,
                    c.after.as_deref(),
                    self.page_size,
                )?;
                c.done = rows.len() < self.page_size;
                c.after = rows.last().map(|(k, _)| k.clone());
                c.page = rows
                    .into_iter()
                    .map(|(k, _)| k[c.prefix.len()..].to_vec())
                    .collect();
            }
            let Some(head) = self.shards[i].page.front() else {
                continue;
            };
            if best.is_none_or(|b| self.shards[b].page.front().is_some_and(|h| head < h)) {
                best = Some(i);
            }
        }
        Ok(best.and_then(|b| self.shards[b].page.pop_front()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemState;

    #[test]
    fn incoming_index_merges_every_shard_in_source_order_across_pages() {
        let mut m = MemState::default();
        let mut want = Vec::new();
        for i in 0..40u32 {
            let source = format!("s{i:02}");
            // Spread over shards in an order unrelated to the source ids.
            let shard = (i * 7) % 5;
            for rel in ["a", "b"] {
                m.data.insert(
                    (Family::RelIn, keys::rel_in(shard, "t", "hub", &source, rel)),
                    Vec::new(),
                );
                want.push(format!("{source}\0{rel}").into_bytes());
            }
            // Neighbours that must not show up: another target, another tenant.
            m.data.insert(
                (
                    Family::RelIn,
                    keys::rel_in(shard, "t", "hub2", &source, "x"),
                ),
                Vec::new(),
            );
            m.data.insert(
                (Family::RelIn, keys::rel_in(shard, "u", "hub", &source, "x")),
                Vec::new(),
            );
        }
        for page_size in [1, 2, 3, 256] {
            let mut it = IncomingIndex::new(&m, 5, "t", "hub", page_size);
            let mut got = Vec::new();
            while let Some(tail) = it.next_tail().unwrap() {
                got.push(tail);
            }
            assert_eq!(got, want, "page size {page_size}");
        }
        assert_eq!(
            IncomingIndex::new(&m, 5, "t", "nobody", 1)
                .next_tail()
                .unwrap(),
            None
        );
    }
}
