//! The per-shard state machine, specified through its public API.
//!
//! Every test drives `StateMachine::apply` over a `MemState` exactly as the storage
//! shell does (apply into an overlay, keep the writes only on success) and states one
//! rule of the twin, model, relationship, telemetry or token behaviour. Error cases
//! always check the stable error code (`TwinError::code`), never just "it failed".

mod common;

use common::*;
use doppel_twins::keys::{self, Family, MetaKind, SYSTEM_TENANT};
use doppel_twins::{
    Command, Condition, DeviceSpec, DeviceStatus, MemState, Outcome, Overlay, Role, StateMachine,
    StateRead, TokenRecord,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn upload(tenant: &str, documents: Vec<Value>) -> Command {
    Command::UploadModels {
        tenant: tenant.into(),
        documents,
    }
}

fn delete_model(model: &str) -> Command {
    Command::DeleteModel {
        tenant: TENANT.into(),
        model: model.into(),
    }
}

fn decommission(model: &str, decommissioned: bool) -> Command {
    Command::SetModelDecommissioned {
        tenant: TENANT.into(),
        model: model.into(),
        decommissioned,
    }
}

/// The record that twin `twin` uses `model`: on the twin's own shard.
fn model_use_key(model: &str, twin: &str) -> Vec<u8> {
    keys::model_use(keys::shard_of(TENANT, twin, SHARDS), TENANT, model, twin)
}

fn model_stored(w: &World, tenant: &str, id: &str) -> bool {
    w.exists(Family::Meta, &keys::meta(tenant, MetaKind::Model, id))
}

/// A plant with a device `d1` (motor component), a line `l1` and an assembly line `a1`.
fn plant() -> World {
    let mut w = World::with_models();
    w.create("d1", DEVICE, json!({"serial": "S-1"}));
    w.create("l1", LINE, json!({"title": "Line 1"}));
    w.create(
        "a1",
        ASSEMBLY_LINE,
        json!({"title": "Assembly", "stations": 4}),
    );
    w
}

// ==== models ==========================================================================

#[test]
fn model_upload_stores_every_interface_of_the_batch() {
    let mut w = World::new();
    let out = w.ok(upload(TENANT, models()));
    let Outcome::Models(recs) = out else {
        panic!("expected models, got {out:?}")
    };
    assert_eq!(recs.len(), 5);
    for id in [DEVICE, MOTOR, LINE, ASSEMBLY_LINE, SENSOR] {
        assert!(model_stored(&w, TENANT, id), "{id} stored");
    }
    assert!(recs.iter().all(|r| !r.decommissioned));
}

#[test]
fn model_upload_is_all_or_nothing() {
    let mut w = World::new();
    let bad = iface(
        "dtmi:test:Bad;1",
        json!({"contents": [{"@type": "Property", "name": "x", "schema": "notASchema"}]}),
    );
    let e = w.err_no_writes(
        upload(TENANT, vec![line_model(), bad, sensor_model()]),
        "DTDLParserError",
    );
    assert!(e.to_string().contains("dtmi:test:Bad;1"), "{e}");
    assert!(w.mem.data.is_empty(), "nothing stored: {:?}", w.mem.data);
}

#[test]
fn model_upload_of_an_empty_batch_is_refused() {
    let mut w = World::new();
    w.err_no_writes(upload(TENANT, vec![]), "InvalidArgument");
}

#[test]
fn model_upload_of_an_existing_model_is_refused_as_a_whole() {
    let mut w = World::new();
    w.ok(upload(TENANT, vec![line_model()]));
    let e = w.err_no_writes(
        upload(TENANT, vec![sensor_model(), line_model()]),
        "ModelIdAlreadyExists",
    );
    assert!(e.to_string().contains(LINE), "{e}");
    assert!(
        !model_stored(&w, TENANT, SENSOR),
        "the new model of the batch is not kept"
    );
}

#[test]
fn model_upload_with_duplicate_ids_in_one_batch_is_refused() {
    let mut w = World::new();
    w.err_no_writes(
        upload(TENANT, vec![line_model(), line_model()]),
        "DTDLParserError",
    );
}

#[test]
fn model_can_extend_and_use_components_of_models_in_the_same_batch() {
    let mut w = World::new();
    w.ok(upload(TENANT, models()));
    let t = w.create("d", DEVICE, json!({"motor": {"rpm": 5}}));
    assert_eq!(t.components["motor"].values["rpm"], json!(5));
}

#[test]
fn model_can_extend_and_use_components_of_registered_models() {
    let mut w = World::new();
    w.ok(upload(TENANT, vec![motor_model(), line_model()]));
    w.ok(upload(TENANT, vec![assembly_line_model(), sensor_model()]));
    w.ok(upload(TENANT, vec![device_model()]));
    let t = w.create(
        "a",
        ASSEMBLY_LINE,
        json!({"title": "inherited", "stations": 2}),
    );
    assert_eq!(t.root.values["title"], json!("inherited"));
    w.create("d", DEVICE, json!({"motor": {"rpm": 1}}));
}

#[test]
fn model_referencing_an_unregistered_model_is_refused() {
    let mut w = World::new();
    w.err_no_writes(
        upload(TENANT, vec![assembly_line_model()]),
        "DTDLParserError",
    );
    assert!(w.mem.data.is_empty());
}

#[test]
fn model_delete_of_an_unknown_model_is_not_found() {
    let mut w = World::with_models();
    w.err(delete_model("dtmi:test:Nope;1"), "ModelNotFound");
}

#[test]
fn model_delete_is_refused_while_a_twin_uses_it() {
    let mut w = World::with_models();
    w.create("s", SENSOR, json!({}));
    let e = w.err(delete_model(SENSOR), "ModelInUse");
    assert!(e.to_string().contains("'s'"), "names the twin: {e}");
    w.delete_twin("s").unwrap();
    w.ok(delete_model(SENSOR));
    assert!(!model_stored(&w, TENANT, SENSOR));
}

#[test]
fn model_delete_is_refused_while_another_model_depends_on_it() {
    let mut w = World::with_models();
    let e = w.err(delete_model(LINE), "ModelReferencesNotDeleted");
    assert!(e.to_string().contains(ASSEMBLY_LINE), "{e}");
    let e = w.err(delete_model(MOTOR), "ModelReferencesNotDeleted");
    assert!(e.to_string().contains(DEVICE), "{e}");
    // Once the dependants are gone, the model can go.
    w.ok(delete_model(DEVICE));
    w.ok(delete_model(MOTOR));
    w.ok(delete_model(ASSEMBLY_LINE));
    w.ok(delete_model(LINE));
}

#[test]
fn model_deleted_can_be_uploaded_again_with_new_content() {
    let mut w = World::with_models();
    w.ok(delete_model(SENSOR));
    w.err(
        put_twin(
            TENANT,
            "s",
            twin_body("s", SENSOR, json!({})),
            Condition::Always,
        ),
        "ModelNotFound",
    );
    let v2 = iface(
        SENSOR,
        json!({"contents": [{"@type": "Property", "name": "range", "schema": "double"}]}),
    );
    w.ok(upload(TENANT, vec![v2]));
    let t = w.create("s", SENSOR, json!({"range": 2.5}));
    assert_eq!(t.root.values["range"], json!(2.5));
    let e = w.err(
        put_twin(
            TENANT,
            "s2",
            twin_body("s2", SENSOR, json!({"kind": "old"})),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(e.to_string().contains("/kind"), "{e}");
}

#[test]
fn model_decommissioned_blocks_new_twins_but_not_existing_ones() {
    let mut w = plant();
    w.ok(decommission(LINE, true));
    let e = w.err(
        put_twin(
            TENANT,
            "l2",
            twin_body("l2", LINE, json!({})),
            Condition::Always,
        ),
        "ModelDecommissioned",
    );
    assert!(e.to_string().contains(LINE));
    // The existing twin can still be replaced and patched.
    w.put_twin("l1", twin_body("l1", LINE, json!({"title": "renamed"})))
        .unwrap();
    w.patch(
        "l1",
        json!([{"op": "replace", "path": "/title", "value": "again"}]),
    )
    .unwrap();
    assert_eq!(w.twin("l1").root.values["title"], json!("again"));
    // Moving an existing twin of another model onto it is a new use: refused.
    w.err(
        put_twin(
            TENANT,
            "a1",
            twin_body("a1", LINE, json!({})),
            Condition::Always,
        ),
        "ModelDecommissioned",
    );
}

#[test]
fn model_decommissioning_cannot_be_undone() {
    let mut w = World::with_models();
    w.ok(decommission(SENSOR, true));
    w.err(decommission(SENSOR, false), "InvalidArgument");
    w.ok(decommission(SENSOR, true));
    w.err(decommission("dtmi:test:Nope;1", true), "ModelNotFound");
}

// ==== twins: PUT ======================================================================

#[test]
fn twin_put_creates_a_twin_with_metadata() {
    let mut w = World::with_models();
    let out = w.ok(put_twin(
        TENANT,
        "d1",
        twin_body("d1", DEVICE, json!({"serial": "S-1", "mode": "auto"})),
        Condition::Always,
    ));
    let Outcome::Twin { twin, created, .. } = out else {
        panic!("{out:?}")
    };
    assert!(created);
    assert_eq!(twin, w.twin("d1"), "the outcome is what was stored");
    assert_eq!(twin.model, DEVICE);
    assert_eq!(twin.etag, stamp_at(w.clock).etag());
    assert_eq!(twin.last_update_time, stamp_at(w.clock).now);
    assert_eq!(
        twin.root.meta["serial"].last_update_time,
        stamp_at(w.clock).now
    );
    let j = twin.to_json();
    assert_eq!(j["$dtId"], "d1");
    assert_eq!(j["$metadata"]["$model"], DEVICE);
    assert_eq!(j["serial"], "S-1");
    assert!(w.exists(Family::Meta, &model_use_key(DEVICE, "d1")));
    // Replacing reports created = false.
    let out = w.ok(put_twin(
        TENANT,
        "d1",
        twin_body("d1", DEVICE, json!({})),
        Condition::Always,
    ));
    assert!(matches!(out, Outcome::Twin { created: false, .. }));
}

#[test]
fn twin_put_refuses_a_dt_id_that_differs_from_the_path() {
    let mut w = World::with_models();
    let e = w.err_no_writes(
        put_twin(
            TENANT,
            "d1",
            twin_body("other", DEVICE, json!({})),
            Condition::Always,
        ),
        "InvalidArgument",
    );
    assert!(e.to_string().contains("other"), "{e}");
}

#[test]
fn twin_put_refuses_invalid_twin_ids() {
    let mut w = World::with_models();
    for bad in ["", "a/b", "$x", "has space"] {
        w.err_no_writes(
            put_twin(
                TENANT,
                bad,
                json!({"$metadata": {"$model": DEVICE}}),
                Condition::Always,
            ),
            "InvalidArgument",
        );
    }
}

#[test]
fn twin_put_needs_a_registered_model() {
    let mut w = World::with_models();
    w.err_no_writes(
        put_twin(TENANT, "d1", json!({"$dtId": "d1"}), Condition::Always),
        "InvalidArgument",
    );
    w.err_no_writes(
        put_twin(TENANT, "d1", json!({"$metadata": {}}), Condition::Always),
        "InvalidArgument",
    );
    let e = w.err_no_writes(
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", "dtmi:test:Unknown;1", json!({})),
            Condition::Always,
        ),
        "ModelNotFound",
    );
    assert!(e.to_string().contains("dtmi:test:Unknown;1"));
}

#[test]
fn twin_put_refuses_a_property_that_violates_its_schema() {
    let mut w = World::with_models();
    let e = w.err_no_writes(
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", DEVICE, json!({"setPoint": "hot"})),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(
        e.to_string().contains("/setPoint"),
        "names the property: {e}"
    );
    let e = w.err(
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", DEVICE, json!({"mode": "turbo"})),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(e.to_string().contains("/mode"), "{e}");
    let e = w.err(
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", DEVICE, json!({"colour": "red"})),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(
        e.to_string().contains("/colour") && e.to_string().contains("not defined"),
        "{e}"
    );
    assert!(w.twin_in(TENANT, "d1").is_none());
}

#[test]
fn twin_put_says_what_a_non_property_name_is() {
    let mut w = World::with_models();
    for (name, what) in [
        ("temp", "Telemetry"),
        ("reboot", "Command"),
        ("feeds", "Relationship"),
    ] {
        let e = w.err_no_writes(
            put_twin(
                TENANT,
                "d1",
                twin_body("d1", DEVICE, json!({ name: 1 })),
                Condition::Always,
            ),
            "ValidationFailed",
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("/{name}")) && msg.contains(what),
            "{name}: {msg}"
        );
    }
    // Inside a component, too.
    let e = w.err(
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", DEVICE, json!({"motor": {"vibration": 1.0}})),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(
        e.to_string().contains("/motor/vibration") && e.to_string().contains("Telemetry"),
        "{e}"
    );
}

#[test]
fn twin_put_refuses_unknown_system_properties() {
    let mut w = World::with_models();
    w.err_no_writes(
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", DEVICE, json!({"$color": "x"})),
            Condition::Always,
        ),
        "InvalidArgument",
    );
}

#[test]
fn twin_put_validates_components_against_their_interface() {
    let mut w = World::with_models();
    let e = w.err(
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", DEVICE, json!({"motor": {"rpm": 1.5}})),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(e.to_string().contains("/motor/rpm"), "{e}");
    let e = w.err(
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", DEVICE, json!({"motor": 7})),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(e.to_string().contains("/motor"), "{e}");
    // A root property name is not a component property.
    w.err(
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", DEVICE, json!({"motor": {"serial": "x"}})),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    let t = w.create(
        "d1",
        DEVICE,
        json!({"motor": {"rpm": 1500, "$metadata": {}}}),
    );
    assert_eq!(t.components["motor"].values["rpm"], json!(1500));
    assert!(t.components["motor"].meta.contains_key("rpm"));
}

#[test]
fn twin_put_creates_missing_components_empty() {
    let mut w = World::with_models();
    let t = w.create("d1", DEVICE, json!({}));
    let motor = &t.components["motor"];
    assert!(motor.values.is_empty() && motor.meta.is_empty());
    assert_eq!(t.to_json()["motor"], json!({"$metadata": {}}));
}

#[test]
fn twin_put_of_a_writable_property_records_the_desired_state() {
    let mut w = World::with_models();
    let t = w.create(
        "d1",
        DEVICE,
        json!({"setPoint": 21.5, "serial": "S", "motor": {"limit": 9}}),
    );
    let m = &t.root.meta["setPoint"];
    assert_eq!(m.desired_value, Some(json!(21.5)));
    assert_eq!(m.desired_version, Some(1));
    let j = t.to_json();
    assert_eq!(j["$metadata"]["setPoint"]["desiredValue"], json!(21.5));
    assert_eq!(j["$metadata"]["setPoint"]["desiredVersion"], json!(1));
    let serial = &t.root.meta["serial"];
    assert_eq!(
        serial.desired_value, None,
        "read-only properties have no desired state"
    );
    assert_eq!(serial.desired_version, None);
    let limit = t.components["motor"].meta["limit"].desired_version;
    assert!(limit.is_some_and(|v| v > 0), "{limit:?}");
}

#[test]
fn twin_put_replacing_keeps_desired_version_monotonic() {
    let mut w = World::with_models();
    w.create(
        "d1",
        DEVICE,
        json!({"setPoint": 1.0, "motor": {"limit": 1}}),
    );
    let mut last = 1;
    for v in [2.0, 2.0, 3.0] {
        let t = w.create("d1", DEVICE, json!({"setPoint": v, "motor": {"limit": 2}}));
        let version = t.root.meta["setPoint"].desired_version.unwrap();
        assert!(version > last, "desiredVersion {version} after {last}");
        last = version;
        assert_eq!(t.root.meta["setPoint"].desired_value, Some(json!(v)));
    }
    // A patch continues the sequence.
    w.patch(
        "d1",
        json!([{"op": "replace", "path": "/setPoint", "value": 9.0}]),
    )
    .unwrap();
    assert!(w.twin("d1").root.meta["setPoint"].desired_version > Some(last));
    // Re-setting an unchanged writable value by PUT is a new desired version too (the
    // app asked again), but a patch that does not change it is not.
    let before = w.twin("d1").root.meta["setPoint"].desired_version;
    w.patch(
        "d1",
        json!([{"op": "replace", "path": "/setPoint", "value": 9.0}]),
    )
    .unwrap();
    assert_eq!(w.twin("d1").root.meta["setPoint"].desired_version, before);
}

#[test]
fn desired_version_stays_monotonic_when_a_property_is_removed_and_set_again() {
    // A device acknowledges desired values by version; were versions to restart at 1
    // after a removal, a late ack of an old value would pass for an ack of the new one.
    let mut w = World::with_models();
    let mut versions = Vec::new();
    let mut note = |t: &doppel_twins::TwinRecord| {
        if let Some(v) = t.root.meta.get("setPoint").and_then(|m| m.desired_version) {
            versions.push(v);
        }
    };
    note(&w.create("d1", DEVICE, json!({"setPoint": 1.0})));
    note(&w.create("d1", DEVICE, json!({"setPoint": 2.0})));
    note(&w.create("d1", DEVICE, json!({})));
    note(&w.create("d1", DEVICE, json!({"setPoint": 3.0})));
    note(&twin_of(
        w.patch("d1", json!([{"op": "remove", "path": "/setPoint"}]))
            .unwrap(),
    ));
    note(&twin_of(
        w.patch(
            "d1",
            json!([{"op": "add", "path": "/setPoint", "value": 4.0}]),
        )
        .unwrap(),
    ));
    assert_eq!(versions.len(), 4, "{versions:?}");
    assert!(
        versions.windows(2).all(|p| p[0] < p[1]),
        "strictly increasing: {versions:?}"
    );
    // The same holds inside components.
    let a = w.create("d1", DEVICE, json!({"motor": {"limit": 1}}));
    w.patch("d1", json!([{"op": "remove", "path": "/motor/limit"}]))
        .unwrap();
    let b = twin_of(
        w.patch(
            "d1",
            json!([{"op": "add", "path": "/motor/limit", "value": 2}]),
        )
        .unwrap(),
    );
    assert!(
        b.components["motor"].meta["limit"].desired_version
            > a.components["motor"].meta["limit"].desired_version
    );
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
fn twin_put_replacing_drops_properties_not_in_the_body() {
    let mut w = World::with_models();
    w.create("d1", DEVICE, json!({"serial": "S", "mode": "auto"}));
    let t = w.create("d1", DEVICE, json!({"serial": "T"}));
    assert_eq!(t.root.values.len(), 1);
    assert!(!t.root.meta.contains_key("mode"));
}

#[test]
fn twin_put_with_if_none_match_refuses_an_existing_twin() {
    let mut w = World::with_models();
    w.put_twin_if(
        "d1",
        twin_body("d1", DEVICE, json!({})),
        Condition::IfNoneMatchAny,
    )
    .expect("creating with If-None-Match: * works");
    let before = w.twin("d1");
    assert_eq!(
        code(w.put_twin_if(
            "d1",
            twin_body("d1", DEVICE, json!({"serial": "x"})),
            Condition::IfNoneMatchAny
        )),
        "PreconditionFailed"
    );
    assert_eq!(w.twin("d1"), before);
}

#[test]
fn twin_put_with_if_match_needs_the_current_etag() {
    let mut w = World::with_models();
    let t = w.create("d1", DEVICE, json!({}));
    assert_eq!(
        code(w.put_twin_if(
            "d1",
            twin_body("d1", DEVICE, json!({"serial": "x"})),
            Condition::IfMatch("W/\"0000000000000000\"".into())
        )),
        "PreconditionFailed"
    );
    let t2 = twin_of(
        w.put_twin_if(
            "d1",
            twin_body("d1", DEVICE, json!({"serial": "x"})),
            Condition::IfMatch(t.etag.clone()),
        )
        .unwrap(),
    );
    assert_ne!(t2.etag, t.etag, "a change gets a new etag");
    // The old etag is stale now.
    assert_eq!(
        code(w.put_twin_if(
            "d1",
            twin_body("d1", DEVICE, json!({})),
            Condition::IfMatch(t.etag)
        )),
        "PreconditionFailed"
    );
}

#[test]
fn twin_put_with_if_match_star_needs_the_twin_to_exist() {
    let mut w = World::with_models();
    assert_eq!(
        code(w.put_twin_if(
            "d1",
            twin_body("d1", DEVICE, json!({})),
            Condition::IfMatch("*".into())
        )),
        "PreconditionFailed"
    );
    assert!(w.twin_in(TENANT, "d1").is_none());
    w.create("d1", DEVICE, json!({}));
    w.put_twin_if(
        "d1",
        twin_body("d1", DEVICE, json!({"serial": "y"})),
        Condition::IfMatch("*".into()),
    )
    .unwrap();
    assert_eq!(w.twin("d1").root.values["serial"], json!("y"));
}

#[test]
fn twin_put_changing_the_model_moves_its_model_use() {
    let mut w = plant();
    w.create("x", LINE, json!({}));
    w.create("x", SENSOR, json!({"kind": "k"}));
    assert!(!w.exists(Family::Meta, &model_use_key(LINE, "x")));
    assert!(w.exists(Family::Meta, &model_use_key(SENSOR, "x")));
}

// ==== twins: PATCH ====================================================================

fn patch_cmd(id: &str, patch: Value, condition: Condition) -> Command {
    Command::PatchTwin {
        tenant: TENANT.into(),
        twin_id: id.into(),
        patch,
        condition,
    }
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

// ==== relationships ===================================================================

/// The incoming-relationship index entry; it lives on the shard of the *source*.
fn rel_in_key(target: &str, source: &str, rel: &str) -> Vec<u8> {
    keys::rel_in(
        keys::shard_of(TENANT, source, SHARDS),
        TENANT,
        target,
        source,
        rel,
    )
}

#[test]
fn relationship_is_created_with_its_incoming_index_on_the_source_shard() {
    let mut w = plant();
    let source_shard = keys::shard_of(TENANT, "d1", SHARDS);
    let target = (0..)
        .map(|i| format!("line-{i}"))
        .find(|t| keys::shard_of(TENANT, t, SHARDS) != source_shard)
        .unwrap();
    w.create(&target, LINE, json!({}));
    let out = w
        .relate(
            "d1",
            "r1",
            rel_body(&target, "feeds", json!({"since": "2024-01-01T00:00:00Z"})),
        )
        .unwrap();
    let Outcome::Relationship { rel, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        (rel.source.as_str(), rel.target.as_str(), rel.name.as_str()),
        ("d1", target.as_str(), "feeds")
    );
    assert_eq!(rel.properties["since"], json!("2024-01-01T00:00:00Z"));
    assert_eq!(rel.to_json()["$targetId"], json!(target));
    assert_eq!(
        doppel_twins::load_relationship(&w.mem, SHARDS, TENANT, "d1", "r1").unwrap(),
        Some(rel)
    );
    assert!(w.exists(
        Family::RelOut,
        &keys::rel_out(source_shard, TENANT, "d1", "r1")
    ));
    assert!(w.exists(Family::RelIn, &rel_in_key(&target, "d1", "r1")));
    // …and nowhere else.
    assert_eq!(w.keys_under(Family::RelIn, b"").len(), 1);
    assert_eq!(w.keys_under(Family::RelOut, b"").len(), 1);
}

#[test]
fn relationship_name_must_be_declared_by_the_source_model() {
    let mut w = plant();
    let e = w
        .relate("d1", "r1", rel_body("l1", "owns", json!({})))
        .unwrap_err();
    assert_eq!(e.code(), "ValidationFailed");
    assert!(e.to_string().contains("owns"), "{e}");
    // A property name is not a relationship name.
    assert_eq!(
        code(w.relate("d1", "r1", rel_body("l1", "serial", json!({})))),
        "ValidationFailed"
    );
    assert_eq!(
        code(w.relate("d1", "r1", json!({"$targetId": "l1"}))),
        "InvalidArgument"
    );
    assert_eq!(
        code(w.relate("d1", "r1", json!({"$relationshipName": "feeds"}))),
        "InvalidArgument"
    );
    assert_eq!(
        code(w.relate("nope", "r1", rel_body("l1", "feeds", json!({})))),
        "DigitalTwinNotFound"
    );
    assert_eq!(
        code(w.relate(
            "d1",
            "r1",
            json!({"$targetId": "l1", "$relationshipName": "feeds", "$sourceId": "other"})
        )),
        "InvalidArgument"
    );
}

#[test]
fn relationship_target_must_exist() {
    let mut w = plant();
    let e = w
        .relate("d1", "r1", rel_body("ghost", "feeds", json!({})))
        .unwrap_err();
    assert_eq!(e.code(), "ValidationFailed");
    assert!(e.to_string().contains("ghost"), "{e}");
    assert_eq!(
        code(w.relate("d1", "r1", rel_body("a/b", "near", json!({})))),
        "InvalidArgument"
    );
}

#[test]
fn relationship_target_model_must_be_or_extend_the_declared_target() {
    let mut w = plant();
    w.create("s1", SENSOR, json!({}));
    let e = w
        .relate("d1", "r1", rel_body("s1", "feeds", json!({})))
        .unwrap_err();
    assert_eq!(e.code(), "ValidationFailed");
    assert!(e.to_string().contains(LINE), "{e}");
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    w.relate("d1", "r2", rel_body("a1", "feeds", json!({})))
        .unwrap();
    // A relationship without a declared target may point at anything.
    w.relate("d1", "r3", rel_body("s1", "near", json!({})))
        .unwrap();
}

#[test]
fn relationship_properties_are_validated() {
    let mut w = plant();
    let e = w
        .relate(
            "d1",
            "r1",
            rel_body("l1", "feeds", json!({"since": "yesterday"})),
        )
        .unwrap_err();
    assert_eq!(e.code(), "ValidationFailed");
    assert!(e.to_string().contains("/since"), "{e}");
    let e = w
        .relate("d1", "r1", rel_body("l1", "feeds", json!({"weight": 1})))
        .unwrap_err();
    assert_eq!(e.code(), "ValidationFailed");
    assert!(e.to_string().contains("weight"), "{e}");
    assert_eq!(
        code(w.relate("d1", "r1", rel_body("l1", "feeds", json!({"$bogus": 1})))),
        "InvalidArgument"
    );
}

#[test]
fn relationship_max_multiplicity_is_enforced() {
    let mut w = plant();
    w.create("l2", LINE, json!({}));
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    w.relate("d1", "r2", rel_body("l2", "feeds", json!({})))
        .unwrap();
    let e = w
        .relate("d1", "r3", rel_body("a1", "feeds", json!({})))
        .unwrap_err();
    assert_eq!(e.code(), "ValidationFailed");
    assert!(e.to_string().contains("maxMultiplicity"), "{e}");
    // Replacing an existing relationship does not count it twice.
    w.relate(
        "d1",
        "r2",
        rel_body("a1", "feeds", json!({"since": "2024-02-02T00:00:00Z"})),
    )
    .unwrap();
    // Other relationship names do not count.
    for i in 0..5 {
        w.relate("d1", &format!("n{i}"), rel_body("l1", "near", json!({})))
            .unwrap();
    }
    // Deleting one frees a slot.
    w.delete_rel("d1", "r1").unwrap();
    w.relate("d1", "r3", rel_body("l1", "feeds", json!({})))
        .unwrap();
}

#[test]
fn relationship_name_cannot_change_on_replace() {
    let mut w = plant();
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    assert_eq!(
        code(w.relate("d1", "r1", rel_body("l1", "near", json!({})))),
        "InvalidArgument"
    );
}

#[test]
fn relationship_retarget_moves_the_incoming_index() {
    let mut w = plant();
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    w.relate("d1", "r1", rel_body("a1", "feeds", json!({})))
        .unwrap();
    assert!(!w.exists(Family::RelIn, &rel_in_key("l1", "d1", "r1")));
    assert!(w.exists(Family::RelIn, &rel_in_key("a1", "d1", "r1")));
    // The old target is free to go; the new one is not.
    w.delete_twin("l1").unwrap();
    assert_eq!(code(w.delete_twin("a1")), "DigitalTwinHasRelationships");
    // Replacing with the same target keeps the index.
    w.relate("d1", "r1", rel_body("a1", "feeds", json!({})))
        .unwrap();
    assert!(w.exists(Family::RelIn, &rel_in_key("a1", "d1", "r1")));
}

#[test]
fn relationship_delete_removes_both_records() {
    let mut w = plant();
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    w.delete_rel("d1", "r1").unwrap();
    assert!(!w.exists(Family::RelIn, &rel_in_key("l1", "d1", "r1")));
    assert!(
        doppel_twins::load_relationship(&w.mem, SHARDS, TENANT, "d1", "r1")
            .unwrap()
            .is_none()
    );
    assert_eq!(code(w.delete_rel("d1", "r1")), "RelationshipNotFound");
}

#[test]
fn relationship_conditions_follow_etags() {
    let mut w = plant();
    let Outcome::Relationship { rel, .. } = w
        .relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap()
    else {
        panic!()
    };
    let mut cmd = put_rel(TENANT, "d1", "r1", rel_body("l1", "feeds", json!({})));
    if let Command::PutRelationship { condition, .. } = &mut cmd {
        *condition = Condition::IfNoneMatchAny;
    }
    w.err(cmd, "PreconditionFailed");
    w.err(
        Command::DeleteRelationship {
            tenant: TENANT.into(),
            source: "d1".into(),
            rel_id: "r1".into(),
            condition: Condition::IfMatch("W/\"stale\"".into()),
        },
        "PreconditionFailed",
    );
    w.ok(Command::DeleteRelationship {
        tenant: TENANT.into(),
        source: "d1".into(),
        rel_id: "r1".into(),
        condition: Condition::IfMatch(rel.etag),
    });
}

#[test]
fn twin_delete_is_refused_while_it_has_relationships() {
    let mut w = plant();
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    let e = w.delete_twin("d1").unwrap_err();
    assert_eq!(e.code(), "DigitalTwinHasRelationships");
    assert!(
        e.to_string().contains("outgoing") && e.to_string().contains("r1"),
        "{e}"
    );
    let e = w.delete_twin("l1").unwrap_err();
    assert_eq!(e.code(), "DigitalTwinHasRelationships");
    assert!(
        e.to_string().contains("incoming") && e.to_string().contains("d1/r1"),
        "{e}"
    );
    w.delete_rel("d1", "r1").unwrap();
    w.delete_twin("l1").unwrap();
    w.delete_twin("d1").unwrap();
}

#[test]
fn twin_delete_removes_its_record_model_use_and_telemetry() {
    let mut w = plant();
    w.telemetry("d1", json!({"temp": 20.5, "motor": {"vibration": 0.1}}))
        .unwrap();
    let shard = keys::shard_of(TENANT, "d1", SHARDS);
    let prefix = keys::telemetry_prefix(shard, TENANT, "d1");
    assert_eq!(w.keys_under(Family::Telemetry, &prefix).len(), 2);
    w.delete_twin("d1").unwrap();
    assert!(w.twin_in(TENANT, "d1").is_none());
    assert!(!w.exists(Family::Meta, &model_use_key(DEVICE, "d1")));
    assert!(w.keys_under(Family::Telemetry, &prefix).is_empty());
    assert_eq!(code(w.delete_twin("d1")), "DigitalTwinNotFound");
    // Nothing else in the tenant's data was touched.
    assert!(w.twin_in(TENANT, "l1").is_some());
}

#[test]
fn twin_delete_checks_its_condition() {
    let mut w = plant();
    let etag = w.twin("d1").etag;
    w.err(
        Command::DeleteTwin {
            tenant: TENANT.into(),
            twin_id: "d1".into(),
            condition: Condition::IfMatch("W/\"x\"".into()),
        },
        "PreconditionFailed",
    );
    w.ok(Command::DeleteTwin {
        tenant: TENANT.into(),
        twin_id: "d1".into(),
        condition: Condition::IfMatch(etag),
    });
}

#[test]
fn twin_delete_of_a_twin_whose_id_prefixes_another_keeps_the_other() {
    // Keys are `…twin\0…`: deleting "d" must not reach telemetry or relationships of "d1".
    let mut w = plant();
    w.create("d", DEVICE, json!({}));
    w.telemetry("d1", json!({"temp": 1.0})).unwrap();
    w.relate("d1", "r", rel_body("l1", "near", json!({})))
        .unwrap();
    w.delete_twin("d").unwrap();
    let shard = keys::shard_of(TENANT, "d1", SHARDS);
    assert_eq!(
        w.keys_under(
            Family::Telemetry,
            &keys::telemetry_prefix(shard, TENANT, "d1")
        )
        .len(),
        1
    );
    assert!(w.exists(Family::Meta, &model_use_key(DEVICE, "d1")));
}

// ==== telemetry =======================================================================

#[test]
fn telemetry_is_stored_under_the_twins_prefix() {
    let mut w = plant();
    let (r, writes) = w.run_with_writes(Command::RecordTelemetry {
        tenant: TENANT.into(),
        twin_id: "d1".into(),
        body: json!({"temp": 21.5}),
        source_time: Some("2024-03-01T10:00:00.250Z".into()),
    });
    r.unwrap();
    let shard = keys::shard_of(TENANT, "d1", SHARDS);
    let prefix = keys::telemetry_prefix(shard, TENANT, "d1");
    assert_eq!(writes.len(), 1);
    let stored = w.keys_under(Family::Telemetry, &prefix);
    assert_eq!(stored.len(), 1);
    let mut name_prefix = prefix.clone();
    name_prefix.extend_from_slice(b"temp\0");
    assert!(stored[0].starts_with(&name_prefix));
    let ts = u64::from_be_bytes(
        stored[0][name_prefix.len()..name_prefix.len() + 8]
            .try_into()
            .unwrap(),
    );
    assert_eq!(ts, 1_709_287_200_250, "keyed by the source time in ms");
    let v = w.mem.get(Family::Telemetry, &stored[0]).unwrap().unwrap();
    let rec: Value = doppel_twins::codec::decode("telemetry", &v).unwrap();
    assert_eq!(rec["value"], json!(21.5));
}

#[test]
fn telemetry_of_a_component_is_stored_under_component_slash_name() {
    let mut w = plant();
    w.telemetry("d1", json!({"motor": {"vibration": 0.25}, "temp": 3.0}))
        .unwrap();
    let shard = keys::shard_of(TENANT, "d1", SHARDS);
    let mut p = keys::telemetry_prefix(shard, TENANT, "d1");
    p.extend_from_slice(b"motor/vibration\0");
    assert_eq!(w.keys_under(Family::Telemetry, &p).len(), 1);
}

#[test]
fn telemetry_with_unknown_names_or_wrong_types_is_refused_without_writes() {
    let mut w = plant();
    let tel = |body: Value| Command::RecordTelemetry {
        tenant: TENANT.into(),
        twin_id: "d1".into(),
        body,
        source_time: None,
    };
    let e = w.err_no_writes(
        tel(json!({"temp": 1.0, "pressure": 2.0})),
        "ValidationFailed",
    );
    assert!(e.to_string().contains("pressure"), "{e}");
    let e = w.err_no_writes(tel(json!({"temp": "warm"})), "ValidationFailed");
    assert!(e.to_string().contains("/temp"), "{e}");
    let e = w.err_no_writes(
        tel(json!({"temp": 1.0, "motor": {"vibration": "x"}})),
        "ValidationFailed",
    );
    assert!(e.to_string().contains("/motor/vibration"), "{e}");
    w.err_no_writes(tel(json!({"motor": {"rpm": 1}})), "ValidationFailed");
    w.err_no_writes(tel(json!({"serial": "x"})), "ValidationFailed");
    w.err_no_writes(tel(json!({})), "InvalidArgument");
    w.err_no_writes(tel(json!([1])), "InvalidArgument");
    let mut ghost = tel(json!({"temp": 1.0}));
    if let Command::RecordTelemetry { twin_id, .. } = &mut ghost {
        *twin_id = "ghost".into();
    }
    w.err_no_writes(ghost, "DigitalTwinNotFound");
    assert!(w.mem.data.keys().all(|(f, _)| *f != Family::Telemetry));
}

#[test]
fn telemetry_with_a_bad_timestamp_is_refused() {
    let mut w = plant();
    for bad in ["yesterday", "2024-13-01T00:00:00Z", "1969-12-31T23:59:59Z"] {
        w.err_no_writes(
            Command::RecordTelemetry {
                tenant: TENANT.into(),
                twin_id: "d1".into(),
                body: json!({"temp": 1.0}),
                source_time: Some(bad.into()),
            },
            "InvalidArgument",
        );
    }
}

#[test]
fn telemetry_does_not_change_the_twin() {
    let mut w = plant();
    let before = w.twin("d1");
    w.telemetry("d1", json!({"temp": 1.0})).unwrap();
    assert_eq!(w.twin("d1"), before);
}

// ==== tokens and tenants ==============================================================

fn token(id: &str, tenant: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        tenant: tenant.into(),
        name: format!("{id} token"),
        roles: vec![Role::Writer],
        secret_sha256: "00".repeat(32),
        created: "2024-01-01T00:00:00Z".into(),
    }
}

#[test]
fn put_token_creates_its_tenant() {
    let mut w = World::new();
    let out = w.ok(Command::PutToken {
        token: token("t1", "newco"),
    });
    assert_eq!(out, Outcome::Token(token("t1", "newco")));
    assert!(w.exists(
        Family::Meta,
        &keys::meta(SYSTEM_TENANT, MetaKind::Tenant, "newco")
    ));
    assert!(w.exists(
        Family::Meta,
        &keys::meta(SYSTEM_TENANT, MetaKind::Token, "t1")
    ));
    w.err_no_writes(
        Command::PutToken {
            token: token("t2", "Bad Tenant"),
        },
        "InvalidArgument",
    );
}

#[test]
fn ensure_tenant_is_idempotent_and_validates_the_name() {
    let mut w = World::new();
    w.ok(Command::EnsureTenant {
        tenant: "acme".into(),
    });
    let snapshot = w.mem.data.clone();
    let (r, writes) = w.run_with_writes(Command::EnsureTenant {
        tenant: "acme".into(),
    });
    r.unwrap();
    assert!(
        writes.is_empty(),
        "the tenant record keeps its creation time"
    );
    assert_eq!(w.mem.data, snapshot);
    for bad in ["", "Acme", "-x", "a/b", "a\0b"] {
        w.err_no_writes(
            Command::EnsureTenant { tenant: bad.into() },
            "InvalidArgument",
        );
    }
}

#[test]
fn revoke_token_only_within_its_tenant() {
    let mut w = World::new();
    w.ok(Command::PutToken {
        token: token("t1", "acme"),
    });
    w.ok(Command::PutToken {
        token: token("t2", "other"),
    });
    w.err_no_writes(
        Command::RevokeToken {
            tenant: "acme".into(),
            token_id: "t2".into(),
        },
        "TokenNotFound",
    );
    w.err_no_writes(
        Command::RevokeToken {
            tenant: "acme".into(),
            token_id: "nope".into(),
        },
        "TokenNotFound",
    );
    w.ok(Command::RevokeToken {
        tenant: "acme".into(),
        token_id: "t1".into(),
    });
    assert!(!w.exists(
        Family::Meta,
        &keys::meta(SYSTEM_TENANT, MetaKind::Token, "t1")
    ));
    assert!(w.exists(
        Family::Meta,
        &keys::meta(SYSTEM_TENANT, MetaKind::Token, "t2")
    ));
    w.err(
        Command::RevokeToken {
            tenant: "acme".into(),
            token_id: "t1".into(),
        },
        "TokenNotFound",
    );
}

// ==== tenancy =========================================================================

#[test]
fn tenants_never_see_each_others_twins_models_or_relationships() {
    let mut w = World::with_models();
    w.ok(upload("beta", vec![line_model(), sensor_model()]));
    w.create("x", LINE, json!({"title": "acme's"}));
    w.ok(put_twin(
        "beta",
        "x",
        twin_body("x", SENSOR, json!({"kind": "beta's"})),
        Condition::Always,
    ));
    assert_eq!(w.twin_in(TENANT, "x").unwrap().model, LINE);
    assert_eq!(w.twin_in("beta", "x").unwrap().model, SENSOR);
    // beta never uploaded Device: its model registry is its own.
    w.err(
        put_twin(
            "beta",
            "d",
            twin_body("d", DEVICE, json!({})),
            Condition::Always,
        ),
        "ModelNotFound",
    );
    // A relationship in acme cannot target beta's twin; same id, other tenant's twin is
    // invisible.
    w.create("d1", DEVICE, json!({}));
    w.ok(put_twin(
        "beta",
        "only-beta",
        twin_body("only-beta", LINE, json!({})),
        Condition::Always,
    ));
    assert_eq!(
        code(w.relate("d1", "r", rel_body("only-beta", "feeds", json!({})))),
        "ValidationFailed"
    );
    // acme's "x" is a Line: the relationship lands on acme's twin.
    w.relate("d1", "r", rel_body("x", "feeds", json!({})))
        .unwrap();
    // Deleting beta's x is not blocked by acme's relationship, and leaves acme's x.
    w.ok(Command::DeleteTwin {
        tenant: "beta".into(),
        twin_id: "x".into(),
        condition: Condition::Always,
    });
    assert!(w.twin_in(TENANT, "x").is_some());
    // Models in use in one tenant can be deleted in the other.
    w.ok(Command::DeleteTwin {
        tenant: "beta".into(),
        twin_id: "only-beta".into(),
        condition: Condition::Always,
    });
    w.ok(Command::DeleteModel {
        tenant: "beta".into(),
        model: LINE.into(),
    });
    assert_eq!(code(w.run(delete_model(LINE))), "ModelInUse");
}

#[test]
fn tenant_names_that_could_alias_keys_are_refused() {
    // Keys are `tenant \0 …`: a tenant containing '\0' (or any non-tenant character)
    // could address another tenant's keys, so every tenant-scoped command refuses it.
    let mut w = World::with_models();
    w.create("d1", DEVICE, json!({}));
    let evil = format!("{TENANT}\0model");
    for cmd in [
        upload(&evil, vec![line_model()]),
        Command::DeleteModel {
            tenant: evil.clone(),
            model: LINE.into(),
        },
        Command::SetModelDecommissioned {
            tenant: evil.clone(),
            model: LINE.into(),
            decommissioned: true,
        },
        put_twin(
            &evil,
            "x",
            twin_body("x", LINE, json!({})),
            Condition::Always,
        ),
        Command::PatchTwin {
            tenant: evil.clone(),
            twin_id: "x".into(),
            patch: json!([]),
            condition: Condition::Always,
        },
        Command::DeleteTwin {
            tenant: evil.clone(),
            twin_id: "x".into(),
            condition: Condition::Always,
        },
        put_rel(&evil, "x", "r", rel_body("y", "feeds", json!({}))),
        Command::DeleteRelationship {
            tenant: evil.clone(),
            source: "x".into(),
            rel_id: "r".into(),
            condition: Condition::Always,
        },
        Command::RecordTelemetry {
            tenant: evil.clone(),
            twin_id: "x".into(),
            body: json!({"temp": 1.0}),
            source_time: None,
        },
        Command::RevokeToken {
            tenant: evil.clone(),
            token_id: "t".into(),
        },
        upload("", vec![line_model()]),
        put_twin("", "x", twin_body("x", LINE, json!({})), Condition::Always),
    ] {
        let shown = format!("{cmd:?}");
        let (r, writes) = w.run_with_writes(cmd);
        let e = r.expect_err(&shown);
        assert!(
            ["InvalidArgument", "TokenNotFound"].contains(&e.code().as_str()),
            "{shown}: {e}"
        );
        assert!(writes.is_empty(), "{shown}");
    }
}

// ==== determinism =====================================================================

/// A command script touching every kind of command, with failures sprinkled in.
fn script() -> Vec<Command> {
    let t = || TENANT.to_string();
    vec![
        Command::EnsureTenant { tenant: t() },
        upload(TENANT, models()),
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", DEVICE, json!({"setPoint": 1.0})),
            Condition::Always,
        ),
        put_twin(
            TENANT,
            "l1",
            twin_body("l1", LINE, json!({})),
            Condition::Always,
        ),
        // fails: schema violation
        put_twin(
            TENANT,
            "bad",
            twin_body("bad", DEVICE, json!({"setPoint": "x"})),
            Condition::Always,
        ),
        put_rel(TENANT, "d1", "r1", rel_body("l1", "feeds", json!({}))),
        Command::RecordTelemetry {
            tenant: t(),
            twin_id: "d1".into(),
            body: json!({"temp": 1.0}),
            source_time: None,
        },
        // fails: twin has relationships
        Command::DeleteTwin {
            tenant: t(),
            twin_id: "l1".into(),
            condition: Condition::Always,
        },
        Command::PatchTwin {
            tenant: t(),
            twin_id: "d1".into(),
            patch: json!([{"op": "add", "path": "/motor/rpm", "value": 3}]),
            condition: Condition::Always,
        },
        Command::RecordTelemetry {
            tenant: t(),
            twin_id: "d1".into(),
            body: json!({"motor": {"vibration": 2.0}}),
            source_time: Some("2024-01-01T00:00:00Z".into()),
        },
        // fails: bad patch value
        Command::PatchTwin {
            tenant: t(),
            twin_id: "d1".into(),
            patch: json!([{"op": "add", "path": "/motor/rpm", "value": "x"}]),
            condition: Condition::Always,
        },
        put_twin(
            TENANT,
            "a1",
            twin_body("a1", ASSEMBLY_LINE, json!({"stations": 1})),
            Condition::Always,
        ),
        put_rel(TENANT, "d1", "r1", rel_body("a1", "feeds", json!({}))),
        Command::DeleteTwin {
            tenant: t(),
            twin_id: "l1".into(),
            condition: Condition::Always,
        },
        Command::PutToken {
            token: token("tok", TENANT),
        },
        // fails: decommission cannot be undone (after it is set)
        Command::SetModelDecommissioned {
            tenant: t(),
            model: SENSOR.into(),
            decommissioned: true,
        },
        Command::SetModelDecommissioned {
            tenant: t(),
            model: SENSOR.into(),
            decommissioned: false,
        },
        Command::DeleteModel {
            tenant: t(),
            model: SENSOR.into(),
        },
        // fails: in use
        Command::DeleteModel {
            tenant: t(),
            model: DEVICE.into(),
        },
        Command::DeleteRelationship {
            tenant: t(),
            source: "d1".into(),
            rel_id: "r1".into(),
            condition: Condition::Always,
        },
        Command::DeleteTwin {
            tenant: t(),
            twin_id: "d1".into(),
            condition: Condition::Always,
        },
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", DEVICE, json!({"serial": "again"})),
            Condition::IfNoneMatchAny,
        ),
        // fails: exists
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", DEVICE, json!({})),
            Condition::IfNoneMatchAny,
        ),
        Command::RevokeToken {
            tenant: t(),
            token_id: "tok".into(),
        },
    ]
}

/// Runs the script one command at a time; returns the state and each result's code.
fn run_sequentially(script: &[Command]) -> (MemState, Vec<Result<(), &'static str>>) {
    let mut sm = StateMachine::new(SHARDS);
    let mut mem = MemState::default();
    let mut results = Vec::new();
    for (i, cmd) in script.iter().enumerate() {
        let (r, writes) = apply_raw(&mut sm, &mem, cmd, &stamp_at(i as u64));
        if r.is_ok() {
            mem.apply(writes);
        }
        results.push(r.map(|_| ()).map_err(|e| e.code().as_str()));
    }
    (mem, results)
}

/// Runs the script in groups of `size` through nested overlays.
fn run_in_groups(script: &[Command], size: usize) -> (MemState, Vec<Result<(), &'static str>>) {
    let mut sm = StateMachine::new(SHARDS);
    let mut mem = MemState::default();
    let mut results = Vec::new();
    let stamped: Vec<_> = script
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), stamp_at(i as u64)))
        .collect();
    for group in stamped.chunks(size) {
        for r in apply_group(&mut sm, &mut mem, group) {
            results.push(r.map(|_| ()).map_err(|e| e.code().as_str()));
        }
    }
    (mem, results)
}

