//! What a bound device changes on its twin: reported property values (IoT Plug and
//! Play, with acknowledgements of desired values) and its connection state.
//!
//! Key types: [`TwinRecord`](crate::TwinRecord), its [`Connection`] (`$metadata.$connection`).
//!
//! Contract:
//! - a report is validated like a PUT (model conformance, paths in errors) and gets a
//!   new etag; an acknowledgement never names a desired version not yet handed out;
//! - connection changes keep the etag (they are not model content, so an app's
//!   `If-Match` is not broken by a device reconnecting); a disconnect reported by a
//!   node the device has since left is stale and changes nothing.

use super::properties::{not_a_property, report_one};
use super::twins::store_changed;
use super::StateMachine;
use crate::codec::encode;
use crate::command::{Condition, Outcome, Stamp};
use crate::error::TwinError;
use crate::keys::{self, Family};
use crate::store::Overlay;
use crate::twin::Connection;
use serde_json::Value;

impl StateMachine {
    pub(super) fn report_properties(
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn set_connection(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        twin_id: &str,
        connected: bool,
        last_activity: Option<&str>,
        node: Option<u64>,
        stamp: &Stamp,
    ) -> Result<Outcome, TwinError> {
        let (shard, mut twin) = self.existing_twin(out, tenant, twin_id, &Condition::Always)?;
        let now = stamp.now.clone();
        // The device connected to another node since: this disconnect is of
        // its old connection, and the device is still connected.
        let moved =
            |c: &Connection| c.connected && node.is_some() && c.node.is_some() && c.node != node;
        if !connected && twin.connection.as_ref().is_some_and(moved) {
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
        c.connected = connected;
        if connected {
            c.last_connect_time = Some(now.clone());
            c.node = node;
        } else {
            c.last_disconnect_time = Some(now.clone());
        }
        c.last_activity_time = last_activity.map_or(now, str::to_owned);
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
}
