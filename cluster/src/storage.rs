//! The node's one RocksDB: column families per [`Family`], atomic fsynced write batches.
//!
//! This is the only module in doppel that names `rocksdb`. Everything above it sees
//! doppel types: [`StateRead`] for reads and `Vec<Write>` for changes.
//!
//! Besides the six twin-state families, the database holds two column families that only
//! the Raft layer of this crate uses ([`RaftCf`]): `raft_log` (log entries) and
//! `raft_state` (vote, committed, purged, applied, membership, snapshots). Crate-internal
//! [`Batch`]es mix both kinds in one atomic RocksDB write, and a [`ReadView`] reads both
//! from one consistent RocksDB snapshot.
//!
//! Contract:
//! - [`Storage::commit`] writes all of its writes in one RocksDB `WriteBatch`: either
//!   all of them survive a crash or none do;
//! - with `sync = true` (the default for every acknowledged write) the WAL is fsynced
//!   before `commit` returns, so an acknowledged write survives `kill -9` and power loss;
//! - the shard count a data directory was created with is recorded in it and can
//!   never silently change (that would move every twin to another shard).

use doppel_twins::keys::{self, Family, MetaKind, SYSTEM_TENANT};
use doppel_twins::{Entry, StateRead, StoreError, Write};
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions, DB,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Column families private to the cluster crate's Raft storage (not twin state, hence
/// not a [`Family`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RaftCf {
    /// `group u32 BE | index u64 BE` -> log entry.
    Log,
    /// `group u32 BE | name` -> vote, committed, purged, applied, membership, snapshot.
    State,
}

impl RaftCf {
    const ALL: [RaftCf; 2] = [RaftCf::Log, RaftCf::State];

    /// The column family name on disk.
    fn name(self) -> &'static str {
        match self {
            RaftCf::Log => "raft_log",
            RaftCf::State => "raft_state",
        }
    }
}

/// Whether a [`Batch`] must be on disk when [`Batch::commit`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// fsync the WAL when the storage is configured to sync ([`StorageConfig::sync`]).
    Fsync,
    /// Written to the WAL without fsync: durable once any later fsynced write is (the
    /// WAL is sequential), or at the next flush.
    Buffered,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open the database in {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error(
        "{path} was created with {stored} shards but {configured} are configured; the shard count of a data \
         directory cannot change"
    )]
    ShardCountMismatch {
        path: PathBuf,
        stored: u32,
        configured: u32,
    },
    #[error("write failed: {0}")]
    Write(String),
    #[error("read failed: {0}")]
    Read(String),
}

/// Storage tuning; see `doppel serve --help` for the user-facing knobs.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// fsync the WAL on every commit (never turn off outside benchmarks' baselines).
    pub sync: bool,
    pub block_cache_mb: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            sync: true,
            block_cache_mb: 64,
        }
    }
}

#[derive(Clone)]
pub struct Storage {
    db: Arc<DB>,
    sync: bool,
    path: PathBuf,
    syncer: std::sync::mpsc::Sender<SyncWaiter>,
}

/// Called once the WAL has been fsynced past the waiter's writes (or the fsync failed).
pub(crate) type SyncWaiter = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Group commit of WAL fsyncs across every Raft group of the node: writers append
/// without fsync, then wait here; one thread fsyncs the WAL once for everyone waiting
/// (RocksDB's WAL is one sequential file, so one fsync covers every earlier write).
fn start_wal_syncer(db: std::sync::Weak<DB>) -> std::sync::mpsc::Sender<SyncWaiter> {
    let (tx, rx) = std::sync::mpsc::channel::<SyncWaiter>();
    std::thread::Builder::new()
        .name("doppel-wal-sync".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut waiting = vec![first];
                while let Ok(w) = rx.try_recv() {
                    waiting.push(w);
                }
                // A weak handle: the database closes when the last `Storage` goes.
                let result = match db.upgrade() {
                    Some(db) => db.flush_wal(true).map_err(|e| e.to_string()),
                    None => Err("the database is closed".to_string()),
                };
                for w in waiting {
                    w(result.clone());
                }
            }
        })
        .expect("spawning the WAL sync thread");
    tx
}

