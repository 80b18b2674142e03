//! The checker: per-key partitioning + Wing–Gong–Lowe search with
//! memoization. See the crate documentation for the algorithm.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use crate::history::{History, Key, Value};

/// Time budget per key used by [`check`].
pub const DEFAULT_KEY_BUDGET: Duration = Duration::from_secs(60);

/// How many ops of the partial linearization an explanation shows.
const TAIL: usize = 8;
/// At most this many alternative (pending) ops are listed in an explanation.
const MAX_LISTED: usize = 12;

/// Outcome of [`check`] / [`check_with_budget`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Every key's sub-history is linearizable. `ops` counts the events that
    /// were checked (reads with an unknown outcome are not counted).
    Linearizable { keys: usize, ops: usize },
    /// `key`'s sub-history has no linearization. `explanation` shows, human
    /// readable, the window of ops where the search got stuck. When several
    /// keys fail, the first in key order is reported.
    NotLinearizable { key: Key, explanation: String },
    /// The search on `key` exceeded its budget (and no other key was found
    /// not linearizable).
    Timeout { key: Key },
}

impl CheckResult {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckResult::Linearizable { .. })
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Linearizable { keys, ops } => {
                write!(f, "linearizable ({ops} ops on {keys} keys)")
            }
            CheckResult::NotLinearizable { key, explanation } => {
                write!(f, "NOT linearizable (key {key:?}):\n{explanation}")
            }
            CheckResult::Timeout { key } => {
                write!(f, "linearizability check of key {key:?} ran out of time")
            }
        }
    }
}

/// [`check_with_budget`] with [`DEFAULT_KEY_BUDGET`] per key.
pub fn check(history: &History, initial: impl Fn(&Key) -> Value) -> CheckResult {
    check_with_budget(history, initial, DEFAULT_KEY_BUDGET)
}

/// Check that `history` is linearizable with respect to a map of independent
/// read/write registers whose initial contents are given by `initial`
/// (`|_| None` for an empty store).
///
/// Keys are checked one after the other (in key order), each with its own
/// time budget `budget_per_key` (`Duration::MAX` = unlimited); a key that
/// runs out of time does not stop the others from being checked.
pub fn check_with_budget(
    history: &History,
    initial: impl Fn(&Key) -> Value,
    budget_per_key: Duration,
) -> CheckResult {
    check_opts(
        history,
        initial,
        Opts {
            budget_per_key,
            static_checks: true,
        },
    )
}

/// Internal knobs (tests exercise the search without the static checks).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Opts {
    pub budget_per_key: Duration,
    /// Run the O(n log n) stale/future-read checks before the search.
    pub static_checks: bool,
}

pub(crate) fn check_opts(
    history: &History,
    initial: impl Fn(&Key) -> Value,
    opts: Opts,
) -> CheckResult {
    let mut by_key: BTreeMap<&Key, Vec<usize>> = BTreeMap::new();
    let mut ops = 0;
    for (i, e) in history.events.iter().enumerate() {
        if !e.op.is_write() && e.complete_ns.is_none() {
            continue; // a read with unknown outcome tells nothing
        }
        ops += 1;
        by_key.entry(e.op.key()).or_default().push(i);
    }
    let keys = by_key.len();
    let mut timed_out = None;
    for (key, idxs) in by_key {
        match check_key(history, key, &idxs, initial(key), opts) {
            KeyOutcome::Ok => {}
            KeyOutcome::Fail(explanation) => {
                return CheckResult::NotLinearizable {
                    key: key.clone(),
                    explanation,
                }
            }
            KeyOutcome::Timeout => {
                timed_out.get_or_insert_with(|| key.clone());
            }
        }
    }
    match timed_out {
        Some(key) => CheckResult::Timeout { key },
        None => CheckResult::Linearizable { keys, ops },
    }
}

enum KeyOutcome {
    Ok,
    Fail(String),
    Timeout,
}

/// One op of a single key's sub-history, values interned.
struct KOp {
    /// Index in `History::events`.
    idx: usize,
    write: bool,
    /// Written value, or read result (0 = absent).
    val: u32,
    invoke: u64,
    /// Clamped to `>= invoke`; `None` = unknown outcome (writes only).
    complete: Option<u64>,
}

