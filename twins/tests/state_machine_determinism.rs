//! Determinism, specified through the state machine: the same commands with the same
//! stamps give byte-identical state, and group commit (nested overlays, a failed
//! command dropped) gives exactly the state of applying the commands one by one.

mod common;

use common::*;
use doppel_twins::{Command, Condition, MemState, StateMachine};
use serde_json::json;

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
