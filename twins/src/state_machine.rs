//! The deterministic per-shard state machine: `apply(command) -> (outcome, writes)`.
//!
//! ```text
//!   proposer ──Command+Stamp──▶ StateMachine::apply ──reads──▶ StateRead (overlay)
//!                                     │
//!                                     └──writes──▶ Overlay ──▶ one fsynced write batch
//! ```
//!
//! Contract:
//! - deterministic: the result depends only on the command, its stamp and the state
//!   read (no clock, no randomness, no I/O besides reads);
//! - all or nothing: on `Err` the caller drops the overlay the command wrote into, so
//!   a rejected command leaves no trace;
//! - every rule a user can break (ids, model conformance, multiplicity, etags, models
//!   in use) is checked here, so every replica agrees on what was rejected.

use crate::codec::{decode, encode};
use crate::command::{Command, Condition, Outcome, Stamp};
use crate::devices::{DeviceRecord, DeviceSpec, DeviceStatus};
use crate::error::TwinError;
use crate::ids;
use crate::keys::{self, shard_of, Family, MetaKind, SYSTEM_TENANT};
use crate::models::{self, ModelCache, ModelRecord, StoredModels};
use crate::relationship::RelationshipRecord;
use crate::store::{Overlay, StateRead};
use crate::tenancy::{TenantRecord, TokenRecord};
use crate::twin::{Connection, PropertyBag, PropertyMeta, TwinRecord};
use doppel_schemas::{parse_batch, validate_value, InterfaceModel, ParseOptions, PropertyDef};
use serde_json::{Map, Value};
use std::sync::Arc;

pub struct StateMachine {
    shard_count: u32,
    models: ModelCache,
}

