//! Unit tests: textbook histories, unknown outcomes, a brute-force
//! cross-check on small random histories, and large generated histories.
//!
//! Randomized tests use a fixed seed unless `DOPPEL_SEED` is set (`random`,
//! or a number to replay a failure); the seed is printed (shown by cargo on
//! failure, or with `--nocapture`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;

fn s(v: &str) -> Value {
    Some(v.to_string())
}

fn absent(_: &Key) -> Value {
    None
}

pub(crate) fn seed(test: &str, default: u64) -> u64 {
    let seed = match std::env::var("DOPPEL_SEED") {
        Ok(v) if v == "random" => rand::random(),
        Ok(v) => v
            .parse()
            .expect("DOPPEL_SEED must be `random` or an unsigned integer"),
        Err(_) => default,
    };
    println!(
        "{test}: seed {seed} (replay: DOPPEL_SEED={seed} cargo test -p doppel-lincheck {test})"
    );
    seed
}

/// The full checker without the static stale/future-read checks: only the
/// WGL search.
fn check_search_only(h: &History, initial: impl Fn(&Key) -> Value) -> CheckResult {
    check::check_opts(
        h,
        initial,
        check::Opts {
            budget_per_key: DEFAULT_KEY_BUDGET,
            static_checks: false,
        },
    )
}

#[track_caller]
fn assert_lin(h: &History, initial: impl Fn(&Key) -> Value) {
    let r = check(h, &initial);
    assert!(r.is_linearizable(), "expected linearizable, got {r}");
    assert_eq!(check_search_only(h, &initial), r);
}

/// Asserts the history is not linearizable on `key`, with and without the
/// static checks; returns both explanations, concatenated.
#[track_caller]
fn assert_not_lin(h: &History, initial: impl Fn(&Key) -> Value, key: &str) -> String {
    let mut all = String::new();
    for r in [check(h, &initial), check_search_only(h, &initial)] {
        match r {
            CheckResult::NotLinearizable {
                key: k,
                explanation,
            } => {
                println!("{explanation}");
                assert_eq!(k, key, "{explanation}");
                all.push_str(&explanation);
            }
            other => panic!("expected NOT linearizable on {key:?}, got {other}"),
        }
    }
    all
}

// ---------------------------------------------------------------- textbook

#[test]
fn empty_history_is_linearizable() {
    assert_eq!(
        check(&History::new(), absent),
        CheckResult::Linearizable { keys: 0, ops: 0 }
    );
}

#[test]
fn sequential_write_then_read() {
    let mut h = History::new();
    h.read(1, "x", None, 0, Some(5));
    h.write(1, "x", "a", 10, Some(20));
    h.read(2, "x", s("a"), 30, Some(40));
    h.write(2, "x", "b", 50, Some(60));
    h.read(1, "x", s("b"), 70, Some(80));
    assert_eq!(
        check(&h, absent),
        CheckResult::Linearizable { keys: 1, ops: 5 }
    );
}

#[test]
fn concurrent_read_may_see_old_or_new_value() {
    for result in [None, s("a")] {
        let mut h = History::new();
        h.write(1, "x", "a", 0, Some(100));
        h.read(2, "x", result, 10, Some(20));
        assert_lin(&h, absent);
    }
}

#[test]
fn equal_timestamps_are_concurrent() {
    let mut h = History::new();
    h.write(1, "x", "a", 0, Some(10));
    // Invoked exactly when the write completed: may be ordered either way.
    h.read(2, "x", None, 10, Some(20));
    assert_lin(&h, absent);
}

#[test]
fn stale_read_after_completed_write() {
    let mut h = History::new();
    h.write(1, "x", "a", 0, Some(10)); // #0
    h.write(2, "x", "b", 20, Some(30)); // #1
    h.read(3, "x", s("a"), 40, Some(50)); // #2: "b" was acknowledged before
    let e = assert_not_lin(&h, absent, "x");
    assert!(e.contains("#2 "), "{e}");
    assert!(e.contains("definitely overwritten"), "{e}");
    assert!(
        e.contains("it would overwrite \"a\", which these reads"),
        "{e}"
    );
}

