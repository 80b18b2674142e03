//! The read view the state machine applies commands against, and the writes it emits.
//!
//! The state machine never touches a database: it reads through [`StateRead`] and
//! records its effects in an [`Overlay`], a write set layered over a read view. The
//! storage shell (in `doppel-cluster`) turns the overlay's [`Write`]s into one atomic,
//! fsynced write batch. Overlays nest: a group commit layers one overlay per command
//! over the group's overlay, so a failing command is dropped without a trace while the
//! commands before it in the same group still see each other's writes.
//!
//! Contract: reads through an overlay see exactly the state that applying its writes
//! to the base would produce.

use crate::keys::Family;
use std::collections::BTreeMap;

/// A storage failure (I/O, corruption). Carries a human-readable cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage error: {0}")]
pub struct StoreError(pub String);

/// A key/value pair returned by a scan.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Read access to committed state.
pub trait StateRead {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Entries whose key starts with `prefix`, in key order, starting strictly after
    /// `after` when given, at most `limit` of them.
    fn scan(
        &self,
        family: Family,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;
}

/// One effect of applying commands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Write {
    Put {
        family: Family,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        family: Family,
        key: Vec<u8>,
    },
    /// Deletes every key starting with `prefix`.
    DeletePrefix {
        family: Family,
        prefix: Vec<u8>,
    },
}

/// Pending writes over a read view. See the module docs.
pub struct Overlay<'a> {
    base: &'a dyn StateRead,
    points: BTreeMap<(Family, Vec<u8>), Option<Vec<u8>>>,
    prefixes: Vec<(Family, Vec<u8>)>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn StateRead) -> Self {
        Overlay {
            base,
            points: BTreeMap::new(),
            prefixes: Vec::new(),
        }
    }

    pub fn put(&mut self, family: Family, key: Vec<u8>, value: Vec<u8>) {
        self.points.insert((family, key), Some(value));
    }

    pub fn delete(&mut self, family: Family, key: Vec<u8>) {
        self.points.insert((family, key), None);
    }

    pub fn delete_prefix(&mut self, family: Family, prefix: Vec<u8>) {
        // Point writes made earlier are superseded by the range deletion.
        self.points
            .retain(|(f, k), _| !(*f == family && k.starts_with(&prefix)));
        self.prefixes.push((family, prefix));
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.prefixes.is_empty()
    }

    fn range_deleted(&self, family: Family, key: &[u8]) -> bool {
        self.prefixes
            .iter()
            .any(|(f, p)| *f == family && key.starts_with(p))
    }

    /// The writes, in an order that reproduces this overlay when applied in sequence:
    /// range deletions first (every point write that preceded one was dropped), then
    /// point writes.
    pub fn into_writes(self) -> Vec<Write> {
        let mut out: Vec<Write> = self
            .prefixes
            .into_iter()
            .map(|(family, prefix)| Write::DeletePrefix { family, prefix })
            .collect();
        out.extend(self.points.into_iter().map(|((family, key), v)| match v {
            Some(value) => Write::Put { family, key, value },
            None => Write::Delete { family, key },
        }));
        out
    }

    /// Applies writes produced by a nested overlay (see [`Overlay::into_writes`]).
    pub fn extend(&mut self, writes: Vec<Write>) {
        for w in writes {
            match w {
                Write::Put { family, key, value } => self.put(family, key, value),
                Write::Delete { family, key } => self.delete(family, key),
                Write::DeletePrefix { family, prefix } => self.delete_prefix(family, prefix),
            }
        }
    }
}

impl StateRead for Overlay<'_> {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.points.get(&(family, key.to_vec())) {
            return Ok(v.clone());
        }
        if self.range_deleted(family, key) {
            return Ok(None);
        }
        self.base.get(family, key)
    }

    fn scan(
        &self,
        family: Family,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        // Base entries may be shadowed by pending deletes, so read enough of them to
        // still fill `limit` after filtering, and keep reading while we come up short.
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut cursor: Option<Vec<u8>> = after.map(<[u8]>::to_vec);
        let batch = limit.saturating_add(16).max(64);
        let mut exhausted;
        loop {
            let base = self.base.scan(family, prefix, cursor.as_deref(), batch)?;
            exhausted = base.len() < batch;
            cursor = base.last().map(|(k, _)| k.clone());
            for (k, v) in base {
                if self.points.contains_key(&(family, k.clone())) || self.range_deleted(family, &k)
                {
                    continue;
                }
                merged.insert(k, v);
            }
            if exhausted || merged.len() >= limit {
                break;
            }
        }
        for ((f, k), v) in &self.points {
            if *f != family || !k.starts_with(prefix) {
                continue;
            }
            if let Some(a) = after {
                if k.as_slice() <= a {
                    continue;
                }
            }
            if let Some(v) = v {
                merged.insert(k.clone(), v.clone());
            }
        }
        // Base entries beyond the last base key read are not in `merged`, so pending keys
        // beyond it could jump the queue: cut at the base cursor unless base is done.
        // (The loop guarantees at least `limit` base entries at or below the cursor.)
        if !exhausted {
            if let Some(c) = &cursor {
                merged.retain(|k, _| k <= c);
            }
        }
        Ok(merged.into_iter().take(limit).collect())
    }
}