#[test]
fn determinism_same_commands_same_stamps_same_state() {
    let script = script();
    let (a, ra) = run_sequentially(&script);
    let (b, rb) = run_sequentially(&script);
    assert_eq!(ra, rb);
    assert_eq!(a.data, b.data);
    // The script does fail where intended, and leaves a non-trivial state.
    let failures = ra.iter().filter(|r| r.is_err()).count();
    assert_eq!(failures, 6, "{ra:?}");
    assert!(a.data.len() > 5, "{:?}", a.data.keys());
}

#[test]
fn determinism_group_commit_equals_one_by_one_even_when_a_command_fails() {
    let script = script();
    let (seq, seq_results) = run_sequentially(&script);
    for size in [2, 3, 5, script.len()] {
        let (grouped, results) = run_in_groups(&script, size);
        assert_eq!(results, seq_results, "group size {size}");
        assert_eq!(grouped.data, seq.data, "group size {size}");
        // Two replicas grouping the same way agree byte for byte.
        let (again, _) = run_in_groups(&script, size);
        assert_eq!(again.data, grouped.data);
    }
}

#[test]
fn determinism_a_failed_command_in_a_group_leaves_no_trace() {
    // The middle command creates a twin's records before failing on a property; the
    // group's other commands see neither it nor its writes.
    let mut w = World::with_models();
    let group = vec![
        (
            put_twin(
                TENANT,
                "a",
                twin_body("a", LINE, json!({})),
                Condition::Always,
            ),
            stamp_at(100),
        ),
        (
            put_twin(
                TENANT,
                "b",
                twin_body("b", LINE, json!({"title": 5})),
                Condition::Always,
            ),
            stamp_at(101),
        ),
        (
            put_twin(
                TENANT,
                "b",
                twin_body("b", LINE, json!({})),
                Condition::IfNoneMatchAny,
            ),
            stamp_at(102),
        ),
    ];
    let results = apply_group(&mut w.sm, &mut w.mem, &group);
    assert!(results[0].is_ok());
    assert_eq!(results[1].as_ref().unwrap_err().code(), "ValidationFailed");
    assert!(results[2].is_ok(), "b did not exist for the third command");
    assert_eq!(w.twin("b").etag, stamp_at(102).etag());
}