#[test]
fn stale_read_of_initial_value() {
    let mut h = History::new();
    h.write(1, "x", "a", 0, Some(10));
    h.read(2, "x", s("init"), 20, Some(30));
    let e = assert_not_lin(&h, |_| s("init"), "x");
    assert!(e.contains("#1 "), "{e}");
    // ... but fine if the read overlaps the write.
    let mut h = History::new();
    h.write(1, "x", "a", 0, Some(25));
    h.read(2, "x", s("init"), 20, Some(30));
    assert_lin(&h, |_| s("init"));
}

#[test]
fn reads_observing_writes_in_opposite_orders() {
    let mut h = History::new();
    h.write(1, "x", "a", 0, Some(100));
    h.write(2, "x", "b", 0, Some(100));
    // Client 3 sees a then b, client 4 sees b then a.
    h.read(3, "x", s("a"), 10, Some(20));
    h.read(3, "x", s("b"), 30, Some(40));
    h.read(4, "x", s("b"), 10, Some(20));
    h.read(4, "x", s("a"), 30, Some(40));
    assert_not_lin(&h, absent, "x");
    // One observer alone is fine.
    let mut h1 = History::new();
    h1.extend(h.events[..4].iter().cloned());
    assert_lin(&h1, absent);
}

#[test]
fn read_of_value_never_written() {
    let mut h = History::new();
    h.write(1, "x", "a", 0, Some(10));
    h.read(2, "x", s("zzz"), 20, Some(30)); // #1
    let e = assert_not_lin(&h, absent, "x");
    assert!(e.contains("no write on this key ever wrote"), "{e}");
    assert!(e.contains("#1 "), "{e}");
    // Reading absent when the initial value is present and nothing deletes.
    let mut h = History::new();
    h.read(2, "x", None, 20, Some(30));
    assert_not_lin(&h, |_| s("init"), "x");
}

#[test]
fn value_from_another_key_is_not_visible() {
    let mut h = History::new();
    h.write(1, "x", "a", 0, Some(10));
    h.read(2, "y", s("a"), 20, Some(30));
    assert_not_lin(&h, absent, "y");
}

#[test]
fn read_cannot_see_a_write_invoked_after_it_completed() {
    let mut h = History::new();
    h.read(1, "x", s("a"), 0, Some(10));
    h.write(2, "x", "a", 20, Some(30));
    assert_not_lin(&h, absent, "x");
}

#[test]
fn value_cannot_come_back_after_being_overwritten() {
    // a, then b overwrites it; a reader sees b then a again.
    let mut h = History::new();
    h.write(1, "x", "a", 0, Some(10));
    h.write(2, "x", "b", 20, Some(100));
    h.read(3, "x", s("b"), 30, Some(40));
    h.read(3, "x", s("a"), 50, Some(60));
    assert_not_lin(&h, absent, "x");
}

#[test]
fn repeated_values_allow_a_value_to_come_back() {
    let mut h = History::new();
    h.write(1, "x", "a", 0, Some(10));
    h.write(2, "x", "b", 20, Some(100));
    h.write(4, "x", "a", 20, Some(100)); // a second write of "a"
    h.read(3, "x", s("b"), 30, Some(40));
    h.read(3, "x", s("a"), 50, Some(60));
    assert_lin(&h, absent);
}

#[test]
fn keys_are_independent_and_the_failing_key_is_reported() {
    let mut h = History::new();
    for (i, k) in ["a", "b", "c"].iter().enumerate() {
        let t = i as u64 * 100;
        h.write(1, *k, "v", t, Some(t + 10));
        h.read(2, *k, s("v"), t + 20, Some(t + 30));
    }
    assert_eq!(
        check(&h, absent),
        CheckResult::Linearizable { keys: 3, ops: 6 }
    );
    h.read(3, "b", None, 500, Some(510));
    assert_not_lin(&h, absent, "b");
}

#[test]
fn initial_values_per_key() {
    let mut h = History::new();
    h.read(1, "x", s("x0"), 0, Some(10));
    h.read(1, "y", None, 0, Some(10));
    let init = |k: &Key| (k == "x").then(|| "x0".to_string());
    assert_lin(&h, init);
    assert_not_lin(&h, absent, "x");
}

// ---------------------------------------------------------- unknown outcome

#[test]
fn unknown_write_read_later_is_linearizable() {
    let mut h = History::new();
    h.write(1, "x", "a", 0, None);
    h.read(2, "x", None, 10, Some(20)); // not yet applied
    h.read(2, "x", s("a"), 1_000, Some(1_010)); // applied in between
    assert_lin(&h, absent);
}

