//! The IoT Hub device-twin view of a twin: what a device sees when it GETs its twin
//! and what it is pushed when desired state changes (IoT Plug and Play conventions).
//!
//! ```text
//! { "desired":  { "setPoint": 21.5, "motor": { "__t": "c", "limit": 90 }, "$version": 7 },
//!   "reported": { "serial": "S-1", "setPoint": { "value": 21.0, "ac": 200, "av": 6 } } }
//! ```
//! `$version` of `desired` is the twin's desired version: it grows with every desired
//! value the app sets, and a device acknowledges it as `av`.

use doppel_twins::{PropertyBag, PropertyMeta, TwinRecord};
use serde_json::{json, Map, Value};

/// Desired values newer than `since` (all of them for `since = 0`), grouped as IoT Hub
/// does, with `$version`. `None` when nothing is newer.
pub fn desired_patch(twin: &TwinRecord, since: u64) -> Option<Value> {
    let (mut out, newest) = desired_where(twin, |_, version| version > since)?;
    out.insert("$version".into(), json!(twin.desired_version.max(newest)));
    Some(Value::Object(out))
}

/// The desired values `keep` (given a property's metadata and desired version) selects,
/// root properties first and each component's under its name marked `"__t": "c"`, with
/// the newest desired version among them; `None` when none is selected.
fn desired_where(
    twin: &TwinRecord,
    keep: impl Fn(&PropertyMeta, u64) -> bool,
) -> Option<(Map<String, Value>, u64)> {
    let mut newest = 0;
    let mut pick = |bag: &PropertyBag| -> Map<String, Value> {
        let mut m = Map::new();
        for (name, meta) in &bag.meta {
            if let (Some(v), Some(ver)) = (&meta.desired_value, meta.desired_version) {
                if keep(meta, ver) {
                    m.insert(name.clone(), v.clone());
                    newest = newest.max(ver);
                }
            }
        }
        m
    };
    let mut out = pick(&twin.root);
    for (name, bag) in &twin.components {
        let mut m = pick(bag);
        if !m.is_empty() {
            m.insert("__t".into(), json!("c"));
            out.insert(name.clone(), Value::Object(m));
        }
    }
    (!out.is_empty()).then_some((out, newest))
}

fn reported(bag: &PropertyBag) -> Map<String, Value> {
    let mut m = Map::new();
    for (name, value) in &bag.values {
        let meta = bag.meta.get(name);
        let ack = meta.and_then(|m| m.ack_code);
        let v = match (ack, meta) {
            (Some(ac), Some(meta)) => {
                let mut env = json!({ "value": value, "ac": ac });
                if let Some(av) = meta.ack_version {
                    env["av"] = json!(av);
                }
                if let Some(ad) = &meta.ack_description {
                    env["ad"] = json!(ad);
                }
                env
            }
            _ => value.clone(),
        };
        m.insert(name.clone(), v);
    }
    m
}

/// Desired values the device has not acknowledged yet (desired version above its
/// `ackVersion`), for delivery when it (re)subscribes. `None` when all are acked.
pub fn unacknowledged_desired(twin: &TwinRecord) -> Option<Value> {
    let (mut out, _) = desired_where(twin, |meta, version| {
        version > meta.ack_version.unwrap_or(0)
    })?;
    out.insert("$version".into(), json!(twin.desired_version));
    Some(Value::Object(out))
}

/// The full device twin document for `$iothub/twin/GET`.
pub fn device_twin(twin: &TwinRecord) -> Value {
    let mut desired = match desired_patch(twin, 0) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    desired.insert("$version".into(), json!(twin.desired_version));
    let mut rep = reported(&twin.root);
    for (name, bag) in &twin.components {
        let mut m = reported(bag);
        m.insert("__t".into(), json!("c"));
        rep.insert(name.clone(), Value::Object(m));
    }
    json!({ "desired": desired, "reported": rep })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twin() -> TwinRecord {
        let mut root = PropertyBag::default();
        root.values.insert("serial".into(), json!("S-1"));
        root.values.insert("setPoint".into(), json!(21.0));
        root.meta.insert(
            "setPoint".into(),
            PropertyMeta {
                desired_value: Some(json!(21.5)),
                desired_version: Some(3),
                ack_code: Some(200),
                ack_version: Some(2),
                ..Default::default()
            },
        );
        let mut motor = PropertyBag::default();
        motor.meta.insert(
            "limit".into(),
            PropertyMeta {
                desired_value: Some(json!(90)),
                desired_version: Some(5),
                ..Default::default()
            },
        );
        TwinRecord {
            id: "d".into(),
            etag: "e".into(),
            model: "m".into(),
            last_update_time: "t".into(),
            root,
            components: [("motor".to_string(), motor)].into_iter().collect(),
            desired_version: 5,
            connection: None,
        }
    }

    #[test]
    fn desired_patch_holds_only_newer_values_with_component_markers() {
        let t = twin();
        assert_eq!(
            desired_patch(&t, 0).unwrap(),
            json!({"setPoint": 21.5, "motor": {"limit": 90, "__t": "c"}, "$version": 5})
        );
        assert_eq!(
            desired_patch(&t, 3).unwrap(),
            json!({"motor": {"limit": 90, "__t": "c"}, "$version": 5})
        );
        assert_eq!(desired_patch(&t, 5), None);
    }

    #[test]
    fn unacknowledged_desired_skips_what_the_device_already_acked() {
        let mut t = twin();
        // setPoint: desired v3, acked v2 → pending; motor.limit: v5, never acked → pending.
        assert_eq!(
            unacknowledged_desired(&t).unwrap(),
            json!({"setPoint": 21.5, "motor": {"limit": 90, "__t": "c"}, "$version": 5})
        );
        t.root.meta.get_mut("setPoint").unwrap().ack_version = Some(3);
        t.components
            .get_mut("motor")
            .unwrap()
            .meta
            .get_mut("limit")
            .unwrap()
            .ack_version = Some(5);
        assert_eq!(unacknowledged_desired(&t), None);
    }

    #[test]
    fn device_twin_reports_acks_in_the_plug_and_play_envelope() {
        let doc = device_twin(&twin());
        assert_eq!(doc["desired"]["$version"], 5);
        assert_eq!(doc["reported"]["serial"], "S-1");
        assert_eq!(
            doc["reported"]["setPoint"],
            json!({"value": 21.0, "ac": 200, "av": 2})
        );
        assert_eq!(doc["reported"]["motor"]["__t"], "c");
    }
}
