//! A linearizability checker for histories of reads and writes on a
//! key/value store whose keys are independent read/write registers.
//!
//! Record what clients observed as a [`History`] (directly, or with the
//! thread-safe [`Recorder`]), then [`check`] it:
//!
//! ```
//! use doppel_lincheck::{check, CheckResult, History};
//! let mut h = History::new();
//! h.write(1, "x", "a", 0, Some(10)); // client 1 wrote "a" during [0, 10]
//! h.write(2, "x", "b", 20, Some(30));
//! h.read(3, "x", Some("a".into()), 40, Some(50)); // stale: "b" was already acknowledged
//! match check(&h, |_| None) {
//!     CheckResult::NotLinearizable { key, explanation } => {
//!         assert_eq!(key, "x");
//!         println!("{explanation}");
//!     }
//!     other => panic!("{other}"),
//! }
//! ```
//!
//! # Model
//!
//! Every key is a register holding `Option<String>` (`None` = absent, the
//! initial content is given by the `initial` function). A write sets it, a
//! read returns it. A history is *linearizable* if there is a total order of
//! its operations that (1) respects real time — if A completed before B was
//! invoked (`A.complete_ns < B.invoke_ns`; equal timestamps count as
//! concurrent), A comes first — and (2) is a legal sequential register
//! history: every read returns the value of the latest preceding write (or
//! the initial value).
//!
//! Operations with an unknown outcome (`complete_ns: None`, e.g. a timeout):
//! a *write* may have taken effect at any point after its invocation, or
//! never; a *read* tells nothing and is ignored.
//!
//! # Algorithm
//!
//! 1. **Partition by key.** Linearizability is compositional (Herlihy &
//!    Wing's locality, "P-compositionality" in porcupine's terms): a history
//!    of independent objects is linearizable iff each object's sub-history
//!    is. Each key is checked on its own, which keeps the exponential part
//!    small.
//! 2. **Cheap checks per key**, each of which only rejects histories that
//!    have no linearization, with a to-the-point explanation:
//!    - a read of a value that no write on the key wrote (and that is not
//!      the initial value);
//!    - for a read whose value has a single possible source (one write of
//!      it, or the initial value that no write repeats): a *future read*
//!      (the source was invoked after the read completed) or a *stale read*
//!      (another write was invoked after the source completed and completed
//!      before the read was invoked, so it overwrote the value in every
//!      linearization). O(n log n) with a prefix maximum over writes sorted
//!      by completion time.
//!
//!    Unknown-outcome writes whose value no read returned are then dropped:
//!    in any linearization such a write can be moved out (no read can sit
//!    between it and the next write, since it would have to return its
//!    value), so they cannot matter.
//! 3. **Wing & Gong's search with Lowe's memoization** (G. Lowe, *Testing for
//!    linearizability*, 2017; the same as porcupine's `checkSingle`). Each op
//!    becomes a *call* entry at its invocation time and a *return* entry at
//!    its completion time; unknown-outcome writes return at +∞. The entries
//!    form a doubly linked list sorted by time (calls before returns at equal
//!    times). The search walks the list from the head:
//!    - at a call entry, try to linearize that op now: apply it to the
//!      register model; if legal *and* the pair (set of linearized ops,
//!      resulting register value) has not been seen before, push it on a
//!      stack, remove ("lift") its call and return entries from the list and
//!      restart from the head; otherwise move to the next entry;
//!    - at a return entry, the op it belongs to has completed but could not
//!      be linearized before everything that comes after it: backtrack — pop
//!      the last linearized op, restore the register value, put its entries
//!      back ("unlift") and continue after its call entry. An empty stack
//!      means there is no linearization;
//!    - the search succeeds as soon as every *completed* op is linearized.
//!      Unknown-outcome writes still pending then are placed at the end of
//!      the linearization — equivalent to never taking effect, since nothing
//!      observes the register afterwards. Because their return entries are at
//!      +∞, they never force a backtrack, and they can be linearized anywhere
//!      after their invocation: this covers both "took effect" and "never".
//!
//!    One register-specific pruning makes the search fast on histories with
//!    many concurrent clients: a write is not linearized over the current
//!    value `v` while some read of `v` is still to be linearized and no write
//!    of `v` is left (the read could never be satisfied any more). Without
//!    it, 16 clients on one key took 20+ s for 2,000 ops; with it, ~10 ms.
//!
//!    The memo keeps, per register value, the sets of linearized ops already
//!    explored. A set is stored compactly as the bitset words between its
//!    first not-all-ones word and its last non-zero word (ops long done are
//!    all linearized, ops not yet invoked are not), so a memo entry costs
//!    O(concurrency) rather than O(history length).
//!
//!    The dead end furthest in time (then deepest) is kept to build the
//!    explanation of [`CheckResult::NotLinearizable`]: the earliest completed
//!    op past which no linearization gets, why it could not be linearized
//!    there (the register value, the writes it needed, the reads pinning the
//!    register's value, ...), the tail of the partial linearization that got
//!    there, and the ops pending around it. When a single read is wrong it
//!    is normally that read, or a read of the pinned value.
//!
//! # Complexity caveat
//!
//! Checking linearizability is NP-complete in general (Gibbons & Korach,
//! 1997), even for a single register when values repeat. With memoization
//! the search visits at most (number of distinct sets of linearized ops
//! consistent with real time) × (number of values) states: for a key whose
//! ops overlap at most `c` at a time that is roughly `O(n · 2^c)` — linear in
//! the history length for the modest concurrency of a test cluster,
//! exponential in the number of concurrently pending ops. Histories that are
//! *not* linearizable are the worst case, since everything before the point
//! of failure is explored before giving up (the cheap checks of step 2
//! catch the common stale/future reads without searching); so are repeated
//! values (the pruning and the cheap checks need a value's writer to be
//! known) and many unknown-outcome writes whose value is read (each stays
//! pending from its invocation until it is linearized). To stay fast: write
//! unique values (e.g. `"{client}-{seq}"`), keep the number of concurrent
//! clients per key modest, spread ops over several keys, and use
//! [`check_with_budget`] so that a pathological history yields
//! [`CheckResult::Timeout`] instead of hanging.
//!
//! # Timestamps
//!
//! All `invoke_ns`/`complete_ns` of a history must come from one monotonic
//! clock, taken *before* the request is sent and *after* the response is
//! received ([`Recorder`] does this). Client ids are informational.
//!
//! # Use from an integration test
//!
//! Share one [`Recorder`] between the client tasks; around each HTTP call do
//! `let w = rec.begin_write(client, key, value)` then `w.ok()` on success,
//! `w.unknown()` on a timeout or lost connection (dropping the guard does
//! the same), `w.failed()` only when the write certainly did not apply;
//! `let r = rec.begin_read(client, key)` then `r.ok(value)` (reads that fail
//! are simply not recorded). At the end, `check(&rec.history(), |_| None)`;
//! on failure, [`History::save`] the history next to the test output so it
//! can be replayed with [`History::load`] + [`check`].

mod check;
mod history;

pub use check::{check, check_with_budget, CheckResult, DEFAULT_KEY_BUDGET};
pub use history::{Event, History, Key, Op, PendingRead, PendingWrite, Recorder, Value};

#[cfg(test)]
mod tests;
