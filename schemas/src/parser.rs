//! placeholder parser (being written)
use crate::error::ModelErrors;
use crate::model::{Dtmi, InterfaceModel};
use serde_json::Value;

pub trait ModelSource {
    fn document(&self, id: &str) -> Option<Value>;
}

pub struct NoModels;

impl ModelSource for NoModels {
    fn document(&self, _id: &str) -> Option<Value> {
        None
    }
}

#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    pub allow_undefined_extensions: bool,
}

pub fn parse_batch(
    _docs: &[Value],
    _registered: &dyn ModelSource,
    _opts: &ParseOptions,
) -> Result<Vec<(Dtmi, Value, InterfaceModel)>, ModelErrors> {
    Ok(Vec::new())
}
