//! JSON Patch (RFC 6902) on twins, specified through the state machine: root and
//! component properties are added, replaced and removed (the others keep their order
//! and metadata); system properties and components cannot be patched away; a patch
//! that fails anywhere, or changes nothing, writes nothing.

mod common;

use common::*;
use doppel_twins::{Command, Condition};
use serde_json::{json, Value};

fn patch_cmd(id: &str, patch: Value, condition: Condition) -> Command {
    Command::PatchTwin {
        tenant: TENANT.into(),
        twin_id: id.into(),
        patch,
        condition,
    }
}

#[test]
fn patch_removing_a_property_keeps_the_order_of_the_others() {
    let mut w = World::with_models();
    w.create(
        "d1",
        DEVICE,
        json!({"serial": "S", "mode": "auto", "setPoint": 1.0}),
    );
    let t = twin_of(
        w.patch("d1", json!([{"op": "remove", "path": "/serial"}]))
            .unwrap(),
    );
    let order: Vec<&String> = t.root.values.keys().collect();
    assert_eq!(order, ["mode", "setPoint"]);
}

#[test]
fn patch_adds_replaces_and_removes_root_properties() {
    let mut w = plant();
    let t = twin_of(
        w.patch(
            "d1",
            json!([
                {"op": "add", "path": "/mode", "value": "manual"},
                {"op": "replace", "path": "/serial", "value": "S-2"},
                {"op": "add", "path": "/setPoint", "value": 20.0}
            ]),
        )
        .unwrap(),
    );
    assert_eq!(t, w.twin("d1"));
    assert_eq!(t.root.values["mode"], json!("manual"));
    assert_eq!(t.root.values["serial"], json!("S-2"));
    assert_eq!(t.root.meta["setPoint"].desired_version, Some(1));
    let t = twin_of(
        w.patch("d1", json!([{"op": "remove", "path": "/mode"}]))
            .unwrap(),
    );
    assert!(!t.root.values.contains_key("mode"));
    assert!(
        !t.root.meta.contains_key("mode"),
        "metadata goes with the value"
    );
}

#[test]
fn patch_adds_replaces_and_removes_component_properties() {
    let mut w = plant();
    w.patch(
        "d1",
        json!([{"op": "add", "path": "/motor/rpm", "value": 900}]),
    )
    .unwrap();
    assert_eq!(w.twin("d1").components["motor"].values["rpm"], json!(900));
    w.patch(
        "d1",
        json!([{"op": "replace", "path": "/motor/rpm", "value": 1000}]),
    )
    .unwrap();
    assert_eq!(w.twin("d1").components["motor"].values["rpm"], json!(1000));
    w.patch(
        "d1",
        json!([{"op": "add", "path": "/motor/limit", "value": 5}]),
    )
    .unwrap();
    assert_eq!(
        w.twin("d1").components["motor"].meta["limit"].desired_version,
        Some(1)
    );
    w.patch("d1", json!([{"op": "remove", "path": "/motor/rpm"}]))
        .unwrap();
    let motor = &w.twin("d1").components["motor"];
    assert!(!motor.values.contains_key("rpm") && !motor.meta.contains_key("rpm"));
    // Replacing the component object as a whole is a patch of its properties.
    w.patch(
        "d1",
        json!([{"op": "replace", "path": "/motor", "value": {"rpm": 1}}]),
    )
    .unwrap();
    let motor = &w.twin("d1").components["motor"];
    assert_eq!(motor.values.len(), 1);
    assert_eq!(motor.values["rpm"], json!(1));
}

#[test]
fn patch_with_a_failing_test_op_changes_nothing() {
    let mut w = plant();
    let before = w.twin("d1");
    let cmd = patch_cmd(
        "d1",
        json!([
            {"op": "replace", "path": "/serial", "value": "changed"},
            {"op": "test", "path": "/serial", "value": "something else"}
        ]),
        Condition::Always,
    );
    w.err_no_writes(cmd, "InvalidArgument");
    assert_eq!(w.twin("d1"), before);
    // A passing test op lets the patch through.
    w.patch(
        "d1",
        json!([
            {"op": "test", "path": "/serial", "value": "S-1"},
            {"op": "replace", "path": "/serial", "value": "S-3"}
        ]),
    )
    .unwrap();
    assert_eq!(w.twin("d1").root.values["serial"], json!("S-3"));
}