impl StateMachine {
    pub fn new(shard_count: u32) -> Self {
        StateMachine {
            shard_count: shard_count.max(1),
            models: ModelCache::default(),
        }
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// Applies one command. On error nothing written to `out` may be kept.
    pub fn apply(
        &mut self,
        cmd: &Command,
        stamp: &Stamp,
        out: &mut Overlay<'_>,
    ) -> Result<Outcome, TwinError> {
        // Keys are `tenant \0 …`: a tenant name outside the tenant alphabet (a `\0`, or
        // the empty system tenant) could address another tenant's or the node's keys.
        check_id("tenant", cmd.tenant(), ids::check_tenant)?;
        match cmd {
            Command::EnsureTenant { tenant } => {
                ensure_tenant(out, tenant, stamp)?;
                Ok(Outcome::Done)
            }
            Command::PutToken { token } => {
                ensure_tenant(out, &token.tenant, stamp)?;
                out.put(
                    Family::Meta,
                    keys::meta(SYSTEM_TENANT, MetaKind::Token, &token.id),
                    encode(token),
                );
                Ok(Outcome::Token(token.clone()))
            }
            Command::RevokeToken { tenant, token_id } => {
                let key = keys::meta(SYSTEM_TENANT, MetaKind::Token, token_id);
                match out.get(Family::Meta, &key)? {
                    Some(b) if decode::<TokenRecord>("token", &b)?.tenant == *tenant => {
                        out.delete(Family::Meta, key);
                        Ok(Outcome::Done)
                    }
                    _ => Err(TwinError::TokenNotFound {
                        id: token_id.clone(),
                    }),
                }
            }
            Command::UploadModels { tenant, documents } => {
                self.upload_models(out, tenant, documents, stamp)
            }
            Command::DeleteModel { tenant, model } => self.delete_model(out, tenant, model),
            Command::BeginModelDelete { tenant, model } => {
                let mut rec = models::load_record(out, tenant, model)?.ok_or_else(|| {
                    TwinError::ModelNotFound {
                        model: model.clone(),
                    }
                })?;
                if !rec.deleting {
                    rec.deleting = true;
                    models::store_record(out, tenant, &rec);
                    self.models.invalidate(tenant, model);
                }
                Ok(Outcome::Done)
            }
            Command::AbortModelDelete { tenant, model } => {
                if let Some(mut rec) = models::load_record(out, tenant, model)? {
                    if rec.deleting {
                        rec.deleting = false;
                        models::store_record(out, tenant, &rec);
                        self.models.invalidate(tenant, model);
                    }
                }
                Ok(Outcome::Done)
            }
            Command::BeginTwinDelete {
                tenant,
                twin_id,
                condition,
            } => {
                let (shard, _) = self.existing_twin(out, tenant, twin_id, condition)?;
                self.check_deletable_here(out, shard, tenant, twin_id)?;
                out.put(
                    Family::Meta,
                    keys::twin_deleting(shard, tenant, twin_id),
                    Vec::new(),
                );
                Ok(Outcome::Done)
            }
            Command::BeginTwinRemodel { tenant, twin_id } => {
                let (shard, _) = self.existing_twin(out, tenant, twin_id, &Condition::Always)?;
                out.put(
                    Family::Meta,
                    keys::twin_deleting(shard, tenant, twin_id),
                    Vec::new(),
                );
                Ok(Outcome::Done)
            }
            Command::CheckIncomingFit {
                tenant,
                twin_id,
                model,
                shard,
            } => {
                self.check_mark_visible(out, tenant, twin_id, *shard)?;
                let (resolved, _) = self.models.get(out, tenant, model)?.ok_or_else(|| {
                    TwinError::TwinModelUnknown {
                        model: model.clone(),
                    }
                })?;
                let prefix = keys::rel_in_prefix(*shard, tenant, twin_id);
                let mut after: Option<Vec<u8>> = None;
                loop {
                    let page = out.scan(Family::RelIn, &prefix, after.as_deref(), 256)?;
                    let done = page.len() < 256;
                    after = page.last().map(|(k, _)| k.clone());
                    for (k, _) in page {
                        let Some((source, rel_id)) = keys::split_rel_in_tail(&k[prefix.len()..])
                        else {
                            continue;
                        };
                        self.check_incoming_fits(
                            out, tenant, twin_id, &resolved, &source, &rel_id,
                        )?;
                    }
                    if done {
                        break;
                    }
                }
                Ok(Outcome::Done)
            }
            Command::AbortTwinDelete { tenant, twin_id } => {
                check_id("twin id", twin_id, ids::check_twin_id)?;
                let shard = shard_of(tenant, twin_id, self.shard_count);
                let mark = keys::twin_deleting(shard, tenant, twin_id);
                if out.get(Family::Meta, &mark)?.is_some() {
                    out.delete(Family::Meta, mark);
                }
                Ok(Outcome::Done)
            }
            Command::CheckNoIncoming {
                tenant,
                twin_id,
                shard,
            } => {
                self.check_mark_visible(out, tenant, twin_id, *shard)?;
                let prefix = keys::rel_in_prefix(*shard, tenant, twin_id);
                if let Some((k, _)) = out.scan(Family::RelIn, &prefix, None, 1)?.pop() {
                    let example = keys::split_rel_in_tail(&k[prefix.len()..])
                        .map(|(s, r)| format!("{s}/{r}"))
                        .unwrap_or_default();
                    return Err(TwinError::TwinHasRelationships {
                        twin: twin_id.clone(),
                        direction: "incoming",
                        example,
                    });
                }
                Ok(Outcome::Done)
            }
            Command::CheckModelUnused {
                tenant,
                model,
                shard,
            } => {
                if *shard >= self.shard_count {
                    return Err(TwinError::InvalidArgument(format!(
                        "shard {shard} does not exist (there are {})",
                        self.shard_count
                    )));
                }
                let rec = models::load_record(out, tenant, model)?.ok_or_else(|| {
                    TwinError::ModelNotFound {
                        model: model.clone(),
                    }
                })?;
                // Whatever this evaluator cached of the model, it reads the record
                // again from here on, and so sees the mark.
                self.models.invalidate(tenant, model);
                if !rec.deleting {
                    return Err(TwinError::ModelDeleteNotBegun {
                        model: model.clone(),
                    });
                }
                let prefix = keys::model_use_prefix(*shard, tenant, model);
                if let Some((k, _)) = out.scan(Family::Meta, &prefix, None, 1)?.pop() {
                    return Err(TwinError::ModelInUse {
                        model: model.clone(),
                        twin: String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                    });
                }
                Ok(Outcome::Done)
            }
            Command::SetModelDecommissioned {
                tenant,
                model,
                decommissioned,
            } => {
                let mut rec = models::load_record(out, tenant, model)?.ok_or_else(|| {
                    TwinError::ModelNotFound {
                        model: model.clone(),
                    }
                })?;
                if !decommissioned && rec.decommissioned {
                    return Err(TwinError::InvalidArgument(format!(
                        "model {model} is decommissioned; decommissioning cannot be undone"
                    )));
                }
                rec.decommissioned = *decommissioned;
                models::store_record(out, tenant, &rec);
                self.models.invalidate(tenant, model);
                Ok(Outcome::Models(vec![rec]))
            }
            Command::PutTwin {
                tenant,
                twin_id,
                body,
                condition,
            } => self.put_twin(out, tenant, twin_id, body, condition, stamp),
            Command::PatchTwin {
                tenant,
                twin_id,
                patch,
                condition,
            } => self.patch_twin(out, tenant, twin_id, patch, condition, stamp),
            Command::DeleteTwin {
                tenant,
                twin_id,
                condition,
            } => self.delete_twin(out, tenant, twin_id, condition),
            Command::PutRelationship {
                tenant,
                source,
                rel_id,
                body,
                condition,
            } => self.put_relationship(out, tenant, source, rel_id, body, condition, stamp),
            Command::DeleteRelationship {
                tenant,
                source,
                rel_id,
                condition,
            } => {
                let existing = load_relationship(out, self.shard_count, tenant, source, rel_id)?
                    .ok_or_else(|| TwinError::RelationshipNotFound {
                        source_twin: source.clone(),
                        rel: rel_id.clone(),
                    })?;
                check_condition(Some(&existing.etag), condition, "relationship")?;
                self.remove_relationship(out, tenant, &existing);
                Ok(Outcome::Done)
            }
            Command::SetConnection {
                tenant,
                twin_id,
                connected,
                last_activity,
                node,
            } => {
                let (shard, mut twin) =
                    self.existing_twin(out, tenant, twin_id, &Condition::Always)?;
                let now = stamp.now.clone();
                // The device connected to another node since: this disconnect is of
                // its old connection, and the device is still connected.
                let moved = |c: &Connection| {
                    c.connected && node.is_some() && c.node.is_some() && c.node != *node
                };
                if !*connected && twin.connection.as_ref().is_some_and(moved) {
                    return Ok(Outcome::Twin {
                        twin,
                        created: false,
                        changed: false,
                    });
                }
                let old = twin.connection.take();
                let mut c = old.unwrap_or(Connection {
                    connected: false,
                    last_connect_time: None,
                    last_disconnect_time: None,
                    last_activity_time: now.clone(),
                    node: None,
                });
                c.connected = *connected;
                if *connected {
                    c.last_connect_time = Some(now.clone());
                    c.node = *node;
                } else {
                    c.last_disconnect_time = Some(now.clone());
                }
                c.last_activity_time = last_activity.clone().unwrap_or(now);
                twin.connection = Some(c);
                // Connection metadata is not model content: the etag stays, so an app's
                // If-Match is not broken by a device reconnecting.
                out.put(
                    Family::Twins,
                    keys::twin(shard, tenant, twin_id),
                    encode(&twin),
                );
                Ok(Outcome::Twin {
                    twin,
                    created: false,
                    changed: true,
                })
            }
            Command::ReportProperties {
                tenant,
                twin_id,
                reported,
            } => self.report_properties(out, tenant, twin_id, reported, stamp),
            Command::PutDevice {
                tenant,
                device_id,
                spec,
                condition,
            } => self.put_device(out, tenant, device_id, spec, condition, stamp),
            Command::DeleteDevice {
                tenant,
                device_id,
                condition,
            } => {
                check_id("device id", device_id, ids::check_twin_id)?;
                let shard = shard_of(tenant, device_id, self.shard_count);
                let existing = load_device(out, shard, tenant, device_id)?.ok_or_else(|| {
                    TwinError::DeviceNotFound {
                        device: device_id.clone(),
                    }
                })?;
                check_condition(Some(&existing.etag), condition, "device")?;
                out.delete(Family::Devices, keys::twin(shard, tenant, device_id));
                Ok(Outcome::Done)
            }
            Command::RecordTelemetry {
                tenant,
                twin_id,
                body,
                source_time,
            } => self.record_telemetry(out, tenant, twin_id, body, source_time.as_deref(), stamp),
        }
    }

    // ---- models ----------------------------------------------------------------

    fn upload_models(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        documents: &[Value],
        stamp: &Stamp,
    ) -> Result<Outcome, TwinError> {
        if documents.is_empty() {
            return Err(TwinError::InvalidArgument(
                "the request holds no models; send a JSON array of DTDL Interfaces".into(),
            ));
        }
        let source = StoredModels::new(out, tenant);
        let parsed = parse_batch(documents, &source, &ParseOptions::default());
        if let Some(e) = source.error.borrow_mut().take() {
            return Err(e.into());
        }
        let parsed = parsed.map_err(TwinError::ModelInvalid)?;
        let mut records = Vec::with_capacity(parsed.len());
        for (id, document, _) in parsed {
            if models::load_record(out, tenant, &id)?.is_some() {
                return Err(TwinError::ModelExists { model: id });
            }
            records.push(ModelRecord {
                id,
                document,
                upload_time: stamp.now.clone(),
                decommissioned: false,
                deleting: false,
            });
        }
        for rec in &records {
            models::store_record(out, tenant, rec);
        }
        Ok(Outcome::Models(records))
    }

    fn delete_model(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        model: &str,
    ) -> Result<Outcome, TwinError> {
        if models::load_record(out, tenant, model)?.is_none() {
            return Err(TwinError::ModelNotFound {
                model: model.to_owned(),
            });
        }
        if let Some(twin) = first_twin_using(out, self.shard_count, tenant, model)? {
            return Err(TwinError::ModelInUse {
                model: model.to_owned(),
                twin,
            });
        }
        self.check_unreferenced(out, tenant, model)?;
        out.delete(Family::Meta, keys::meta(tenant, MetaKind::Model, model));
        self.models.invalidate(tenant, model);
        Ok(Outcome::Done)
    }

    /// No other model of the tenant depends on `model`.
    fn check_unreferenced(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        model: &str,
    ) -> Result<(), TwinError> {
        for other in models::all_records(out, tenant)? {
            if other.id == model {
                continue;
            }
            if let Some((m, _)) = self.models.get(out, tenant, &other.id)? {
                if m.dependencies.iter().any(|d| d == model) {
                    return Err(TwinError::ModelReferenced {
                        model: model.to_owned(),
                        by: other.id,
                    });
                }
            }
        }
        Ok(())
    }

    fn model_of(
        &mut self,
        state: &dyn StateRead,
        tenant: &str,
        twin: &TwinRecord,
    ) -> Result<Arc<InterfaceModel>, TwinError> {
        // A twin's model cannot be deleted while the twin exists (model_use), so a
        // missing model here means the store is inconsistent.
        self.models
            .get(state, tenant, &twin.model)?
            .map(|(m, _)| m)
            .ok_or_else(|| {
                TwinError::Store(crate::StoreError(format!(
                    "model {} of twin '{}' is missing",
                    twin.model, twin.id
                )))
            })
    }

    // ---- twins -----------------------------------------------------------------

    fn put_twin(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        twin_id: &str,
        body: &Value,
        condition: &Condition,
        stamp: &Stamp,
    ) -> Result<Outcome, TwinError> {
        check_id("twin id", twin_id, ids::check_twin_id)?;
        let shard = shard_of(tenant, twin_id, self.shard_count);
        let existing = load_twin(out, shard, tenant, twin_id)?;
        check_condition(
            existing.as_ref().map(|t| t.etag.as_str()),
            condition,
            "twin",
        )?;
        let body = body.as_object().ok_or_else(|| {
            TwinError::InvalidArgument("the twin body must be a JSON object".into())
        })?;
        if let Some(v) = body.get("$dtId") {
            if v.as_str() != Some(twin_id) {
                return Err(TwinError::InvalidArgument(format!(
                    "$dtId {v} does not match the twin id '{twin_id}' in the path"
                )));
            }
        }
        let model_id = body
            .get("$metadata")
            .and_then(|m| m.get("$model"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                TwinError::InvalidArgument(
                    "the twin body needs \"$metadata\": {\"$model\": \"dtmi:…\"}".into(),
                )
            })?;
        let (model, flags) =
            self.models
                .get(out, tenant, model_id)?
                .ok_or_else(|| TwinError::TwinModelUnknown {
                    model: model_id.to_owned(),
                })?;
        if existing.as_ref().is_none_or(|t| t.model != model_id) {
            // A twin that does not use the model yet may not start to.
            if flags.deleting {
                return Err(TwinError::ModelBeingDeleted {
                    model: model_id.to_owned(),
                });
            }
            if flags.decommissioned {
                return Err(TwinError::ModelDecommissioned {
                    model: model_id.to_owned(),
                });
            }
        }
        if let Some(meta) = body.get("$metadata").and_then(Value::as_object) {
            for (k, v) in meta {
                // System metadata a GET returns may come back in a PUT; it is ignored
                // (the state machine keeps its own), as are per-property entries.
                let system = matches!(k.as_str(), "$model" | "$lastUpdateTime" | "$connection");
                if !system && !v.is_object() {
                    return Err(TwinError::InvalidArgument(format!(
                        "$metadata.{k} must be an object"
                    )));
                }
            }
        }
        let blank = PropertyBag::default();
        let mut desired_version = existing.as_ref().map_or(0, |t| t.desired_version);
        let mut root = PropertyBag::default();
        let mut components = std::collections::BTreeMap::new();
        for (key, value) in body {
            if key.starts_with('$') {
                if !matches!(key.as_str(), "$dtId" | "$etag" | "$metadata") {
                    return Err(TwinError::InvalidArgument(format!(
                        "unknown system property {key}"
                    )));
                }
                continue;
            }
            if let Some(comp) = model.components.get(key) {
                let obj = value.as_object().ok_or_else(|| {
                    TwinError::validation(
                        twin_id,
                        model_id,
                        format!("/{key}"),
                        "a component must be a JSON object",
                    )
                })?;
                let old = existing
                    .as_ref()
                    .and_then(|t| t.components.get(key))
                    .unwrap_or(&blank);
                let mut bag = PropertyBag::default();
                for (pk, pv) in obj {
                    if pk == "$metadata" {
                        continue;
                    }
                    let def = comp.interface.properties.get(pk).ok_or_else(|| {
                        not_a_property(
                            twin_id,
                            model_id,
                            &comp.interface,
                            &format!("/{key}/{pk}"),
                            pk,
                        )
                    })?;
                    set_property(
                        &mut bag,
                        old.meta.get(pk),
                        def,
                        pk,
                        pv.clone(),
                        twin_id,
                        model_id,
                        &format!("/{key}/{pk}"),
                        stamp,
                        &mut desired_version,
                    )?;
                }
                components.insert(key.clone(), bag);
            } else if let Some(def) = model.properties.get(key) {
                let old = existing.as_ref().map(|t| &t.root).unwrap_or(&blank);
                set_property(
                    &mut root,
                    old.meta.get(key),
                    def,
                    key,
                    value.clone(),
                    twin_id,
                    model_id,
                    &format!("/{key}"),
                    stamp,
                    &mut desired_version,
                )?;
            } else {
                return Err(not_a_property(
                    twin_id,
                    model_id,
                    &model,
                    &format!("/{key}"),
                    key,
                ));
            }
        }
        for name in model.components.keys() {
            components.entry(name.clone()).or_default();
        }
        let twin = TwinRecord {
            id: twin_id.to_owned(),
            etag: stamp.etag(),
            model: model_id.to_owned(),
            last_update_time: stamp.now.clone(),
            desired_version,
            root,
            components,
            // A replaced twin still has its device's connection history.
            connection: existing.as_ref().and_then(|t| t.connection.clone()),
        };
        if let Some(old) = &existing {
            if old.model != twin.model {
                self.check_relationships_survive_remodel(out, tenant, shard, twin_id, &model)?;
                out.delete(
                    Family::Meta,
                    keys::model_use(shard, tenant, &old.model, twin_id),
                );
                // A new model ends the mark its change began (`BeginTwinRemodel`).
                let mark = keys::twin_deleting(shard, tenant, twin_id);
                if out.get(Family::Meta, &mark)?.is_some() {
                    out.delete(Family::Meta, mark);
                }
            }
        }
        out.put(
            Family::Meta,
            keys::model_use(shard, tenant, model_id, twin_id),
            Vec::new(),
        );
        out.put(
            Family::Twins,
            keys::twin(shard, tenant, twin_id),
            encode(&twin),
        );
        Ok(Outcome::Twin {
            twin,
            created: existing.is_none(),
            changed: true,
        })
    }

    fn patch_twin(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        twin_id: &str,
        patch: &Value,
        condition: &Condition,
        stamp: &Stamp,
    ) -> Result<Outcome, TwinError> {
        let (shard, existing) = self.existing_twin(out, tenant, twin_id, condition)?;
        let ops = patch.as_array().ok_or_else(|| {
            TwinError::InvalidArgument("a JSON Patch must be a JSON array of operations".into())
        })?;
        for (i, op) in ops.iter().enumerate() {
            for field in ["path", "from"] {
                if let Some(p) = op.get(field).and_then(Value::as_str) {
                    if p.starts_with("/$") {
                        return Err(TwinError::InvalidArgument(format!(
                            "operation {i}: {field} {p} addresses a system property; only model content can be patched \
                             (to change the model, PUT the twin)"
                        )));
                    }
                }
            }
        }
        let parsed: json_patch::Patch = serde_json::from_value(patch.clone())
            .map_err(|e| TwinError::InvalidArgument(format!("malformed JSON Patch: {e}")))?;
        let mut view = existing.patch_view();
        // `patch_unsafe`: the view is a scratch copy thrown away on error, so no undo is
        // needed — and json-patch 5's undo panics on some failing patches (e.g. a
        // `move` into its own child after an earlier op), which a client can send.
        json_patch::patch_unsafe(&mut view, &parsed).map_err(|e| {
            TwinError::InvalidArgument(format!("JSON Patch cannot be applied: {e}"))
        })?;
        let Value::Object(view) = view else {
            return Err(TwinError::InvalidArgument(
                "the patched twin must remain a JSON object".into(),
            ));
        };
        let model = self.model_of(out, tenant, &existing)?;
        let model_id = existing.model.clone();
        let mut twin = existing.clone();
        let mut changed = false;
        for name in existing.components.keys() {
            if !view.contains_key(name) {
                return Err(TwinError::validation(
                    twin_id,
                    &model_id,
                    format!("/{name}"),
                    "a component cannot be removed; remove its properties instead",
                ));
            }
        }
        for (key, value) in &view {
            if let Some(comp) = model.components.get(key) {
                let obj = value.as_object().ok_or_else(|| {
                    TwinError::validation(
                        twin_id,
                        &model_id,
                        format!("/{key}"),
                        "a component must be a JSON object",
                    )
                })?;
                let bag = twin.components.entry(key.clone()).or_default();
                changed |= merge_bag(
                    bag,
                    obj,
                    &comp.interface,
                    twin_id,
                    &model_id,
                    &format!("/{key}"),
                    stamp,
                    &mut twin.desired_version,
                )?;
            } else if model.properties.contains_key(key) {
                // handled below with the other root properties
            } else {
                return Err(not_a_property(
                    twin_id,
                    &model_id,
                    &model,
                    &format!("/{key}"),
                    key,
                ));
            }
        }
        let root_values: Map<String, Value> = view
            .iter()
            .filter(|(k, _)| !model.components.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        changed |= merge_bag(
            &mut twin.root,
            &root_values,
            &model,
            twin_id,
            &model_id,
            "",
            stamp,
            &mut twin.desired_version,
        )?;
        if !changed {
            return Ok(Outcome::Twin {
                twin: existing,
                created: false,
                changed: false,
            });
        }
        Ok(store_changed(out, shard, tenant, twin, stamp))
    }

    /// The twin `twin_id` and its shard, if it exists and `condition` holds.
    fn existing_twin(
        &self,
        state: &dyn StateRead,
        tenant: &str,
        twin_id: &str,
        condition: &Condition,
    ) -> Result<(u32, TwinRecord), TwinError> {
        check_id("twin id", twin_id, ids::check_twin_id)?;
        let shard = shard_of(tenant, twin_id, self.shard_count);
        let existing =
            load_twin(state, shard, tenant, twin_id)?.ok_or_else(|| TwinError::TwinNotFound {
                twin: twin_id.to_owned(),
            })?;
        check_condition(Some(&existing.etag), condition, "twin")?;
        Ok((shard, existing))
    }

    /// A twin that changes its model keeps its relationships only if they still fit:
    /// each outgoing one must be declared by the new model (target model and
    /// maxMultiplicity included), and each incoming one must still accept it as target.
    fn check_relationships_survive_remodel(
        &mut self,
        out: &Overlay<'_>,
        tenant: &str,
        shard: u32,
        twin_id: &str,
        model: &InterfaceModel,
    ) -> Result<(), TwinError> {
        let n = self.shard_count;
        let broken = |path: String, why: String| {
            TwinError::validation(
                twin_id,
                &model.id,
                path,
                format!(
                    "changing the model to {} would break {why}; delete it first",
                    model.id
                ),
            )
        };
        let mut per_name: std::collections::HashMap<String, u64> = Default::default();
        let prefix = keys::rel_out_prefix(shard, tenant, twin_id);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = out.scan(Family::RelOut, &prefix, after.as_deref(), 256)?;
            let done = page.len() < 256;
            after = page.last().map(|(k, _)| k.clone());
            for (_, v) in page {
                let rel: RelationshipRecord = decode("relationship", &v)?;
                let path = format!("/relationships/{}", rel.id);
                let Some(def) = model.relationships.get(&rel.name) else {
                    return Err(broken(
                        path,
                        format!("relationship '{}' ('{}' is not declared)", rel.id, rel.name),
                    ));
                };
                if let Some(required) = &def.target {
                    let target =
                        load_twin(out, shard_of(tenant, &rel.target, n), tenant, &rel.target)?;
                    if let Some(t) = target {
                        let tm = self.model_of(out, tenant, &t)?;
                        if !tm.is_or_extends(required) {
                            return Err(broken(
                                path,
                                format!(
                                    "relationship '{}' (its target must be a {required})",
                                    rel.id
                                ),
                            ));
                        }
                    }
                }
                let count = per_name.entry(rel.name.clone()).or_default();
                *count += 1;
                if def.max_multiplicity.is_some_and(|max| *count > max) {
                    return Err(broken(
                        path,
                        format!("the maxMultiplicity of '{}'", rel.name),
                    ));
                }
            }
            if done {
                break;
            }
        }
        let mut incoming = IncomingIndex::new(out, n, tenant, twin_id, 256);
        while let Some(tail) = incoming.next_tail()? {
            let Some((source, rel_id)) = keys::split_rel_in_tail(&tail) else {
                continue;
            };
            self.check_incoming_fits(out, tenant, twin_id, model, &source, &rel_id)?;
        }
        Ok(())
    }

    /// Relationship `rel_id` of `source`, which targets `twin_id`, accepts a target of
    /// `model`.
    fn check_incoming_fits(
        &mut self,
        out: &Overlay<'_>,
        tenant: &str,
        twin_id: &str,
        model: &InterfaceModel,
        source: &str,
        rel_id: &str,
    ) -> Result<(), TwinError> {
        let n = self.shard_count;
        let Some(rel) = load_relationship(out, n, tenant, source, rel_id)? else {
            return Ok(());
        };
        let Some(src) = load_twin(out, shard_of(tenant, source, n), tenant, source)? else {
            return Ok(());
        };
        let sm = self.model_of(out, tenant, &src)?;
        if let Some(required) = sm
            .relationships
            .get(&rel.name)
            .and_then(|d| d.target.clone())
        {
            if !model.is_or_extends(&required) {
                return Err(TwinError::validation(
                    twin_id,
                    &model.id,
                    format!("/incomingrelationships/{source}/{rel_id}"),
                    format!(
                        "changing the model to {} would break incoming relationship '{rel_id}' of '{source}' (it must target a {required}); delete it first",
                        model.id
                    ),
                ));
            }
        }
        Ok(())
    }

    fn delete_twin(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        twin_id: &str,
        condition: &Condition,
    ) -> Result<Outcome, TwinError> {
        let (shard, existing) = self.existing_twin(out, tenant, twin_id, condition)?;
        self.check_deletable_here(out, shard, tenant, twin_id)?;
        // Page size 1: only the first incoming relationship (over all shards) is needed.
        let first_in = IncomingIndex::new(out, self.shard_count, tenant, twin_id, 1).next_tail()?;
        if let Some(tail) = first_in {
            let example = keys::split_rel_in_tail(&tail)
                .map(|(s, r)| format!("{s}/{r}"))
                .unwrap_or_default();
            return Err(TwinError::TwinHasRelationships {
                twin: twin_id.to_owned(),
                direction: "incoming",
                example,
            });
        }
        out.delete(Family::Twins, keys::twin(shard, tenant, twin_id));
        out.delete(
            Family::Meta,
            keys::model_use(shard, tenant, &existing.model, twin_id),
        );
        let mark = keys::twin_deleting(shard, tenant, twin_id);
        if out.get(Family::Meta, &mark)?.is_some() {
            out.delete(Family::Meta, mark);
        }
        out.delete_prefix(
            Family::Telemetry,
            keys::telemetry_prefix(shard, tenant, twin_id),
        );
        Ok(Outcome::Done)
    }

    /// A shard's check of a marked twin: the shard exists and the twin's mark is
    /// visible to this evaluation (its group's replica here may trail).
    fn check_mark_visible(
        &self,
        out: &Overlay<'_>,
        tenant: &str,
        twin_id: &str,
        shard: u32,
    ) -> Result<(), TwinError> {
        check_id("twin id", twin_id, ids::check_twin_id)?;
        if shard >= self.shard_count {
            return Err(TwinError::InvalidArgument(format!(
                "shard {shard} does not exist (there are {})",
                self.shard_count
            )));
        }
        let own = shard_of(tenant, twin_id, self.shard_count);
        if out
            .get(Family::Meta, &keys::twin_deleting(own, tenant, twin_id))?
            .is_none()
        {
            return Err(TwinError::TwinDeleteNotBegun {
                twin: twin_id.to_owned(),
            });
        }
        Ok(())
    }

    /// What the twin's own shard says against deleting it: a bound device or an
    /// outgoing relationship.
    fn check_deletable_here(
        &self,
        out: &mut Overlay<'_>,
        shard: u32,
        tenant: &str,
        twin_id: &str,
    ) -> Result<(), TwinError> {
        if load_device(out, shard, tenant, twin_id)?.is_some() {
            return Err(TwinError::TwinHasDevice {
                twin: twin_id.to_owned(),
            });
        }
        let out_prefix = keys::rel_out_prefix(shard, tenant, twin_id);
        if let Some((k, _)) = out.scan(Family::RelOut, &out_prefix, None, 1)?.pop() {
            return Err(TwinError::TwinHasRelationships {
                twin: twin_id.to_owned(),
                direction: "outgoing",
                example: String::from_utf8_lossy(&k[out_prefix.len()..]).into_owned(),
            });
        }
        Ok(())
    }

    // ---- relationships ---------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn put_relationship(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        source_id: &str,
        rel_id: &str,
        body: &Value,
        condition: &Condition,
        stamp: &Stamp,
    ) -> Result<Outcome, TwinError> {
        check_id("twin id", source_id, ids::check_twin_id)?;
        check_id("relationship id", rel_id, ids::check_relationship_id)?;
        let n = self.shard_count;
        let source = load_twin(out, shard_of(tenant, source_id, n), tenant, source_id)?
            .ok_or_else(|| TwinError::TwinNotFound {
                twin: source_id.to_owned(),
            })?;
        let existing = load_relationship(out, n, tenant, source_id, rel_id)?;
        check_condition(
            existing.as_ref().map(|r| r.etag.as_str()),
            condition,
            "relationship",
        )?;
        let body = body.as_object().ok_or_else(|| {
            TwinError::InvalidArgument("the relationship body must be a JSON object".into())
        })?;
        let str_field = |name: &str| -> Result<Option<&str>, TwinError> {
            match body.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(TwinError::InvalidArgument(format!(
                    "{name} must be a string"
                ))),
            }
        };
        for (field, expected) in [("$relationshipId", rel_id), ("$sourceId", source_id)] {
            if let Some(v) = str_field(field)? {
                if v != expected {
                    return Err(TwinError::InvalidArgument(format!(
                        "{field} '{v}' does not match '{expected}' in the path"
                    )));
                }
            }
        }
        let target_id = str_field("$targetId")?.ok_or_else(|| {
            TwinError::InvalidArgument("the relationship body needs \"$targetId\"".into())
        })?;
        check_id("target twin id", target_id, ids::check_twin_id)?;
        let name = str_field("$relationshipName")?.ok_or_else(|| {
            TwinError::InvalidArgument("the relationship body needs \"$relationshipName\"".into())
        })?;
        if let Some(old) = &existing {
            if old.name != name {
                return Err(TwinError::InvalidArgument(format!(
                    "relationship '{rel_id}' is a '{}' relationship; its name cannot change to '{name}' (delete and re-create it)",
                    old.name
                )));
            }
        }
        let model = self.model_of(out, tenant, &source)?;
        let def = model.relationships.get(name).ok_or_else(|| {
            TwinError::validation(
                source_id,
                &source.model,
                "/$relationshipName",
                format!(
                    "model {} declares no relationship named '{name}'",
                    source.model
                ),
            )
        })?;
        let target = load_twin(out, shard_of(tenant, target_id, n), tenant, target_id)?
            .ok_or_else(|| {
                TwinError::validation(
                    source_id,
                    &source.model,
                    "/$targetId",
                    format!("target twin '{target_id}' does not exist"),
                )
            })?;
        let target_shard = shard_of(tenant, target_id, n);
        if out
            .get(
                Family::Meta,
                &keys::twin_deleting(target_shard, tenant, target_id),
            )?
            .is_some()
        {
            return Err(TwinError::TwinBeingDeleted {
                twin: target_id.to_owned(),
            });
        }
        if let Some(required) = &def.target {
            let target_model = self.model_of(out, tenant, &target)?;
            if !target_model.is_or_extends(required) {
                return Err(TwinError::validation(
                    source_id,
                    &source.model,
                    "/$targetId",
                    format!("relationship '{name}' must target a twin of model {required}; '{target_id}' is a {}", target.model),
                ));
            }
        }
        let mut properties = Map::new();
        for (k, v) in body {
            if k.starts_with('$') {
                if !matches!(
                    k.as_str(),
                    "$relationshipId" | "$sourceId" | "$targetId" | "$relationshipName" | "$etag"
                ) {
                    return Err(TwinError::InvalidArgument(format!(
                        "unknown system property {k}"
                    )));
                }
                continue;
            }
            let pdef = def.properties.get(k).ok_or_else(|| {
                TwinError::validation(
                    source_id,
                    &source.model,
                    format!("/{k}"),
                    format!("relationship '{name}' has no property '{k}'"),
                )
            })?;
            validate_value(&pdef.schema, v).map_err(|e| {
                TwinError::validation(
                    source_id,
                    &source.model,
                    format!("/{k}{}", e.path),
                    e.message,
                )
            })?;
            properties.insert(k.clone(), v.clone());
        }
        if let Some(max) = def.max_multiplicity {
            let count = count_relationships(out, n, tenant, source_id, name, rel_id)?;
            if count >= max {
                return Err(TwinError::validation(
                    source_id,
                    &source.model,
                    "/$relationshipName",
                    format!("twin '{source_id}' already has {count} '{name}' relationships; maxMultiplicity is {max}"),
                ));
            }
        }
        if let Some(old) = &existing {
            self.remove_relationship(out, tenant, old);
        }
        let rel = RelationshipRecord {
            id: rel_id.to_owned(),
            source: source_id.to_owned(),
            target: target_id.to_owned(),
            name: name.to_owned(),
            etag: stamp.etag(),
            last_update_time: stamp.now.clone(),
            properties,
        };
        // Both records on the source's shard: the shard this command belongs to.
        let source_shard = shard_of(tenant, source_id, n);
        out.put(
            Family::RelOut,
            keys::rel_out(source_shard, tenant, source_id, rel_id),
            encode(&rel),
        );
        out.put(
            Family::RelIn,
            keys::rel_in(source_shard, tenant, target_id, source_id, rel_id),
            Vec::new(),
        );
        Ok(Outcome::Relationship {
            rel,
            created: existing.is_none(),
        })
    }

    fn remove_relationship(&self, out: &mut Overlay<'_>, tenant: &str, rel: &RelationshipRecord) {
        let source_shard = shard_of(tenant, &rel.source, self.shard_count);
        out.delete(
            Family::RelOut,
            keys::rel_out(source_shard, tenant, &rel.source, &rel.id),
        );
        out.delete(
            Family::RelIn,
            keys::rel_in(source_shard, tenant, &rel.target, &rel.source, &rel.id),
        );
    }

    // ---- reported properties (IoT Plug and Play) ----------------------------------

    fn report_properties(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        twin_id: &str,
        reported: &Value,
        stamp: &Stamp,
    ) -> Result<Outcome, TwinError> {
        let (shard, existing) = self.existing_twin(out, tenant, twin_id, &Condition::Always)?;
        let model = self.model_of(out, tenant, &existing)?;
        let reported = reported.as_object().ok_or_else(|| {
            TwinError::InvalidArgument("reported properties must be a JSON object".into())
        })?;
        let mut twin = existing.clone();
        let model_id = existing.model.clone();
        let max_version = existing.desired_version;
        for (key, value) in reported {
            if let Some(comp) = model.components.get(key) {
                let obj = value.as_object().ok_or_else(|| {
                    TwinError::validation(
                        twin_id,
                        &model_id,
                        format!("/{key}"),
                        "a component's reported properties must be a JSON object",
                    )
                })?;
                let bag = twin.components.entry(key.clone()).or_default();
                for (pk, pv) in obj {
                    if pk == "__t" {
                        if pv != "c" {
                            return Err(TwinError::validation(
                                twin_id,
                                &model_id,
                                format!("/{key}/__t"),
                                "the component marker must be \"c\"",
                            ));
                        }
                        continue;
                    }
                    let path = format!("/{key}/{pk}");
                    let def = comp.interface.properties.get(pk).ok_or_else(|| {
                        not_a_property(twin_id, &model_id, &comp.interface, &path, pk)
                    })?;
                    report_one(
                        bag,
                        def,
                        pk,
                        pv,
                        twin_id,
                        &model_id,
                        &path,
                        max_version,
                        stamp,
                    )?;
                }
            } else {
                let path = format!("/{key}");
                let def = model
                    .properties
                    .get(key)
                    .ok_or_else(|| not_a_property(twin_id, &model_id, &model, &path, key))?;
                report_one(
                    &mut twin.root,
                    def,
                    key,
                    value,
                    twin_id,
                    &model_id,
                    &path,
                    max_version,
                    stamp,
                )?;
            }
        }
        Ok(store_changed(out, shard, tenant, twin, stamp))
    }

    // ---- devices ---------------------------------------------------------------

    fn put_device(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        device_id: &str,
        spec: &DeviceSpec,
        condition: &Condition,
        stamp: &Stamp,
    ) -> Result<Outcome, TwinError> {
        check_id("device id", device_id, ids::check_twin_id)?;
        let shard = shard_of(tenant, device_id, self.shard_count);
        if load_twin(out, shard, tenant, device_id)?.is_none() {
            return Err(TwinError::TwinNotFound {
                twin: device_id.to_owned(),
            });
        }
        let existing = load_device(out, shard, tenant, device_id)?;
        check_condition(
            existing.as_ref().map(|d| d.etag.as_str()),
            condition,
            "device",
        )?;
        let old = existing.as_ref();
        let primary_key = spec
            .primary_key
            .clone()
            .or_else(|| old.map(|d| d.primary_key.clone()))
            .unwrap_or_else(|| spec.fresh_keys.0.clone());
        let secondary_key = spec
            .secondary_key
            .clone()
            .or_else(|| old.map(|d| d.secondary_key.clone()))
            .unwrap_or_else(|| spec.fresh_keys.1.clone());
        for (field, key) in [
            ("primaryKey", &primary_key),
            ("secondaryKey", &secondary_key),
        ] {
            crate::devices::check_key(key).map_err(|reason| {
                TwinError::InvalidArgument(format!("authentication.symmetricKey.{field} {reason}"))
            })?;
        }
        if spec
            .status_reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > 128)
        {
            return Err(TwinError::InvalidArgument(
                "statusReason is longer than 128 characters".into(),
            ));
        }
        let status = spec
            .status
            .or(old.map(|d| d.status))
            .unwrap_or(DeviceStatus::Enabled);
        let status_reason = match (&spec.status_reason, spec.status) {
            (Some(r), _) => Some(r.clone()),
            // A new status without a reason clears the old reason.
            (None, Some(_)) => None,
            (None, None) => old.and_then(|d| d.status_reason.clone()),
        };
        let x509_thumbprint = match spec.x509_thumbprint.as_deref() {
            None => old.and_then(|d| d.x509_thumbprint.clone()),
            Some("") => None,
            Some(t) => Some(crate::devices::normalize_thumbprint(t).map_err(|reason| {
                TwinError::InvalidArgument(format!(
                    "authentication.x509Thumbprint.primaryThumbprint {reason}"
                ))
            })?),
        };
        let device = DeviceRecord {
            id: device_id.to_owned(),
            etag: stamp.etag(),
            status,
            status_reason,
            primary_key,
            secondary_key,
            x509_thumbprint,
            created: old.map_or_else(|| stamp.now.clone(), |d| d.created.clone()),
            last_update_time: stamp.now.clone(),
        };
        out.put(
            Family::Devices,
            keys::twin(shard, tenant, device_id),
            encode(&device),
        );
        Ok(Outcome::Device {
            device,
            created: existing.is_none(),
        })
    }

    // ---- telemetry -------------------------------------------------------------

    fn record_telemetry(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        twin_id: &str,
        body: &Value,
        source_time: Option<&str>,
        stamp: &Stamp,
    ) -> Result<Outcome, TwinError> {
        check_id("twin id", twin_id, ids::check_twin_id)?;
        let shard = shard_of(tenant, twin_id, self.shard_count);
        let twin =
            load_twin(out, shard, tenant, twin_id)?.ok_or_else(|| TwinError::TwinNotFound {
                twin: twin_id.to_owned(),
            })?;
        let model = self.model_of(out, tenant, &twin)?;
        let body = body.as_object().ok_or_else(|| {
            TwinError::InvalidArgument(
                "telemetry must be a JSON object of telemetry name → value".into(),
            )
        })?;
        if body.is_empty() {
            return Err(TwinError::InvalidArgument(
                "telemetry message holds no values".into(),
            ));
        }
        let time = source_time.unwrap_or(&stamp.now);
        let ts_ms = chrono::DateTime::parse_from_rfc3339(time)
            .map_err(|e| {
                TwinError::InvalidArgument(format!("telemetry time '{time}' is not RFC 3339: {e}"))
            })?
            .timestamp_millis();
        let ts_ms = u64::try_from(ts_ms).map_err(|_| {
            TwinError::InvalidArgument(format!("telemetry time '{time}' is before 1970"))
        })?;
        let mut entries = Vec::new();
        for (key, value) in body {
            if let Some(def) = model.telemetry.get(key) {
                validate_value(&def.schema, value).map_err(|e| {
                    TwinError::validation(
                        twin_id,
                        &twin.model,
                        format!("/{key}{}", e.path),
                        e.message,
                    )
                })?;
                entries.push((key.clone(), value.clone()));
            } else if let Some(comp) = model.components.get(key) {
                let obj = value.as_object().ok_or_else(|| {
                    TwinError::validation(
                        twin_id,
                        &twin.model,
                        format!("/{key}"),
                        "component telemetry must be a JSON object",
                    )
                })?;
                for (tk, tv) in obj {
                    let def = comp.interface.telemetry.get(tk).ok_or_else(|| {
                        TwinError::validation(
                            twin_id,
                            &twin.model,
                            format!("/{key}/{tk}"),
                            format!("component '{key}' has no telemetry '{tk}'"),
                        )
                    })?;
                    validate_value(&def.schema, tv).map_err(|e| {
                        TwinError::validation(
                            twin_id,
                            &twin.model,
                            format!("/{key}/{tk}{}", e.path),
                            e.message,
                        )
                    })?;
                    entries.push((format!("{key}/{tk}"), tv.clone()));
                }
            } else {
                return Err(TwinError::validation(
                    twin_id,
                    &twin.model,
                    format!("/{key}"),
                    format!("model {} declares no telemetry named '{key}'", twin.model),
                ));
            }
        }
        for (i, (name, value)) in entries.into_iter().enumerate() {
            let seq = (stamp.nonce as u32).wrapping_add(i as u32);
            let record =
                serde_json::json!({ "value": value, "time": time, "enqueuedTime": stamp.now });
            out.put(
                Family::Telemetry,
                keys::telemetry(shard, tenant, twin_id, &name, ts_ms, seq),
                encode(&record),
            );
        }
        Ok(Outcome::Done)
    }
}

