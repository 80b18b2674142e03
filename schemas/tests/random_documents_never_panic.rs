//! Outside input never panics the DTDL parser or the value validator: proptest builds
//! documents from DTDL's own vocabulary (so they get deep into the parser), mostly
//! Interface-shaped, parses them, and validates generated values against every
//! property of the models that parse; every outcome must be `Ok` or `Err`, never a
//! panic. A failure prints the shrunk document. Cases come from a fixed seed (CI stays
//! deterministic); `DOPPEL_SEED=<n>` replays another run, `DOPPEL_SEED=random` explores.

use std::sync::atomic::{AtomicUsize, Ordering};

use doppel_schemas::{parse_batch, validate_value, NoModels, ParseOptions};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{RngAlgorithm, RngSeed, TestRunner};
use serde_json::{json, Map, Value};

const CASES: u32 = 3000;

const KEYS: &[&str] = &[
    "@context",
    "@id",
    "@type",
    "name",
    "schema",
    "contents",
    "extends",
    "writable",
    "request",
    "response",
    "target",
    "minMultiplicity",
    "maxMultiplicity",
    "properties",
    "fields",
    "enumValues",
    "enumValue",
    "valueSchema",
    "mapKey",
    "mapValue",
    "elementSchema",
    "schemas",
    "displayName",
    "description",
    "comment",
    "unit",
    "nullable",
    "x",
];
const STRINGS: &[&str] = &[
    "dtmi:dtdl:context;3",
    "dtmi:dtdl:context;2",
    "dtmi:ex:A;1",
    "dtmi:ex:B;1",
    "dtmi:ex:A",
    "Interface",
    "Property",
    "Telemetry",
    "Command",
    "Relationship",
    "Component",
    "Object",
    "Map",
    "Array",
    "Enum",
    "double",
    "integer",
    "string",
    "boolean",
    "dateTime",
    "Temperature",
    "degreeCelsius",
    "dtmi:dtdl:extension:quantitativeTypes;1",
    "a",
    "",
    "dtmi:ex:A;1#x",
    "🙂",
    "dtmi:ex:A;999999999999999",
];
const NAMES: &[&str] = &["a", "b", "x1", "", "9"];

/// `cases` from the seed `DOPPEL_SEED` names (printed); nothing is persisted, since the
/// seed replays a run and a failure prints its shrunk input. XorShift: ChaCha, proptest's
/// default, is several times slower in a debug build.
fn config(cases: u32) -> ProptestConfig {
    let seed = match std::env::var("DOPPEL_SEED").ok().as_deref() {
        Some("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        Some(s) => s.parse().expect("DOPPEL_SEED is a number or \"random\""),
        None => 0x005e_edd0_bbe1,
    };
    println!("seed {seed} (replay with DOPPEL_SEED={seed})");
    ProptestConfig {
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        // Shrink until minimal (the default stops after 4 × cases), within a minute.
        max_shrink_iters: 100_000,
        max_shrink_time: 60_000,
        rng_algorithm: RngAlgorithm::XorShift,
        ..ProptestConfig::with_cases(cases)
    }
}

/// Any JSON over DTDL's keys and strings, up to six levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-999i64..1000).prop_map(|n| json!(n)),
        select(STRINGS).prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((select(KEYS), inner), 0..6).prop_map(|members| {
                Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// A content member: a DTDL `@type` and name, plus up to three random members.
fn content() -> impl Strategy<Value = Value> {
    (
        select(STRINGS),
        select(NAMES),
        prop::collection::vec((select(KEYS), value()), 0..4),
    )
        .prop_map(|(ty, name, members)| {
            let mut c = Map::new();
            c.insert("@type".into(), json!(ty));
            c.insert("name".into(), json!(name));
            for (k, v) in members {
                c.insert(k.to_owned(), v);
            }
            Value::Object(c)
        })
}

/// An Interface-shaped document with random contents (and, one time in three, one
/// top-level member overwritten), so most cases pass the outer checks.
fn interface() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(content(), 0..5),
        prop::option::weighted(1.0 / 3.0, (select(KEYS), value())),
    )
        .prop_map(|(contents, extra)| {
            let mut doc = json!({
                "@context": "dtmi:dtdl:context;3",
                "@id": "dtmi:ex:A;1",
                "@type": "Interface",
                "contents": contents,
            });
            if let Some((k, v)) = extra {
                doc[k] = v;
            }
            doc
        })
}

#[test]
fn random_documents_and_values_are_answered_without_panicking() {
    let parsed = AtomicUsize::new(0);
    // `values` are validated against the parsed models' properties in turn.
    let case = (
        prop_oneof![1 => value(), 3 => interface()],
        prop::collection::vec(value(), 4),
    );
    TestRunner::new(config(CASES))
        .run(&case, |(doc, values)| {
            let result = parse_batch(
                std::slice::from_ref(&doc),
                &NoModels,
                &ParseOptions::default(),
            );
            if let Ok(models) = result {
                parsed.fetch_add(1, Ordering::Relaxed);
                let properties = models.iter().flat_map(|(_, _, m)| m.properties.values());
                for (p, v) in properties.zip(values.iter().cycle()) {
                    let _ = validate_value(&p.schema, v);
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let parsed = parsed.into_inner();
    println!("{parsed} of {CASES} random documents were valid models");
    // The generator must reach past the outer checks, or the validator goes untested.
    assert!(parsed > 0, "no generated document parsed");
}
