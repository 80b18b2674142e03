//! Relationship commands: create or replace, delete; and whether an existing
//! relationship accepts a target of a given model.
//!
//! Key types: [`RelationshipRecord`] (`rel_out | shard(source) | tenant | source |
//! rel_id`) and its incoming index entry (`rel_in | shard(source) | tenant | target |
//! source | rel_id`, empty value). Both live on the *source*'s shard, the shard whose
//! command writes them (see `crate::keys`).
//!
//! Contract:
//! - a relationship is declared by its source's model (name, target model,
//!   properties, `maxMultiplicity`), and its target exists and is not marked for
//!   deletion or a model change;
//! - its `rel_out` record and its `rel_in` entry are written and removed together, so
//!   the index never points at a missing relationship nor misses one;
//! - a relationship keeps its name for life (replace it by delete and create).

use super::preconditions::{check_condition, check_id};
use super::records::load_relationship;
use super::records::load_twin;
use super::StateMachine;
use crate::codec::{decode, encode};
use crate::command::{Condition, Outcome, Stamp};
use crate::error::TwinError;
use crate::ids;
use crate::keys::{self, shard_of, Family};
use crate::relationship::RelationshipRecord;
use crate::store::{Overlay, StateRead};
use doppel_schemas::{validate_value, InterfaceModel};
use serde_json::{Map, Value};

impl StateMachine {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_relationship(
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

    pub(super) fn remove_relationship(
        &self,
        out: &mut Overlay<'_>,
        tenant: &str,
        rel: &RelationshipRecord,
    ) {
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

    pub(super) fn delete_relationship(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        source: &str,
        rel_id: &str,
        condition: &Condition,
    ) -> Result<Outcome, TwinError> {
        let existing = load_relationship(out, self.shard_count, tenant, source, rel_id)?
            .ok_or_else(|| TwinError::RelationshipNotFound {
                source_twin: source.to_owned(),
                rel: rel_id.to_owned(),
            })?;
        check_condition(Some(&existing.etag), condition, "relationship")?;
        self.remove_relationship(out, tenant, &existing);
        Ok(Outcome::Done)
    }

    /// Relationship `rel_id` of `source`, which targets `twin_id`, accepts a target of
    /// `model`.
    pub(super) fn check_incoming_fits(
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