/// Values of one key, interned to dense ids; id 0 is "absent".
struct Interner<'a> {
    ids: HashMap<&'a str, u32>,
    names: Vec<Option<&'a str>>,
}

impl<'a> Interner<'a> {
    fn new() -> Self {
        Interner {
            ids: HashMap::new(),
            names: vec![None],
        }
    }

    fn id(&mut self, v: Option<&'a str>) -> u32 {
        let Some(s) = v else { return 0 };
        let next = self.names.len() as u32;
        let id = *self.ids.entry(s).or_insert(next);
        if id == next {
            self.names.push(Some(s));
        }
        id
    }
}

fn check_key(
    history: &History,
    key: &Key,
    idxs: &[usize],
    initial: Value,
    opts: Opts,
) -> KeyOutcome {
    let deadline = Instant::now().checked_add(opts.budget_per_key);
    let mut interner = Interner::new();
    let init = interner.id(initial.as_deref());

    let mut all: Vec<KOp> = Vec::with_capacity(idxs.len());
    for &idx in idxs {
        let e = &history.events[idx];
        let (write, val) = match &e.op {
            crate::Op::Write { value, .. } => (true, interner.id(Some(value))),
            crate::Op::Read { result, .. } => (false, interner.id(result.as_deref())),
        };
        all.push(KOp {
            idx,
            write,
            val,
            invoke: e.invoke_ns,
            complete: e.complete_ns.map(|c| c.max(e.invoke_ns)),
        });
    }
    let names = &interner.names;
    let t0 = all.iter().map(|o| o.invoke).min().unwrap_or(0);

    // Writers of each value (indices into `all`).
    let mut writers: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, o) in all.iter().enumerate() {
        if o.write {
            writers.entry(o.val).or_default().push(i);
        }
    }
    let read: HashSet<u32> = all.iter().filter(|o| !o.write).map(|o| o.val).collect();

    // A read of a value that was never written (nor initial) can never be
    // linearized: say so directly, it is the clearest explanation.
    if let Some(bad) = all
        .iter()
        .filter(|o| !o.write && o.val != init && !writers.contains_key(&o.val))
        .min_by_key(|o| (o.invoke, o.idx))
    {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "key {key:?}: this read returned {}, a value that no write on this key ever wrote \
             (initial value: {}):",
            show_val(names[bad.val as usize]),
            show_val(names[init as usize]),
        );
        s.push_str(&show_op(history, bad, names, t0));
        return KeyOutcome::Fail(s);
    }

    if opts.static_checks {
        if let Some(s) = stale_or_future_read(history, key, &all, &writers, init, names, t0) {
            return KeyOutcome::Fail(s);
        }
    }

    // Unknown-outcome writes whose value nobody read can be dropped: leaving
    // them out of any linearization keeps it valid (no read can sit between
    // such a write and the next write, since it would have to return the
    // write's value).
    let ops: Vec<KOp> = all
        .into_iter()
        .filter(|o| !(o.write && o.complete.is_none() && !read.contains(&o.val)))
        .collect();

    match search(&ops, init, names.len(), deadline) {
        Search::Ok => KeyOutcome::Ok,
        Search::Timeout => KeyOutcome::Timeout,
        Search::Fail(fp) => KeyOutcome::Fail(explain(history, key, &ops, names, &fp)),
    }
}

