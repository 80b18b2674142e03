//! `POST /digitaltwins/{id}/commands/{name}`: invoke a DTDL Command on the device
//! bound to a twin, as an IoT Hub direct method, and return the device's answer.
//!
//! A component's command is named `{component}*{command}` (the IoT Plug and Play
//! method name). The request body is validated against the Command's `request`
//! schema before anything is sent; the device's answer against its `response`.
//! Query: `responseTimeoutInSeconds` (default 30, 5 to 300).
//!
//! Answers: 200 `{"status": <device status>, "payload": <device payload>}`;
//! 404 `DeviceNotOnline` when the device is not connected (or not listening for
//! methods); 504 `GatewayTimeout` when it does not answer in time; 502 `BadGateway`
//! when its answer breaks the model.

use super::api_error::{ApiError, ApiResult};
use super::auth::Caller;
use super::body::OptionalJsonBody;
use super::extract::{Path, Query};
use crate::node::Node;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use doppel_protocols::edge::DeviceKey;
use doppel_protocols::iothub::methods::MethodError;
use doppel_schemas::{validate_value, CommandDef};
use doppel_twins::ErrorCode;
use doppel_twins::{Role, TwinError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

pub fn routes() -> Router<Node> {
    Router::new().route("/digitaltwins/{id}/commands/{name}", post(invoke))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct InvokeQuery {
    response_timeout_in_seconds: Option<String>,
}

/// The Command `name` (or `component*name`) of the twin's model.
fn find_command(st: &Node, tenant: &str, model: &str, name: &str) -> ApiResult<CommandDef> {
    let iface = st
        .reader()
        .resolved_model(tenant, model)
        .map_err(|e| match e {
            TwinError::ModelNotFound { .. } => {
                ApiError::internal(format!("model {model} of the twin is missing"))
            }
            e => e.into(),
        })?;
    let found = match name.split_once('*') {
        Some((comp, cmd)) => iface
            .components
            .get(comp)
            .and_then(|c| c.interface.commands.get(cmd).cloned()),
        None => iface.commands.get(name).cloned(),
    };
    found.ok_or_else(|| {
        TwinError::Validation {
            twin: String::new(),
            model: model.to_owned(),
            path: format!("/commands/{name}"),
            message: format!("model {model} declares no command '{name}'"),
        }
        .into()
    })
}

async fn invoke(
    State(st): State<Node>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<InvokeQuery>,
    OptionalJsonBody(body): OptionalJsonBody,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Writer)?;
    let tenant = caller.tenant();
    let timeout_s = match q.response_timeout_in_seconds.as_deref() {
        None => 30,
        Some(t) => t
            .parse::<u64>()
            .ok()
            .filter(|s| (5..=300).contains(s))
            .ok_or_else(|| {
                ApiError::bad_request("responseTimeoutInSeconds must be an integer from 5 to 300")
            })?,
    };
    let twin = st.reader().twin(tenant, &id)?;
    let def = find_command(&st, tenant, &twin.model, &name)?;
    let invalid = |path: String, message: String| -> ApiError {
        TwinError::Validation {
            twin: id.clone(),
            model: twin.model.clone(),
            path,
            message,
        }
        .into()
    };
    let payload = match (&def.request, body) {
        (None, None | Some(Value::Null)) => Value::Null,
        (None, Some(_)) => {
            return Err(invalid(
                "/".into(),
                format!("command '{name}' takes no request; send an empty body"),
            ))
        }
        (Some(req), None) if req.nullable => Value::Null,
        (Some(req), None) => {
            return Err(invalid(
                "/".into(),
                format!("command '{name}' needs a request '{}'", req.name),
            ))
        }
        (Some(req), Some(v)) => {
            if !(v.is_null() && req.nullable) {
                validate_value(&req.schema, &v)
                    .map_err(|e| invalid(format!("/{}{}", req.name, e.path), e.message))?;
            }
            v
        }
    };
    let registry = st.devices.registry().ok_or_else(|| {
        ApiError::new(
            ErrorCode::DeviceNotOnline,
            "this node runs without its MQTT listener, so no device is online",
        )
    })?;
    let device = DeviceKey::new(tenant, id.clone());
    let answer = st
        .devices
        .calls
        .call(
            registry,
            &device,
            &name,
            &payload,
            Duration::from_secs(timeout_s),
        )
        .await;
    let (status, response) = answer.map_err(|e| match e {
        MethodError::Offline(_) | MethodError::NotListening(_) => {
            ApiError::new(ErrorCode::DeviceNotOnline, e.to_string())
        }
        MethodError::Busy(_) => ApiError {
            retry_after_s: Some(1),
            ..ApiError::new(ErrorCode::ServiceUnavailable, e.to_string())
        },
        MethodError::Timeout { .. } => ApiError::new(ErrorCode::GatewayTimeout, e.to_string()),
    })?;
    if (200..300).contains(&status) {
        if let Some(resp) = &def.response {
            if !(response.is_null() && resp.nullable) {
                validate_value(&resp.schema, &response).map_err(|e| {
                    ApiError::new(ErrorCode::BadGateway,
                        format!(
                            "device '{id}' answered command '{name}' with a response that breaks the model at /{}{}: {}",
                            resp.name, e.path, e.message
                        ),
                    )
                })?;
            }
        }
    }
    Ok(Json(json!({ "status": status, "payload": response })))
}