// ---- helpers ---------------------------------------------------------------------

fn ensure_tenant(out: &mut Overlay<'_>, tenant: &str, stamp: &Stamp) -> Result<(), TwinError> {
    check_id("tenant", tenant, ids::check_tenant)?;
    let key = keys::meta(SYSTEM_TENANT, MetaKind::Tenant, tenant);
    if out.get(Family::Meta, &key)?.is_none() {
        let rec = TenantRecord {
            name: tenant.to_owned(),
            created: stamp.now.clone(),
        };
        out.put(Family::Meta, key, encode(&rec));
    }
    Ok(())
}

fn check_id(
    what: &'static str,
    id: &str,
    rule: fn(&str) -> Result<(), String>,
) -> Result<(), TwinError> {
    rule(id).map_err(|reason| TwinError::InvalidId {
        what,
        id: id.to_owned(),
        reason,
    })
}

fn check_condition(
    current: Option<&str>,
    condition: &Condition,
    what: &str,
) -> Result<(), TwinError> {
    match (condition, current) {
        (Condition::Always, _) => Ok(()),
        (Condition::IfNoneMatchAny, None) => Ok(()),
        (Condition::IfNoneMatchAny, Some(_)) => Err(TwinError::PreconditionFailed(format!(
            "If-None-Match: * was given but the {what} already exists"
        ))),
        (Condition::IfMatch(tag), Some(cur)) if tag == "*" || tag == cur => Ok(()),
        (Condition::IfMatch(tag), Some(cur)) => Err(TwinError::PreconditionFailed(format!(
            "If-Match {tag} does not match the {what}'s current etag {cur}"
        ))),
        (Condition::IfMatch(tag), None) => Err(TwinError::PreconditionFailed(format!(
            "If-Match {tag} was given but the {what} does not exist"
        ))),
    }
}

