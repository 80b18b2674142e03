//! The recent-entries cache: a group's log entries from their append until they are
//! applied, held in memory beside the log.
//!
//! Contract: what is held is always exactly what the log holds at those indexes (the log
//! store inserts only after a successful write, and forgets before a truncation and on a
//! purge; the state machine forgets what it applied), and at most [`RECENT_BYTES`] of
//! encoded entries are held, the oldest let go first.

use crate::raft::Entry;
use std::sync::{Arc, Mutex};

/// How many bytes of recently appended (encoded) entries one group keeps in memory.
const RECENT_BYTES: usize = 8 << 20;

/// The group's entries from their append until they are applied here, in memory, so
/// that applying them (openraft reads every entry back from the log to apply it) and
/// replicating them to followers costs neither a RocksDB read nor a decode. A range not
/// wholly held is read from the log as before; what is held is always exactly what the
/// log holds (appends, truncations and purges update both).
#[derive(Clone, Default)]
pub struct RecentEntries(Arc<Mutex<RecentInner>>);

#[derive(Default)]
struct RecentInner {
    entries: std::collections::BTreeMap<u64, (Entry, usize)>,
    bytes: usize,
}

impl RecentEntries {
    fn lock(&self) -> std::sync::MutexGuard<'_, RecentInner> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(super) fn insert(&self, entries: Vec<(Entry, usize)>) {
        let mut g = self.lock();
        for (entry, size) in entries {
            if let Some((_, old)) = g.entries.insert(entry.log_id.index, (entry, size)) {
                g.bytes -= old;
            }
            g.bytes += size;
        }
        while g.bytes > RECENT_BYTES {
            match g.entries.pop_first() {
                Some((_, (_, size))) => g.bytes -= size,
                None => break,
            }
        }
    }

    /// Forgets `index` and everything after it (a truncation).
    pub(super) fn forget_from(&self, index: u64) {
        let mut g = self.lock();
        let gone = g.entries.split_off(&index);
        g.bytes -= gone.values().map(|(_, size)| size).sum::<usize>();
    }

    /// Forgets everything up to and including `index` (applied or purged).
    pub(super) fn forget_through(&self, index: u64) {
        let mut g = self.lock();
        let Some(next) = index.checked_add(1) else {
            g.entries.clear();
            g.bytes = 0;
            return;
        };
        let kept = g.entries.split_off(&next);
        let gone = std::mem::replace(&mut g.entries, kept);
        g.bytes -= gone.values().map(|(_, size)| size).sum::<usize>();
    }

    /// `[start, end)` when every entry of it is held.
    pub(super) fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let g = self.lock();
        let count = usize::try_from(end.checked_sub(start)?).ok()?;
        let held: Vec<Entry> = g
            .entries
            .range(start..end)
            .map(|(_, (e, _))| e.clone())
            .collect();
        (held.len() == count).then_some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::store::test_support::normal;

    #[test]
    fn held_entries_stay_within_their_byte_budget() {
        let recent = RecentEntries::default();
        let big = RECENT_BYTES / 4 + 1;
        recent.insert((1..=8).map(|i| (normal(i, vec![], vec![]), big)).collect());
        let g = recent.lock();
        assert!(g.bytes <= RECENT_BYTES, "{} bytes held", g.bytes);
        assert_eq!(g.entries.len(), 3, "the oldest are let go first");
        assert_eq!(g.entries.keys().copied().collect::<Vec<_>>(), vec![6, 7, 8]);
    }
}
