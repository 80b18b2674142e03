//! `/devices/{id}`: the device registry. A device is bound to the twin with the same
//! id and authenticates with a SAS token made from one of its two symmetric keys.
//! Keys are secrets: every route here needs the admin role.
//!
//! `PUT /devices/{id}` creates (keys generated unless given) or updates (fields left
//! out keep their value; `If-Match` guards against lost updates). Body, all optional:
//! `{"status": "enabled"|"disabled", "statusReason": "…",
//!   "authentication": {"type": "sas"|"selfSigned", "symmetricKey": {"primaryKey": "…", "secondaryKey": "…"},
//!                      "x509Thumbprint": {"primaryThumbprint": "<SHA-256 hex of the device certificate>"}}}`
//! A `selfSigned` device may connect over MQTT/TLS with that client certificate instead
//! of a SAS token (its keys stay valid too).

use super::api_error::{ApiError, ApiResult};
use super::auth::Caller;
use super::body::JsonBody;
use super::extract::{Path, Query};
use super::paging::{self, PageQuery};
use super::twins_api::{condition, with_etag};
use crate::node::Node;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use doppel_twins::{Command, DeviceRecord, DeviceSpec, DeviceStatus, Outcome, Role};
use rand::RngCore;
use serde_json::Value;

pub fn routes() -> Router<Node> {
    Router::new()
        .route("/devices", get(list))
        .route("/devices/{id}", get(get_one).put(put).delete(delete))
}

fn device_response(status: StatusCode, d: &DeviceRecord) -> Response {
    with_etag((status, Json(d.to_json(true))).into_response(), &d.etag)
}

fn fresh_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads the PUT body into a spec, naming the field of any error.
fn spec_from(body: &Value) -> ApiResult<DeviceSpec> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the device body must be a JSON object"))?;
    let mut spec = DeviceSpec {
        status: None,
        status_reason: None,
        primary_key: None,
        secondary_key: None,
        x509_thumbprint: None,
        fresh_keys: (fresh_key(), fresh_key()),
    };
    for (k, v) in obj {
        match k.as_str() {
            "deviceId" | "twinId" | "etag" | "created" | "lastUpdateTime" => {}
            "status" => {
                spec.status = Some(match v.as_str() {
                    Some("enabled") => DeviceStatus::Enabled,
                    Some("disabled") => DeviceStatus::Disabled,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "status must be \"enabled\" or \"disabled\", got {v}"
                        )))
                    }
                })
            }
            "statusReason" => {
                spec.status_reason = Some(
                    v.as_str()
                        .ok_or_else(|| ApiError::bad_request("statusReason must be a string"))?
                        .to_owned(),
                )
            }
            "authentication" => {
                let kind = match v.get("type") {
                    None => None,
                    Some(t) => match t.as_str() {
                        Some(k @ ("sas" | "selfSigned")) => Some(k),
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "authentication.type {t} is not supported; use \"sas\" or \"selfSigned\""
                            )))
                        }
                    },
                };
                let thumb = v
                    .get("x509Thumbprint")
                    .and_then(|t| t.get("primaryThumbprint"));
                match (kind, thumb) {
                    (Some("selfSigned"), Some(Value::String(t))) => {
                        spec.x509_thumbprint = Some(t.clone())
                    }
                    (Some("selfSigned"), _) => {
                        return Err(ApiError::bad_request(
                            "authentication.x509Thumbprint.primaryThumbprint (SHA-256 hex of the device certificate) is required for selfSigned",
                        ))
                    }
                    // Back to SAS only: forget the certificate.
                    (Some("sas"), _) => spec.x509_thumbprint = Some(String::new()),
                    _ => {}
                }
                let keys = v.get("symmetricKey").unwrap_or(&Value::Null);
                let field = |name: &str| -> ApiResult<Option<String>> {
                    match keys.get(name) {
                        None | Some(Value::Null) => Ok(None),
                        Some(Value::String(s)) => Ok(Some(s.clone())),
                        Some(_) => Err(ApiError::bad_request(format!(
                            "authentication.symmetricKey.{name} must be a base64 string"
                        ))),
                    }
                };
                spec.primary_key = field("primaryKey")?;
                spec.secondary_key = field("secondaryKey")?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown field '{other}'; expected status, statusReason, authentication"
                )))
            }
        }
    }
    Ok(spec)
}

async fn put(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let cmd = Command::PutDevice {
        tenant: caller.tenant().to_owned(),
        device_id: id,
        spec: spec_from(&body)?,
        condition: condition(&headers)?,
    };
    match st.proposer.propose(cmd).await? {
        Outcome::Device { device, created } => Ok(device_response(
            if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            &device,
        )),
        _ => Err(ApiError::internal("unexpected outcome of a device PUT")),
    }
}

async fn get_one(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let device = st.reader().device(caller.tenant(), &id)?;
    Ok(device_response(StatusCode::OK, &device))
}

async fn delete(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    let cmd = Command::DeleteDevice {
        tenant: caller.tenant().to_owned(),
        device_id: id,
        condition: condition(&headers)?,
    };
    st.proposer.propose(cmd).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the tenant's devices (without keys), shard by shard.
async fn list(
    State(st): State<Node>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Admin)?;
    let size = paging::page_size(&headers, &q, st.config.page_size, st.config.max_page_size)?;
    let page = st
        .reader()
        .devices(caller.tenant(), q.continuation_token.as_deref(), size)?;
    let (items, next) = (
        page.items.iter().map(|d| d.to_json(false)).collect(),
        page.next,
    );
    Ok(Json(paging::page(
        &headers,
        st.tls,
        "/devices",
        &[],
        &q,
        items,
        next,
    )))
}
