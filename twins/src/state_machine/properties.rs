//! Property values as twins hold them: validating a value against its Property's
//! schema and stamping its metadata, for PUT, PATCH and device reports alike.
//!
//! Key types: [`PropertyBag`] (values and per-property [`PropertyMeta`] of the root
//! or of one component), `PropertyDef` (from the resolved model).
//!
//! Contract:
//! - a value is stored only after it validates; errors carry the JSON path;
//! - a writable property's new desired value gets the twin's next desired version,
//!   so desired versions only increase (even across a property's removal);
//! - a name that is not a Property says what it is instead (Telemetry, Command,
//!   Relationship, Component, or undefined).

use crate::command::Stamp;
use crate::error::TwinError;
use crate::twin::{PropertyBag, PropertyMeta};
use doppel_schemas::{validate_value, InterfaceModel, PropertyDef};
use serde_json::{Map, Value};

pub(super) fn not_a_property(
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
pub(super) fn set_property(
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
pub(super) fn report_one(
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
pub(super) fn merge_bag(
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
