//! `StateMachine::apply` of a twin PATCH against an in-memory state, beside its floor:
//! parsing and re-serializing the same twin document as JSON (what any JSON twin
//! update costs before validation, metadata and key layout).

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use doppel_twins::{Overlay, StateMachine, TwinRecord};
use std::hint::black_box;
use support::{plant, stamp};

fn bench(c: &mut Criterion) {
    let mut sm = StateMachine::new(64);
    let mem = plant(&mut sm);
    let patch = support::patch();
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
