//! Group commit: the single-node path from a proposed [`Command`] to a durable,
//! applied change. (The cluster issue puts openraft in front of the same state machine.)
//!
//! ```text
//!  handlers ──propose()──▶ bounded queue ──▶ writer thread
//!                                              │ drain up to `max_batch` proposals
//!                                              │ apply each in its own Overlay
//!                                              │   (a rejected command leaves no trace)
//!                                              │ one WriteBatch + fsync for the group
//!                                              └─▶ reply to every proposer
//! ```
//!
//! Contract: a proposer gets `Ok` only after the group holding its command is fsynced,
//! and the group's change events ([`Proposer::subscribe`]) are published only then, in
//! commit order.
//! If a commit fails, every proposer of that group gets an error and the writer stops
//! accepting work (the in-memory model cache may be ahead of disk): the node must be
//! restarted, and recovers from what is on disk.

use crate::storage::Storage;
use doppel_twins::{
    change_event, ChangeEvent, Command, Outcome, Overlay, Stamp, StateMachine, TwinError,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error(transparent)]
    Rejected(#[from] TwinError),
    #[error("the write queue is full; retry shortly")]
    Overloaded,
    #[error("storage failed ({0}); the node refuses writes until it is restarted")]
    StorageFailed(String),
}

struct Proposal {
    cmd: Command,
    stamp: Stamp,
    reply: oneshot::Sender<Result<Outcome, ProposeError>>,
}

/// Counters for `/metrics` and benchmarks.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub commands: AtomicU64,
    pub rejected: AtomicU64,
    pub groups: AtomicU64,
}

/// How many change events a slow watcher may fall behind before it misses some.
const EVENT_BUFFER: usize = 4096;

#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Proposal>,
    events: broadcast::Sender<Arc<ChangeEvent>>,
    failed: Arc<AtomicBool>,
    pub stats: Arc<CommitStats>,
}

impl Proposer {
    /// Starts the writer thread over `storage` and returns the handle to propose with.
    pub fn start(storage: Storage, shard_count: u32, queue: usize, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let failed = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(CommitStats::default());
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let writer = Writer {
            events: events.clone(),
            storage,
            machine: StateMachine::new(shard_count),
            failed: failed.clone(),
            stats: stats.clone(),
            max_batch: max_batch.max(1),
        };
        std::thread::Builder::new()
            .name("doppel-commit".into())
            .spawn(move || writer.run(rx))
            .expect("spawning the commit thread");
        Proposer {
            tx,
            events,
            failed,
            stats,
        }
    }

    /// A stream of every durable change, in commit order. A receiver that falls more
    /// than a few thousand events behind gets `RecvError::Lagged` and continues.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        self.events.subscribe()
    }

    /// Proposes a command stamped now; resolves once it is durable (or rejected).
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, ProposeError> {
        let stamp = Stamp {
            now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            nonce: rand::random(),
        };
        self.propose_stamped(cmd, stamp).await
    }

    pub async fn propose_stamped(
        &self,
        cmd: Command,
        stamp: Stamp,
    ) -> Result<Outcome, ProposeError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(ProposeError::StorageFailed(
                "an earlier commit failed".into(),
            ));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Proposal { cmd, stamp, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ProposeError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => {
                    ProposeError::StorageFailed("the commit thread stopped".into())
                }
            })?;
        rx.await.unwrap_or_else(|_| {
            Err(ProposeError::StorageFailed(
                "the commit thread stopped".into(),
            ))
        })
    }
}

struct Writer {
    events: broadcast::Sender<Arc<ChangeEvent>>,
    storage: Storage,
    machine: StateMachine,
    failed: Arc<AtomicBool>,
    stats: Arc<CommitStats>,
    max_batch: usize,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Proposal>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(p) => group.push(p),
                    Err(_) => break,
                }
            }
            if !self.commit_group(group) {
                // Drain and fail everything still queued; refuse all future work.
                rx.close();
                while let Ok(p) = rx.try_recv() {
                    let _ = p.reply.send(Err(ProposeError::StorageFailed(
                        "an earlier commit failed".into(),
                    )));
                }
                return;
            }
        }
    }

    fn commit_group(&mut self, group: Vec<Proposal>) -> bool {
        let storage = self.storage.clone();
        let mut overlay = Overlay::new(&storage);
        let mut results = Vec::with_capacity(group.len());
        for p in &group {
            // A bug in applying one command (a panic) must not take the commit thread,
            // and with it every later write, down: that command is refused (its
            // overlay is dropped, so it leaves no trace) and the group goes on.
            let machine = &mut self.machine;
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut tx = Overlay::new(&overlay);
                machine
                    .apply(&p.cmd, &p.stamp, &mut tx)
                    .map(|o| (o, tx.into_writes()))
            }))
            .unwrap_or_else(|_| {
                tracing::error!(command = ?p.cmd, "applying a command panicked; it was refused");
                Err(TwinError::Store(doppel_twins::StoreError(
                    "internal error while applying the command; it was not applied".into(),
                )))
            });
            match applied {
                Ok((outcome, writes)) => {
                    overlay.extend(writes);
                    results.push(Ok(outcome));
                }
                Err(e) => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    results.push(Err(ProposeError::Rejected(e)));
                }
            }
        }
        self.stats
            .commands
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        let ok = if overlay.is_empty() {
            Ok(())
        } else {
            self.stats.groups.fetch_add(1, Ordering::Relaxed);
            storage.commit(overlay.into_writes())
        };
        match ok {
            Ok(()) => {
                for (p, r) in group.into_iter().zip(results) {
                    if let Ok(outcome) = &r {
                        if let Some(event) = change_event(&p.cmd, outcome, &p.stamp) {
                            // No watcher is not an error.
                            let _ = self.events.send(Arc::new(event));
                        }
                    }
                    let _ = p.reply.send(r);
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; refusing further writes until restart");
                self.failed.store(true, Ordering::Release);
                for p in group {
                    let _ = p
                        .reply
                        .send(Err(ProposeError::StorageFailed(e.to_string())));
                }
                false
            }
        }
    }
}
