//! Changes every data shard must agree to, specified through the state machine's
//! mark / check / abort commands: while a model is being deleted no twin may start to
//! use it, and while a twin is being deleted or given a new model no relationship may
//! start to target it; each shard's check reports only its own twins or
//! relationships, and from the check on that shard sees the mark.

mod common;

use common::*;
use doppel_twins::keys::{self, Family};
use doppel_twins::{Command, Condition, Outcome, StateMachine};
use serde_json::json;

// ---- deleting a model across shards ---------------------------------------------

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

fn delete_twin_cmd(id: &str) -> Command {
    Command::DeleteTwin {
        tenant: TENANT.into(),
        twin_id: id.into(),
        condition: Condition::Always,
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

// ---- deleting a twin that relationships on other shards may target --------------

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