/// Static necessary conditions, checked in O(n log n) for every read whose
/// value has a single possible source (exactly one write of it and it is not
/// the initial value, or the initial value that no write repeats):
/// - *future read*: the source write was invoked after the read completed;
/// - *stale read*: some other write was invoked after the source completed
///   (or anywhere, for the initial value) and completed before the read was
///   invoked, so it overwrote the value in every linearization.
///
/// Returns the explanation for the earliest such read.
fn stale_or_future_read(
    history: &History,
    key: &Key,
    all: &[KOp],
    writers: &HashMap<u32, Vec<usize>>,
    init: u32,
    names: &[Option<&str>],
    t0: u64,
) -> Option<String> {
    // Completed writes sorted by completion, with the running max of their
    // invocation times (and which write reaches it).
    let mut done: Vec<(u64, u64, usize)> = all
        .iter()
        .enumerate()
        .filter(|(_, o)| o.write)
        .filter_map(|(i, o)| o.complete.map(|c| (c, o.invoke, i)))
        .collect();
    done.sort_unstable();
    let mut latest: Vec<(u64, usize)> = Vec::with_capacity(done.len());
    for &(_, inv, i) in &done {
        let prev = latest.last().copied();
        latest.push(match prev {
            Some(p) if p.0 >= inv => p,
            _ => (inv, i),
        });
    }
    // Latest-invoked write among those completed strictly before `t`.
    let latest_before = |t: u64| {
        let n = done.partition_point(|&(c, _, _)| c < t);
        n.checked_sub(1).map(|k| latest[k])
    };

    let mut found: Option<(u64, usize, String)> = None;
    for r in all.iter().filter(|o| !o.write) {
        let r_done = r.complete.expect("unknown reads are dropped");
        let source = match writers.get(&r.val).map(Vec::as_slice) {
            None if r.val == init => None,
            Some(&[w]) if r.val != init => Some(&all[w]),
            _ => continue, // ambiguous source: leave it to the search
        };
        let why = match source {
            Some(w) if w.invoke > r_done => Some(format!(
                "It returned {}, written only by this write, invoked after the read completed:\n{}",
                show_val(names[r.val as usize]),
                show_op(history, w, names, t0),
            )),
            Some(w) => w.complete.and_then(|wc| {
                let (inv, w2) = latest_before(r.invoke)?;
                (inv > wc).then(|| {
                    format!(
                        "It returned {}, written only by\n{}but that value was definitely \
                         overwritten before the read was invoked, by this write (invoked after \
                         the one above completed, completed before the read was invoked):\n{}",
                        show_val(names[r.val as usize]),
                        show_op(history, w, names, t0),
                        show_op(history, &all[w2], names, t0),
                    )
                })
            }),
            None => latest_before(r.invoke).map(|(_, w2)| {
                format!(
                    "It returned the initial value {}, which no write repeats, but this \
                     write completed before the read was invoked:\n{}",
                    show_val(names[r.val as usize]),
                    show_op(history, &all[w2], names, t0),
                )
            }),
        };
        if let Some(why) = why {
            if found
                .as_ref()
                .is_none_or(|f| (r.invoke, r.idx) < (f.0, f.1))
            {
                found = Some((
                    r.invoke,
                    r.idx,
                    format!("{}{why}", show_op(history, r, names, t0)),
                ));
            }
        }
    }
    found.map(|(_, _, s)| format!("key {key:?}: this read cannot be linearized (#N = index in History::events; times relative to the key's first invocation):\n{s}"))
}

/// The dead end furthest in time (then deepest) the search reached.
struct FailPoint {
    /// Position (in time order) of the return entry the search was stuck at.
    pos: usize,
    /// Number of ops linearized at that point.
    depth: usize,
    /// The completed op whose return entry the search could not get past.
    stuck: usize,
    /// Register value at that point.
    state: u32,
    /// Bitset of linearized ops at that point.
    linearized: Vec<u64>,
    /// Last ops of the partial linearization: (op, value after it).
    tail: Vec<(usize, u32)>,
}

enum Search {
    Ok,
    Fail(FailPoint),
    Timeout,
}

const NIL: usize = usize::MAX;

/// The set of linearized ops, with the bounds of its "frontier": every word
/// before `lo` is all ones (ops linearized long ago), every word from `hi` on
/// is zero (ops not even invoked yet, typically). Memo keys only store the
/// words in between, so the memo costs O(concurrency), not O(n), per state.
struct Bits {
    words: Vec<u64>,
    /// First word that is not all ones.
    lo: usize,
    /// One past the last non-zero word.
    hi: usize,
}

impl Bits {
    fn new(n: usize) -> Self {
        Bits {
            words: vec![0; n.div_ceil(64)],
            lo: 0,
            hi: 0,
        }
    }

    fn set(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] |= 1 << (i % 64);
        self.hi = self.hi.max(w + 1);
        while self.lo < self.words.len() && self.words[self.lo] == u64::MAX {
            self.lo += 1;
        }
    }

    fn clear(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] &= !(1 << (i % 64));
        self.lo = self.lo.min(w);
        while self.hi > 0 && self.words[self.hi - 1] == 0 {
            self.hi -= 1;
        }
    }

    /// A compact key identifying the set: `lo`, then the words in `lo..hi`.
    fn key(&self, out: &mut Vec<u64>) {
        out.clear();
        out.push(self.lo as u64);
        out.extend_from_slice(&self.words[self.lo..self.hi.max(self.lo)]);
    }
}

