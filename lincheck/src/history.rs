//! Histories of register operations: the input of [`crate::check`].

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A register name. Every key is an independent register.
pub type Key = String;

/// The content of a register: `None` means absent (never written, or not
/// present in the initial state).
pub type Value = Option<String>;

/// One operation on one register.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    /// Overwrite the register with `value`.
    Write { key: Key, value: String },
    /// Read the register; `result` is what the read returned.
    Read { key: Key, result: Value },
}

impl Op {
    /// The register this operation acts on.
    pub fn key(&self) -> &Key {
        match self {
            Op::Write { key, .. } | Op::Read { key, .. } => key,
        }
    }

    /// `true` for [`Op::Write`].
    pub fn is_write(&self) -> bool {
        matches!(self, Op::Write { .. })
    }
}

/// One operation as observed by a client: its invocation and (maybe) its
/// completion time.
///
/// All timestamps of a history must come from one monotonic clock (for
/// instance [`Recorder::now_ns`]). `invoke_ns` must be taken *before* the
/// request leaves the client and `complete_ns` *after* the response arrived;
/// the checker only relies on "A completed before B was invoked" being true
/// in real time whenever `A.complete_ns < B.invoke_ns`. Equal timestamps
/// count as concurrent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Event {
    /// Who issued the operation. Informational only: linearizability is
    /// defined by real-time order, the checker does not use it.
    pub client: u64,
    pub op: Op,
    pub invoke_ns: u64,
    /// `None`: the outcome is unknown (timeout, connection lost). Such a
    /// write may take effect at any time after `invoke_ns`, or never; such a
    /// read tells nothing and is ignored by the checker. A `complete_ns`
    /// smaller than `invoke_ns` is treated as equal to it.
    #[serde(default)]
    pub complete_ns: Option<u64>,
}

/// A recorded history: a bag of [`Event`]s (order does not matter; the
/// timestamps do). Serialize it with [`History::save`] so that a failing run
/// can be replayed with [`History::load`] + [`crate::check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub events: Vec<Event>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Record a write. `complete_ns: None` = outcome unknown.
    pub fn write(
        &mut self,
        client: u64,
        key: impl Into<Key>,
        value: impl Into<String>,
        invoke_ns: u64,
        complete_ns: Option<u64>,
    ) {
        self.push(Event {
            client,
            op: Op::Write {
                key: key.into(),
                value: value.into(),
            },
            invoke_ns,
            complete_ns,
        });
    }

    /// Record a read that returned `result`. `complete_ns: None` = outcome
    /// unknown (the checker ignores such reads).
    pub fn read(
        &mut self,
        client: u64,
        key: impl Into<Key>,
        result: Value,
        invoke_ns: u64,
        complete_ns: Option<u64>,
    ) {
        self.push(Event {
            client,
            op: Op::Read {
                key: key.into(),
                result,
            },
            invoke_ns,
            complete_ns,
        });
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.events.iter()
    }

    /// Pretty-printed JSON (`{"events":[{"client":..,"op":{"type":"write",..},..}]}`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a History always serializes")
    }

    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Write [`History::to_json`] to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.to_json())
    }

    /// Read a history written by [`History::save`].
    pub fn load(path: impl AsRef<Path>) -> io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Self::from_json(&text).map_err(io::Error::other)
    }
}

impl Extend<Event> for History {
    fn extend<I: IntoIterator<Item = Event>>(&mut self, iter: I) {
        self.events.extend(iter);
    }
}

impl FromIterator<Event> for History {
    fn from_iter<I: IntoIterator<Item = Event>>(iter: I) -> Self {
        History {
            events: iter.into_iter().collect(),
        }
    }
}

impl<'a> IntoIterator for &'a History {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

/// A thread-safe, cloneable history recorder with its own monotonic clock,
/// for recording concurrent clients (threads or async tasks).
///
/// ```
/// use doppel_lincheck::{check, CheckResult, Recorder};
/// let rec = Recorder::new();
/// let w = rec.begin_write(1, "k", "v1"); // timestamp taken here: call *before* sending
/// // ... send the request, await the response ...
/// w.ok(); // acknowledged; `w.unknown()` on timeout, `w.failed()` if surely not applied
/// let r = rec.begin_read(2, "k");
/// r.ok(Some("v1".to_string()));
/// assert!(check(&rec.history(), |_| None).is_linearizable());
/// ```
#[derive(Clone, Debug)]
pub struct Recorder {
    epoch: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            epoch: Instant::now(),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Nanoseconds since this recorder (or the one it was cloned from) was
    /// created.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Record a complete event (timestamps from [`Recorder::now_ns`]).
    pub fn record(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }

    /// Start a write: takes the invoke timestamp now. If the returned guard
    /// is dropped without being resolved, the write is recorded with an
    /// unknown outcome (the safe assumption).
    pub fn begin_write(
        &self,
        client: u64,
        key: impl Into<Key>,
        value: impl Into<String>,
    ) -> PendingWrite {
        PendingWrite {
            rec: self.clone(),
            pending: Some((client, key.into(), value.into(), self.now_ns())),
        }
    }

    /// Start a read: takes the invoke timestamp now. A read that is dropped
    /// unresolved (or resolved with [`PendingRead::unknown`]) is not recorded.
    pub fn begin_read(&self, client: u64, key: impl Into<Key>) -> PendingRead {
        PendingRead {
            rec: self.clone(),
            client,
            key: key.into(),
            invoke_ns: self.now_ns(),
        }
    }

    /// A snapshot of everything recorded so far.
    pub fn history(&self) -> History {
        History {
            events: self
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// A write in flight, see [`Recorder::begin_write`].
#[must_use = "resolve with ok(), unknown() or failed(); dropping records an unknown outcome"]
#[derive(Debug)]
pub struct PendingWrite {
    rec: Recorder,
    pending: Option<(u64, Key, String, u64)>,
}

impl PendingWrite {
    /// The write was acknowledged: completion timestamp taken now.
    pub fn ok(mut self) {
        let now = self.rec.now_ns();
        self.finish(Some(now));
    }

    /// Timed out / connection lost: the write may or may not take effect.
    pub fn unknown(mut self) {
        self.finish(None);
    }

    /// The write *certainly* did not take effect (e.g. rejected before being
    /// applied): nothing is recorded. When in doubt use [`PendingWrite::unknown`].
    pub fn failed(mut self) {
        self.pending = None;
    }

    fn finish(&mut self, complete_ns: Option<u64>) {
        if let Some((client, key, value, invoke_ns)) = self.pending.take() {
            self.rec.record(Event {
                client,
                op: Op::Write { key, value },
                invoke_ns,
                complete_ns,
            });
        }
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// A read in flight, see [`Recorder::begin_read`].
#[must_use = "resolve with ok(result); an unresolved read is not recorded"]
#[derive(Debug)]
pub struct PendingRead {
    rec: Recorder,
    client: u64,
    key: Key,
    invoke_ns: u64,
}

impl PendingRead {
    /// The read returned `result`: completion timestamp taken now.
    pub fn ok(self, result: Value) {
        let complete_ns = self.rec.now_ns();
        let PendingRead {
            rec,
            client,
            key,
            invoke_ns,
        } = self;
        rec.record(Event {
            client,
            op: Op::Read { key, result },
            invoke_ns,
            complete_ns: Some(complete_ns),
        });
    }

    /// The read failed or timed out: it tells nothing, nothing is recorded.
    pub fn unknown(self) {}
}
