//! `/models`: upload, list, get, delete and decommission DTDL models.

use super::api_error::{ApiError, ApiResult};
use super::auth::Caller;
use super::body::JsonBody;
use super::extract::{Path, Query};
use super::paging::{self, PageQuery};
use crate::node::Node;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use doppel_twins::{Command, Outcome, Role};
use serde::Deserialize;
use serde_json::Value;

pub fn routes() -> Router<Node> {
    Router::new()
        .route("/models", get(list).post(upload))
        .route("/models/{id}", get(get_one).delete(delete).patch(patch))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    include_model_definition: Option<String>,
    dependencies_for: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

/// Parses a boolean query flag (`true`/`false`).
fn flag(v: Option<&str>, default: bool) -> ApiResult<bool> {
    match v {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "includeModelDefinition must be true or false, got '{other}'"
        ))),
    }
}

async fn upload(
    State(st): State<Node>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<impl IntoResponse> {
    caller.require(Role::Writer)?;
    let documents = match body {
        Value::Array(docs) => docs,
        obj @ Value::Object(_) => vec![obj],
        _ => {
            return Err(ApiError::bad_request(
                "the body must be a JSON array of DTDL Interfaces",
            ))
        }
    };
    let outcome = st
        .proposer
        .propose(Command::UploadModels {
            tenant: caller.tenant().to_owned(),
            documents,
        })
        .await?;
    let Outcome::Models(records) = outcome else {
        return Err(ApiError::internal("unexpected outcome of a model upload"));
    };
    let body: Vec<Value> = records.iter().map(|r| r.to_json(false)).collect();
    Ok((StatusCode::CREATED, Json(Value::Array(body))))
}

async fn list(
    State(st): State<Node>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Reader)?;
    if let Some(ids) = q.dependencies_for.as_deref() {
        let include = flag(q.include_model_definition.as_deref(), false)?;
        let items = st
            .reader()
            .dependencies_for(caller.tenant(), ids)?
            .iter()
            .map(|r| r.to_json(include))
            .collect();
        return Ok(Json(serde_json::json!({ "value": Value::Array(items) })));
    }
    let size = paging::page_size(
        &headers,
        &q.page,
        st.config.page_size,
        st.config.max_page_size,
    )?;
    let include = flag(q.include_model_definition.as_deref(), false)?;
    let page = st
        .reader()
        .models(caller.tenant(), q.page.continuation_token.as_deref(), size)?;
    let (items, next) = (
        page.items.iter().map(|r| r.to_json(include)).collect(),
        page.next,
    );
    let include_s = include.to_string();
    Ok(Json(paging::page(
        &headers,
        st.tls,
        "/models",
        &[("includeModelDefinition", &include_s)],
        &q.page,
        items,
        next,
    )))
}

async fn get_one(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Role::Reader)?;
    let rec = st.reader().model(caller.tenant(), &id)?;
    Ok(Json(rec.to_json(flag(
        q.include_model_definition.as_deref(),
        true,
    )?)))
}

async fn delete(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Writer)?;
    crate::coordination::delete_model(&st, caller.tenant(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// ADT's decommission: `[{"op":"replace","path":"/decommissioned","value":true}]`.
async fn patch(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    caller.require(Role::Writer)?;
    let ops = body
        .as_array()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON Patch array"))?;
    let [op] = ops.as_slice() else {
        return Err(ApiError::bad_request(
            "exactly one operation is supported: {\"op\":\"replace\",\"path\":\"/decommissioned\",\"value\":true}",
        ));
    };
    let is_replace = op.get("op").and_then(Value::as_str) == Some("replace");
    let is_path = op.get("path").and_then(Value::as_str) == Some("/decommissioned");
    let value = op.get("value").and_then(Value::as_bool);
    let (true, true, Some(decommissioned)) = (is_replace, is_path, value) else {
        return Err(ApiError::bad_request(
            "only {\"op\":\"replace\",\"path\":\"/decommissioned\",\"value\":true} can be applied to a model",
        ));
    };
    st.proposer
        .propose(Command::SetModelDecommissioned {
            tenant: caller.tenant().to_owned(),
            model: id,
            decommissioned,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