/// Remove call entry `e` and its return entry `r` from the list.
fn lift(next: &mut [usize], prev: &mut [usize], e: usize, r: usize) {
    next[prev[e]] = next[e];
    prev[next[e]] = prev[e]; // a call entry is always followed by its return
    next[prev[r]] = next[r];
    if next[r] != NIL {
        prev[next[r]] = prev[r];
    }
}

/// Undo [`lift`].
fn unlift(next: &mut [usize], prev: &mut [usize], e: usize, r: usize) {
    next[prev[r]] = r;
    if next[r] != NIL {
        prev[next[r]] = r;
    }
    next[prev[e]] = e;
    prev[next[e]] = e;
}

/// The WGL search over one key's ops (Lowe's variant with memoization, as in
/// porcupine's `checkSingle`).
fn search(ops: &[KOp], init: u32, n_values: usize, deadline: Option<Instant>) -> Search {
    let n = ops.len();
    let mut remaining_known = ops.iter().filter(|o| o.complete.is_some()).count();
    if remaining_known == 0 {
        return Search::Ok;
    }

    // Entries sorted by time; at equal times calls come first (equal
    // timestamps are concurrent). Unknown outcomes return at +infinity.
    let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        order.push((o.invoke, 0, i));
        order.push((o.complete.unwrap_or(u64::MAX), 1, i));
    }
    order.sort_unstable();
    let m = order.len();
    let head = m;
    let mut next: Vec<usize> = (1..=m).collect();
    next[m - 1] = NIL;
    next.push(0); // head -> first entry
    let mut prev: Vec<usize> = (0..=m).map(|i| i.wrapping_sub(1)).collect();
    prev[0] = head;
    prev[m] = NIL;
    let mut op_of = vec![0usize; m];
    let mut is_call = vec![false; m];
    let mut ret_of = vec![NIL; m];
    let mut call_pos = vec![NIL; n];
    for (pos, &(_, kind, op)) in order.iter().enumerate() {
        op_of[pos] = op;
        if kind == 0 {
            is_call[pos] = true;
            call_pos[op] = pos;
        } else {
            ret_of[call_pos[op]] = pos;
        }
    }

    let mut linearized = Bits::new(n);
    // Memo: per register value, the sets of linearized ops already explored
    // (in the compact form of `Bits::key`).
    let mut cache: Vec<HashSet<Box<[u64]>>> = (0..n_values).map(|_| HashSet::new()).collect();
    let mut memo_key: Vec<u64> = Vec::new();
    // Stack of (call entry linearized, register value before it).
    let mut calls: Vec<(usize, u32)> = Vec::new();
    let mut state = init;
    // Ops not linearized yet, per value: [reads, writes].
    let mut pending = [vec![0u32; n_values], vec![0u32; n_values]];
    for o in ops {
        pending[o.write as usize][o.val as usize] += 1;
    }
    let mut best: Option<FailPoint> = None;
    let mut entry = next[head];
    let mut steps: u64 = 0;

    loop {
        if steps & 0x3ff == 0 {
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    return Search::Timeout;
                }
            }
        }
        steps += 1;

        if entry == NIL {
            // Unreachable: every call entry is followed by its return entry.
            return Search::Ok;
        }
        if is_call[entry] {
            let op = op_of[entry];
            let o = &ops[op];
            let (ok, new_state) = if o.write {
                // Overwriting the register is a dead end if some read of
                // its current value is still to be linearized and no write
                // left can bring that value back.
                let doomed = o.val != state
                    && pending[0][state as usize] > 0
                    && pending[1][state as usize] == 0;
                (!doomed, o.val)
            } else {
                (o.val == state, state)
            };
            if ok {
                linearized.set(op);
                linearized.key(&mut memo_key);
                let seen = &mut cache[new_state as usize];
                if !seen.contains(&memo_key[..]) {
                    seen.insert(memo_key.as_slice().into());
                    calls.push((entry, state));
                    state = new_state;
                    pending[o.write as usize][o.val as usize] -= 1;
                    lift(&mut next, &mut prev, entry, ret_of[entry]);
                    if o.complete.is_some() {
                        remaining_known -= 1;
                        if remaining_known == 0 {
                            // Unknown writes not linearized yet are placed
                            // at the end, i.e. never observed.
                            return Search::Ok;
                        }
                    }
                    entry = next[head];
                    continue;
                }
                linearized.clear(op);
            }
            entry = next[entry];
        } else {
            let op = op_of[entry];
            if ops[op].complete.is_none() {
                // Only reachable once every completed op is linearized.
                return Search::Ok;
            }
            // A completed op that is not linearized yet: dead end. Keep the
            // one furthest in time (then deepest) for the explanation.
            let depth = calls.len();
            if best
                .as_ref()
                .is_none_or(|b| (entry, depth) > (b.pos, b.depth))
            {
                let from = depth.saturating_sub(TAIL);
                let tail = (from..depth)
                    .map(|i| {
                        let after = if i + 1 < depth { calls[i + 1].1 } else { state };
                        (op_of[calls[i].0], after)
                    })
                    .collect();
                best = Some(FailPoint {
                    pos: entry,
                    depth,
                    stuck: op,
                    state,
                    linearized: linearized.words.clone(),
                    tail,
                });
            }
            let Some((e, s)) = calls.pop() else {
                return Search::Fail(best.expect("recorded just above"));
            };
            let op = op_of[e];
            state = s;
            linearized.clear(op);
            unlift(&mut next, &mut prev, e, ret_of[e]);
            pending[ops[op].write as usize][ops[op].val as usize] += 1;
            if ops[op].complete.is_some() {
                remaining_known += 1;
            }
            entry = next[e];
        }
    }
}

