//! The node as the [`CommandSink`] of the protocol adapters: a command goes the way
//! every change goes ([`crate::dispatch`]: the twin's actor on its shard's leader, or
//! forwarded there), reads come from committed storage, and the change stream is the
//! proposer's.
//!
//! Contract: an [`ActorError`] reaches the adapters as a [`CommandError`] with the same
//! code, kind, disposition and message ([`command_error`]), so an adapter's refusal is
//! what the HTTP edge would answer for the same command.

use crate::actors::ActorError;
use crate::node::Node;
use doppel_protocols::edge::BoxFuture;
use doppel_protocols::sink::{CommandError, CommandSink};
use doppel_twins::keys::shard_of;
use doppel_twins::{
    load_device, load_twin, ChangeEvent, Command, DeviceRecord, Outcome, TwinRecord,
};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The adapters' view of an actor runtime's refusal.
pub fn command_error(e: ActorError) -> CommandError {
    CommandError {
        code: e.code(),
        kind: e.kind(),
        disposition: e.disposition(),
        message: e.to_string(),
    }
}

impl CommandSink for Node {
    fn submit(&self, cmd: Command) -> BoxFuture<'_, Result<Outcome, CommandError>> {
        Box::pin(async move {
            crate::dispatch::execute(self, cmd)
                .await
                .map_err(command_error)
        })
    }

    fn submit_telemetry(
        &self,
        cmds: Vec<Command>,
    ) -> BoxFuture<'_, Vec<Result<Outcome, CommandError>>> {
        Box::pin(async move {
            crate::dispatch::execute_telemetry(self, cmds)
                .await
                .into_iter()
                .map(|r| r.map_err(command_error))
                .collect()
        })
    }

    fn twin(&self, tenant: &str, id: &str) -> Result<Option<TwinRecord>, CommandError> {
        let shard = shard_of(tenant, id, self.shard_count);
        load_twin(&self.storage, shard, tenant, id)
            .map_err(|e| CommandError::internal(e.to_string()))
    }

    fn twin_linearizable<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TwinRecord>, CommandError>> {
        Box::pin(async move {
            let cluster = self.proposer.cluster();
            if !cluster.is_single_voter() {
                let shard = shard_of(tenant, id, self.shard_count);
                cluster
                    .read_barrier(&[shard])
                    .await
                    .map_err(|e| CommandError::internal(e.to_string()))?;
            }
            self.twin(tenant, id)
        })
    }

    fn device(&self, tenant: &str, id: &str) -> Result<Option<DeviceRecord>, CommandError> {
        let shard = shard_of(tenant, id, self.shard_count);
        load_device(&self.storage, shard, tenant, id)
            .map_err(|e| CommandError::internal(e.to_string()))
    }

    fn changes(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        self.proposer.subscribe()
    }

    fn node_id(&self) -> u64 {
        self.proposer.cluster().node_id()
    }
}
