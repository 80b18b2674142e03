//! Telemetry, specified through the state machine: validated against the twin's model
//! (component telemetry as `component/name`), stored under the twin's prefix at its
//! source time in UTC milliseconds, all or nothing, without changing the twin.

mod common;

use common::*;
use doppel_twins::keys::{self, Family};
use doppel_twins::{Command, StateRead};
use serde_json::{json, Value};

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