/// Stamps a changed twin with a new etag and time, stores it, and reports it changed.
fn store_changed(
    out: &mut Overlay<'_>,
    shard: u32,
    tenant: &str,
    mut twin: TwinRecord,
    stamp: &Stamp,
) -> Outcome {
    twin.etag = stamp.etag();
    twin.last_update_time = stamp.now.clone();
    out.put(
        Family::Twins,
        keys::twin(shard, tenant, &twin.id),
        encode(&twin),
    );
    Outcome::Twin {
        twin,
        created: false,
        changed: true,
    }
}

pub fn load_twin(
    state: &dyn StateRead,
    shard: u32,
    tenant: &str,
    id: &str,
) -> Result<Option<TwinRecord>, TwinError> {
    load_record(state, Family::Twins, &keys::twin(shard, tenant, id), "twin")
}

/// Reads and decodes one record, `None` when absent.
fn load_record<T: serde::de::DeserializeOwned>(
    state: &dyn StateRead,
    family: Family,
    key: &[u8],
    kind: &'static str,
) -> Result<Option<T>, TwinError> {
    match state.get(family, key)? {
        Some(b) => Ok(Some(decode(kind, &b)?)),
        None => Ok(None),
    }
}

/// The device bound to twin `id` (stored on the twin's shard).
pub fn load_device(
    state: &dyn StateRead,
    shard: u32,
    tenant: &str,
    id: &str,
) -> Result<Option<DeviceRecord>, TwinError> {
    load_record(
        state,
        Family::Devices,
        &keys::twin(shard, tenant, id),
        "device",
    )
}

