//! `/digitaltwins/{id}`: create/replace, read, JSON-Patch, delete twins; publish
//! telemetry; list a tenant's twins (a doppel extension; ADT lists through queries).
//!
//! Writes go through the twin's actor ([`crate::actors::TwinActors`]); reads come
//! straight from committed storage.

use super::api_error::{ApiError, ApiResult};
use super::auth::Caller;
use super::body::JsonBody;
use super::extract::{Path, Query};
use super::paging::{self, PageQuery};
use crate::node::Node;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use doppel_twins::{Command, Condition, Outcome, Role, TwinRecord};
use serde::Deserialize;

pub fn routes() -> Router<Node> {
    Router::new()
        .route("/digitaltwins", get(list))
        .route(
            "/digitaltwins/{id}",
            get(get_twin)
                .put(put_twin)
                .patch(patch_twin)
                .delete(delete_twin),
        )
        .route("/digitaltwins/{id}/telemetry", post(telemetry))
}

/// Reads `If-Match` / `If-None-Match` into a [`Condition`].
pub fn condition(headers: &HeaderMap) -> ApiResult<Condition> {
    let text = |name: header::HeaderName| -> ApiResult<Option<String>> {
        headers
            .get(&name)
            .map(|v| {
                v.to_str()
                    .map(str::to_owned)
                    .map_err(|_| ApiError::bad_request(format!("{name} is not valid text")))
            })
            .transpose()
    };
    match (text(header::IF_MATCH)?, text(header::IF_NONE_MATCH)?) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give If-Match or If-None-Match, not both",
        )),
        (Some(tag), None) => Ok(Condition::IfMatch(tag.trim().to_owned())),
        (None, Some(tag)) if tag.trim() == "*" => Ok(Condition::IfNoneMatchAny),
        (None, Some(tag)) => Err(ApiError::bad_request(format!(
            "If-None-Match only supports '*', got '{tag}'"
        ))),
        (None, None) => Ok(Condition::Always),
    }
}

/// Sets the `ETag` header of a response.
pub fn with_etag(mut resp: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

fn twin_response(twin: &TwinRecord) -> Response {
    with_etag(Json(twin.to_json()).into_response(), &twin.etag)
}

async fn get_twin(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Role::Reader)?;
    let twin = st.reader().twin(caller.tenant(), &id)?;
    Ok(twin_response(&twin))
}

async fn put_twin(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Role::Writer)?;
    let condition = condition(&headers)?;
    let cmd = Command::PutTwin {
        tenant: caller.tenant().to_owned(),
        twin_id: id,
        body,
        condition,
    };
    let outcome = crate::coordination::put_twin(&st, cmd).await?;
    match outcome {
        Outcome::Twin { twin, .. } => Ok(twin_response(&twin)),
        _ => Err(ApiError::internal("unexpected outcome of a twin PUT")),
    }
}

async fn patch_twin(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(patch): JsonBody,
) -> ApiResult<Response> {
    caller.require(Role::Writer)?;
    let condition = condition(&headers)?;
    let cmd = Command::PatchTwin {
        tenant: caller.tenant().to_owned(),
        twin_id: id,
        patch,
        condition,
    };
    match st.twins.execute(cmd).await? {
        Outcome::Twin { twin, .. } => Ok(with_etag(
            StatusCode::NO_CONTENT.into_response(),
            &twin.etag,
        )),
        _ => Err(ApiError::internal("unexpected outcome of a twin PATCH")),
    }
}

async fn delete_twin(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    caller.require(Role::Writer)?;
    let condition = condition(&headers)?;
    crate::coordination::delete_twin(&st, caller.tenant(), &id, condition).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// ADT's `POST /digitaltwins/{id}/telemetry`, with the optional `Dt-Timestamp`
/// (RFC 3339 source time). The message is validated against the twin's model and
/// appended to its telemetry history.
async fn telemetry(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    caller.require(Role::Writer)?;
    let source_time = headers
        .get("dt-timestamp")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::bad_request("Dt-Timestamp is not valid text"))
        })
        .transpose()?;
    let cmd = Command::RecordTelemetry {
        tenant: caller.tenant().to_owned(),
        twin_id: id,
        body,
        source_time,
    };
    st.twins.execute(cmd).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
struct ListQuery {
    model: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

/// Lists the tenant's twins shard by shard (`doppel_twins::read`).
async fn list(
    State(st): State<Node>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Role::Reader)?;
    let size = paging::page_size(
        &headers,
        &q.page,
        st.config.page_size,
        st.config.max_page_size,
    )?;
    let page = st.reader().twins(
        caller.tenant(),
        q.model.as_deref(),
        q.page.continuation_token.as_deref(),
        size,
    )?;
    let (items, next) = (
        page.items.iter().map(TwinRecord::to_json).collect(),
        page.next,
    );
    let model = q.model.clone().unwrap_or_default();
    let extra: Vec<(&str, &str)> = if q.model.is_some() {
        vec![("model", model.as_str())]
    } else {
        vec![]
    };
    Ok(Json(paging::page(
        &headers,
        st.tls,
        "/digitaltwins",
        &extra,
        &q.page,
        items,
        next,
    )))
}
