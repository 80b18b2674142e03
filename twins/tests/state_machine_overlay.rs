//! The overlay the state machine writes into reads exactly like the state its writes
//! would produce: proptest generates a base and runs of puts, deletes and prefix
//! deletes over it (in a parent overlay, then a child overlay over the parent), with
//! a random get and scan (prefix, resume point, limit) after every write, checked
//! against a plain map. A failure prints the shrunk case; the seed is printed,
//! `DOPPEL_SEED=<n>` replays a run, `DOPPEL_SEED=random` explores new ones.

mod common;

use common::proptest_config;
use doppel_twins::keys::Family;
use doppel_twins::{MemState, Overlay, StateRead};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestRunner;
use std::collections::BTreeMap;

/// Each case is up to 250 writes and 270 reads (the four seeds of the hand-rolled
/// generator this replaced ran 1,000 writes between them).
const CASES: u32 = 48;

type Model = BTreeMap<(Family, Vec<u8>), Vec<u8>>;

/// A short key over a 3-letter alphabet, so that keys collide and prefix often (a
/// `String` only so that a failing case prints readably).
fn key(max_len: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(select(&['a', 'b', 'c'][..]), 0..=max_len)
        .prop_map(|k| k.into_iter().collect())
}

/// `RelIn` one time in four, else `Twins`.
fn family() -> impl Strategy<Value = Family> {
    prop_oneof![1 => Just(Family::RelIn), 3 => Just(Family::Twins)]
}

#[derive(Clone, Debug)]
enum Write {
    Put(Family, String),
    Delete(Family, String),
    DeletePrefix(Family, String),
}

fn write() -> impl Strategy<Value = Write> {
    // Prefixes of one or two bytes: a whole-family wipe (empty prefix) is rare.
    let prefix = prop_oneof![11 => key(2).prop_filter("non-empty", |p| !p.is_empty()), 1 => Just(String::new())];
    prop_oneof![
        5 => (family(), key(5)).prop_map(|(f, k)| Write::Put(f, k)),
        4 => (family(), key(5)).prop_map(|(f, k)| Write::Delete(f, k)),
        1 => (family(), prefix).prop_map(|(f, p)| Write::DeletePrefix(f, p)),
    ]
}

#[derive(Clone, Debug)]
struct Read {
    family: Family,
    prefix: String,
    after: Option<String>,
    limit: usize,
    get: String,
}

fn read() -> impl Strategy<Value = Read> {
    // Small limits (one base page, many shadowed), page-sized ones, and "all".
    let limit = prop_oneof![Just(0), Just(1), 0..5usize, 0..100usize, Just(1000)];
    (family(), key(2), prop::option::of(key(5)), limit, key(5)).prop_map(
        |(family, prefix, after, limit, get)| Read {
            family,
            prefix,
            after,
            limit,
            get,
        },
    )
}

#[derive(Clone, Debug)]
struct Case {
    /// The base's keys.
    base: Vec<(Family, String)>,
    /// Writes into the parent overlay, each followed by a read.
    parent: Vec<(Write, Read)>,
    /// Writes into a child overlay over the parent, each followed by a read.
    child: Vec<(Write, Read)>,
    /// Reads of the parent, after its own writes / after the child is dropped / after
    /// the child's writes are kept.
    checks: [Vec<Read>; 3],
}

fn case() -> impl Strategy<Value = Case> {
    let reads = || prop::collection::vec(read(), 0..=16);
    (
        // Most bases are big enough that scans need more than one base page (batches of
        // >= 64) and a failure can still shrink to a small one; keys of at most 5 letters
        // over 3 are dense, so deletes and prefixes hit base keys.
        prop::collection::vec((family(), key(5)), 0..=300),
        prop::collection::vec((write(), read()), 0..=150),
        prop::collection::vec((write(), read()), 0..=100),
        [reads(), reads(), reads()],
    )
        .prop_map(|(base, parent, child, checks)| Case {
            base,
            parent,
            child,
            checks,
        })
}

