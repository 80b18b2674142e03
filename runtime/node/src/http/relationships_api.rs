//! `/digitaltwins/{id}/relationships` and `/incomingrelationships`: the twin graph's
//! edges, checked against the source model's Relationship definitions.

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
use doppel_twins::{Command, Outcome, RelationshipRecord, Role};
use serde::Deserialize;

pub fn routes() -> Router<Node> {
    Router::new()
        .route("/digitaltwins/{id}/relationships", get(list_outgoing))
        .route(
            "/digitaltwins/{id}/relationships/{rel}",
            get(get_rel).put(put_rel).delete(delete_rel),
        )
        .route(
            "/digitaltwins/{id}/incomingrelationships",
            get(list_incoming),
        )
}

fn rel_response(rel: &RelationshipRecord) -> Response {
    with_etag(Json(rel.to_json()).into_response(), &rel.etag)
}

async fn get_rel(
    State(st): State<Node>,
    caller: Caller,
    Path((id, rel)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(Role::Reader)?;
    let r = st.reader().relationship(caller.tenant(), &id, &rel)?;
    Ok(rel_response(&r))
}

async fn put_rel(
    State(st): State<Node>,
    caller: Caller,
    Path((id, rel)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    caller.require(Role::Writer)?;
    let condition = condition(&headers)?;
    let cmd = Command::PutRelationship {
        tenant: caller.tenant().to_owned(),
        source: id,
        rel_id: rel,
        body,
        condition,
    };
    match st.proposer.propose(cmd).await? {
        Outcome::Relationship { rel, .. } => Ok(rel_response(&rel)),
        _ => Err(ApiError::internal(
            "unexpected outcome of a relationship PUT",
        )),
    }
}

async fn delete_rel(
    State(st): State<Node>,
    caller: Caller,
    Path((id, rel)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    caller.require(Role::Writer)?;
    let condition = condition(&headers)?;
    st.proposer
        .propose(Command::DeleteRelationship {
            tenant: caller.tenant().to_owned(),
            source: id,
            rel_id: rel,
            condition,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    relationship_name: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn list_outgoing(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Role::Reader)?;
    let tenant = caller.tenant();
    let size = paging::page_size(
        &headers,
        &q.page,
        st.config.page_size,
        st.config.max_page_size,
    )?;
    let page = st.reader().outgoing_relationships(
        tenant,
        &id,
        q.relationship_name.as_deref(),
        q.page.continuation_token.as_deref(),
        size,
    )?;
    let (items, next) = (
        page.items.iter().map(RelationshipRecord::to_json).collect(),
        page.next,
    );
    let path = format!("/digitaltwins/{}/relationships", encode_segment(&id));
    let name = q.relationship_name.clone().unwrap_or_default();
    let extra: Vec<(&str, &str)> = if q.relationship_name.is_some() {
        vec![("relationshipName", name.as_str())]
    } else {
        vec![]
    };
    Ok(Json(paging::page(
        &headers, st.tls, &path, &extra, &q.page, items, next,
    )))
}

async fn list_incoming(
    State(st): State<Node>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Role::Reader)?;
    let tenant = caller.tenant();
    let size = paging::page_size(
        &headers,
        &q.page,
        st.config.page_size,
        st.config.max_page_size,
    )?;
    let page = st.reader().incoming_relationships(
        tenant,
        &id,
        q.page.continuation_token.as_deref(),
        size,
    )?;
    let (items, next) = (
        page.items
            .iter()
            .map(RelationshipRecord::to_incoming_json)
            .collect(),
        page.next,
    );
    let path = format!(
        "/digitaltwins/{}/incomingrelationships",
        encode_segment(&id)
    );
    Ok(Json(paging::page(
        &headers,
        st.tls,
        &path,
        &[],
        &q.page,
        items,
        next,
    )))
}

fn encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
