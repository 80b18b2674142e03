//! Twins created, replaced and deleted, specified through the state machine: a PUT
//! body conforms to the twin's model (errors name the JSON path and say what a
//! non-property name is), writable properties record their desired state with
//! versions that only increase, `If-Match` / `If-None-Match` guard the twin, a new
//! model keeps the twin's relationships only if they still fit, and a twin is deleted
//! with its `model_use` record and telemetry only once nothing points at it.

mod common;

use common::*;
use doppel_twins::keys::{self, Family};
use doppel_twins::{Command, Condition, Outcome};
use serde_json::json;

/// The record that twin `twin` uses `model`: on the twin's own shard.
fn model_use_key(model: &str, twin: &str) -> Vec<u8> {
    keys::model_use(keys::shard_of(TENANT, twin, SHARDS), TENANT, model, twin)
}

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

// ---- deleting twins -------------------------------------------------------------

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
