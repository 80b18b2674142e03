//! Changes that must agree with every shard: deleting a model (its twins live on the
//! data shards), deleting a twin or giving it a new model (relationships to it live on
//! their sources' shards).
//!
//! ```text
//!  begin (mark, on the thing's own group) ──▶ check on every data shard's leader ──┬─▶ finish
//!                                                                                 └─▶ abort (lift the mark)
//! ```
//!
//! 1. `begin` marks the thing (its own group): from then on nothing new may come to
//!    depend on it;
//! 2. every data shard's leader evaluates its `check`: ordered after everything the
//!    shard committed before, and seeing the mark for everything after;
//! 3. `finish` makes the change, or, when a check or `finish` fails, `abort` lifts
//!    the mark and the first failure is the answer.
//!
//! A change cut short between 1 and 3 leaves the mark until it is repeated (`begin`
//! and `abort` are idempotent). Nothing lifts a mark whose change died with its node
//! (a crash): the mark does not say who owns it, and `finish` does not require it, so
//! lifting marks at start-up could lift another node's live one; until the request is
//! repeated, the model takes no new twins / the twin no new incoming relationships
//! (tests/tests/coordination_cut_short_by_a_crash.rs, its ignored tests).
//!
//! Failpoints (the `failpoints` feature): `coordination_after_mark` (between 1 and 2)
//! and `coordination_after_check` (between 2 and 3).

use crate::actors::ActorError;
use crate::dispatch::{execute, execute_here};
use crate::node::Node;
use doppel_twins::{Command, Condition, Outcome};
use std::future::Future;

async fn change_across_shards<T, F>(
    node: &Node,
    begin: Command,
    check: impl Fn(u32) -> Command,
    finish: F,
    abort: Command,
) -> Result<T, ActorError>
where
    F: Future<Output = Result<T, ActorError>>,
{
    execute(node, begin).await?;
    // Crash window: marked, and no shard has checked yet.
    fail::fail_point!("coordination_after_mark");
    let checks = (0..node.shard_count).map(|shard| execute(node, check(shard)));
    let refused = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .find_map(Result::err);
    let result = match refused {
        Some(e) => Err(e),
        None => {
            // Crash window: every shard agreed; the change is not made.
            fail::fail_point!("coordination_after_check");
            finish.await
        }
    };
    if result.is_err() {
        let what = format!("{abort:?}");
        if let Err(abort_error) = execute(node, abort).await {
            tracing::warn!(command = %what, error = %abort_error, "could not lift the mark of a change that was not made; repeating the request lifts it");
        }
    }
    result
}

/// Deletes a model no twin uses, safely against twins of it being created on other
/// shards meanwhile; refused while another model references it.
pub async fn delete_model(node: &Node, tenant: &str, model: &str) -> Result<(), ActorError> {
    let (t, m) = (tenant.to_owned(), model.to_owned());
    change_across_shards(
        node,
        Command::BeginModelDelete {
            tenant: t.clone(),
            model: m.clone(),
        },
        |shard| Command::CheckModelUnused {
            tenant: t.clone(),
            model: m.clone(),
            shard,
        },
        async {
            execute(
                node,
                Command::DeleteModel {
                    tenant: t.clone(),
                    model: m.clone(),
                },
            )
            .await
            .map(|_| ())
        },
        Command::AbortModelDelete {
            tenant: t.clone(),
            model: m.clone(),
        },
    )
    .await
}

/// Deletes a twin, safely against relationships to it being created on other shards
/// meanwhile (they live on their source's shard).
pub async fn delete_twin(
    node: &Node,
    tenant: &str,
    id: &str,
    condition: Condition,
) -> Result<(), ActorError> {
    let (t, id) = (tenant.to_owned(), id.to_owned());
    change_across_shards(
        node,
        Command::BeginTwinDelete {
            tenant: t.clone(),
            twin_id: id.clone(),
            condition: condition.clone(),
        },
        |shard| Command::CheckNoIncoming {
            tenant: t.clone(),
            twin_id: id.clone(),
            shard,
        },
        async {
            execute(
                node,
                Command::DeleteTwin {
                    tenant: t.clone(),
                    twin_id: id.clone(),
                    condition,
                },
            )
            .await
            .map(|_| ())
        },
        Command::AbortTwinDelete {
            tenant: t.clone(),
            twin_id: id.clone(),
        },
    )
    .await
}

/// Creates or replaces a twin (`PutTwin`) on this node, which leads its shard. When the PUT gives an existing twin a new
/// model, the new model must suit every relationship targeting the twin, which live on
/// their sources' shards: the PUT then runs as a change across shards.
pub async fn put_twin(node: &Node, cmd: Command) -> Result<Outcome, ActorError> {
    let Command::PutTwin {
        tenant,
        twin_id,
        body,
        ..
    } = &cmd
    else {
        return Err(ActorError::Unavailable(format!(
            "put_twin was given another command: {cmd:?}"
        )));
    };
    let new_model = body
        .get("$metadata")
        .and_then(|m| m.get("$model"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    // This node leads the twin's shard (routing), so its record here is current.
    let current = node
        .reader()
        .find_twin(tenant, twin_id)
        .map_err(|e| ActorError::Propose(e.into()))?;
    let (tenant, twin_id) = (tenant.clone(), twin_id.clone());
    match (current, new_model) {
        (Some(twin), Some(model)) if twin.model != model => {
            let done = change_across_shards(
                node,
                Command::BeginTwinRemodel {
                    tenant: tenant.clone(),
                    twin_id: twin_id.clone(),
                },
                |shard| Command::CheckIncomingFit {
                    tenant: tenant.clone(),
                    twin_id: twin_id.clone(),
                    model: model.clone(),
                    shard,
                },
                execute_here(node, cmd),
                Command::AbortTwinDelete {
                    tenant: tenant.clone(),
                    twin_id: twin_id.clone(),
                },
            )
            .await?;
            // The PUT lifted the mark if it changed the model; if another PUT changed
            // it first, lift it here.
            let lift = Command::AbortTwinDelete {
                tenant: tenant.clone(),
                twin_id: twin_id.clone(),
            };
            if let Err(e) = execute(node, lift).await {
                tracing::warn!(twin = %twin_id, error = %e, "could not lift a twin's mark after its new model");
            }
            Ok(done)
        }
        _ => execute_here(node, cmd).await,
    }
}
