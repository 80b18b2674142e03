//! JSON Patch on a twin (`Command::PatchTwin` through the state machine, which applies
//! the patch to the twin's JSON view and validates the result against its model).
//!
//! Input: JSON text (anything else is skipped), sent as the patch body. The twin is a
//! device with root properties (a string, a writable double, an enum) and a `motor`
//! component, as in twins' own tests.
//!
//! Checked: no patch panics the state machine; a rejected patch writes nothing; an
//! accepted one leaves a twin that still conforms (its own body is accepted as a PUT).
#![no_main]

use std::sync::OnceLock;

use doppel_twins::{Command, Condition, MemState, Outcome, Overlay, Stamp, StateMachine};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const TENANT: &str = "acme";
const SHARDS: u32 = 8;
const DEVICE: &str = "dtmi:test:Device;1";

fn stamp(n: u64) -> Stamp {
    Stamp {
        now: format!("2024-05-01T00:00:{:02}Z", n % 60),
        nonce: 0x5eed_0000_0000 + n,
    }
}

fn run(sm: &mut StateMachine, mem: &mut MemState, cmd: &Command, n: u64) -> Outcome {
    let mut overlay = Overlay::new(&*mem);
    let outcome = sm
        .apply(cmd, &stamp(n), &mut overlay)
        .unwrap_or_else(|e| panic!("set-up command failed: {e}\n{cmd:?}"));
    let writes = overlay.into_writes();
    mem.apply(writes);
    outcome
}

/// The tenant, its models and twin `d1`, built once.
fn world() -> &'static MemState {
    static WORLD: OnceLock<MemState> = OnceLock::new();
    WORLD.get_or_init(|| {
        let iface = |id: &str, contents: Value| {
            json!({"@context": "dtmi:dtdl:context;3", "@id": id, "@type": "Interface",
                   "contents": contents})
        };
        let motor = iface(
            "dtmi:test:Motor;1",
            json!([
                {"@type": "Property", "name": "rpm", "schema": "integer"},
                {"@type": "Property", "name": "limit", "schema": "integer", "writable": true},
                {"@type": "Telemetry", "name": "vibration", "schema": "double"}
            ]),
        );
        let device = iface(
            DEVICE,
            json!([
                {"@type": "Property", "name": "serial", "schema": "string"},
                {"@type": "Property", "name": "setPoint", "schema": "double", "writable": true},
                {"@type": "Property", "name": "mode",
                 "schema": {"@type": "Enum", "valueSchema": "string", "enumValues": [
                    {"name": "auto", "enumValue": "auto"},
                    {"name": "manual", "enumValue": "manual"}]}},
                {"@type": "Property", "name": "tags",
                 "schema": {"@type": "Map",
                            "mapKey": {"name": "k", "schema": "string"},
                            "mapValue": {"name": "v", "schema": "integer"}}},
                {"@type": "Telemetry", "name": "temp", "schema": "double"},
                {"@type": "Component", "name": "motor", "schema": "dtmi:test:Motor;1"}
            ]),
        );
        let mut sm = StateMachine::new(SHARDS);
        let mut mem = MemState::default();
        let setup = [
            Command::EnsureTenant {
                tenant: TENANT.into(),
            },
            Command::UploadModels {
                tenant: TENANT.into(),
                documents: vec![motor, device],
            },
            Command::PutTwin {
                tenant: TENANT.into(),
                twin_id: "d1".into(),
                body: json!({"$dtId": "d1", "$metadata": {"$model": DEVICE},
                             "serial": "S-1", "mode": "auto", "tags": {"a": 1},
                             "motor": {"$metadata": {}, "rpm": 10}}),
                condition: Condition::Always,
            },
        ];
        for (n, cmd) in setup.iter().enumerate() {
            run(&mut sm, &mut mem, cmd, n as u64);
        }
        mem
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(patch) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let mut mem = world().clone();
    let mut sm = StateMachine::new(SHARDS);
    let cmd = Command::PatchTwin {
        tenant: TENANT.into(),
        twin_id: "d1".into(),
        patch,
        condition: Condition::Always,
    };
    let mut overlay = Overlay::new(&mem);
    let result = sm.apply(&cmd, &stamp(10), &mut overlay);
    let writes = overlay.into_writes();
    match result {
        Err(_) => assert!(writes.is_empty(), "a rejected patch wrote {writes:?}"),
        Ok(Outcome::Twin { twin, .. }) => {
            mem.apply(writes);
            // The twin still conforms: its own body is accepted as a PUT.
            let mut body = twin.to_json();
            body.as_object_mut().map(|o| o.remove("$etag"));
            let put = Command::PutTwin {
                tenant: TENANT.into(),
                twin_id: "d1".into(),
                body,
                condition: Condition::Always,
            };
            run(&mut sm, &mut mem, &put, 11);
        }
        Ok(other) => panic!("unexpected outcome {other:?}"),
    }
});