#[test]
fn unknown_write_never_applied_is_linearizable() {
    let mut h = History::new();
    h.write(1, "x", "a", 0, None);
    h.read(2, "x", None, 10, Some(20));
    h.read(2, "x", None, 1_000, Some(1_010));
    assert_lin(&h, absent);
}

#[test]
fn unknown_write_applied_late_overwrites_a_later_write() {
    // The unknown write may land after a completed write that was invoked
    // later.
    let mut h = History::new();
    h.write(1, "x", "a", 0, None);
    h.write(2, "x", "b", 10, Some(20));
    h.read(3, "x", s("b"), 30, Some(40));
    h.read(3, "x", s("a"), 50, Some(60));
    assert_lin(&h, absent);
}

#[test]
fn unknown_write_cannot_be_undone() {
    // Seen, then gone again: not linearizable.
    let mut h = History::new();
    h.write(1, "x", "a", 0, None);
    h.read(2, "x", s("a"), 10, Some(20));
    h.read(2, "x", None, 30, Some(40));
    assert_not_lin(&h, absent, "x");
}

#[test]
fn unknown_write_cannot_take_effect_before_its_invocation() {
    let mut h = History::new();
    h.read(2, "x", s("a"), 0, Some(10));
    h.write(1, "x", "a", 20, None);
    assert_not_lin(&h, absent, "x");
}

#[test]
fn unknown_write_applies_at_most_once() {
    // a (unknown), then b overwrote it; "a" cannot reappear.
    let mut h = History::new();
    h.write(1, "x", "a", 0, None);
    h.read(3, "x", s("a"), 10, Some(20));
    h.write(2, "x", "b", 30, Some(40));
    h.read(3, "x", s("b"), 50, Some(60));
    h.read(3, "x", s("a"), 70, Some(80));
    assert_not_lin(&h, absent, "x");
}

#[test]
fn unknown_reads_are_ignored() {
    let mut h = History::new();
    h.write(1, "x", "a", 0, Some(10));
    h.read(2, "x", s("garbage"), 20, None);
    h.read(2, "y", s("garbage"), 20, None); // a key with only ignored ops
    assert_eq!(
        check(&h, absent),
        CheckResult::Linearizable { keys: 1, ops: 1 }
    );
}

#[test]
fn complete_before_invoke_is_clamped() {
    let mut h = History::new();
    h.write(1, "x", "a", 10, Some(5));
    h.read(2, "x", s("a"), 20, Some(30));
    assert_lin(&h, absent);
}

// ------------------------------------------------------------- budget

/// 60 fully concurrent writes of two values, then a read that no order can
/// explain: the memoized search still has 2^60 states to go through.
fn hard_history(key: &str) -> History {
    let mut h = History::new();
    for i in 0..60 {
        h.write(i, key, if i % 2 == 0 { "a" } else { "b" }, 0, Some(100));
    }
    h.write(100, key, "c", 150, Some(160));
    h.read(101, key, s("a"), 200, Some(210));
    h
}

#[test]
fn budget_yields_timeout() {
    let h = hard_history("k");
    let t = Instant::now();
    let r = check_with_budget(&h, absent, Duration::from_millis(200));
    let took = t.elapsed();
    println!("timeout after {took:?}");
    assert_eq!(r, CheckResult::Timeout { key: "k".into() });
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn failure_on_another_key_wins_over_timeout() {
    let mut h = hard_history("a-hard");
    h.write(1, "b-bad", "a", 0, Some(10));
    h.read(2, "b-bad", None, 20, Some(30));
    match check_with_budget(&h, absent, Duration::from_millis(100)) {
        CheckResult::NotLinearizable { key, .. } => assert_eq!(key, "b-bad"),
        other => panic!("{other}"),
    }
}

// --------------------------------------------------------- serialization

#[test]
fn json_round_trip_and_replay() {
    let mut h = History::new();
    h.write(1, "x", "a", 0, Some(10));
    h.write(1, "x", "b", 5, None);
    h.read(2, "x", None, 1, Some(2));
    h.read(2, "x", s("b"), 20, Some(30));
    let json = h.to_json();
    assert!(json.contains("\"type\": \"write\""), "{json}");
    assert_eq!(History::from_json(&json).unwrap(), h);

    let path = std::env::temp_dir().join(format!("doppel-lincheck-{}.json", std::process::id()));
    h.save(&path).unwrap();
    let loaded = History::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded, h);
    assert_eq!(check(&loaded, absent), check(&h, absent));

    // complete_ns may be omitted for an unknown outcome.
    let h2 = History::from_json(
        r#"{"events":[{"client":1,"op":{"type":"read","key":"k","result":null},"invoke_ns":3}]}"#,
    )
    .unwrap();
    assert_eq!(h2.events[0].complete_ns, None);
}

