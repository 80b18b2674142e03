//! Telemetry: validated against the twin's model and appended to its history.
//!
//! Key: `telemetry | shard(twin) | tenant | twin | name | ts_ms (u64 BE) | seq (u32 BE)`
//! (component telemetry is named `component/name`); value `{value, time,
//! enqueuedTime}`.
//!
//! Contract: a message is all or nothing (every value conforms, or nothing is
//! stored); its time is the source time when given, else the stamp's, in UTC
//! milliseconds since 1970; the twin itself does not change.

use super::preconditions::check_id;
use super::records::load_twin;
use super::StateMachine;
use crate::codec::encode;
use crate::command::{Outcome, Stamp};
use crate::error::TwinError;
use crate::ids;
use crate::keys::{self, shard_of, Family};
use crate::store::Overlay;
use doppel_schemas::validate_value;
use serde_json::Value;

impl StateMachine {
    pub(super) fn record_telemetry(
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