pub fn load_relationship(
    state: &dyn StateRead,
    shard_count: u32,
    tenant: &str,
    source: &str,
    rel_id: &str,
) -> Result<Option<RelationshipRecord>, TwinError> {
    let key = keys::rel_out(
        shard_of(tenant, source, shard_count),
        tenant,
        source,
        rel_id,
    );
    load_record(state, Family::RelOut, &key, "relationship")
}

/// The twin that uses `model` with the smallest id, if any twin of `tenant` uses it.
///
/// `model_use` records live on their twin's shard, so every data shard is asked for its
/// first; the smallest of those is the first in id order over the whole tenant.
fn first_twin_using(
    state: &dyn StateRead,
    shard_count: u32,
    tenant: &str,
    model: &str,
) -> Result<Option<String>, TwinError> {
    let mut first: Option<Vec<u8>> = None;
    for shard in 0..shard_count {
        let prefix = keys::model_use_prefix(shard, tenant, model);
        if let Some((k, _)) = state.scan(Family::Meta, &prefix, None, 1)?.pop() {
            let twin = k[prefix.len()..].to_vec();
            if first.as_ref().is_none_or(|f| twin < *f) {
                first = Some(twin);
            }
        }
    }
    Ok(first.map(|t| String::from_utf8_lossy(&t).into_owned()))
}