fn model_scan(model: &Model, r: &Read) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .filter(|((f, k), _)| *f == r.family && k.starts_with(r.prefix.as_bytes()))
        .filter(|((_, k), _)| r.after.as_ref().is_none_or(|a| k.as_slice() > a.as_bytes()))
        .take(r.limit)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

/// Scan results as text, so that a failure prints readably.
fn readable(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// Checks one scan and one get of `view` against `model`.
fn check_read(
    view: &dyn StateRead,
    model: &Model,
    r: &Read,
    ctx: &str,
) -> Result<(), TestCaseError> {
    let got = view
        .scan(
            r.family,
            r.prefix.as_bytes(),
            r.after.as_ref().map(|a| a.as_bytes()),
            r.limit,
        )
        .unwrap();
    prop_assert_eq!(
        readable(&got),
        readable(&model_scan(model, r)),
        "{}: scan {:?}",
        ctx,
        r
    );
    let text = |v: Option<Vec<u8>>| v.map(|v| String::from_utf8_lossy(&v).into_owned());
    prop_assert_eq!(
        text(view.get(r.family, r.get.as_bytes()).unwrap()),
        text(model.get(&(r.family, r.get.clone().into_bytes())).cloned()),
        "{}: get {:?}",
        ctx,
        r.get
    );
    Ok(())
}

/// Applies `w` to both the overlay and the model.
fn apply(w: &Write, overlay: &mut Overlay<'_>, model: &mut Model, step: usize) {
    match w.clone() {
        Write::Put(f, k) => {
            let k = k.into_bytes();
            let v = format!("v{step}").into_bytes();
            overlay.put(f, k.clone(), v.clone());
            model.insert((f, k), v);
        }
        Write::Delete(f, k) => {
            let k = k.into_bytes();
            overlay.delete(f, k.clone());
            model.remove(&(f, k));
        }
        Write::DeletePrefix(f, p) => {
            let p = p.into_bytes();
            overlay.delete_prefix(f, p.clone());
            model.retain(|(family, k), _| !(*family == f && k.starts_with(&p)));
        }
    }
}

fn overlay_matches_model(case: Case) -> Result<(), TestCaseError> {
    let mut base = MemState::default();
    for (i, (family, k)) in case.base.into_iter().enumerate() {
        base.data
            .insert((family, k.into_bytes()), format!("base{i}").into_bytes());
    }
    let mut model = base.data.clone();
    let mut parent = Overlay::new(&base);
    for (step, (w, r)) in case.parent.iter().enumerate() {
        apply(w, &mut parent, &mut model, step);
        check_read(&parent, &model, r, &format!("parent, after write {step}"))?;
    }
    for r in &case.checks[0] {
        check_read(&parent, &model, r, "parent")?;
    }

    // A child overlay over the parent (group commit): reads see both layers; the
    // child's writes extend the parent to the same state.
    let mut child_model = model.clone();
    let child_writes = {
        let mut child = Overlay::new(&parent);
        for (step, (w, r)) in case.child.iter().enumerate() {
            let step = case.parent.len() + step;
            apply(w, &mut child, &mut child_model, step);
            check_read(
                &child,
                &child_model,
                r,
                &format!("child, after write {step}"),
            )?;
        }
        child.into_writes()
    };
    // A dropped child leaves the parent as it was.
    for r in &case.checks[1] {
        check_read(&parent, &model, r, "parent (child dropped)")?;
    }
    parent.extend(child_writes);
    for r in &case.checks[2] {
        check_read(&parent, &child_model, r, "parent (child kept)")?;
    }

    // Applying the writes in order reproduces the model exactly.
    let writes = parent.into_writes();
    base.apply(writes);
    prop_assert_eq!(base.data, child_model, "applied writes");
    Ok(())
}

#[test]
fn overlay_scan_matches_a_model_under_random_puts_deletes_and_prefix_deletes() {
    TestRunner::new(proptest_config(CASES, 0x1234_5678))
        .run(&case(), overlay_matches_model)
        .unwrap_or_else(|e| panic!("{e}"));
}