fn show_val(v: Option<&str>) -> String {
    match v {
        Some(s) => format!("{s:?}"),
        None => "absent".to_string(),
    }
}

fn fmt_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.3}µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.3}ms", f / 1e6)
    } else {
        format!("{:.3}s", f / 1e9)
    }
}

/// One line describing an op, times relative to `t0`.
fn show_op(history: &History, o: &KOp, names: &[Option<&str>], t0: u64) -> String {
    let client = history.events[o.idx].client;
    let what = if o.write {
        format!("write {}", show_val(names[o.val as usize]))
    } else {
        format!("read -> {}", show_val(names[o.val as usize]))
    };
    let done = match o.complete {
        Some(c) => format!("+{}", fmt_ns(c - t0)),
        None => "? (outcome unknown)".to_string(),
    };
    format!(
        "  #{:<6} client {:<4} {:<28} [+{} .. {}]\n",
        o.idx,
        client,
        what,
        fmt_ns(o.invoke - t0),
        done
    )
}

fn explain(
    history: &History,
    key: &Key,
    ops: &[KOp],
    names: &[Option<&str>],
    fp: &FailPoint,
) -> String {
    let t0 = ops.iter().map(|o| o.invoke).min().unwrap_or(0);
    let val = |v: u32| show_val(names[v as usize]);
    let list = |s: &mut String, items: &[usize]| {
        for &i in items.iter().take(MAX_LISTED) {
            s.push_str(&show_op(history, &ops[i], names, t0));
        }
        if items.len() > MAX_LISTED {
            let _ = writeln!(s, "  ... and {} more", items.len() - MAX_LISTED);
        }
    };
    let not_linearized = |i: usize| fp.linearized[i / 64] & (1u64 << (i % 64)) == 0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "key {key:?}: no linearization of its {} ops exists (#N = index in History::events; \
         times relative to the key's first invocation).",
        ops.len()
    );

    // The stuck op, and what ties it to the rest: the writes a stuck read
    // needs, or the reads that must follow a stuck write.
    let stuck = &ops[fp.stuck];
    let _ = writeln!(
        s,
        "No linearization gets past this op (it had completed, but cannot be linearized next):"
    );
    s.push_str(&show_op(history, stuck, names, t0));
    // Reads of the register's current value still to be linearized, when no
    // write left can restore that value: the value is pinned until they are
    // linearized (the search prunes any write over it). Latest first: a
    // stale read far ahead shows up on top.
    let restorable =
        (0..ops.len()).any(|i| ops[i].write && ops[i].val == fp.state && not_linearized(i));
    let mut pinned: Vec<usize> = (0..ops.len())
        .filter(|&i| {
            !restorable
                && i != fp.stuck
                && !ops[i].write
                && ops[i].val == fp.state
                && not_linearized(i)
        })
        .collect();
    pinned.sort_by_key(|&i| std::cmp::Reverse((ops[i].invoke, ops[i].idx)));
    let mut related: Vec<usize> = Vec::new();
    if stuck.write && stuck.val != fp.state && !pinned.is_empty() {
        let _ = writeln!(
            s,
            "  (it would overwrite {}, which these reads (latest first) still have to return, \
             and no write left can restore it:)",
            val(fp.state)
        );
        list(&mut s, &pinned);
        related.append(&mut pinned);
    } else if !stuck.write && stuck.val != fp.state {
        let _ = writeln!(
            s,
            "  (it returned {} but the register held {})",
            val(stuck.val),
            val(fp.state)
        );
    } else {
        let _ = writeln!(
            s,
            "  (it fits the register there, but every continuation after it fails)"
        );
    }
    if !stuck.write && stuck.val != fp.state {
        let writes: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].write && ops[i].val == stuck.val)
            .collect();
        if writes.is_empty() {
            let _ = writeln!(
                s,
                "No write wrote {}: it is the initial value.",
                val(stuck.val)
            );
        } else {
            let _ = writeln!(s, "Writes of {} on this key:", val(stuck.val));
            list(&mut s, &writes);
        }
        related.extend(writes);
    }
    if stuck.write {
        let reads: Vec<usize> = (0..ops.len())
            .filter(|&i| !ops[i].write && ops[i].val == stuck.val && not_linearized(i))
            .collect();
        if !reads.is_empty() {
            let _ = writeln!(
                s,
                "Reads of its own value still to be linearized (each must follow it with no \
                 other write in between):"
            );
            list(&mut s, &reads);
        }
        related.extend(reads);
    }
    if !pinned.is_empty() {
        let _ = writeln!(
            s,
            "The register value {} could not be overwritten there: these reads (latest first) \
             still have to return it, and no write left can restore it:",
            val(fp.state)
        );
        list(&mut s, &pinned);
        related.append(&mut pinned);
    }
    related.sort_unstable();
    related.dedup();

    if fp.depth == 0 {
        let _ = writeln!(
            s,
            "No op could be linearized before it; the register held its initial value {}.",
            val(fp.state)
        );
    } else {
        let _ = writeln!(
            s,
            "Partial linearization that got there: {} ops, ending with (register value after each):",
            fp.depth
        );
        if fp.depth > fp.tail.len() {
            let _ = writeln!(s, "  ... {} earlier ops", fp.depth - fp.tail.len());
        }
        for &(op, after) in &fp.tail {
            let line = show_op(history, &ops[op], names, t0);
            let _ = writeln!(s, "{}  => {}", line.trim_end(), val(after));
        }
    }

    let stuck_done = stuck.complete.unwrap_or(u64::MAX);
    let mut pending: Vec<usize> = (0..ops.len())
        .filter(|&i| {
            i != fp.stuck
                && not_linearized(i)
                && ops[i].invoke <= stuck_done
                && related.binary_search(&i).is_err()
        })
        .collect();
    pending.sort_by_key(|&i| (ops[i].invoke, ops[i].idx));
    if pending.is_empty() {
        let _ = writeln!(s, "No other op was pending there.");
    } else {
        let _ = writeln!(
            s,
            "Other ops invoked before it completed and not linearized there \
             (no order of them works either):"
        );
        list(&mut s, &pending);
    }

    // A read far ahead of a pending write's value pins that write: no other
    // write may be linearized between them. Show the latest such read of
    // each pending write, furthest first (a stale read shows up here).
    let mut latest_read: HashMap<u32, usize> = HashMap::new();
    for (i, o) in ops.iter().enumerate() {
        if !o.write && o.invoke > stuck_done && not_linearized(i) {
            let e = latest_read.entry(o.val).or_insert(i);
            if (o.invoke, o.idx) > (ops[*e].invoke, ops[*e].idx) {
                *e = i;
            }
        }
    }
    let mut pins: Vec<usize> = pending
        .iter()
        .chain(stuck.write.then_some(&fp.stuck))
        .filter(|&&i| ops[i].write)
        .filter_map(|&i| latest_read.get(&ops[i].val).copied())
        .filter(|i| related.binary_search(i).is_err())
        .collect();
    pins.sort_by_key(|&i| std::cmp::Reverse((ops[i].invoke, ops[i].idx)));
    pins.dedup();
    if !pins.is_empty() {
        let _ = writeln!(
            s,
            "Later reads of values written by these pending writes (latest first; each pins \
             its write: no other write may come in between):"
        );
        list(&mut s, &pins);
    }
    s
}

