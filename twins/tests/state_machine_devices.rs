//! Devices and what they change on their twins, specified through the state machine:
//! a device binds to an existing twin, keeps what an update does not mention, and
//! blocks its twin's deletion; reported properties (IoT Plug and Play values and
//! acknowledgements) are validated with their path; connection state is kept on the
//! twin without changing its etag, and a stale disconnect changes nothing.

mod common;

use common::*;
use doppel_twins::{Command, Condition, DeviceSpec, DeviceStatus, Outcome};
use serde_json::{json, Value};

// ---- devices --------------------------------------------------------------------

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

// ---- reported properties (IoT Plug and Play) and connection state ---------------

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
