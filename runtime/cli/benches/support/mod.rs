//! What the benches share: a state holding one sensor twin and its model, and the
//! twin PATCH they measure (a realistic single-property telemetry update).

use doppel_twins::{Command, Condition, MemState, Overlay, Stamp, StateMachine};
use serde_json::json;

pub const MODEL: &str = "dtmi:doppel:bench:Sensor;1";

pub fn stamp(n: u64) -> Stamp {
    Stamp {
        now: format!("2026-01-01T00:{:02}:{:02}Z", (n / 60) % 60, n % 60),
        nonce: n,
    }
}

/// A state holding the sensor model and one twin of it.
pub fn plant(sm: &mut StateMachine) -> MemState {
    let mut mem = MemState::default();
    let cmds = [
        Command::EnsureTenant {
            tenant: "acme".into(),
        },
        Command::UploadModels {
            tenant: "acme".into(),
            documents: vec![json!({
                "@context": "dtmi:dtdl:context;3", "@id": MODEL, "@type": "Interface",
                "contents": [
                    {"@type": "Property", "name": "temperature", "schema": "double"},
                    {"@type": "Property", "name": "setpoint", "schema": "double", "writable": true},
                    {"@type": "Property", "name": "status", "schema": "string"}
                ]
            })],
        },
        Command::PutTwin {
            tenant: "acme".into(),
            twin_id: "sensor-1".into(),
            body: json!({"$metadata": {"$model": MODEL}, "temperature": 20.5,
                         "setpoint": 21.0, "status": "running"}),
            condition: Condition::Always,
        },
    ];
    for (i, cmd) in cmds.iter().enumerate() {
        let mut out = Overlay::new(&mem);
        sm.apply(cmd, &stamp(i as u64), &mut out)
            .expect("the plant applies");
        let writes = out.into_writes();
        mem.apply(writes);
    }
    mem
}

/// The PATCH of the sensor's temperature.
pub fn patch() -> Command {
    Command::PatchTwin {
        tenant: "acme".into(),
        twin_id: "sensor-1".into(),
        patch: json!([{"op": "replace", "path": "/temperature", "value": 21.5}]),
        condition: Condition::Always,
    }
}