#[cfg(test)]
mod bits_tests {
    use super::Bits;
    use proptest::prelude::*;
    use proptest::sample::select;
    use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestCaseError, TestRunner};
    use std::cell::Cell;
    use std::collections::HashMap;

    const N: usize = 300;

    /// One step of a walk: set or clear bit `.1`.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Set(usize),
        Clear(usize),
    }

    /// Walks of up to 2,000 steps. Each touches bits either around the middle (the
    /// mean of two dice) or mostly at the front (the lesser of two), and clears a third
    /// of the time, a twentieth, or never: the rarer the clears, the more words fill
    /// up, so that `lo` moves too (a search fills from the front).
    fn walk() -> impl Strategy<Value = Vec<Step>> {
        (any::<bool>(), select(&[1.0 / 3.0, 0.05, 0.0][..])).prop_flat_map(|(front, p_clear)| {
            let index =
                (0..N, 0..N).prop_map(move |(a, b)| if front { a.min(b) } else { (a + b) / 2 });
            let step = (index, prop::bool::weighted(p_clear)).prop_map(|(i, clear)| {
                if clear {
                    Step::Clear(i)
                } else {
                    Step::Set(i)
                }
            });
            prop::collection::vec(step, 1..=2000)
        })
    }

    /// Memo keys identify sets exactly, whatever the set/clear sequence.
    #[test]
    fn memo_keys_identify_sets() {
        // A fixed seed and no persistence, as for the crate's other random tests:
        // `DOPPEL_SEED=<n>` replays a run, `DOPPEL_SEED=random` explores.
        let seed = crate::tests::seed("memo_keys_identify_sets", 0x2545_f491_4f6c_dd1d);
        let config = Config {
            rng_seed: RngSeed::Fixed(seed),
            rng_algorithm: RngAlgorithm::XorShift,
            failure_persistence: None,
            max_shrink_iters: 100_000,
            max_shrink_time: 60_000,
            ..Config::with_cases(50)
        };
        // Across all walks: how many distinct sets were seen, and how far `lo` got.
        let (distinct, max_lo) = (Cell::new(0), Cell::new(0));
        TestRunner::new(config)
            .run(&walk(), |steps| {
                let mut bits = Bits::new(N);
                let mut naive = vec![false; N];
                let mut seen: HashMap<Vec<u64>, Vec<bool>> = HashMap::new();
                let mut key = Vec::new();
                for step in steps {
                    match step {
                        Step::Set(i) => {
                            bits.set(i);
                            naive[i] = true;
                        }
                        Step::Clear(i) => {
                            bits.clear(i);
                            naive[i] = false;
                        }
                    }
                    for (w, word) in bits.words.iter().enumerate() {
                        prop_assert!(w >= bits.lo || *word == u64::MAX, "word {w} below lo");
                        prop_assert!(w < bits.hi || *word == 0, "word {w} at or past hi");
                    }
                    bits.key(&mut key);
                    let prev = seen.entry(key.clone()).or_insert_with(|| naive.clone());
                    if *prev != naive {
                        return Err(TestCaseError::fail(format!(
                            "after {step:?}: key {key:?} also names another set"
                        )));
                    }
                    max_lo.set(max_lo.get().max(bits.lo));
                }
                distinct.set(distinct.get() + seen.len());
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(distinct.get() > 1_000, "only {} sets seen", distinct.get());
        assert!(max_lo.get() > 0, "no walk filled a word: `lo` never moved");
    }
}