#[test]
fn patch_with_an_invalid_value_is_refused_without_any_write() {
    let mut w = plant();
    let before = w.twin("d1");
    let e = w.err_no_writes(
        patch_cmd(
            "d1",
            json!([
                {"op": "replace", "path": "/serial", "value": "fine"},
                {"op": "add", "path": "/motor/rpm", "value": "fast"}
            ]),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(e.to_string().contains("/motor/rpm"), "{e}");
    let e = w.err_no_writes(
        patch_cmd(
            "d1",
            json!([
                {"op": "add", "path": "/motor/rpm", "value": 5},
                {"op": "add", "path": "/setPoint", "value": true}
            ]),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(e.to_string().contains("/setPoint"), "{e}");
    let e = w.err_no_writes(
        patch_cmd(
            "d1",
            json!([{"op": "add", "path": "/temp", "value": 1.0}]),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(e.to_string().contains("Telemetry"), "{e}");
    assert_eq!(w.twin("d1"), before);
}

#[test]
fn patch_of_metadata_is_refused() {
    let mut w = plant();
    for path in ["/$metadata/$model", "/$dtId", "/$etag", "/$metadata"] {
        w.err_no_writes(
            patch_cmd(
                "d1",
                json!([{"op": "replace", "path": path, "value": LINE}]),
                Condition::Always,
            ),
            "InvalidArgument",
        );
    }
    w.err_no_writes(
        patch_cmd(
            "d1",
            json!([{"op": "copy", "from": "/$dtId", "path": "/serial"}]),
            Condition::Always,
        ),
        "InvalidArgument",
    );
    let code_of_component_meta = w
        .run(patch_cmd(
            "d1",
            json!([{"op": "add", "path": "/motor/$metadata", "value": {}}]),
            Condition::Always,
        ))
        .unwrap_err()
        .code()
        .as_str();
    assert!(
        ["InvalidArgument", "ValidationFailed"].contains(&code_of_component_meta),
        "{code_of_component_meta}"
    );
    assert_eq!(w.twin("d1").model, DEVICE);
}

#[test]
fn patch_removing_a_component_is_refused() {
    let mut w = plant();
    let e = w.err_no_writes(
        patch_cmd(
            "d1",
            json!([{"op": "remove", "path": "/motor"}]),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(e.to_string().contains("/motor"), "{e}");
}

#[test]
fn patch_that_changes_nothing_writes_nothing_and_keeps_the_etag() {
    let mut w = plant();
    let before = w.twin("d1");
    let (r, writes) = w.run_with_writes(patch_cmd(
        "d1",
        json!([
            {"op": "replace", "path": "/serial", "value": "S-1"},
            {"op": "add", "path": "/mode", "value": "auto"},
            {"op": "remove", "path": "/mode"}
        ]),
        Condition::Always,
    ));
    let t = twin_of(r.unwrap());
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(t.etag, before.etag);
    assert_eq!(w.twin("d1"), before);
    let (r, writes) = w.run_with_writes(patch_cmd("d1", json!([]), Condition::Always));
    r.unwrap();
    assert!(writes.is_empty());
}

#[test]
fn patch_updates_last_update_time_only_of_changed_properties() {
    let mut w = plant();
    w.patch("d1", json!([{"op": "add", "path": "/mode", "value": "auto"}, {"op": "add", "path": "/motor/rpm", "value": 1}]))
        .unwrap();
    let before = w.twin("d1");
    let t = twin_of(
        w.patch(
            "d1",
            json!([
                {"op": "replace", "path": "/mode", "value": "manual"},
                {"op": "replace", "path": "/serial", "value": "S-1"}
            ]),
        )
        .unwrap(),
    );
    let now = stamp_at(w.clock).now;
    assert_eq!(t.root.meta["mode"].last_update_time, now);
    assert_eq!(
        t.root.meta["serial"], before.root.meta["serial"],
        "unchanged value keeps its metadata"
    );
    assert_eq!(
        t.components["motor"].meta["rpm"],
        before.components["motor"].meta["rpm"]
    );
    assert_eq!(t.last_update_time, now);
    assert_ne!(t.etag, before.etag);
}

#[test]
fn patch_conditions_and_missing_twins() {
    let mut w = plant();
    let etag = w.twin("d1").etag;
    let op = json!([{"op": "replace", "path": "/serial", "value": "z"}]);
    w.err_no_writes(
        patch_cmd("d1", op.clone(), Condition::IfMatch("W/\"bad\"".into())),
        "PreconditionFailed",
    );
    w.ok(patch_cmd("d1", op.clone(), Condition::IfMatch(etag)));
    w.ok(patch_cmd("d1", op.clone(), Condition::IfMatch("*".into())));
    w.err_no_writes(
        patch_cmd("nope", op.clone(), Condition::Always),
        "DigitalTwinNotFound",
    );
    w.err_no_writes(
        patch_cmd("d1", json!({"op": "add"}), Condition::Always),
        "InvalidArgument",
    );
    w.err_no_writes(
        patch_cmd(
            "d1",
            json!([{"op": "frobnicate", "path": "/serial"}]),
            Condition::Always,
        ),
        "InvalidArgument",
    );
    w.err_no_writes(
        patch_cmd(
            "d1",
            json!([{"op": "replace", "path": "/nope", "value": 1}]),
            Condition::Always,
        ),
        "InvalidArgument",
    );
}

#[test]
fn a_failing_patch_after_successful_ops_is_rejected_not_a_panic() {
    // json-patch's own undo panics on this shape (a later op fails after earlier ones
    // applied); the state machine must answer it like any invalid patch.
    let mut w = plant();
    let before = w.twin("d1");
    w.err_no_writes(
        Command::PatchTwin {
            tenant: TENANT.into(),
            twin_id: "d1".into(),
            // Found by tests/random_patches_never_panic.rs (seed 23758).
            patch: json!([
                {"op": "move", "from": "/motor", "path": ""},
                {"op": "remove", "path": "/motor/rpm"}
            ]),
            condition: Condition::Always,
        },
        "InvalidArgument",
    );
    assert_eq!(w.twin("d1"), before);
}
