//! [`Node`]: the handle of a running node that every layer above shares — its storage,
//! its Raft groups (through the [`Proposer`]), its twin actors, its connected devices
//! and its configuration. Cheap to clone.
//!
//! Opening a node ([`Node::open`]) starts storage, the Raft groups and the actor tree;
//! [`crate::start`] then wires the edges on top of it.

use crate::actors::TwinActors;
use crate::config::NodeConfig;
use doppel_cluster::{Proposer, Storage, StorageConfig};
use doppel_protocols::iothub::methods::MethodCalls;
use doppel_protocols::registry::ConnectionRegistry;
use std::sync::{Arc, OnceLock};

#[derive(Clone)]
pub struct Node {
    pub storage: Storage,
    pub proposer: Proposer,
    /// The twin actors; twin writes go through them (see `crate::actors`).
    pub twins: TwinActors,
    /// The device edge's connected devices and pending direct-method calls.
    pub devices: DeviceLink,
    /// Turns true when the node starts shutting down: long-lived responses (event
    /// streams) end then, so a graceful stop does not wait for watchers to hang up.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    pub config: Arc<NodeConfig>,
    pub shard_count: u32,
    pub tls: bool,
}

/// What the HTTP edge needs of the device edge: the connected devices (once the MQTT
/// listener runs) and the direct-method calls waiting for answers.
#[derive(Clone, Default)]
pub struct DeviceLink {
    registry: Arc<OnceLock<ConnectionRegistry>>,
    pub calls: MethodCalls,
}

impl DeviceLink {
    /// `None` when the node runs without its MQTT listener.
    pub fn registry(&self) -> Option<&ConnectionRegistry> {
        self.registry.get()
    }

    /// Set once, by the device edge when it binds.
    pub(crate) fn set_registry(&self, registry: ConnectionRegistry) {
        let _ = self.registry.set(registry);
    }
}

impl Node {
    /// Reads of this node's committed state (twins, relationships, models, devices,
    /// tokens), each with its not-found error.
    pub fn reader(&self) -> doppel_twins::read::Reader<'_> {
        doppel_twins::read::Reader::new(&self.storage, self.shard_count)
    }

    /// Opens storage on the data directory, starts this node's Raft groups and its
    /// actor tree, and makes twin actors follow shard leadership.
    pub async fn open(config: NodeConfig) -> anyhow::Result<Node> {
        let storage = Storage::open(
            &config.data_dir.join("db"),
            config.shard_count,
            &StorageConfig {
                sync: true,
                block_cache_mb: config.block_cache_mb,
            },
        )?;
        let proposer = Proposer::start(
            storage.clone(),
            config.cluster_config()?,
            config.write_queue,
            config.max_commit_batch,
        )
        .await?;
        let twins = TwinActors::start(
            storage.clone(),
            proposer.clone(),
            config.shard_count,
            config.actor_settings(),
        )
        .await?;
        let node = Node {
            storage,
            proposer,
            twins,
            devices: Default::default(),
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
            shard_count: config.shard_count,
            tls: config.tls_cert.is_some(),
            config: Arc::new(config),
        };
        node.follow_leadership();
        Ok(node)
    }

    /// Twin actors live on their shard's leader: whenever this node gains or loses the
    /// leadership of a data shard, that shard's active twins are dropped, so no actor
    /// keeps a copy from another reign (they re-activate from storage on their next
    /// request, which only a leader that has applied its predecessors' entries takes).
    fn follow_leadership(&self) {
        let cluster = self.proposer.cluster().clone();
        let me = cluster.node_id();
        for shard in 0..self.shard_count {
            let Some(mut leader) = cluster.leader_watch(shard) else {
                continue;
            };
            let twins = self.twins.clone();
            tokio::spawn(async move {
                let mut leading = leader.current() == Some(me);
                while let Ok(now) = leader.changed().await {
                    let now = now == Some(me);
                    if now != leading {
                        tracing::info!(
                            shard,
                            leading = now,
                            "shard leadership moved; its twin actors are dropped"
                        );
                        twins.passivate_shard(shard);
                        leading = now;
                    }
                }
            });
        }
    }
}
