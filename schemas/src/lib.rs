//! doppel-schemas: DTDL (v3 and v2) models for doppel.
//!
//! ```text
//!  JSON / YAML files ──check::load_documents──▶ serde_json::Value documents
//!  documents + registered models ──parse_batch──▶ [(Dtmi, raw doc, InterfaceModel)]
//!  InterfaceModel's Schema + a JSON value ──validate_value──▶ Ok / ValueError
//! ```
//!
//! Modules: [`dtmi`] (identifier syntax), [`model`] (the resolved, flattened
//! Interface), [`parser`] (parse, resolve and validate a batch of documents),
//! [`value`] (check instance values against a schema), [`error`] (model errors with
//! JSON paths), [`check`] (load files from disk, the `doppel models check` backend).

pub mod check;
pub mod dtmi;
pub mod error;
pub mod model;
pub mod parser;
pub mod value;

pub use dtmi::is_valid_dtmi;
pub use error::{ModelError, ModelErrors};
pub use model::*;
pub use parser::{parse_batch, ModelSource, NoModels, ParseOptions};
pub use value::{validate_value, ValueError};
