//! Models, specified through the state machine: a batch of DTDL interfaces is
//! registered all or nothing (extends and components resolve against the batch and
//! the registered models); a model is deleted only when no twin uses it and no other
//! model depends on it; a decommissioned model takes no new twins, for good.

mod common;

use common::*;
use doppel_twins::keys::{self, Family, MetaKind};
use doppel_twins::{Condition, Outcome};
use serde_json::json;

fn model_stored(w: &World, tenant: &str, id: &str) -> bool {
    w.exists(Family::Meta, &keys::meta(tenant, MetaKind::Model, id))
}

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
