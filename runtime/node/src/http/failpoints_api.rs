//! `/cluster/failpoints`: the failpoints of a build made for tests (the `failpoints`
//! cargo feature; a build without it has no such endpoint and no failpoints).
//!
//! `GET /cluster/failpoints` lists each configured failpoint and its actions;
//! `PUT /cluster/failpoints/{name}` `{"actions": "panic"}` configures one in this
//! process (the `fail` crate's action syntax; `"off"` disarms it). Failpoints can also
//! be set at start with the `FAILPOINTS` environment variable (`name=actions;…`).
//! Operators only.

use super::api_error::{ApiError, ApiResult};
use super::auth::Caller;
use super::body::JsonBody;
use crate::node::Node;
use axum::extract::Path;
use axum::routing::{get, put};
use axum::{Json, Router};
use doppel_twins::Role;
use serde_json::{json, Value};

pub fn routes() -> Router<Node> {
    Router::new()
        .route("/cluster/failpoints", get(list))
        .route("/cluster/failpoints/{name}", put(set))
}

async fn list(caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Role::Operator)?;
    let points: serde_json::Map<String, Value> = fail::list()
        .into_iter()
        .map(|(name, actions)| (name, Value::String(actions)))
        .collect();
    Ok(Json(Value::Object(points)))
}

async fn set(
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Operator)?;
    let actions = body
        .get("actions")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("actions: a string such as \"panic\" is required"))?;
    fail::cfg(name.clone(), actions)
        .map_err(|e| ApiError::bad_request(format!("failpoint {name}: {e}")))?;
    tracing::warn!(failpoint = %name, actions, "failpoint configured");
    Ok(Json(json!({ "name": name, "actions": actions })))
}