/// The incoming relationships of one twin, from the `rel_in` index of every data
/// shard (each entry lives on its source's shard), merged into one stream in
/// `source \0 rel_id` order: the order a single index over all shards would have.
struct IncomingIndex<'a> {
    state: &'a dyn StateRead,
    page_size: usize,
    shards: Vec<IncomingCursor>,
}

/// One data shard's part of an [`IncomingIndex`]: a page of key tails read ahead.
struct IncomingCursor {
    prefix: Vec<u8>,
    after: Option<Vec<u8>>,
    page: std::collections::VecDeque<Vec<u8>>,
    done: bool,
}

impl<'a> IncomingIndex<'a> {
    fn new(
        state: &'a dyn StateRead,
        shard_count: u32,
        tenant: &str,
        target: &str,
        page_size: usize,
    ) -> Self {
        IncomingIndex {
            state,
            page_size: page_size.max(1),
            shards: (0..shard_count)
                .map(|shard| IncomingCursor {
                    prefix: keys::rel_in_prefix(shard, tenant, target),
                    after: None,
                    page: Default::default(),
                    done: false,
                })
                .collect(),
        }
    }

    /// The next `source \0 rel_id` tail (see [`keys::split_rel_in_tail`]).
    fn next_tail(&mut self) -> Result<Option<Vec<u8>>, TwinError> {
        let mut best: Option<usize> = None;
        for i in 0..self.shards.len() {
            let c = &mut self.shards[i];
            if c.page.is_empty() && !c.done {
                let rows = self.state.scan(
                    Family::RelIn,
                    &c.prefix,
                    c.after.as_deref(),
                    self.page_size,
                )?;
                c.done = rows.len() < self.page_size;
                c.after = rows.last().map(|(k, _)| k.clone());
                c.page = rows
                    .into_iter()
                    .map(|(k, _)| k[c.prefix.len()..].to_vec())
                    .collect();
            }
            let Some(head) = self.shards[i].page.front() else {
                continue;
            };
            if best.is_none_or(|b| self.shards[b].page.front().is_some_and(|h| head < h)) {
                best = Some(i);
            }
        }
        Ok(best.and_then(|b| self.shards[b].page.pop_front()))
    }
}

