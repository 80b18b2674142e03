//! Any JSON Patch a client sends is answered without a panic: proptest generates
//! sequences of patches (all six RFC 6902 operations and a bogus one, over real and
//! bogus paths, with random values, and now and then a body that is not a patch at
//! all) and applies them in turn to a twin with components, writable and enum
//! properties. A rejected patch writes nothing; an accepted one leaves a twin that
//! still renders and still conforms (re-PUTting its own body is accepted). A failure
//! prints the shrunk sequence; the seed is printed, `DOPPEL_SEED=<n>` replays a run,
//! `DOPPEL_SEED=random` explores new ones.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use doppel_twins::{Command, Condition, Outcome};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

/// 100 sequences of 1 to 40 patches: about the 2,000 patches of one run before proptest.
const CASES: u32 = 100;
const MAX_PATCHES: usize = 40;

const PATHS: &[&str] = &[
    "/serial",
    "/setPoint",
    "/mode",
    "/motor",
    "/motor/rpm",
    "/motor/limit",
    "/motor/nope",
    "/nope",
    "/temp",
    "/$metadata",
    "/$dtId",
    "",
    "/",
    "/-",
    "/motor/-",
    "/serial/0",
    "/motor/$metadata",
    "/~1x",
    "/a~0b",
];
/// The device model's properties (and its component's).
const REAL_PATHS: &[&str] = &[
    "/serial",
    "/setPoint",
    "/mode",
    "/motor/rpm",
    "/motor/limit",
];
/// The six RFC 6902 operations first, then a bogus one.
const OPS: &[&str] = &["add", "remove", "replace", "move", "copy", "test", "nope"];

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-4999i64..5000).prop_map(|n| json!(n)),
        (0u32..10_000).prop_map(|n| json!(f64::from(n) / 7.0)),
        select(&["auto", "manual", "S-9", "", "fast"][..]).prop_map(|s| json!(s)),
        (0u32..3000).prop_map(|rpm| json!({ "rpm": rpm })),
        Just(json!([1, "x"])),
        Just(Value::Object(Map::new())),
    ]
}

/// One operation: one in four anything from the vocabulary (three in four carry a
/// `value`, one in three a `from`), the others a real operation on one of the model's
/// properties, so that some patches are accepted and the twin they leave is checked.
fn operation() -> impl Strategy<Value = Value> {
    let anything = (
        select(OPS),
        select(PATHS),
        prop::option::weighted(0.75, value()),
        prop::option::weighted(1.0 / 3.0, select(PATHS)),
    );
    let plausible = (
        select(&OPS[..6]),
        select(REAL_PATHS),
        value().prop_map(Some),
        prop::option::weighted(0.5, select(REAL_PATHS)),
    );
    prop_oneof![1 => anything, 3 => plausible].prop_map(|(op, path, value, from)| {
        let mut op = json!({ "op": op, "path": path });
        if let Some(v) = value {
            op["value"] = v;
        }
        if let Some(from) = from {
            op["from"] = json!(from);
        }
        op
    })
}

/// A patch of one to four operations, or (one time in twenty) a value that is no patch.
fn patch() -> impl Strategy<Value = Value> {
    prop_oneof![
        19 => prop::collection::vec(operation(), 1..=4).prop_map(Value::Array),
        1 => value(),
    ]
}

#[test]
fn random_json_patches_are_answered_without_panics_or_partial_writes() {
    let (applied, accepted) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let sequences = prop::collection::vec(patch(), 1..=MAX_PATCHES);
    TestRunner::new(proptest_config(CASES, 0x005e_edd0_bbe1))
        .run(&sequences, |patches| {
            let mut w = World::with_models();
            w.create("d1", DEVICE, json!({"serial": "S-1", "mode": "auto"}));
            for p in patches {
                applied.fetch_add(1, Ordering::Relaxed);
                let shown = p.to_string();
                let before = w.twin("d1");
                let (result, writes) = w.run_with_writes(Command::PatchTwin {
                    tenant: TENANT.into(),
                    twin_id: "d1".into(),
                    patch: p,
                    condition: Condition::Always,
                });
                match result {
                    Err(_) => {
                        prop_assert!(writes.is_empty(), "rejected {shown} wrote {writes:?}");
                        prop_assert_eq!(
                            w.twin("d1"),
                            before,
                            "rejected {} changed the twin",
                            shown
                        );
                    }
                    Ok(Outcome::Twin { twin, .. }) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        // The twin still conforms: its own body is accepted as a PUT.
                        let mut body = twin.to_json();
                        body.as_object_mut().map(|o| o.remove("$etag"));
                        w.ok(put_twin(TENANT, "d1", body, Condition::Always));
                    }
                    Ok(other) => {
                        return Err(TestCaseError::fail(format!("unexpected outcome {other:?}")))
                    }
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let (applied, accepted) = (applied.into_inner(), accepted.into_inner());
    println!("{accepted} of {applied} random patches were accepted");
    assert!(
        accepted > 0,
        "no patch was accepted: the conformance check never ran"
    );
}
