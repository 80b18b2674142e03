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
use doppel_twins::codec::decode;
use doppel_twins::keys::{self, shard_of, Family};
use doppel_twins::{
    load_relationship, load_twin, Command, Outcome, RelationshipRecord, Role, StateRead, TwinError,
};
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

fn ensure_twin(st: &Node, tenant: &str, id: &str) -> ApiResult<()> {
    match load_twin(
        &st.storage,
        shard_of(tenant, id, st.shard_count),
        tenant,
        id,
    )? {
        Some(_) => Ok(()),
        None => Err(TwinError::TwinNotFound {
            twin: id.to_owned(),
        }
        .into()),
    }
}

async fn get_rel(
    State(st): State<Node>,
    caller: Caller,
    Path((id, rel)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(Role::Reader)?;
    ensure_twin(&st, caller.tenant(), &id)?;
    let r = load_relationship(&st.storage, st.shard_count, caller.tenant(), &id, &rel)?.ok_or(
        TwinError::RelationshipNotFound {
            source_twin: id,
            rel,
        },
    )?;
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
    ensure_twin(&st, tenant, &id)?;
    let size = paging::page_size(
        &headers,
        &q.page,
        st.config.page_size,
        st.config.max_page_size,
    )?;
    let prefix = keys::rel_out_prefix(shard_of(tenant, &id, st.shard_count), tenant, &id);
    let mut after = paging::decode_token(q.page.continuation_token.as_deref())?;
    let mut items = Vec::new();
    let mut next = None;
    'scan: loop {
        let rows = st
            .storage
            .scan(Family::RelOut, &prefix, after.as_deref(), 256)?;
        let done = rows.len() < 256;
        for (k, v) in rows {
            let r: RelationshipRecord =
                decode("relationship", &v).map_err(|e| ApiError::internal(e.to_string()))?;
            if q.relationship_name.as_deref().is_some_and(|n| n != r.name) {
                after = Some(k);
                continue;
            }
            if items.len() == size {
                next = after.as_deref().map(paging::encode_token);
                break 'scan;
            }
            items.push(r.to_json());
            after = Some(k);
        }
        if done {
            break;
        }
    }
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
    ensure_twin(&st, tenant, &id)?;
    let size = paging::page_size(
        &headers,
        &q.page,
        st.config.page_size,
        st.config.max_page_size,
    )?;
    // Each index entry lives on its source's shard: page through every data shard
    // (the continuation token names the shard and the last entry returned).
    let (items, next) = paging::scan_shards(
        &st.storage,
        Family::RelIn,
        st.shard_count,
        |shard| keys::rel_in_prefix(shard, tenant, &id),
        q.page.continuation_token.as_deref(),
        size,
        |tail, _| {
            let Some((source, rel_id)) = keys::split_rel_in_tail(tail) else {
                return Err(ApiError::internal(
                    "corrupt incoming-relationship index entry",
                ));
            };
            Ok(
                load_relationship(&st.storage, st.shard_count, tenant, &source, &rel_id)?
                    .map(|r| r.to_incoming_json()),
            )
        },
    )?;
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