// ==== Overlay::scan ===================================================================

/// xorshift64*: tiny, seedable, good enough to shuffle keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A short key over a 3-letter alphabet, so that keys collide and prefix often.
    fn key(&mut self, max_len: u64) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| b"abc"[self.below(3) as usize]).collect()
    }
}

fn model_scan(
    model: &BTreeMap<(Family, Vec<u8>), Vec<u8>>,
    family: Family,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .filter(|((f, k), _)| *f == family && k.starts_with(prefix))
        .filter(|((_, k), _)| after.is_none_or(|a| k.as_slice() > a))
        .take(limit)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

/// Checks every read of `view` against `model` for a batch of random scans and gets.
fn check_reads(
    rng: &mut Rng,
    view: &dyn StateRead,
    model: &BTreeMap<(Family, Vec<u8>), Vec<u8>>,
    ctx: &str,
) {
    for _ in 0..8 {
        let family = if rng.below(4) == 0 {
            Family::RelIn
        } else {
            Family::Twins
        };
        let prefix = rng.key(2);
        let after = (rng.below(2) == 0).then(|| rng.key(5));
        // Small limits (one base page, many shadowed), page-sized ones, and "all".
        let limit = match rng.below(5) {
            0 => 0,
            1 => 1,
            2 => rng.below(5) as usize,
            3 => rng.below(100) as usize,
            _ => 1000,
        };
        let got = view.scan(family, &prefix, after.as_deref(), limit).unwrap();
        let want = model_scan(model, family, &prefix, after.as_deref(), limit);
        assert_eq!(
            got, want,
            "{ctx}: scan {family:?} {prefix:?} after {after:?} limit {limit}"
        );
        let k = rng.key(5);
        assert_eq!(
            view.get(family, &k).unwrap(),
            model.get(&(family, k.clone())).cloned(),
            "{ctx}: get {k:?}"
        );
    }
}

/// One random write, applied to both the overlay and the model.
fn random_write(
    rng: &mut Rng,
    overlay: &mut Overlay<'_>,
    model: &mut BTreeMap<(Family, Vec<u8>), Vec<u8>>,
    step: usize,
) {
    let family = if rng.below(4) == 0 {
        Family::RelIn
    } else {
        Family::Twins
    };
    match rng.below(10) {
        0..=4 => {
            let k = rng.key(5);
            let v = format!("v{step}").into_bytes();
            overlay.put(family, k.clone(), v.clone());
            model.insert((family, k), v);
        }
        5..=8 => {
            let k = rng.key(5);
            overlay.delete(family, k.clone());
            model.remove(&(family, k));
        }
        _ => {
            // Mostly one or two bytes: a whole-family wipe (empty prefix) is rare.
            let p = match rng.key(2) {
                p if p.is_empty() && rng.below(4) != 0 => vec![b'a'],
                p => p,
            };
            overlay.delete_prefix(family, p.clone());
            model.retain(|(f, k), _| !(*f == family && k.starts_with(&p)));
        }
    }
}

fn overlay_matches_model(seed: u64) {
    let ctx = format!("seed {seed:#x}");
    let mut rng = Rng(seed | 1);
    // A base big enough that scans need more than one base page (batches of >= 64).
    let mut base = MemState::default();
    // Keys of at most 5 letters over 3: dense, so deletes and prefixes hit base keys.
    for i in 0..300 {
        let family = if i % 4 == 0 {
            Family::RelIn
        } else {
            Family::Twins
        };
        base.data
            .insert((family, rng.key(5)), format!("base{i}").into_bytes());
    }
    let mut model = base.data.clone();
    let mut parent = Overlay::new(&base);
    for step in 0..150 {
        random_write(&mut rng, &mut parent, &mut model, step);
        if step % 5 == 0 {
            check_reads(&mut rng, &parent, &model, &ctx);
        }
    }
    check_reads(&mut rng, &parent, &model, &ctx);

    // A child overlay over the parent (group commit): reads see both layers; the
    // child's writes extend the parent to the same state.
    let mut child_model = model.clone();
    let child_writes = {
        let mut child = Overlay::new(&parent);
        for step in 150..250 {
            random_write(&mut rng, &mut child, &mut child_model, step);
            if step % 5 == 0 {
                check_reads(&mut rng, &child, &child_model, &ctx);
            }
        }
        child.into_writes()
    };
    // A dropped child leaves the parent as it was.
    check_reads(&mut rng, &parent, &model, &format!("{ctx} (child dropped)"));
    parent.extend(child_writes);
    check_reads(
        &mut rng,
        &parent,
        &child_model,
        &format!("{ctx} (child kept)"),
    );

    // Applying the writes in order reproduces the model exactly.
    let writes = parent.into_writes();
    base.apply(writes);
    assert_eq!(base.data, child_model, "{ctx}: applied writes");
}

#[test]
fn overlay_scan_matches_a_model_under_random_puts_deletes_and_prefix_deletes() {
    let seeds: Vec<u64> = match std::env::var("DOPPEL_SEED") {
        Ok(s) => vec![u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex seed")],
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            vec![0x1234_5678, 0xdead_beef, 42, t]
        }
    };
    for seed in seeds {
        println!("overlay property test seed {seed:#x} (replay: DOPPEL_SEED={seed:x})");
        overlay_matches_model(seed);
    }
}

// ==== odds and ends ===================================================================

#[test]
fn twin_put_body_must_be_an_object_with_object_metadata() {
    let mut w = World::with_models();
    w.err_no_writes(
        put_twin(TENANT, "d1", json!([1, 2]), Condition::Always),
        "InvalidArgument",
    );
    w.err_no_writes(
        put_twin(
            TENANT,
            "d1",
            json!({"$metadata": {"$model": DEVICE, "serial": "not an object"}}),
            Condition::Always,
        ),
        "InvalidArgument",
    );
    w.err_no_writes(
        put_twin(
            TENANT,
            "d1",
            json!({"$dtId": 7, "$metadata": {"$model": DEVICE}}),
            Condition::Always,
        ),
        "InvalidArgument",
    );
}

#[test]
fn relationship_create_with_if_match_fails_and_if_none_match_succeeds() {
    let mut w = plant();
    let with = |condition: Condition| Command::PutRelationship {
        tenant: TENANT.into(),
        source: "d1".into(),
        rel_id: "r1".into(),
        body: rel_body("l1", "feeds", json!({})),
        condition,
    };
    w.err_no_writes(with(Condition::IfMatch("*".into())), "PreconditionFailed");
    w.ok(with(Condition::IfNoneMatchAny));
    w.ok(with(Condition::IfMatch("*".into())));
}

#[test]
fn telemetry_time_is_the_source_time_in_utc_milliseconds() {
    let mut w = plant();
    for time in ["2024-03-01T12:00:00.5+02:00", "2024-03-01T10:00:00.500Z"] {
        w.ok(Command::RecordTelemetry {
            tenant: TENANT.into(),
            twin_id: "d1".into(),
            body: json!({"temp": 1.0}),
            source_time: Some(time.into()),
        });
    }
    let shard = keys::shard_of(TENANT, "d1", SHARDS);
    let mut p = keys::telemetry_prefix(shard, TENANT, "d1");
    p.extend_from_slice(b"temp\0");
    let stored = w.keys_under(Family::Telemetry, &p);
    assert_eq!(stored.len(), 2, "same instant, both messages kept");
    for k in stored {
        let ts = u64::from_be_bytes(k[p.len()..p.len() + 8].try_into().unwrap());
        assert_eq!(ts, 1_709_287_200_500);
    }
}

#[test]
fn commands_route_to_the_shard_of_their_twin_or_the_meta_shard() {
    let cmd = put_twin(TENANT, "d1", json!({}), Condition::Always);
    assert_eq!(cmd.shard(SHARDS), keys::shard_of(TENANT, "d1", SHARDS));
    assert_eq!(cmd.tenant(), TENANT);
    let rel = put_rel(TENANT, "d1", "r", json!({}));
    assert_eq!(rel.shard(SHARDS), keys::shard_of(TENANT, "d1", SHARDS));
    assert_eq!(upload(TENANT, vec![]).shard(SHARDS), keys::META_SHARD);
    assert_eq!(
        Command::PutToken {
            token: token("t", "beta")
        }
        .tenant(),
        "beta"
    );
}

// ==== devices =========================================================================

fn key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

fn put_device(id: &str, status: DeviceStatus, primary: &str, condition: Condition) -> Command {
    Command::PutDevice {
        tenant: TENANT.into(),
        device_id: id.into(),
        spec: DeviceSpec {
            status: Some(status),
            status_reason: None,
            primary_key: Some(primary.into()),
            secondary_key: None,
            x509_thumbprint: None,
            fresh_keys: (key(8), key(9)),
        },
        condition,
    }
}

#[test]
fn a_device_binds_to_an_existing_twin_only() {
    let mut w = plant();
    w.err_no_writes(
        put_device("ghost", DeviceStatus::Enabled, &key(1), Condition::Always),
        "DigitalTwinNotFound",
    );
    let out = w.ok(put_device(
        "d1",
        DeviceStatus::Enabled,
        &key(1),
        Condition::Always,
    ));
    let Outcome::Device { device, created } = out else {
        panic!("{out:?}")
    };
    assert!(created);
    assert_eq!(device.id, "d1");
    assert_eq!(device.status, DeviceStatus::Enabled);
    assert_eq!(device.primary_key, key(1));
    assert_eq!(
        device.secondary_key,
        key(9),
        "a missing key is the proposer's fresh one"
    );
}

#[test]
fn a_device_update_keeps_what_it_does_not_mention() {
    let mut w = plant();
    w.ok(put_device(
        "d1",
        DeviceStatus::Enabled,
        &key(1),
        Condition::Always,
    ));
    let out = w.ok(Command::PutDevice {
        tenant: TENANT.into(),
        device_id: "d1".into(),
        spec: DeviceSpec {
            status: Some(DeviceStatus::Disabled),
            status_reason: Some("maintenance".into()),
            primary_key: None,
            secondary_key: None,
            x509_thumbprint: None,
            fresh_keys: (key(5), key(6)),
        },
        condition: Condition::Always,
    });
    let Outcome::Device { device, .. } = out else {
        panic!()
    };
    assert_eq!((device.primary_key, device.secondary_key), (key(1), key(9)));
    assert_eq!(device.status_reason.as_deref(), Some("maintenance"));
}

#[test]
fn device_keys_must_be_base64_of_16_to_64_bytes() {
    let mut w = plant();
    let e = w.err_no_writes(
        put_device("d1", DeviceStatus::Enabled, "short", Condition::Always),
        "InvalidArgument",
    );
    assert!(e.to_string().contains("primaryKey"), "{e}");
}

#[test]
fn disabling_a_device_keeps_its_keys_creation_time_and_twin() {
    let mut w = plant();
    let Outcome::Device { device: first, .. } = w.ok(put_device(
        "d1",
        DeviceStatus::Enabled,
        &key(1),
        Condition::Always,
    )) else {
        panic!()
    };
    // A stale etag is refused; the current one works.
    w.err(
        put_device(
            "d1",
            DeviceStatus::Disabled,
            &key(1),
            Condition::IfMatch("W/\"nope\"".into()),
        ),
        "PreconditionFailed",
    );
    let Outcome::Device {
        device: second,
        created,
    } = w.ok(put_device(
        "d1",
        DeviceStatus::Disabled,
        &key(1),
        Condition::IfMatch(first.etag.clone()),
    ))
    else {
        panic!()
    };
    assert!(!created);
    assert_eq!(second.status, DeviceStatus::Disabled);
    assert_eq!(second.created, first.created);
    assert_ne!(second.etag, first.etag);
    assert_eq!(w.twin("d1").id, "d1", "the twin and its data stay");
}

#[test]
fn a_twin_with_a_device_cannot_be_deleted_until_the_device_is() {
    let mut w = plant();
    w.ok(put_device(
        "d1",
        DeviceStatus::Enabled,
        &key(1),
        Condition::Always,
    ));
    w.err(
        Command::DeleteTwin {
            tenant: TENANT.into(),
            twin_id: "d1".into(),
            condition: Condition::Always,
        },
        "DigitalTwinHasDevice",
    );
    let del = Command::DeleteDevice {
        tenant: TENANT.into(),
        device_id: "d1".into(),
        condition: Condition::Always,
    };
    w.ok(del.clone());
    w.err(del, "DeviceNotFound");
    w.ok(Command::DeleteTwin {
        tenant: TENANT.into(),
        twin_id: "d1".into(),
        condition: Condition::Always,
    });
}

// ==== reported properties (IoT Plug and Play) ==========================================

fn report(id: &str, reported: Value) -> Command {
    Command::ReportProperties {
        tenant: TENANT.into(),
        twin_id: id.into(),
        reported,
    }
}

#[test]
fn a_device_reports_read_only_values_and_component_values() {
    let mut w = plant();
    let out = w.ok(report(
        "d1",
        json!({"serial": "S-2", "motor": {"__t": "c", "rpm": 1400}}),
    ));
    let twin = twin_of(out);
    assert_eq!(twin.root.values["serial"], "S-2");
    assert_eq!(twin.components["motor"].values["rpm"], 1400);
    assert_eq!(w.twin("d1").etag, twin.etag, "stored");
}

#[test]
fn a_writable_property_ack_records_code_version_and_keeps_the_desired_value() {
    let mut w = plant();
    w.patch(
        "d1",
        json!([{"op": "add", "path": "/setPoint", "value": 21.5}]),
    )
    .unwrap();
    let desired = w.twin("d1").root.meta["setPoint"].clone();
    let version = desired.desired_version.unwrap();
    let twin = twin_of(w.ok(report(
        "d1",
        json!({"setPoint": {"value": 21.0, "ac": 203, "av": version, "ad": "clamped"}}),
    )));
    let meta = &twin.root.meta["setPoint"];
    assert_eq!(
        twin.root.values["setPoint"], 21.0,
        "the device's value is the twin's"
    );
    assert_eq!(meta.desired_value, Some(json!(21.5)));
    assert_eq!(meta.desired_version, Some(version));
    assert_eq!(
        (
            meta.ack_code,
            meta.ack_version,
            meta.ack_description.as_deref()
        ),
        (Some(203), Some(version), Some("clamped"))
    );
}

#[test]
fn bad_reports_are_rejected_with_the_path_and_write_nothing() {
    let mut w = plant();
    for (reported, path) in [
        (json!({"serial": 5}), "/serial"),
        (json!({"temp": 1.0}), "/temp"),
        (json!({"nope": 1}), "/nope"),
        (json!({"motor": {"__t": "x", "rpm": 1}}), "/motor/__t"),
        (json!({"motor": {"rpm": "fast"}}), "/motor/rpm"),
        (
            json!({"setPoint": {"value": 1.0, "ac": 42}}),
            "/setPoint/ac",
        ),
        (
            json!({"setPoint": {"value": 1.0, "ac": 200, "av": 99}}),
            "/setPoint/av",
        ),
        (json!({"setPoint": {"value": "x", "ac": 200}}), "/setPoint"),
    ] {
        let e = w.err_no_writes(report("d1", reported.clone()), "ValidationFailed");
        assert!(e.to_string().contains(path), "{reported} → {e}");
    }
    w.err_no_writes(report("d1", json!([1])), "InvalidArgument");
    w.err_no_writes(report("ghost", json!({})), "DigitalTwinNotFound");
}

#[test]
fn a_null_report_clears_the_value() {
    let mut w = plant();
    let twin = twin_of(w.ok(report("d1", json!({"serial": null}))));
    assert!(!twin.root.values.contains_key("serial"));
}

#[test]
fn connection_state_is_kept_on_the_twin_without_changing_its_etag() {
    let mut w = plant();
    let etag = w.twin("d1").etag;
    let set = |connected, last: Option<&str>| Command::SetConnection {
        tenant: TENANT.into(),
        twin_id: "d1".into(),
        connected,
        last_activity: last.map(str::to_owned),
        node: None,
    };
    let twin = twin_of(w.ok(set(true, None)));
    let c = twin.connection.clone().expect("connection recorded");
    assert!(c.connected);
    assert_eq!(
        twin.etag, etag,
        "connection metadata does not break If-Match"
    );
    assert_eq!(
        twin.to_json()["$metadata"]["$connection"]["state"],
        "connected"
    );
    let twin = twin_of(w.ok(set(false, Some("2030-01-01T00:00:00Z"))));
    let c = twin.connection.expect("still recorded");
    assert!(!c.connected);
    assert_eq!(c.last_activity_time, "2030-01-01T00:00:00Z");
    assert!(c.last_connect_time.is_some() && c.last_disconnect_time.is_some());
    w.err_no_writes(
        Command::SetConnection {
            tenant: TENANT.into(),
            twin_id: "ghost".into(),
            connected: true,
            last_activity: None,
            node: None,
        },
        "DigitalTwinNotFound",
    );
}

#[test]
fn a_disconnect_reported_by_a_node_the_device_has_left_changes_nothing() {
    let mut w = plant();
    let set = |connected, node| Command::SetConnection {
        tenant: TENANT.into(),
        twin_id: "d1".into(),
        connected,
        last_activity: None,
        node: Some(node),
    };
    w.ok(set(true, 3));
    // The device reconnected through node 1 before node 3 noticed its old
    // connection end.
    let twin = twin_of(w.ok(set(true, 1)));
    assert_eq!(twin.connection.as_ref().unwrap().node, Some(1));
    let (r, writes) = w.run_with_writes(set(false, 3));
    assert!(
        matches!(r, Ok(Outcome::Twin { changed: false, .. })),
        "{r:?}"
    );
    assert!(writes.is_empty(), "a stale disconnect writes nothing");
    assert!(w.twin("d1").connection.unwrap().connected);
    // The node holding the connection reports its end: recorded.
    w.ok(set(false, 1));
    let c = w.twin("d1").connection.unwrap();
    assert!(!c.connected);
    // Once disconnected, any node's report counts (nothing newer to protect).
    w.ok(set(true, 2));
    w.ok(set(false, 2));
    assert!(!w.twin("d1").connection.unwrap().connected);
}

#[test]
fn a_twin_changes_its_model_only_if_its_relationships_still_fit() {
    let mut w = plant();
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    // l1 is the target of a `feeds` that must point at a Line: a Sensor will not do.
    let e = w.err_no_writes(
        put_twin(
            TENANT,
            "l1",
            twin_body("l1", SENSOR, json!({})),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(e.to_string().contains("incoming relationship 'r1'"), "{e}");
    // An AssemblyLine extends Line: fine.
    w.ok(put_twin(
        TENANT,
        "l1",
        twin_body("l1", ASSEMBLY_LINE, json!({})),
        Condition::Always,
    ));
    // d1's outgoing `feeds` is not declared by Line.
    let e = w.err_no_writes(
        put_twin(
            TENANT,
            "d1",
            twin_body("d1", LINE, json!({})),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(e.to_string().contains("relationship 'r1'"), "{e}");
    assert_eq!(w.twin("d1").model, DEVICE);
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

// ---- deleting a model across shards --------------------------------------------------

fn begin_delete(model: &str) -> Command {
    Command::BeginModelDelete {
        tenant: TENANT.into(),
        model: model.into(),
    }
}

fn check_unused(model: &str, shard: u32) -> Command {
    Command::CheckModelUnused {
        tenant: TENANT.into(),
        model: model.into(),
        shard,
    }
}

fn abort_delete(model: &str) -> Command {
    Command::AbortModelDelete {
        tenant: TENANT.into(),
        model: model.into(),
    }
}

#[test]
fn a_model_being_deleted_takes_no_new_twins_and_each_shard_reports_its_own_users() {
    let mut w = World::with_models();
    w.create("s1", SENSOR, json!({}));
    let used = keys::shard_of(TENANT, "s1", SHARDS);
    // Not begun: a shard cannot confirm anything.
    w.err_no_writes(check_unused(SENSOR, used), "ModelDeleteNotBegun");
    w.ok(begin_delete(SENSOR));
    w.ok(begin_delete(SENSOR)); // idempotent (a repeated DELETE)
                                // No twin may start using it; a twin that already does keeps working.
    let fresh = twin_body("s2", SENSOR, json!({}));
    assert_eq!(code(w.put_twin("s2", fresh)), "ModelBeingDeleted");
    w.ok(put_twin(
        TENANT,
        "s1",
        twin_body("s1", SENSOR, json!({})),
        Condition::Always,
    ));
    // Only the shard holding s1 reports it; checks write nothing.
    for shard in 0..SHARDS {
        if shard == used {
            let e = w.err_no_writes(check_unused(SENSOR, shard), "ModelInUse");
            assert!(e.to_string().contains("'s1'"), "{e}");
        } else {
            assert!(matches!(
                w.run_with_writes(check_unused(SENSOR, shard)),
                (Ok(Outcome::Done), writes) if writes.is_empty()
            ));
        }
    }
    w.err_no_writes(check_unused(SENSOR, SHARDS), "InvalidArgument");
    // Lifting the mark lets twins use it again.
    w.ok(abort_delete(SENSOR));
    w.ok(abort_delete(SENSOR));
    w.create("s2", SENSOR, json!({}));
    // With its twins gone, the three steps delete it.
    w.ok(delete_twin_cmd("s1"));
    w.ok(delete_twin_cmd("s2"));
    w.ok(begin_delete(SENSOR));
    for shard in 0..SHARDS {
        w.ok(check_unused(SENSOR, shard));
    }
    w.ok(delete_model(SENSOR));
    assert_eq!(code(w.run(begin_delete(SENSOR))), "ModelNotFound");
}

#[test]
fn a_model_another_model_references_is_refused_at_the_last_step() {
    let mut w = World::with_models();
    w.ok(begin_delete(MOTOR));
    for shard in 0..SHARDS {
        w.ok(check_unused(MOTOR, shard));
    }
    w.err_no_writes(delete_model(MOTOR), "ModelReferencesNotDeleted");
    w.ok(abort_delete(MOTOR));
}

/// The race the three steps close: a shard's evaluator has the model cached from an
/// earlier twin when the mark lands (written by the meta group's evaluator). Its check
/// must make every later twin of that evaluator see the mark.
#[test]
fn a_shard_that_confirmed_a_model_unused_sees_the_mark_from_then_on() {
    let mut w = World::with_models();
    let mut shard_sm = StateMachine::new(SHARDS);
    let run = |sm: &mut StateMachine, w: &mut World, cmd: Command| {
        let stamp = w.next_stamp();
        let (r, writes) = apply_raw(sm, &w.mem, &cmd, &stamp);
        if r.is_ok() {
            w.mem.apply(writes);
        }
        r
    };
    let create = |id: &str| {
        put_twin(
            TENANT,
            id,
            twin_body(id, SENSOR, json!({})),
            Condition::Always,
        )
    };
    run(&mut shard_sm, &mut w, create("s1")).unwrap();
    run(&mut shard_sm, &mut w, delete_twin_cmd("s1")).unwrap();
    // The meta group's evaluator marks the model; the shard's cache predates it.
    w.ok(begin_delete(SENSOR));
    let shard = keys::shard_of(TENANT, "s2", SHARDS);
    assert!(matches!(
        run(&mut shard_sm, &mut w, check_unused(SENSOR, shard)),
        Ok(Outcome::Done)
    ));
    let late = run(&mut shard_sm, &mut w, create("s2"));
    assert_eq!(code(late), "ModelBeingDeleted");
}

fn delete_twin_cmd(id: &str) -> Command {
    Command::DeleteTwin {
        tenant: TENANT.into(),
        twin_id: id.into(),
        condition: Condition::Always,
    }
}

// ---- deleting a twin that relationships on other shards may target -----------------

fn begin_twin_delete(id: &str, condition: Condition) -> Command {
    Command::BeginTwinDelete {
        tenant: TENANT.into(),
        twin_id: id.into(),
        condition,
    }
}

fn check_no_incoming(id: &str, shard: u32) -> Command {
    Command::CheckNoIncoming {
        tenant: TENANT.into(),
        twin_id: id.into(),
        shard,
    }
}

fn abort_twin_delete(id: &str) -> Command {
    Command::AbortTwinDelete {
        tenant: TENANT.into(),
        twin_id: id.into(),
    }
}

#[test]
fn a_twin_being_deleted_takes_no_new_relationships_and_each_shard_reports_its_own() {
    let mut w = World::with_models();
    w.create("d1", DEVICE, json!({}));
    let etag = w.create("x", DEVICE, json!({})).etag;
    w.relate("d1", "r1", rel_body("x", "near", json!({})))
        .unwrap();
    let from = keys::shard_of(TENANT, "d1", SHARDS);
    w.err_no_writes(check_no_incoming("x", from), "DigitalTwinDeleteNotBegun");
    w.err_no_writes(
        begin_twin_delete("x", Condition::IfMatch("W/\"other\"".into())),
        "PreconditionFailed",
    );
    w.err_no_writes(
        begin_twin_delete("d1", Condition::Always),
        "DigitalTwinHasRelationships",
    );
    w.ok(begin_twin_delete("x", Condition::IfMatch(etag)));
    // Idempotent (a repeated DELETE).
    w.ok(begin_twin_delete("x", Condition::Always));
    // No relationship may start to target it; its properties still change.
    w.create("d2", DEVICE, json!({}));
    assert_eq!(
        code(w.relate("d2", "r2", rel_body("x", "near", json!({})))),
        "DigitalTwinBeingDeleted"
    );
    w.patch("x", json!([{"op": "add", "path": "/serial", "value": "S"}]))
        .unwrap();
    // Only d1's shard reports the incoming relationship; checks write nothing.
    for shard in 0..SHARDS {
        if shard == from {
            let e = w.err_no_writes(check_no_incoming("x", shard), "DigitalTwinHasRelationships");
            assert!(e.to_string().contains("d1/r1"), "{e}");
        } else {
            assert!(matches!(
                w.run_with_writes(check_no_incoming("x", shard)),
                (Ok(Outcome::Done), writes) if writes.is_empty()
            ));
        }
    }
    w.err_no_writes(check_no_incoming("x", SHARDS), "InvalidArgument");
    // Lifted: relationships may target it again.
    w.ok(abort_twin_delete("x"));
    w.ok(abort_twin_delete("x"));
    w.relate("d2", "r2", rel_body("x", "near", json!({})))
        .unwrap();
    // With its incoming relationships gone, the three steps delete it, mark and all.
    w.delete_rel("d1", "r1").unwrap();
    w.delete_rel("d2", "r2").unwrap();
    w.ok(begin_twin_delete("x", Condition::Always));
    for shard in 0..SHARDS {
        w.ok(check_no_incoming("x", shard));
    }
    w.delete_twin("x").unwrap();
    let shard = keys::shard_of(TENANT, "x", SHARDS);
    assert!(!w.exists(Family::Meta, &keys::twin_deleting(shard, TENANT, "x")));
    // A new twin of the same id is not born marked.
    w.create("x", DEVICE, json!({}));
    w.relate("d2", "r3", rel_body("x", "near", json!({})))
        .unwrap();
}

#[test]
fn a_twin_given_a_new_model_takes_no_new_relationships_meanwhile_and_each_shard_checks_its_own() {
    let mut w = plant();
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    let from = keys::shard_of(TENANT, "d1", SHARDS);
    let fit = |model: &str, shard| Command::CheckIncomingFit {
        tenant: TENANT.into(),
        twin_id: "l1".into(),
        model: model.into(),
        shard,
    };
    w.err_no_writes(fit(ASSEMBLY_LINE, from), "DigitalTwinDeleteNotBegun");
    w.ok(Command::BeginTwinRemodel {
        tenant: TENANT.into(),
        twin_id: "l1".into(),
    });
    // No relationship may start to target it meanwhile.
    w.create("d2", DEVICE, json!({}));
    assert_eq!(
        code(w.relate("d2", "r2", rel_body("l1", "near", json!({})))),
        "DigitalTwinBeingDeleted"
    );
    // d1's shard holds a `feeds`, which must target a Line: a Sensor does not fit,
    // an AssemblyLine (extends Line) does; other shards hold nothing.
    for shard in 0..SHARDS {
        if shard == from {
            let e = w.err_no_writes(fit(SENSOR, shard), "ValidationFailed");
            assert!(e.to_string().contains("d1/r1"), "{e}");
        } else {
            w.ok(fit(SENSOR, shard));
        }
        w.ok(fit(ASSEMBLY_LINE, shard));
    }
    w.err_no_writes(fit("dtmi:test:Nope;1", 0), "ModelNotFound");
    // The PUT that changes the model lifts the mark with it.
    w.ok(put_twin(
        TENANT,
        "l1",
        twin_body("l1", ASSEMBLY_LINE, json!({"title": "Line 1"})),
        Condition::Always,
    ));
    let shard = keys::shard_of(TENANT, "l1", SHARDS);
    assert!(!w.exists(Family::Meta, &keys::twin_deleting(shard, TENANT, "l1")));
    w.relate("d2", "r2", rel_body("l1", "near", json!({})))
        .unwrap();
}