// ------------------------------------------------------------- recorder

#[test]
fn recorder_with_threads_against_a_locked_map() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    let rec = Recorder::new();
    let store: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let threads: Vec<_> = (0..4u64)
        .map(|c| {
            let (rec, store) = (rec.clone(), store.clone());
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    let key = format!("k{}", (c * 7 + i) % 3);
                    if (c + i) % 2 == 0 {
                        let value = format!("{c}-{i}");
                        let w = rec.begin_write(c, key.clone(), value.clone());
                        store.lock().unwrap().insert(key, value);
                        w.ok();
                    } else {
                        let r = rec.begin_read(c, key.clone());
                        let v = store.lock().unwrap().get(&key).cloned();
                        r.ok(v);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // A write whose guard is dropped is recorded with an unknown outcome;
    // failed() and unresolved reads record nothing.
    drop(rec.begin_write(9, "k0", "dropped"));
    rec.begin_write(9, "k0", "failed").failed();
    rec.begin_read(9, "k0").unknown();
    let h = rec.history();
    assert_eq!(h.len(), 801);
    assert!(h.iter().any(|e| e.complete_ns.is_none() && e.op.is_write()));
    assert_eq!(
        check(&h, absent),
        CheckResult::Linearizable { keys: 3, ops: 801 }
    );
}

// ------------------------------------------------- brute-force cross-check

/// Exhaustive search over all orders (and all subsets of unknown writes).
fn brute_force(h: &History, initial: &dyn Fn(&Key) -> Value) -> bool {
    let mut by_key: BTreeMap<&Key, Vec<&Event>> = BTreeMap::new();
    for e in h.iter() {
        if e.op.is_write() || e.complete_ns.is_some() {
            by_key.entry(e.op.key()).or_default().push(e);
        }
    }
    by_key.into_iter().all(|(k, evs)| {
        let unknown: Vec<usize> = (0..evs.len())
            .filter(|&i| evs[i].complete_ns.is_none())
            .collect();
        (0..1u32 << unknown.len()).any(|mask| {
            let included: Vec<&Event> = (0..evs.len())
                .filter(|&i| match unknown.iter().position(|&u| u == i) {
                    Some(bit) => mask & (1 << bit) != 0,
                    None => true,
                })
                .map(|i| evs[i])
                .collect();
            orders(&included, 0, &initial(k))
        })
    })
}

fn orders(evs: &[&Event], placed: u32, state: &Value) -> bool {
    if placed.count_ones() as usize == evs.len() {
        return true;
    }
    (0..evs.len()).any(|i| {
        if placed & (1 << i) != 0 {
            return false;
        }
        // Some unplaced op completed strictly before i was invoked.
        let blocked = (0..evs.len()).any(|j| {
            j != i
                && placed & (1 << j) == 0
                && evs[j]
                    .complete_ns
                    .is_some_and(|c| c.max(evs[j].invoke_ns) < evs[i].invoke_ns)
        });
        if blocked {
            return false;
        }
        match &evs[i].op {
            Op::Write { value, .. } => orders(evs, placed | 1 << i, &Some(value.clone())),
            Op::Read { result, .. } => result == state && orders(evs, placed | 1 << i, state),
        }
    })
}

/// A small random history over a tiny value domain: half from a simulated
/// atomic register (then maybe perturbed), half with random read results.
fn small_history(rng: &mut StdRng) -> History {
    let n = rng.random_range(1..=7);
    let keys = if rng.random_bool(0.2) { 2 } else { 1 };
    let vals = ["a", "b", "c"];
    let simulated = rng.random_bool(0.5);
    struct G {
        key: usize,
        write: bool,
        val: usize,
        inv: u64,
        lp: u64,
        done: Option<u64>,
        effective: bool,
    }
    let mut ops: Vec<G> = (0..n)
        .map(|_| {
            let inv = rng.random_range(0..30);
            let lp = inv + rng.random_range(0..8);
            let done = lp + rng.random_range(0..8);
            let write = rng.random_bool(0.5);
            let unknown = rng.random_bool(if write { 0.25 } else { 0.1 });
            G {
                key: rng.random_range(0..keys),
                write,
                val: rng.random_range(0..vals.len() + 1),
                inv,
                lp,
                done: (!unknown).then_some(done),
                effective: rng.random_bool(0.5),
            }
        })
        .collect();
    let mut result: Vec<Value> = ops
        .iter()
        .map(|o| o.val.checked_sub(1).map(|v| vals[v].to_string()))
        .collect();
    if simulated {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (ops[i].lp, i));
        let mut reg: Vec<Value> = vec![None; keys];
        for i in order {
            let o = &mut ops[i];
            if o.write {
                o.val = o.val.max(1); // writes need a value
                if o.done.is_some() || o.effective {
                    reg[o.key] = Some(vals[o.val - 1].to_string());
                }
            } else {
                result[i] = reg[o.key].clone();
            }
        }
        if rng.random_bool(0.3) {
            let i = rng.random_range(0..n);
            result[i] = [None, s("a"), s("b"), s("c")][rng.random_range(0..4)].clone();
        }
    }
    let mut h = History::new();
    for (i, o) in ops.iter().enumerate() {
        let key = format!("k{}", o.key);
        if o.write {
            h.write(i as u64, key, vals[o.val.max(1) - 1], o.inv, o.done);
        } else {
            h.read(i as u64, key, result[i].clone(), o.inv, o.done);
        }
    }
    h
}

#[test]
fn agrees_with_brute_force_on_small_histories() {
    let mut rng = StdRng::seed_from_u64(seed("agrees_with_brute_force", 1));
    let (mut yes, mut no) = (0, 0);
    for round in 0..3_000 {
        let h = small_history(&mut rng);
        let init_a = rng.random_bool(0.3);
        let initial = |_: &Key| if init_a { s("a") } else { None };
        let expected = brute_force(&h, &initial);
        for got in [check(&h, initial), check_search_only(&h, initial)] {
            assert_eq!(
                got.is_linearizable(),
                expected,
                "round {round}: checker says {got}\nhistory: {}",
                h.to_json()
            );
            assert!(!matches!(got, CheckResult::Timeout { .. }));
        }
        if expected {
            yes += 1
        } else {
            no += 1
        }
    }
    println!("{yes} linearizable, {no} not");
    assert!(yes > 500 && no > 500, "{yes} linearizable, {no} not");
}

// ----------------------------------------------------- generated histories

struct GenCfg {
    clients: u64,
    keys: usize,
    ops: usize,
    write_p: f64,
    unknown_write_p: f64,
    unknown_read_p: f64,
    /// `None`: every write has a unique value; `Some(d)`: values from `d`.
    domain: Option<usize>,
}

/// Simulates an atomic register per key: each op takes effect at a random
/// point of its [invoke, complete] window. Unknown-outcome writes take effect
/// or not (coin flip); unknown-outcome reads are recorded with a bogus result
/// (the checker must ignore them). Events are shuffled.
fn generate(rng: &mut StdRng, cfg: &GenCfg) -> History {
    struct G {
        client: u64,
        key: usize,
        write: bool,
        value: String,
        invoke: u64,
        lp: u64,
        complete: Option<u64>,
        effective: bool,
    }
    let mut clock: Vec<u64> = (0..cfg.clients)
        .map(|_| rng.random_range(0..1_000))
        .collect();
    let mut ops: Vec<G> = (0..cfg.ops)
        .map(|i| {
            let client = i as u64 % cfg.clients;
            let invoke = clock[client as usize];
            let lp = invoke + rng.random_range(0..=2_000);
            let complete = lp + rng.random_range(0..=2_000);
            clock[client as usize] = complete + rng.random_range(1..=500);
            let write = rng.random_bool(cfg.write_p);
            let unknown = rng.random_bool(if write {
                cfg.unknown_write_p
            } else {
                cfg.unknown_read_p
            });
            G {
                client,
                key: rng.random_range(0..cfg.keys),
                write,
                value: match cfg.domain {
                    None => format!("c{client}-{i}"),
                    Some(d) => format!("v{}", rng.random_range(0..d)),
                },
                invoke,
                lp,
                complete: (!unknown).then_some(complete),
                effective: rng.random_bool(0.5),
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| (ops[i].lp, i));
    let mut reg: Vec<Value> = vec![None; cfg.keys];
    let mut results: Vec<Value> = vec![None; ops.len()];
    for i in order {
        let o = &mut ops[i];
        if o.write {
            if o.complete.is_some() || o.effective {
                reg[o.key] = Some(o.value.clone());
            }
        } else if o.complete.is_some() {
            results[i] = reg[o.key].clone();
        } else {
            results[i] = Some("bogus: outcome unknown".into());
        }
    }
    let mut h: History = ops
        .into_iter()
        .zip(results)
        .map(|(o, result)| Event {
            client: o.client,
            op: if o.write {
                Op::Write {
                    key: format!("k{}", o.key),
                    value: o.value,
                }
            } else {
                Op::Read {
                    key: format!("k{}", o.key),
                    result,
                }
            },
            invoke_ns: o.invoke,
            complete_ns: o.complete,
        })
        .collect();
    h.events.shuffle(rng);
    h
}

fn big_cfg() -> GenCfg {
    GenCfg {
        clients: 8,
        keys: 8,
        ops: 5_000,
        write_p: 0.5,
        unknown_write_p: 0.05,
        unknown_read_p: 0.05,
        domain: None,
    }
}

#[track_caller]
fn timed_check(h: &History, static_checks: bool) -> CheckResult {
    let t = Instant::now();
    let opts = check::Opts {
        budget_per_key: Duration::from_secs(30),
        static_checks,
    };
    let r = check::check_opts(h, absent, opts);
    let took = t.elapsed();
    let what = if static_checks { "" } else { " (search only)" };
    println!("checked {} events{what} in {took:?}: {r}", h.len());
    r
}

#[test]
fn generated_history_is_linearizable() {
    let mut rng = StdRng::seed_from_u64(seed("generated_history_is_linearizable", 2));
    let h = generate(&mut rng, &big_cfg());
    let t = Instant::now();
    let r = timed_check(&h, true);
    assert!(r.is_linearizable(), "{r}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn generated_history_with_repeated_values_is_linearizable() {
    let mut rng = StdRng::seed_from_u64(seed("generated_repeated_values", 3));
    let cfg = GenCfg {
        clients: 6,
        keys: 4,
        ops: 2_000,
        domain: Some(3),
        ..big_cfg()
    };
    let h = generate(&mut rng, &cfg);
    let r = timed_check(&h, true);
    assert!(r.is_linearizable(), "{r}");
}

enum Corruption {
    NeverWritten,
    /// A value definitely overwritten before the read was invoked.
    Stale,
    /// A value written only after the read completed.
    Future,
}

/// Corrupts one completed read (values must be unique); returns its index
/// and key.
fn corrupt(rng: &mut StdRng, h: &mut History, how: Corruption) -> (usize, Key) {
    let reads: Vec<usize> = (0..h.len())
        .filter(|&i| !h.events[i].op.is_write() && h.events[i].complete_ns.is_some())
        .collect();
    let writes_on = |h: &History, key: &Key| -> Vec<usize> {
        (0..h.len())
            .filter(|&i| h.events[i].op.is_write() && h.events[i].op.key() == key)
            .collect()
    };
    let value_of = |h: &History, i: usize| match &h.events[i].op {
        Op::Write { value, .. } => value.clone(),
        Op::Read { .. } => unreachable!(),
    };
    let mut candidates: Vec<(usize, String)> = Vec::new();
    for &r in &reads {
        let read = &h.events[r];
        let (r_inv, r_done) = (read.invoke_ns, read.complete_ns.unwrap());
        let key = read.op.key().clone();
        let current = match &read.op {
            Op::Read { result, .. } => result.clone(),
            Op::Write { .. } => unreachable!(),
        };
        let ws = writes_on(h, &key);
        let pick = match how {
            Corruption::NeverWritten => Some("never written".to_string()),
            Corruption::Stale => {
                // w2 completed before the read; w1 completed before w2 began.
                let w2 = ws
                    .iter()
                    .copied()
                    .filter(|&w| h.events[w].complete_ns.is_some_and(|c| c < r_inv))
                    .max_by_key(|&w| h.events[w].invoke_ns);
                w2.and_then(|w2| {
                    ws.iter()
                        .copied()
                        .filter(|&w1| {
                            h.events[w1]
                                .complete_ns
                                .is_some_and(|c| c < h.events[w2].invoke_ns)
                        })
                        .map(|w1| value_of(h, w1))
                        .find(|v| current.as_ref() != Some(v))
                })
            }
            Corruption::Future => ws
                .iter()
                .copied()
                .filter(|&w| h.events[w].invoke_ns > r_done)
                .map(|w| value_of(h, w))
                .next(),
        };
        if let Some(v) = pick {
            candidates.push((r, v));
        }
    }
    assert!(!candidates.is_empty());
    let (r, v) = candidates.swap_remove(rng.random_range(0..candidates.len()));
    if let Op::Read { result, .. } = &mut h.events[r].op {
        *result = Some(v);
    }
    (r, h.events[r].op.key().clone())
}

fn corrupted_history_is_detected(test: &str, default_seed: u64, cfg: &GenCfg, how: Corruption) {
    let mut rng = StdRng::seed_from_u64(seed(test, default_seed));
    let mut h = generate(&mut rng, cfg);
    let (r, key) = corrupt(&mut rng, &mut h, how);
    println!("corrupted read #{r} on key {key:?}: {:?}", h.events[r]);
    for static_checks in [true, false] {
        match timed_check(&h, static_checks) {
            CheckResult::NotLinearizable {
                key: k,
                explanation,
            } => {
                assert_eq!(k, key);
                assert!(
                    explanation.contains(&format!("#{r} ")),
                    "the corrupted read #{r} is not pointed at:\n{explanation}"
                );
            }
            other => panic!("corruption of read #{r} not detected: {other}"),
        }
    }
}

#[test]
fn generated_history_with_a_never_written_read_is_detected() {
    corrupted_history_is_detected(
        "never_written_read",
        4,
        &big_cfg(),
        Corruption::NeverWritten,
    );
}

#[test]
fn generated_history_with_a_stale_read_is_detected() {
    corrupted_history_is_detected("stale_read", 5, &big_cfg(), Corruption::Stale);
}

#[test]
fn generated_history_with_a_read_from_the_future_is_detected() {
    corrupted_history_is_detected("future_read", 6, &big_cfg(), Corruption::Future);
}

/// Many clients hammering one key: the per-key concurrency is what makes
/// the search expensive.
fn contended_cfg() -> GenCfg {
    GenCfg {
        clients: 16,
        keys: 1,
        ops: 2_000,
        ..big_cfg()
    }
}

#[test]
fn contended_generated_history_is_linearizable() {
    let mut rng = StdRng::seed_from_u64(seed("contended_linearizable", 7));
    let r = timed_check(&generate(&mut rng, &contended_cfg()), true);
    assert!(r.is_linearizable(), "{r}");
}

#[test]
fn contended_generated_history_with_a_stale_read_is_detected() {
    // Not linearizable is the search's worst case: a smaller history.
    let cfg = GenCfg {
        ops: 1_000,
        ..contended_cfg()
    };
    corrupted_history_is_detected("contended_stale_read", 8, &cfg, Corruption::Stale);
}

/// Large generated histories are still checked (and fast enough for the default suite:
/// about 3.5 s in a debug build); `--nocapture` prints each check's time.
#[test]
fn large_generated_histories_are_linearizable() {
    let mut rng = StdRng::seed_from_u64(seed("timing_large_histories", 9));
    for cfg in [
        GenCfg {
            ops: 100_000,
            ..big_cfg()
        },
        GenCfg {
            ops: 20_000,
            ..contended_cfg()
        },
        GenCfg {
            clients: 4,
            keys: 1,
            ops: 20_000,
            domain: Some(4),
            ..big_cfg()
        },
    ] {
        println!(
            "{} ops, {} clients, {} keys, domain {:?}",
            cfg.ops, cfg.clients, cfg.keys, cfg.domain
        );
        let h = generate(&mut rng, &cfg);
        assert!(timed_check(&h, true).is_linearizable());
    }
}
