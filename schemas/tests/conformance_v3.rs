//! The DTDL v3 conformance suite (`shared/dtdl/conformance-v3`): every case must parse
//! when `valid` and fail when not, under the case's `options`.
//!
//! Set `DOPPEL_DTDL_CONFORMANCE_DIR` to use another copy of the suite, and
//! `DOPPEL_DTDL_CONFORMANCE_VERBOSE=1` to print each failing case.

use doppel_schemas::{parse_batch, NoModels, ParseOptions};
use serde_json::Value;
use std::path::PathBuf;

fn suite_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("DOPPEL_DTDL_CONFORMANCE_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/dtdl/conformance-v3")
}

#[test]
fn dtdl_v3_conformance_suite() {
    let dir = suite_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("conformance suite not found at {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no conformance cases in {}",
        dir.display()
    );
    let verbose = std::env::var("DOPPEL_DTDL_CONFORMANCE_VERBOSE").is_ok();

    let (mut passed, mut failed) = (0usize, 0usize);
    let mut failing_files = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable case file");
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let cases: Vec<Value> = serde_json::from_str(text).expect("case file is JSON");
        let mut file_failed = false;
        for (n, case) in cases.iter().enumerate() {
            let valid = case["valid"].as_bool().expect("`valid` is a boolean");
            let opts = ParseOptions {
                allow_undefined_extensions: case["options"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|x| x == "AllowUndefinedExtensions")),
            };
            let docs: Vec<Value> = case["input"].as_array().cloned().unwrap_or_default();
            let result = std::panic::catch_unwind(|| parse_batch(&docs, &NoModels, &opts));
            let ok = match &result {
                Ok(Ok(_)) => valid,
                Ok(Err(_)) => !valid,
                Err(_) => false,
            };
            if ok {
                passed += 1;
            } else {
                failed += 1;
                file_failed = true;
                if verbose {
                    let name = file.file_name().map(|f| f.to_string_lossy().into_owned());
                    let got = match &result {
                        Ok(Ok(_)) => "accepted".to_owned(),
                        Ok(Err(e)) => format!("rejected: {e}"),
                        Err(_) => "PANICKED".to_owned(),
                    };
                    println!(
                        "FAIL {} #{n} (valid={valid}) {got}\n  input: {}",
                        name.unwrap_or_default(),
                        serde_json::to_string(&case["input"]).unwrap_or_default()
                    );
                }
            }
        }
        if file_failed {
            failing_files.push(file.file_name().map(|f| f.to_string_lossy().into_owned()));
        }
    }
    let total = passed + failed;
    let pct = 100.0 * passed as f64 / total as f64;
    println!("conformance: {passed} passed, {failed} failed ({pct:.2}%)");
    for f in failing_files.iter().flatten() {
        println!("  failing: {f}");
    }
    assert!(pct >= 99.0, "conformance pass rate {pct:.2}% is below 99%");
}
