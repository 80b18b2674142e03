//! The node's one RocksDB: column families per [`Family`], atomic fsynced write batches.
//!
//! This is the only module in doppel that names `rocksdb`. Everything above it sees
//! doppel types: [`StateRead`] for reads and `Vec<Write>` for changes.
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
        let cfs = Family::ALL.iter().map(|f| {
            let mut cf_opts = Options::default();
            let mut block = rocksdb::BlockBasedOptions::default();
            block.set_block_cache(&cache);
            cf_opts.set_block_based_table_factory(&block);
            cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(f.name(), cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| open_err(e.to_string()))?;
        let storage = Storage {
            db: Arc::new(db),
            sync: config.sync,
            path: path.to_owned(),
        };
        storage.check_shard_count(shard_count)?;
        Ok(storage)
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
                Ok(())
            }
            Some(_) => Err(StorageError::Open {
                path: self.path.clone(),
                reason: "corrupt shard_count record".into(),
            }),
            None => self.commit(vec![Write::Put {
                family: Family::Meta,
                key,
                value: configured.to_be_bytes().to_vec(),
            }]),
        }
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

    /// Writes all `writes` atomically, fsynced when the store is configured to sync.
    pub fn commit(&self, writes: Vec<Write>) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        for w in writes {
            match w {
                Write::Put { family, key, value } => batch.put_cf(
                    &self.cf(family).map_err(|e| StorageError::Write(e.0))?,
                    key,
                    value,
                ),
                Write::Delete { family, key } => {
                    batch.delete_cf(&self.cf(family).map_err(|e| StorageError::Write(e.0))?, key)
                }
                Write::DeletePrefix { family, prefix } => {
                    let cf = self.cf(family).map_err(|e| StorageError::Write(e.0))?;
                    match keys::prefix_end(&prefix) {
                        Some(end) => batch.delete_range_cf(&cf, prefix, end),
                        None => {
                            // A prefix of all 0xff bytes has no finite end; delete key by key.
                            for item in self
                                .db
                                .iterator_cf(&cf, IteratorMode::From(&prefix, Direction::Forward))
                            {
                                let (k, _) =
                                    item.map_err(|e| StorageError::Write(e.to_string()))?;
                                if !k.starts_with(&prefix) {
                                    break;
                                }
                                batch.delete_cf(&cf, k);
                            }
                        }
                    }
                }
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(self.sync);
        self.db
            .write_opt(batch, &opts)
            .map_err(|e| StorageError::Write(e.to_string()))
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
