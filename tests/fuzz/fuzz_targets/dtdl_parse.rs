//! The DTDL parser and resolver (`doppel_schemas::parse_batch`) and the value validator
//! (`validate_value`) on arbitrary JSON.
//!
//! Input: JSON text (anything else is skipped: serde_json's own parser is not ours to
//! fuzz). A top-level array is a batch of documents, as a model upload sends them;
//! anything else is a batch of one.
//!
//! Checked: no document panics the parser, strict or tolerating undefined extensions;
//! and no value panics the validator: every JSON value in the input (up to 32 of them)
//! is validated against every schema that parsed: Properties, Telemetry,
//! relationship properties, command requests and responses.
#![no_main]

use doppel_schemas::{parse_batch, validate_value, NoModels, ParseOptions};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The input's values, outermost first, at most `max`.
fn values(root: &Value, max: usize) -> Vec<&Value> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() && out.len() < max {
        match out[i] {
            Value::Array(a) => out.extend(a.iter()),
            Value::Object(o) => out.extend(o.values()),
            _ => {}
        }
        i += 1;
    }
    out.truncate(max);
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let docs = match &input {
        Value::Array(docs) => docs.clone(),
        other => vec![other.clone()],
    };
    let candidates = values(&input, 32);
    for allow_undefined_extensions in [false, true] {
        let opts = ParseOptions {
            allow_undefined_extensions,
        };
        let Ok(models) = parse_batch(&docs, &NoModels, &opts) else {
            continue;
        };
        for (_, _, model) in &models {
            let schemas = model
                .properties
                .values()
                .map(|p| &p.schema)
                .chain(model.telemetry.values().map(|t| &t.schema))
                .chain(
                    model
                        .relationships
                        .values()
                        .flat_map(|r| r.properties.values().map(|p| &p.schema)),
                )
                .chain(
                    model
                        .commands
                        .values()
                        .flat_map(|c| c.request.iter().chain(&c.response).map(|p| &p.schema)),
                );
            for schema in schemas {
                for v in &candidates {
                    let _ = validate_value(schema, v);
                }
            }
        }
    }
});
