//! `StateMachine::apply` of a twin PATCH against an in-memory state, beside its floor:
//! parsing and re-serializing the same twin document as JSON (what any JSON twin
//! update costs before validation, metadata and key layout).

use criterion::{criterion_group, criterion_main, Criterion};
use doppel_twins::{Command, Condition, MemState, Overlay, Stamp, StateMachine, TwinRecord};
use serde_json::json;
use std::hint::black_box;

const MODEL: &str = "dtmi:doppel:bench:Sensor;1";

fn stamp(n: u64) -> Stamp {
    Stamp {
        now: format!("2026-01-01T00:{:02}:{:02}Z", (n / 60) % 60, n % 60),
        nonce: n,
    }
}

/// A state holding the sensor model and one twin of it.
fn plant(sm: &mut StateMachine) -> MemState {
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

fn bench(c: &mut Criterion) {
    let mut sm = StateMachine::new(64);
    let mem = plant(&mut sm);
    let patch = Command::PatchTwin {
        tenant: "acme".into(),
        twin_id: "sensor-1".into(),
        patch: json!([{"op": "replace", "path": "/temperature", "value": 21.5}]),
        condition: Condition::Always,
    };
    let twin_json = {
        let mut out = Overlay::new(&mem);
        match sm
            .apply(&patch, &stamp(100), &mut out)
            .expect("patch applies")
        {
            doppel_twins::Outcome::Twin { twin, .. } => {
                serde_json::to_vec(&TwinRecord::to_json(&twin)).expect("json")
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    };
    let mut g = c.benchmark_group("twin PATCH");
    g.bench_function("doppel: StateMachine::apply", |b| {
        let mut n = 1000;
        b.iter(|| {
            n += 1;
            let mut out = Overlay::new(&mem);
            let r = sm.apply(black_box(&patch), &stamp(n), &mut out);
            black_box((r.is_ok(), out.into_writes().len()))
        })
    });
    g.bench_function("floor: parse + serialize the twin's JSON", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(&twin_json)).expect("json");
            black_box(serde_json::to_vec(&v).expect("json").len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