fn count_relationships(
    state: &dyn StateRead,
    shard_count: u32,
    tenant: &str,
    source: &str,
    name: &str,
    except_id: &str,
) -> Result<u64, TwinError> {
    let prefix = keys::rel_out_prefix(shard_of(tenant, source, shard_count), tenant, source);
    let mut after: Option<Vec<u8>> = None;
    let mut count = 0;
    loop {
        let page = state.scan(Family::RelOut, &prefix, after.as_deref(), 256)?;
        let done = page.len() < 256;
        after = page.last().map(|(k, _)| k.clone());
        for (_, v) in page {
            let rel: RelationshipRecord = decode("relationship", &v)?;
            if rel.name == name && rel.id != except_id {
                count += 1;
            }
        }
        if done {
            return Ok(count);
        }
    }
}

fn not_a_property(
    twin: &str,
    model_id: &str,
    model: &InterfaceModel,
    path: &str,
    name: &str,
) -> TwinError {
    let what = if model.telemetry.contains_key(name) {
        "is a Telemetry, not a Property; send it to /telemetry"
    } else if model.commands.contains_key(name) {
        "is a Command, not a Property"
    } else if model.relationships.contains_key(name) {
        "is a Relationship; create it under /relationships"
    } else if model.components.contains_key(name) {
        "is a Component and cannot be nested here"
    } else {
        "is not defined in the model"
    };
    TwinError::validation(
        twin,
        model_id,
        path,
        format!("'{name}' {what} ({})", model.id),
    )
}

