//! Loading DTDL files from disk and checking them as one set: the backend of
//! `doppel models check`.
//!
//! Key items: [`load_documents`] (JSON or YAML by file extension; a leading UTF-8 BOM is
//! skipped; a file holds one Interface or an array of them) and [`check_files`] (parse
//! every file together with [`crate::parse_batch`], nothing pre-registered).
//!
//! Contract: errors name the file; a JSON path `$[i]…` inside an error refers to the
//! i-th Interface of that file (or `$…` when the file holds a single object).

use crate::error::{ModelError, ModelErrors};
use crate::model::Dtmi;
use crate::parser::{parse_batch, NoModels, ParseOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Read one file and return its documents (one per top-level Interface).
pub fn load_documents(path: &Path) -> Result<Vec<Value>, ModelErrors> {
    load_file(path).map(|(docs, _)| docs)
}

/// The file's documents and whether the file held a single object (not an array).
fn load_file(path: &Path) -> Result<(Vec<Value>, bool), ModelErrors> {
    let file_err =
        |msg: String| ModelErrors::single(ModelError::new(None, path.display().to_string(), msg));
    let bytes = std::fs::read(path).map_err(|e| file_err(format!("cannot read file: {e}")))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| file_err(format!("not UTF-8: {e}")))?;
    let value = parse_text(path, text).map_err(file_err)?;
    Ok(match value {
        Value::Array(items) => (items, false),
        other => (vec![other], true),
    })
}

/// Parse `text` as YAML or JSON depending on `path`'s extension.
pub fn parse_text(path: &Path, text: &str) -> Result<Value, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("yaml" | "yml") => {
            serde_yaml::from_str::<Value>(text).map_err(|e| format!("invalid YAML: {e}"))
        }
        _ => serde_json::from_str::<Value>(text).map_err(|e| format!("invalid JSON: {e}")),
    }
}

/// Check all `paths` together as one set of models; returns the DTMIs defined.
pub fn check_files(paths: &[PathBuf], opts: &ParseOptions) -> Result<Vec<Dtmi>, ModelErrors> {
    let mut docs = Vec::new();
    // For each document: (file, index in the file or None for a single-object file).
    let mut origin: Vec<(String, Option<usize>)> = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match load_file(path) {
            Ok((file_docs, single)) => {
                for (i, d) in file_docs.into_iter().enumerate() {
                    origin.push((path.display().to_string(), (!single).then_some(i)));
                    docs.push(d);
                }
            }
            Err(e) => errors.extend(e.0),
        }
    }
    if !errors.is_empty() {
        return Err(ModelErrors(errors));
    }
    match parse_batch(&docs, &NoModels, opts) {
        Ok(models) => Ok(models.into_iter().map(|(id, _, _)| id).collect()),
        Err(e) => Err(ModelErrors(
            e.0.into_iter().map(|err| relocate(err, &origin)).collect(),
        )),
    }
}

/// Rewrite a batch path `$[k]rest` into `file: $[i]rest` (or `file: $rest`).
fn relocate(mut err: ModelError, origin: &[(String, Option<usize>)]) -> ModelError {
    let Some(after) = err.path.strip_prefix("$[") else {
        return err;
    };
    let Some((index, rest)) = after.split_once(']') else {
        return err;
    };
    let Some((file, local)) = index.parse::<usize>().ok().and_then(|k| origin.get(k)) else {
        return err;
    };
    err.path = match local {
        Some(i) => format!("{file}: $[{i}]{rest}"),
        None => format!("{file}: ${rest}"),
    };
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_files_treats_all_files_as_one_set_and_names_files_in_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("base.yml");
        std::fs::write(
            &base,
            "- '@context': dtmi:dtdl:context;3\n  '@id': dtmi:ex:Base;1\n  '@type': Interface\n",
        )
        .expect("write");
        let child = dir.path().join("child.json");
        std::fs::write(
            &child,
            r#"{"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:Child;1", "@type": "Interface",
                "extends": "dtmi:ex:Base;1",
                "contents": [{"@type": "Property", "name": "p", "schema": "nope"}]}"#,
        )
        .expect("write");
        let opts = ParseOptions::default();
        let err = check_files(&[base.clone(), child.clone()], &opts).expect_err("bad schema");
        let text = err.to_string();
        assert!(text.contains("child.json: $.contents[0].schema"), "{text}");
        std::fs::write(
            &child,
            r#"{"@context": "dtmi:dtdl:context;3", "@id": "dtmi:ex:Child;1", "@type": "Interface",
                "extends": "dtmi:ex:Base;1"}"#,
        )
        .expect("write");
        let ids = check_files(&[base.clone(), child], &opts).expect("valid set");
        assert_eq!(ids, vec!["dtmi:ex:Base;1", "dtmi:ex:Child;1"]);
        let err = check_files(&[dir.path().join("missing.json")], &opts).expect_err("no file");
        assert!(err.to_string().contains("cannot read file"));
    }

    #[test]
    fn yaml_and_json_with_bom() {
        let dir = tempfile::tempdir().expect("tempdir");
        let y = dir.path().join("thermo.yaml");
        std::fs::write(
            &y,
            "\u{feff}'@context': dtmi:dtdl:context;3\n'@id': dtmi:ex:Thermo;1\n'@type': Interface\ncontents:\n  - '@type': Property\n    name: temp\n    schema: double\n",
        )
        .expect("write");
        let docs = load_documents(&y).expect("yaml loads");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["@id"], "dtmi:ex:Thermo;1");
        let j = dir.path().join("two.json");
        std::fs::write(&j, "\u{feff}[{\"a\":1},{\"b\":2}]").expect("write");
        assert_eq!(load_documents(&j).expect("json loads").len(), 2);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{").expect("write");
        let e = load_documents(&bad).expect_err("invalid JSON");
        assert!(e.to_string().contains("invalid JSON"));
    }
}
