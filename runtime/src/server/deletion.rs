//! Changes that must agree with every shard: deleting a model (its twins live on the
//! data shards), deleting a twin or giving it a new model (relationships to it live on
//! their sources' shards).
//!
//! 1. `begin` marks the thing (its own group): from then on nothing new may come to
//!    depend on it;
//! 2. every data shard's leader evaluates its `check`: ordered after everything the
//!    shard committed before, and seeing the mark for everything after;
//! 3. `finish` makes the change, or, when a check or `finish` fails, `abort` lifts
//!    the mark and the first failure is the answer.
//!
//! A deletion cut short between 1 and 3 leaves the mark until it is repeated (`begin`
//! and `abort` are idempotent).

use super::api_error::ApiError;
use super::AppState;
use crate::actors::ActorError;
use crate::routing::execute;
use doppel_twins::Command;
use std::future::Future;

pub(crate) async fn change_across_shards<T, F>(
    st: &AppState,
    begin: Command,
    check: impl Fn(u32) -> Command,
    finish: F,
    abort: Command,
) -> Result<T, ApiError>
where
    F: Future<Output = Result<T, ActorError>>,
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
    match result {
        Ok(done) => Ok(done),
        Err(e) => {
            let what = format!("{abort:?}");
            if let Err(abort_error) = execute(st, abort).await {
                tracing::warn!(command = %what, error = %abort_error, "could not lift the mark of a change that was not made; repeating the request lifts it");
            }
            Err(e.into())
        }
    }
}