/// Sets one property from a PUT body or a patch. A writable property's new desired
/// value gets the twin's next desired version (`desired_version`, bumped here).
#[allow(clippy::too_many_arguments)]
fn set_property(
    bag: &mut PropertyBag,
    old_meta: Option<&PropertyMeta>,
    def: &PropertyDef,
    name: &str,
    value: Value,
    twin: &str,
    model_id: &str,
    path: &str,
    stamp: &Stamp,
    desired_version: &mut u64,
) -> Result<(), TwinError> {
    validate_value(&def.schema, &value).map_err(|e| {
        TwinError::validation(twin, model_id, format!("{path}{}", e.path), e.message)
    })?;
    let mut meta = PropertyMeta {
        last_update_time: stamp.now.clone(),
        ..Default::default()
    };
    if def.writable {
        let prev = old_meta.and_then(|m| m.desired_version).unwrap_or(0);
        *desired_version = (*desired_version).max(prev) + 1;
        meta.desired_value = Some(value.clone());
        meta.desired_version = Some(*desired_version);
        meta.ack_version = old_meta.and_then(|m| m.ack_version);
        meta.ack_code = old_meta.and_then(|m| m.ack_code);
        meta.ack_description = old_meta.and_then(|m| m.ack_description.clone());
    }
    bag.values.insert(name.to_owned(), value);
    bag.meta.insert(name.to_owned(), meta);
    Ok(())
}

/// Applies one reported property. Writable properties are acknowledged with the Plug
/// and Play envelope `{"value", "ac", "av", "ad"}` (recognised by its `ac` member);
/// the desired value and version are kept. `null` clears the reported value.
#[allow(clippy::too_many_arguments)]
fn report_one(
    bag: &mut PropertyBag,
    def: &PropertyDef,
    name: &str,
    reported: &Value,
    twin: &str,
    model_id: &str,
    path: &str,
    max_version: u64,
    stamp: &Stamp,
) -> Result<(), TwinError> {
    if reported.is_null() {
        bag.values.shift_remove(name);
        if let Some(m) = bag.meta.get_mut(name) {
            m.last_update_time = stamp.now.clone();
        }
        return Ok(());
    }
    let envelope = reported.as_object().filter(|o| o.contains_key("ac"));
    let (value, ack) = match envelope {
        Some(o) if def.writable => {
            for k in o.keys() {
                if !matches!(k.as_str(), "value" | "ac" | "av" | "ad") {
                    return Err(TwinError::validation(
                        twin,
                        model_id,
                        format!("{path}/{k}"),
                        "an acknowledgement holds only value, ac, av and ad",
                    ));
                }
            }
            let value = o.get("value").ok_or_else(|| {
                TwinError::validation(
                    twin,
                    model_id,
                    format!("{path}/value"),
                    "the acknowledgement has no value",
                )
            })?;
            let ac = o
                .get("ac")
                .and_then(Value::as_u64)
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| {
                    TwinError::validation(
                        twin,
                        model_id,
                        format!("{path}/ac"),
                        "ac must be a status code from 100 to 599",
                    )
                })?;
            let av = match o.get("av") {
                None => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| {
                    TwinError::validation(
                        twin,
                        model_id,
                        format!("{path}/av"),
                        "av must be a non-negative integer",
                    )
                })?),
            };
            if let Some(av) = av {
                if av > max_version {
                    return Err(TwinError::validation(
                        twin,
                        model_id,
                        format!("{path}/av"),
                        format!("av {av} acknowledges a version never desired (the latest is {max_version})"),
                    ));
                }
            }
            let ad = match o.get("ad") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    return Err(TwinError::validation(
                        twin,
                        model_id,
                        format!("{path}/ad"),
                        "ad must be a string",
                    ))
                }
            };
            (value, Some((ac, av, ad)))
        }
        _ => (reported, None),
    };
    validate_value(&def.schema, value).map_err(|e| {
        TwinError::validation(twin, model_id, format!("{path}{}", e.path), e.message)
    })?;
    let meta = bag.meta.entry(name.to_owned()).or_default();
    meta.last_update_time = stamp.now.clone();
    if let Some((ac, av, ad)) = ack {
        meta.ack_code = Some(ac as u16);
        meta.ack_version = av;
        meta.ack_description = ad;
    }
    bag.values.insert(name.to_owned(), value.clone());
    Ok(())
}

/// Brings `bag` to the values of `wanted` (the patched view), validating changed
/// values and stamping their metadata. Returns whether anything changed.
#[allow(clippy::too_many_arguments)]
fn merge_bag(
    bag: &mut PropertyBag,
    wanted: &Map<String, Value>,
    iface: &InterfaceModel,
    twin: &str,
    model_id: &str,
    path_prefix: &str,
    stamp: &Stamp,
    desired_version: &mut u64,
) -> Result<bool, TwinError> {
    let mut changed = false;
    let removed: Vec<String> = bag
        .values
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .cloned()
        .collect();
    for k in removed {
        // shift_remove: the remaining properties keep their order.
        bag.values.shift_remove(&k);
        bag.meta.remove(&k);
        changed = true;
    }
    for (k, v) in wanted {
        if bag.values.get(k) == Some(v) {
            continue;
        }
        let path = format!("{path_prefix}/{k}");
        let def = iface
            .properties
            .get(k)
            .ok_or_else(|| not_a_property(twin, model_id, iface, &path, k))?;
        let old_meta = bag.meta.get(k).cloned();
        set_property(
            bag,
            old_meta.as_ref(),
            def,
            k,
            v.clone(),
            twin,
            model_id,
            &path,
            stamp,
            desired_version,
        )?;
        changed = true;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemState;

    #[test]
    fn incoming_index_merges_every_shard_in_source_order_across_pages() {
        let mut m = MemState::default();
        let mut want = Vec::new();
        for i in 0..40u32 {
            let source = format!("s{i:02}");
            // Spread over shards in an order unrelated to the source ids.
            let shard = (i * 7) % 5;
            for rel in ["a", "b"] {
                m.data.insert(
                    (Family::RelIn, keys::rel_in(shard, "t", "hub", &source, rel)),
                    Vec::new(),
                );
                want.push(format!("{source}\0{rel}").into_bytes());
            }
            // Neighbours that must not show up: another target, another tenant.
            m.data.insert(
                (
                    Family::RelIn,
                    keys::rel_in(shard, "t", "hub2", &source, "x"),
                ),
                Vec::new(),
            );
            m.data.insert(
                (Family::RelIn, keys::rel_in(shard, "u", "hub", &source, "x")),
                Vec::new(),
            );
        }
        for page_size in [1, 2, 3, 256] {
            let mut it = IncomingIndex::new(&m, 5, "t", "hub", page_size);
            let mut got = Vec::new();
            while let Some(tail) = it.next_tail().unwrap() {
                got.push(tail);
            }
            assert_eq!(got, want, "page size {page_size}");
        }
        assert_eq!(
            IncomingIndex::new(&m, 5, "t", "nobody", 1)
                .next_tail()
                .unwrap(),
            None
        );
    }

    #[test]
    fn first_twin_using_a_model_is_the_smallest_id_over_all_shards() {
        let mut m = MemState::default();
        for (shard, twin) in [(3, "b"), (0, "c"), (6, "a2"), (6, "a1")] {
            m.data.insert(
                (Family::Meta, keys::model_use(shard, "t", "m", twin)),
                vec![],
            );
        }
        m.data
            .insert((Family::Meta, keys::model_use(1, "t", "m2", "a0")), vec![]);
        assert_eq!(
            first_twin_using(&m, 8, "t", "m").unwrap().as_deref(),
            Some("a1")
        );
        assert_eq!(first_twin_using(&m, 8, "t", "m3").unwrap(), None);
        // Shards beyond the shard count are not data shards.
        assert_eq!(
            first_twin_using(&m, 6, "t", "m").unwrap().as_deref(),
            Some("b")
        );
    }
}
