//! Deletions that must agree with every shard: deleting a model (its twins live on
//! the data shards) or a twin (relationships to it live on their sources' shards).
//!
//! 1. `begin` marks the thing (its own group): from then on nothing new may come to
//!    depend on it;
//! 2. every data shard's leader evaluates its `check`: ordered after everything the
//!    shard committed before, and seeing the mark for everything after;
//! 3. `finish` deletes it, or, when a check or `finish` fails, `abort` lifts the mark
//!    and the first failure is the answer.
//!
//! A deletion cut short between 1 and 3 leaves the mark until it is repeated (`begin`
//! and `abort` are idempotent).

use super::api_error::ApiError;
use super::AppState;
use crate::actors::ActorError;
use crate::routing::execute;
use doppel_twins::Command;
use std::future::Future;

pub(crate) async fn delete_across_shards<F>(
    st: &AppState,
    begin: Command,
    check: impl Fn(u32) -> Command,
    finish: F,
    abort: Command,
) -> Result<(), ApiError>
where
    F: Future<Output = Result<(), ActorError>>,
{
    execute(st, begin).await?;
    let checks = (0..st.shard_count).map(|shard| execute(st, check(shard)));
    let refused = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .find_map(Result::err);
    let result = match refused {
        Some(e) => Err(e),
        None => finish.await,
    };
    if let Err(e) = result {
        let what = format!("{abort:?}");
        if let Err(abort_error) = execute(st, abort).await {
            tracing::warn!(command = %what, error = %abort_error, "could not lift the deletion mark of something that was not deleted; repeating the DELETE lifts it");
        }
        return Err(e.into());
    }
    Ok(())
}
