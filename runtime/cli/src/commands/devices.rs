//! `doppel devices create|get|list|enable|disable|delete|sas`: the device registry,
//! under `/devices`, and SAS tokens for a device to connect over MQTT.
//!
//! Key items: [`DevicesCmd`], [`run_devices`], and the pure [`mqtt_credentials`].

use super::error::{report, CliError};
use super::output::{print_json, print_line};
use super::ClientOpts;
use doppel_client::{ApiClient, ClientError, Preconditions, RequestBody};
use reqwest::Method;
use serde_json::{json, Value};

/// Device registry commands (admin tokens only: device keys are secrets).
#[derive(clap::Subcommand, Debug)]
pub enum DevicesCmd {
    /// Create the device bound to twin ID (keys are generated) and print it with its keys
    Create { id: String },
    /// Print a device with its keys
    Get { id: String },
    /// List devices (without keys)
    List,
    /// Allow a device to connect again
    Enable { id: String },
    /// Refuse a device and cut its connection at once (its data stays)
    Disable {
        id: String,
        /// Why, for the record
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a device (its twin stays)
    Delete { id: String },
    /// Print MQTT credentials for a device: user name and a SAS token from its key
    Sas {
        id: String,
        /// The hub name the device uses; its first label is the tenant
        #[arg(long, default_value = "default.doppel")]
        hub: String,
        /// Token lifetime in seconds
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        /// Sign with the secondary key instead of the primary
        #[arg(long)]
        secondary: bool,
    },
}

/// Run a `devices` subcommand; returns the process exit code.
pub async fn run_devices(opts: &ClientOpts, cmd: DevicesCmd) -> anyhow::Result<i32> {
    Ok(report(devices(opts, cmd).await))
}

/// The MQTT user name and SAS password of `device` on `hub`, valid until `expiry`
/// (unix seconds), signed with the base64 `key`.
pub fn mqtt_credentials(
    hub: &str,
    device: &str,
    key: &str,
    expiry: u64,
) -> Result<(String, String), CliError> {
    let token = doppel_protocols::sas::make_sas_token(
        &format!("{hub}/devices/{device}"),
        key,
        expiry,
        None,
    )
    .map_err(|e| ClientError::BadResponse {
        url: format!("/devices/{device}"),
        what: format!("the device key cannot sign a token: {e}"),
    })?;
    Ok((
        doppel_protocols::iothub::IotHubUsername::format(hub, device, "2021-04-12"),
        token,
    ))
}

async fn put(client: &ApiClient, id: &str, body: &Value) -> Result<Value, CliError> {
    client
        .call(
            Method::PUT,
            client.url(&["devices", id], &[])?,
            Some(RequestBody::Json(body)),
            &Preconditions::default(),
        )
        .await?
        .into_json()
        .map_err(CliError::from)
}

async fn devices(opts: &ClientOpts, cmd: DevicesCmd) -> Result<(), CliError> {
    let client = ApiClient::new(&opts.config())?;
    match cmd {
        DevicesCmd::Create { id } => print_json(&put(&client, &id, &json!({})).await?),
        DevicesCmd::Get { id } => {
            print_json(&client.get_json(client.url(&["devices", &id], &[])?).await?)
        }
        DevicesCmd::List => {
            let all = client.get_all(client.url(&["devices"], &[])?, None).await?;
            print_json(&Value::Array(all))
        }
        DevicesCmd::Enable { id } => {
            print_json(&put(&client, &id, &json!({"status": "enabled"})).await?)
        }
        DevicesCmd::Disable { id, reason } => {
            let mut body = json!({"status": "disabled"});
            if let Some(r) = reason {
                body["statusReason"] = Value::String(r);
            }
            print_json(&put(&client, &id, &body).await?)
        }
        DevicesCmd::Delete { id } => {
            client
                .call(
                    Method::DELETE,
                    client.url(&["devices", &id], &[])?,
                    None,
                    &Preconditions::default(),
                )
                .await?;
            print_line(&format!("deleted {id}"))
        }
        DevicesCmd::Sas {
            id,
            hub,
            ttl_secs,
            secondary,
        } => {
            let device = client.get_json(client.url(&["devices", &id], &[])?).await?;
            let which = if secondary {
                "secondaryKey"
            } else {
                "primaryKey"
            };
            let key = device["authentication"]["symmetricKey"][which]
                .as_str()
                .ok_or_else(|| ClientError::BadResponse {
                    url: format!("/devices/{id}"),
                    what: format!("no {which} in the device"),
                })?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let (username, password) = mqtt_credentials(&hub, &id, key, now + ttl_secs)?;
            print_json(&json!({
                "clientId": id,
                "username": username,
                "password": password,
                "expires": now + ttl_secs,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_verify_with_the_servers_check() {
        let key = "ZG9wcGVsLXRlc3QtZGV2aWNlLWtleS0wMTIzNDU2Nzg5";
        let (user, token) =
            mqtt_credentials("default.doppel", "pump-1", key, 2_000_000_000).unwrap();
        assert_eq!(user, "default.doppel/pump-1/?api-version=2021-04-12");
        assert!(
            doppel_protocols::sas::verify_device_token(&token, "pump-1", key, 1_900_000_000)
                .is_ok()
        );
    }
}
