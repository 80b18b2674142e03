//! `/tokens`: create, list and revoke API tokens of the caller's tenant.
//!
//! Admins manage their own tenant's tokens. Operators may also create tokens for other
//! tenants (creating the tenant on first use) and grant the operator role.

use super::api_error::{ApiError, ApiResult};
use super::auth::Caller;
use super::body::JsonBody;
use super::extract::Path;
use crate::node::Node;
use crate::tokens::mint_token;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use axum::{Json, Router};
use doppel_twins::{ids, Command, Role, TokenRecord};
use serde_json::Value;

pub fn routes() -> Router<Node> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}", delete(revoke))
}

async fn create(
    State(st): State<Node>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Admin)?;
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "name" | "roles" | "tenant") {
            return Err(ApiError::bad_request(format!(
                "unknown field '{k}'; expected name, roles, tenant"
            )));
        }
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 64)
        .ok_or_else(|| ApiError::bad_request("name: a string of 1 to 64 characters is required"))?;
    let roles_v = obj
        .get("roles")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "roles: a non-empty array of reader|writer|admin|operator is required",
            )
        })?;
    let mut roles = Vec::new();
    for (i, r) in roles_v.iter().enumerate() {
        let role = r.as_str().and_then(Role::parse).ok_or_else(|| {
            ApiError::bad_request(format!(
                "roles[{i}]: {r} is not one of reader, writer, admin, operator"
            ))
        })?;
        roles.push(role);
    }
    let tenant = match obj.get("tenant") {
        None => caller.tenant().to_owned(),
        Some(Value::String(t)) => {
            ids::check_tenant(t).map_err(|e| ApiError::bad_request(format!("tenant '{t}' {e}")))?;
            t.clone()
        }
        Some(_) => return Err(ApiError::bad_request("tenant must be a string")),
    };
    if tenant != caller.tenant() || roles.contains(&Role::Operator) {
        caller.require(Role::Operator)?;
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (record, secret) = mint_token(&tenant, name, roles, &now);
    st.proposer
        .propose(Command::PutToken {
            token: record.clone(),
        })
        .await?;
    let mut out = record.to_json();
    out["token"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

async fn list(State(st): State<Node>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(Role::Admin)?;
    let items: Vec<Value> = st
        .reader()
        .tokens(caller.tenant())?
        .iter()
        .map(TokenRecord::to_json)
        .collect();
    Ok(Json(serde_json::json!({ "value": items })))
}

async fn revoke(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    st.proposer
        .propose(Command::RevokeToken {
            tenant: caller.tenant().to_owned(),
            token_id: id,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
