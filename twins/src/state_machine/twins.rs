//! Twin commands: create or replace (PUT), JSON Patch, delete; and the checks a twin
//! must pass before it may change its model or be deleted on its own shard.
//!
//! Key types: [`TwinRecord`] (one per twin, key `twins | shard | tenant | twin`) and
//! its `model_use` record (meta family, on the twin's shard).
//!
//! Contract:
//! - a twin always conforms to its model: every value is validated against its
//!   Property's schema, components are objects, system properties cannot be patched;
//! - a twin's `model_use` record names exactly its current model (so a model in use
//!   cannot be deleted);
//! - every change gets a new etag and `lastUpdateTime`; a PATCH that changes nothing
//!   writes nothing and keeps the etag;
//! - a twin changes its model only if all its relationships, outgoing and incoming
//!   (on every shard), still fit the new model;
//! - a twin is deleted only without a device and without relationships either way;
//!   its telemetry history goes with it.

use super::incoming_index::IncomingIndex;
use super::preconditions::{check_condition, check_id};
use super::properties::{merge_bag, not_a_property, set_property};
use super::records::load_device;
use super::records::load_twin;
use super::StateMachine;
use crate::codec::{decode, encode};
use crate::command::{Condition, Outcome, Stamp};
use crate::error::TwinError;
use crate::ids;
use crate::keys::{self, shard_of, Family};
use crate::relationship::RelationshipRecord;
use crate::store::{Overlay, StateRead};
use crate::twin::{PropertyBag, TwinRecord};
use doppel_schemas::InterfaceModel;
use serde_json::{Map, Value};

impl StateMachine {
    pub(super) fn put_twin(
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

    pub(super) fn patch_twin(
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
    pub(super) fn existing_twin(
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

    pub(super) fn delete_twin(
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

    /// What the twin's own shard says against deleting it: a bound device or an
    /// outgoing relationship.
    pub(super) fn check_deletable_here(
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
}

/// Stamps a changed twin with a new etag and time, stores it, and reports it changed.
pub(super) fn store_changed(
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
