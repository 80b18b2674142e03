//! Appending a batch of Raft log entries through doppel's log store (`LogStore::append`,
//! awaited until it reports the entries fsynced, as openraft awaits it before counting
//! them replicated), beside its floor: one raw RocksDB `WriteBatch` of the same keys and
//! value bytes, written with `sync = true` into the same column family of the same
//! database (same disk, same WAL), measured in the same run.
//!
//! Each entry is what a leader replicates for one twin PATCH: the state machine's writes
//! and the change event. The floor's values are the log store's own records (a format
//! byte and the entry's bincode), under keys of a group no store uses.
//!
//! The store's time includes encoding the entries; the floor's rows are prepared
//! outside the timing.
//!
//! The database lives under `CARGO_TARGET_TMPDIR` (a real disk, so fsyncs are real;
//! `/tmp` may be a tmpfs).

mod support;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use doppel_cluster::raft::store::LogStore;
use doppel_cluster::raft::{Entry, ShardRequest};
use doppel_cluster::{Storage, StorageConfig};
use doppel_twins::{change_event, Overlay, StateMachine, WireEvent};
use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use std::hint::black_box;
use support::{plant, stamp};

/// The group whose log the store appends to.
const GROUP: u32 = 1;
/// The floor's keys: a group prefix no store uses.
const FLOOR_GROUP: u32 = 0x7fff_fff0;
/// The record format byte the log store puts before each entry's bincode.
const FORMAT_V1: u8 = 1;

/// The entry a leader replicates for one twin PATCH.
fn patch_request() -> ShardRequest {
    let mut sm = StateMachine::new(64);
    let mem = plant(&mut sm);
    let cmd = support::patch();
    let at = stamp(100);
    let mut out = Overlay::new(&mem);
    let outcome = sm.apply(&cmd, &at, &mut out).expect("the patch applies");
    let events = change_event(&cmd, &outcome, &at)
        .map(|e| vec![WireEvent::from(&e)])
        .unwrap_or_default();
    ShardRequest {
        writes: out.into_writes(),
        events,
    }
}

fn entries(req: &ShardRequest, first: u64, n: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|index| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(req.clone()),
        })
        .collect()
}

fn record(entry: &Entry) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    bincode::serde::encode_into_std_write(entry, &mut out, bincode::config::standard())
        .expect("an entry encodes");
    out
}

fn floor_rows(entries: &[Entry]) -> Vec<(Vec<u8>, Vec<u8>)> {
    entries
        .iter()
        .map(|e| {
            let mut key = FLOOR_GROUP.to_be_bytes().to_vec();
            key.extend_from_slice(&e.log_id.index.to_be_bytes());
            (key, record(e))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    let storage =
        Storage::open(dir.path(), 8, &StorageConfig::default()).expect("the database opens");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let req = patch_request();
    let mut log = LogStore::new(storage.clone(), GROUP);
    let mut next = 1u64;
    let mut floor_next = 1u64;
    for n in [1u64, 64] {
        let sample = entries(&req, 1, n);
        let bytes: usize = sample.iter().map(|e| record(e).len()).sum();
        println!(
            "raft log append, {n} entries: {bytes} bytes of records ({} writes, {} events \
             per entry)",
            req.writes.len(),
            req.events.len()
        );
        let mut g = c.benchmark_group(format!("raft log append ({n} entries, {bytes} B)"));
        g.bench_function("doppel: LogStore::append until fsynced", |b| {
            b.iter_batched(
                || {
                    let batch = entries(&req, next, n);
                    next += n;
                    batch
                },
                |batch| {
                    rt.block_on(log.blocking_append(batch))
                        .expect("the append succeeds")
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function("floor: raw WriteBatch, sync=true", |b| {
            b.iter_batched(
                || {
                    let rows = floor_rows(&entries(&req, floor_next, n));
                    floor_next += n;
                    rows
                },
                |rows| {
                    storage
                        .raw_log_batch_sync(black_box(&rows))
                        .expect("the batch is written")
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