impl Storage {
    /// Opens (or creates) the database at `path`, recording or checking the shard count.
    pub fn open(
        path: &Path,
        shard_count: u32,
        config: &StorageConfig,
    ) -> Result<Self, StorageError> {
        let open_err = |reason: String| StorageError::Open {
            path: path.to_owned(),
            reason,
        };
        std::fs::create_dir_all(path).map_err(|e| open_err(e.to_string()))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cache = rocksdb::Cache::new_lru_cache(config.block_cache_mb.max(8) * 1024 * 1024);
        let names = Family::ALL
            .iter()
            .map(|f| f.name())
            .chain(RaftCf::ALL.iter().map(|c| c.name()));
        let cfs = names.map(|name| {
            let mut cf_opts = Options::default();
            let mut block = rocksdb::BlockBasedOptions::default();
            block.set_block_cache(&cache);
            cf_opts.set_block_based_table_factory(&block);
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(name, cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| open_err(e.to_string()))?;
        let db = Arc::new(db);
        let storage = Storage {
            syncer: start_wal_syncer(Arc::downgrade(&db)),
            db,
            sync: config.sync,
            path: path.to_owned(),
        };
        storage.check_shard_count(shard_count)?;
        Ok(storage)
    }

    /// Runs `waiter` once everything written so far is fsynced (at once when the
    /// storage does not sync). Writers that call this concurrently share one fsync.
    pub(crate) fn after_wal_sync(&self, waiter: SyncWaiter) {
        if !self.sync {
            return waiter(Ok(()));
        }
        if let Err(std::sync::mpsc::SendError(waiter)) = self.syncer.send(waiter) {
            waiter(Err("the WAL sync thread stopped".into()));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_shard_count(&self, configured: u32) -> Result<(), StorageError> {
        let key = keys::meta(SYSTEM_TENANT, MetaKind::Config, "shard_count");
        let stored = self
            .get(Family::Meta, &key)
            .map_err(|e| StorageError::Open {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        match stored {
            Some(b) if b.len() == 4 => {
                let stored = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                if stored != configured {
                    return Err(StorageError::ShardCountMismatch {
                        path: self.path.clone(),
                        stored,
                        configured,
                    });
                }
                self.check_layout()
            }
            Some(_) => Err(StorageError::Open {
                path: self.path.clone(),
                reason: "corrupt shard_count record".into(),
            }),
            None => self.commit(vec![
                Write::Put {
                    family: Family::Meta,
                    key,
                    value: configured.to_be_bytes().to_vec(),
                },
                Write::Put {
                    family: Family::Meta,
                    key: keys::meta(SYSTEM_TENANT, MetaKind::Config, "layout"),
                    value: keys::LAYOUT_VERSION.to_be_bytes().to_vec(),
                },
            ]),
        }
    }

    /// Refuses a data directory written with another key layout ([`keys::LAYOUT_VERSION`]).
    fn check_layout(&self) -> Result<(), StorageError> {
        let key = keys::meta(SYSTEM_TENANT, MetaKind::Config, "layout");
        let stored = self
            .get(Family::Meta, &key)
            .map_err(|e| StorageError::Open {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        let version = match stored {
            None => 1,
            Some(b) if b.len() == 4 => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            Some(_) => {
                return Err(StorageError::Open {
                    path: self.path.clone(),
                    reason: "corrupt layout record".into(),
                })
            }
        };
        if version != keys::LAYOUT_VERSION {
            return Err(StorageError::Open {
                path: self.path.clone(),
                reason: format!(
                    "it was written with storage layout {version} (an older, single-node doppel) and \
                     this release uses layout {} (Raft-replicated shards); it cannot be read in \
                     place: start this release on a new --data-dir",
                    keys::LAYOUT_VERSION
                ),
            });
        }
        Ok(())
    }

    /// The shard count recorded in a data directory, if it has one (for tools).
    pub fn recorded_shard_count(path: &Path) -> Option<u32> {
        let opts = Options::default();
        let cfs: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
        let db = DB::open_cf_for_read_only(&opts, path, cfs, false).ok()?;
        let cf = db.cf_handle(Family::Meta.name())?;
        let b = db
            .get_cf(
                &cf,
                keys::meta(SYSTEM_TENANT, MetaKind::Config, "shard_count"),
            )
            .ok()??;
        Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
    }

    fn cf(&self, family: Family) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(family.name())
            .ok_or_else(|| StoreError(format!("column family {} is missing", family.name())))
    }

    fn raft_cf(&self, cf: RaftCf) -> Result<&rocksdb::ColumnFamily, String> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| format!("column family {} is missing", cf.name()))
    }

    /// Writes all `writes` atomically, fsynced when the store is configured to sync.
    pub fn commit(&self, writes: Vec<Write>) -> Result<(), StorageError> {
        let mut batch = self.batch();
        let refs: Vec<&Write> = writes.iter().collect();
        batch.add_writes(&refs)?;
        batch.commit(Durability::Fsync)
    }

    /// An empty atomic batch over the data families and the Raft column families.
    pub(crate) fn batch(&self) -> Batch {
        Batch {
            storage: self.clone(),
            inner: WriteBatch::default(),
        }
    }

    /// One record of a Raft column family.
    pub(crate) fn raft_get(&self, cf: RaftCf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let handle = self.raft_cf(cf).map_err(StorageError::Read)?;
        self.db
            .get_cf(&handle, key)
            .map_err(|e| StorageError::Read(e.to_string()))
    }

    /// Every record of a Raft column family with `from <= key < to`, in key order.
    pub(crate) fn raft_range(
        &self,
        cf: RaftCf,
        from: &[u8],
        to: &[u8],
    ) -> Result<Vec<Entry>, StorageError> {
        let handle = self.raft_cf(cf).map_err(StorageError::Read)?;
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(to.to_vec());
        let mut out = Vec::new();
        for item in
            self.db
                .iterator_cf_opt(&handle, ro, IteratorMode::From(from, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| StorageError::Read(e.to_string()))?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// The record with the greatest key in `from <= key < to`, if any.
    pub(crate) fn raft_last_in_range(
        &self,
        cf: RaftCf,
        from: &[u8],
        to: &[u8],
    ) -> Result<Option<Entry>, StorageError> {
        let handle = self.raft_cf(cf).map_err(StorageError::Read)?;
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(from.to_vec());
        ro.set_iterate_upper_bound(to.to_vec());
        let mut it = self.db.iterator_cf_opt(&handle, ro, IteratorMode::End);
        match it.next() {
            Some(item) => {
                let (k, v) = item.map_err(|e| StorageError::Read(e.to_string()))?;
                Ok(Some((k.into_vec(), v.into_vec())))
            }
            None => Ok(None),
        }
    }

    /// A consistent point-in-time view of the whole database (a RocksDB snapshot): reads
    /// through it see no write committed after this call.
    pub(crate) fn read_view(&self) -> ReadView<'_> {
        ReadView {
            storage: self,
            snapshot: self.db.snapshot(),
        }
    }

    /// Baseline for benchmarks: raw RocksDB put + fsync of `value` under `key`, in the
    /// meta family of this same database (same disk, same WAL).
    pub fn raw_put_sync(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let cf = self
            .cf(Family::Meta)
            .map_err(|e| StorageError::Write(e.0))?;
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db
            .put_cf_opt(&cf, key, value, &opts)
            .map_err(|e| StorageError::Write(e.to_string()))
    }

    /// Baseline for benchmarks: one raw RocksDB `WriteBatch` of `rows` into the Raft log
    /// column family of this same database, written with `sync = true` (what appending
    /// those bytes costs with nothing of the Raft store around it). Callers pick keys
    /// no Raft group uses.
    pub fn raw_log_batch_sync(&self, rows: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StorageError> {
        let cf = self.raft_cf(RaftCf::Log).map_err(StorageError::Write)?;
        let mut batch = WriteBatch::default();
        for (key, value) in rows {
            batch.put_cf(&cf, key, value);
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db
            .write_opt(batch, &opts)
            .map_err(|e| StorageError::Write(e.to_string()))
    }

    /// Flushes memtables to SST files (used before a clean shutdown).
    pub fn flush(&self) -> Result<(), StorageError> {
        for f in Family::ALL {
            let cf = self.cf(f).map_err(|e| StorageError::Write(e.0))?;
            self.db
                .flush_cf(&cf)
                .map_err(|e| StorageError::Write(e.to_string()))?;
        }
        Ok(())
    }
}

/// An atomic write over the data families and the Raft column families, assembled in
/// memory and written by [`Batch::commit`] as one RocksDB `WriteBatch`: after a crash
/// either all of it is on disk or none of it. Operations take effect in the order they
/// were added (a put after a range delete of its key survives).
pub(crate) struct Batch {
    storage: Storage,
    inner: WriteBatch,
}

impl Batch {
    pub(crate) fn put_raft(
        &mut self,
        cf: RaftCf,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StorageError> {
        let handle = self.storage.raft_cf(cf).map_err(StorageError::Write)?;
        self.inner.put_cf(&handle, key, value);
        Ok(())
    }

    pub(crate) fn delete_raft(&mut self, cf: RaftCf, key: &[u8]) -> Result<(), StorageError> {
        let handle = self.storage.raft_cf(cf).map_err(StorageError::Write)?;
        self.inner.delete_cf(&handle, key);
        Ok(())
    }

    /// Deletes every record of `cf` with `from <= key < to`.
    pub(crate) fn delete_raft_range(
        &mut self,
        cf: RaftCf,
        from: &[u8],
        to: &[u8],
    ) -> Result<(), StorageError> {
        let handle = self.storage.raft_cf(cf).map_err(StorageError::Write)?;
        self.inner.delete_range_cf(&handle, from, to);
        Ok(())
    }

    pub(crate) fn put(
        &mut self,
        family: Family,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StorageError> {
        let handle = family_cf(&self.storage, family)?;
        self.inner.put_cf(&handle, key, value);
        Ok(())
    }

    /// Deletes every key of `family` that starts with `prefix` (as committed before this
    /// batch; use [`Batch::add_writes`] to also cover puts added earlier to this batch).
    pub(crate) fn delete_prefix(
        &mut self,
        family: Family,
        prefix: &[u8],
    ) -> Result<(), StorageError> {
        self.delete_prefix_after(family, prefix, &[])
    }

    /// Adds twin-state writes, in order.
    pub(crate) fn add_writes(&mut self, writes: &[&Write]) -> Result<(), StorageError> {
        for (i, w) in writes.iter().enumerate() {
            match w {
                Write::Put { family, key, value } => self.put(*family, key, value)?,
                Write::Delete { family, key } => {
                    let handle = family_cf(&self.storage, *family)?;
                    self.inner.delete_cf(&handle, key);
                }
                Write::DeletePrefix { family, prefix } => {
                    self.delete_prefix_after(*family, prefix, &writes[..i])?
                }
            }
        }
        Ok(())
    }

    /// A prefix delete is one range delete, except for a prefix of all 0xff bytes, which
    /// has no finite exclusive end: that one deletes key by key, both the committed keys
    /// and the keys that `earlier` writes of this batch put (a range delete would cover
    /// those by itself; a committed-keys scan does not see them).
    fn delete_prefix_after(
        &mut self,
        family: Family,
        prefix: &[u8],
        earlier: &[&Write],
    ) -> Result<(), StorageError> {
        let handle = family_cf(&self.storage, family)?;
        if let Some(end) = keys::prefix_end(prefix) {
            self.inner.delete_range_cf(&handle, prefix, &end);
            return Ok(());
        }
        for item in self
            .storage
            .db
            .iterator_cf(&handle, IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, _) = item.map_err(|e| StorageError::Write(e.to_string()))?;
            if !k.starts_with(prefix) {
                break;
            }
            self.inner.delete_cf(&handle, k);
        }
        for w in earlier {
            if let Write::Put { family: f, key, .. } = w {
                if *f == family && key.starts_with(prefix) {
                    self.inner.delete_cf(&handle, key);
                }
            }
        }
        Ok(())
    }

    /// Writes the whole batch atomically.
    pub(crate) fn commit(self, durability: Durability) -> Result<(), StorageError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(durability == Durability::Fsync && self.storage.sync);
        self.storage
            .db
            .write_opt(self.inner, &opts)
            .map_err(|e| StorageError::Write(e.to_string()))
    }
}

fn family_cf(storage: &Storage, family: Family) -> Result<&rocksdb::ColumnFamily, StorageError> {
    storage.cf(family).map_err(|e| StorageError::Write(e.0))
}

/// A point-in-time view of the database (a RocksDB snapshot), for reads that must agree
/// with each other, such as a Raft snapshot's data and its applied log id.
pub(crate) struct ReadView<'a> {
    storage: &'a Storage,
    snapshot: rocksdb::Snapshot<'a>,
}

impl ReadView<'_> {
    pub(crate) fn raft_get(&self, cf: RaftCf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let handle = self.storage.raft_cf(cf).map_err(StorageError::Read)?;
        self.snapshot
            .get_cf(&handle, key)
            .map_err(|e| StorageError::Read(e.to_string()))
    }

    /// Every `(key, value)` of `family` whose key starts with `prefix`, in key order, as
    /// of the view's point in time.
    pub(crate) fn scan_prefix(
        &self,
        family: Family,
        prefix: &[u8],
    ) -> Result<impl Iterator<Item = Result<Entry, StorageError>> + '_, StorageError> {
        let handle = self
            .storage
            .cf(family)
            .map_err(|e| StorageError::Read(e.0))?;
        let mut ro = ReadOptions::default();
        if let Some(end) = keys::prefix_end(prefix) {
            ro.set_iterate_upper_bound(end);
        }
        let prefix = prefix.to_vec();
        let it = self.snapshot.iterator_cf_opt(
            &handle,
            ro,
            IteratorMode::From(&prefix, Direction::Forward),
        );
        Ok(it
            .map(|item| {
                item.map(|(k, v)| (k.into_vec(), v.into_vec()))
                    .map_err(|e| StorageError::Read(e.to_string()))
            })
            .take_while(move |item| match item {
                Ok((k, _)) => k.starts_with(&prefix),
                Err(_) => true,
            }))
    }
}

impl StateRead for Storage {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let cf = self.cf(family)?;
        self.db
            .get_cf(&cf, key)
            .map_err(|e| StoreError(e.to_string()))
    }

    fn scan(
        &self,
        family: Family,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let cf = self.cf(family)?;
        let mut ro = ReadOptions::default();
        if let Some(end) = keys::prefix_end(prefix) {
            ro.set_iterate_upper_bound(end);
        }
        let start: Vec<u8> = match after {
            Some(a) if a >= prefix => {
                let mut s = a.to_vec();
                s.push(0); // the smallest key strictly after `a`
                s
            }
            _ => prefix.to_vec(),
        };
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(&cf, ro, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| StoreError(e.to_string()))?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(f: Family, k: &str, v: &str) -> Write {
        Write::Put {
            family: f,
            key: k.as_bytes().to_vec(),
            value: v.as_bytes().to_vec(),
        }
    }

    #[test]
    fn commit_scan_and_prefix_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path(), 8, &StorageConfig::default()).unwrap();
            s.commit(vec![
                put(Family::Twins, "a1", "1"),
                put(Family::Twins, "a2", "2"),
                put(Family::Twins, "b1", "3"),
            ])
            .unwrap();
            let got = s.scan(Family::Twins, b"a", None, 10).unwrap();
            assert_eq!(got.len(), 2);
            let after = s.scan(Family::Twins, b"a", Some(b"a1"), 10).unwrap();
            assert_eq!(after, vec![(b"a2".to_vec(), b"2".to_vec())]);
            s.commit(vec![Write::DeletePrefix {
                family: Family::Twins,
                prefix: b"a".to_vec(),
            }])
            .unwrap();
        }
        let s = Storage::open(dir.path(), 8, &StorageConfig::default()).unwrap();
        assert_eq!(
            s.scan(Family::Twins, b"", None, 10).unwrap(),
            vec![(b"b1".to_vec(), b"3".to_vec())]
        );
        assert_eq!(s.get(Family::Twins, b"a1").unwrap(), None);
    }

    #[test]
    fn a_directory_of_an_older_layout_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Storage::open(dir.path(), 8, &StorageConfig::default()).unwrap();
            // What a layout-1 directory looks like: a shard count and no layout record.
            s.commit(vec![Write::Delete {
                family: Family::Meta,
                key: keys::meta(SYSTEM_TENANT, MetaKind::Config, "layout"),
            }])
            .unwrap();
        }
        let err = Storage::open(dir.path(), 8, &StorageConfig::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("storage layout 1") && err.contains("new --data-dir"),
            "{err}"
        );
    }

    #[test]
    fn shard_count_cannot_change() {
        let dir = tempfile::tempdir().unwrap();
        drop(Storage::open(dir.path(), 8, &StorageConfig::default()).unwrap());
        let err = Storage::open(dir.path(), 16, &StorageConfig::default())
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                StorageError::ShardCountMismatch {
                    stored: 8,
                    configured: 16,
                    ..
                }
            ),
            "{err}"
        );
    }
}
