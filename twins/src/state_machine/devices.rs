//! Device registry commands: bind (create or update) and delete the device of a twin.
//!
//! Key types: [`DeviceRecord`] (`devices | shard(twin) | tenant | twin`), built from a
//! [`DeviceSpec`].
//!
//! Contract: a device is bound only to an existing twin, and lives on that twin's
//! shard, so binding and the twin's existence are checked in one command; fields a
//! spec leaves out keep their value; keys and thumbprints are validated before they
//! are stored; `If-Match` guards updates and deletes.

use super::preconditions::{check_condition, check_id};
use super::records::load_device;
use super::records::load_twin;
use super::StateMachine;
use crate::codec::encode;
use crate::command::{Condition, Outcome, Stamp};
use crate::devices::{DeviceRecord, DeviceSpec, DeviceStatus};
use crate::error::TwinError;
use crate::ids;
use crate::keys::{self, shard_of, Family};
use crate::store::Overlay;

impl StateMachine {
    pub(super) fn put_device(
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

    pub(super) fn delete_device(
        &mut self,
        out: &mut Overlay<'_>,
        tenant: &str,
        device_id: &str,
        condition: &Condition,
    ) -> Result<Outcome, TwinError> {
        check_id("device id", device_id, ids::check_twin_id)?;
        let shard = shard_of(tenant, device_id, self.shard_count);
        let existing = load_device(out, shard, tenant, device_id)?.ok_or_else(|| {
            TwinError::DeviceNotFound {
                device: device_id.to_owned(),
            }
        })?;
        check_condition(Some(&existing.etag), condition, "device")?;
        out.delete(Family::Devices, keys::twin(shard, tenant, device_id));
        Ok(Outcome::Done)
    }
}
