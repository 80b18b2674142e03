//! The per-tenant model registry as the state machine sees it.
//!
//! Models are stored raw (as uploaded) in the meta shard; resolved [`InterfaceModel`]s
//! are derived on demand through `doppel_schemas::parse_batch` and cached. The cache is
//! an optimisation only: it is filled from state, and invalidated when a model is
//! deleted, so it can never disagree with what is stored — provided every write the
//! state machine produced and the caller kept is really committed. The cache may be
//! filled from an overlay holding a group's uncommitted writes; if that group's commit
//! fails, the shell must not go on with the same `StateMachine` (group commit refuses
//! further writes until a restart, which starts with an empty cache).

use crate::codec::{decode, encode};
use crate::error::TwinError;
use crate::keys::{self, Family, MetaKind};
use crate::store::{StateRead, StoreError};
use doppel_schemas::{parse_batch, InterfaceModel, ModelSource, ParseOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub id: String,
    pub document: Value,
    pub upload_time: String,
    #[serde(default)]
    pub decommissioned: bool,
    /// Its deletion has begun (`BeginModelDelete`): no twin may start using it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
}

impl ModelRecord {
    /// The ADT `DigitalTwinsModelData` shape.
    pub fn to_json(&self, include_definition: bool) -> Value {
        let mut out = serde_json::json!({
            "id": self.id,
            "displayName": lang_map(self.document.get("displayName")),
            "description": lang_map(self.document.get("description")),
            "uploadTime": self.upload_time,
            "decommissioned": self.decommissioned,
        });
        if include_definition {
            out["model"] = self.document.clone();
        }
        out
    }
}

fn lang_map(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => serde_json::json!({ "en": s }),
        Some(Value::Object(m)) => Value::Object(m.clone()),
        _ => serde_json::json!({}),
    }
}

pub fn load_record(
    state: &dyn StateRead,
    tenant: &str,
    id: &str,
) -> Result<Option<ModelRecord>, TwinError> {
    match state.get(Family::Meta, &keys::meta(tenant, MetaKind::Model, id))? {
        Some(bytes) => Ok(Some(decode("model", &bytes)?)),
        None => Ok(None),
    }
}

pub fn store_record(out: &mut crate::store::Overlay<'_>, tenant: &str, rec: &ModelRecord) {
    out.put(
        Family::Meta,
        keys::meta(tenant, MetaKind::Model, &rec.id),
        encode(rec),
    );
}

/// Every model record of a tenant (registries are small: thousands, not millions).
pub fn all_records(state: &dyn StateRead, tenant: &str) -> Result<Vec<ModelRecord>, TwinError> {
    let prefix = keys::meta_prefix(tenant, MetaKind::Model);
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = state.scan(Family::Meta, &prefix, after.as_deref(), 256)?;
        let done = page.len() < 256;
        after = page.last().map(|(k, _)| k.clone());
        for (_, v) in page {
            out.push(decode::<ModelRecord>("model", &v)?);
        }
        if done {
            return Ok(out);
        }
    }
}

/// The resolved form of a stored model: its document parsed against the tenant's other
/// stored models (which it may extend or use as components).
///
/// A stored model that no longer resolves, or a storage error met while resolving,
/// is a store error: uploads and deletions keep every stored model resolvable.
pub fn resolve(
    state: &dyn StateRead,
    tenant: &str,
    rec: &ModelRecord,
) -> Result<InterfaceModel, TwinError> {
    let id = &rec.id;
    let source = StoredModels::new(state, tenant);
    let parsed = parse_batch(
        std::slice::from_ref(&rec.document),
        &source,
        &ParseOptions::default(),
    );
    if let Some(e) = source.error.borrow_mut().take() {
        return Err(e.into());
    }
    let parsed = parsed.map_err(|e| {
        TwinError::Store(StoreError(format!(
            "stored model {id} no longer resolves: {e}"
        )))
    })?;
    parsed
        .into_iter()
        .find(|(d, _, _)| d == id)
        .map(|(_, _, m)| m)
        .ok_or_else(|| {
            TwinError::Store(StoreError(format!(
                "stored model {id} does not define itself"
            )))
        })
}

/// A [`ModelSource`] over one tenant's stored models.
pub struct StoredModels<'a> {
    pub state: &'a dyn StateRead,
    pub tenant: &'a str,
    /// The first storage error met (ModelSource cannot return one).
    pub error: std::cell::RefCell<Option<StoreError>>,
}

impl<'a> StoredModels<'a> {
    pub fn new(state: &'a dyn StateRead, tenant: &'a str) -> Self {
        StoredModels {
            state,
            tenant,
            error: Default::default(),
        }
    }
}

impl ModelSource for StoredModels<'_> {
    fn document(&self, id: &str) -> Option<Value> {
        match load_record(self.state, self.tenant, id) {
            Ok(r) => r.map(|r| r.document),
            Err(e) => {
                self.error
                    .borrow_mut()
                    .get_or_insert(StoreError(e.to_string()));
                None
            }
        }
    }
}

/// Resolved models by (tenant, DTMI).
#[derive(Default)]
pub struct ModelCache {
    /// The resolved model and its flags. Entries are dropped whenever the record
    /// changes (decommission, deletion), so they always match storage.
    resolved: HashMap<(String, String), (Arc<InterfaceModel>, ModelFlags)>,
}

/// Whether new twins may use a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelFlags {
    pub decommissioned: bool,
    /// Its deletion has begun.
    pub deleting: bool,
}

impl ModelCache {
    /// The resolved model, or `None` when it is not registered.
    pub fn get(
        &mut self,
        state: &dyn StateRead,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(Arc<InterfaceModel>, ModelFlags)>, TwinError> {
        let key = (tenant.to_owned(), id.to_owned());
        if let Some((m, flags)) = self.resolved.get(&key) {
            return Ok(Some((m.clone(), *flags)));
        }
        let Some(rec) = load_record(state, tenant, id)? else {
            return Ok(None);
        };
        let model = Arc::new(resolve(state, tenant, &rec)?);
        let flags = ModelFlags {
            decommissioned: rec.decommissioned,
            deleting: rec.deleting,
        };
        self.resolved.insert(key, (model.clone(), flags));
        Ok(Some((model, flags)))
    }

    pub fn invalidate(&mut self, tenant: &str, id: &str) {
        self.resolved.remove(&(tenant.to_owned(), id.to_owned()));
    }
}