/// An in-memory [`StateRead`] for tests and tools.
#[derive(Debug, Default, Clone)]
pub struct MemState {
    pub data: BTreeMap<(Family, Vec<u8>), Vec<u8>>,
}

impl MemState {
    /// Applies writes as the storage shell would.
    pub fn apply(&mut self, writes: Vec<Write>) {
        for w in writes {
            match w {
                Write::Put { family, key, value } => {
                    self.data.insert((family, key), value);
                }
                Write::Delete { family, key } => {
                    self.data.remove(&(family, key));
                }
                Write::DeletePrefix { family, prefix } => {
                    self.data
                        .retain(|(f, k), _| !(*f == family && k.starts_with(&prefix)));
                }
            }
        }
    }
}

impl StateRead for MemState {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.data.get(&(family, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        family: Family,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .data
            .range((family, prefix.to_vec())..)
            .take_while(|((f, k), _)| *f == family && k.starts_with(prefix))
            .filter(|((_, k), _)| after.is_none_or(|a| k.as_slice() > a))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(keys: &[&str]) -> MemState {
        let mut m = MemState::default();
        for k in keys {
            m.data
                .insert((Family::Twins, k.as_bytes().to_vec()), b"v".to_vec());
        }
        m
    }

    fn keys(e: Vec<Entry>) -> Vec<String> {
        e.into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect()
    }

    #[test]
    fn overlay_scan_merges_and_hides_deletes() {
        let base = mem(&["a1", "a2", "a3", "b1"]);
        let mut o = Overlay::new(&base);
        o.delete(Family::Twins, b"a2".to_vec());
        o.put(Family::Twins, b"a25".to_vec(), b"x".to_vec());
        assert_eq!(
            keys(o.scan(Family::Twins, b"a", None, 10).unwrap()),
            ["a1", "a25", "a3"]
        );
        assert_eq!(
            keys(o.scan(Family::Twins, b"a", Some(b"a1"), 1).unwrap()),
            ["a25"]
        );
        assert_eq!(o.get(Family::Twins, b"a2").unwrap(), None);
    }

    #[test]
    fn prefix_delete_then_put_keeps_the_put() {
        let mut base = mem(&["a1", "a2", "b1"]);
        let mut o = Overlay::new(&base);
        o.put(Family::Twins, b"a9".to_vec(), b"early".to_vec());
        o.delete_prefix(Family::Twins, b"a".to_vec());
        o.put(Family::Twins, b"a2".to_vec(), b"late".to_vec());
        assert_eq!(
            keys(o.scan(Family::Twins, b"", None, 10).unwrap()),
            ["a2", "b1"]
        );
        let writes = o.into_writes();
        base.apply(writes);
        assert_eq!(
            keys(base.scan(Family::Twins, b"", None, 10).unwrap()),
            ["a2", "b1"]
        );
        assert_eq!(
            base.get(Family::Twins, b"a2").unwrap(),
            Some(b"late".to_vec())
        );
    }

    #[test]
    fn nested_overlay_extends_parent() {
        let base = mem(&["a1"]);
        let mut parent = Overlay::new(&base);
        parent.put(Family::Twins, b"a2".to_vec(), b"p".to_vec());
        let writes = {
            let mut child = Overlay::new(&parent);
            assert_eq!(
                child.get(Family::Twins, b"a2").unwrap(),
                Some(b"p".to_vec())
            );
            child.delete(Family::Twins, b"a1".to_vec());
            child.into_writes()
        };
        parent.extend(writes);
        assert_eq!(
            keys(parent.scan(Family::Twins, b"a", None, 10).unwrap()),
            ["a2"]
        );
    }
}
