//! The node's configuration: one struct, read from an optional TOML file, overridden
//! by command-line flags, validated once at start-up with messages naming the key.

use doppel_protocols::config::ExternalBroker;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Where the node keeps its RocksDB and its admin token.
    pub data_dir: PathBuf,
    /// Address of the REST API.
    pub http: String,
    /// PEM certificate chain and private key; both or neither. With them the API is HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Address of the embedded MQTT broker devices connect to; `""` turns it off.
    pub mqtt: Option<String>,
    /// Address of the MQTT-over-TLS listener (Azure IoT Hub devices use 8883), with
    /// the `tls_cert`/`tls_key` certificate; only when those are set; `""` turns it off.
    pub mqtts: Option<String>,
    /// External MQTT brokers to attach tenants to (see `doppel_protocols::iothub::external_broker`).
    #[serde(default)]
    pub external_brokers: Vec<ExternalBroker>,
    /// Allow plain HTTP (and plain MQTT) on a non-loopback address.
    pub insecure: bool,
    /// Largest request body accepted (bytes); larger ones get 413.
    pub max_body_bytes: usize,
    /// Number of data shards; fixed when the data directory is created.
    pub shard_count: u32,
    /// Default page size of list endpoints (clients may ask for up to `max_page_size`).
    pub page_size: usize,
    pub max_page_size: usize,
    /// Proposals waiting in a shard group's write queue before writes get 503 + Retry-After.
    pub write_queue: usize,
    /// Most commands committed in one fsynced group.
    pub max_commit_batch: usize,
    pub block_cache_mb: usize,
    /// A twin actor idle this long is passivated (its state stays on disk).
    pub twin_idle_passivate_ms: u64,
    /// Requests in flight per twin actor; more get 429 + Retry-After, never a queue.
    pub twin_mailbox_limit: u32,
    /// More than this many twin-actor failures of one tenant within
    /// `tenant_restart_window_ms` suspend the tenant for `tenant_suspend_ms` (503).
    pub tenant_max_restarts: u32,
    pub tenant_restart_window_ms: u64,
    pub tenant_suspend_ms: u64,
    /// This node's id in its cluster (unique, positive).
    pub node_id: u64,
    /// QUIC address for the other nodes of the cluster; unset = a single node.
    pub cluster_addr: Option<String>,
    /// The address peers dial, if not `cluster_addr` (e.g. a host name in containers).
    pub cluster_advertise: Option<String>,
    /// Existing members to ask for admission when this node is new (`host:port`).
    pub join: Vec<String>,
    /// Directory with `ca.pem`, `node-<id>.pem`, `node-<id>.key` (`doppel cluster init`).
    pub cluster_certs: Option<PathBuf>,
    /// Raft heartbeat interval and election timeout range (ms).
    pub raft_heartbeat_ms: u64,
    pub raft_election_timeout_min_ms: u64,
    pub raft_election_timeout_max_ms: u64,
    /// Snapshot a group after this many applied entries (and purge its log before it).
    pub raft_snapshot_every: u64,
    /// Log entries kept behind a snapshot; a replica lagging further catches up by snapshot.
    pub raft_logs_to_keep: u64,
    /// Enables `POST /cluster/fault` (network isolation for fault tests). Never in production.
    pub fault_injection: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("./doppel-data"),
            http: "127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
            mqtt: Some("127.0.0.1:1883".into()),
            mqtts: Some("127.0.0.1:8883".into()),
            external_brokers: Vec::new(),
            insecure: false,
            max_body_bytes: 1024 * 1024,
            shard_count: doppel_twins::keys::DEFAULT_SHARD_COUNT,
            page_size: 100,
            max_page_size: 1000,
            write_queue: 10_000,
            max_commit_batch: 512,
            block_cache_mb: 64,
            twin_idle_passivate_ms: 60_000,
            twin_mailbox_limit: 1000,
            tenant_max_restarts: 10,
            tenant_restart_window_ms: 10_000,
            tenant_suspend_ms: 30_000,
            node_id: 1,
            cluster_addr: None,
            cluster_advertise: None,
            join: Vec::new(),
            cluster_certs: None,
            raft_heartbeat_ms: 100,
            raft_election_timeout_min_ms: 300,
            raft_election_timeout_max_ms: 600,
            raft_snapshot_every: 20_000,
            raft_logs_to_keep: 1_000,
            fault_injection: false,
        }
    }
}

impl NodeConfig {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
    }

    /// The MQTT listener address, checked like `http` (loopback unless `insecure`:
    /// the MQTT listener has no TLS yet).
    pub fn mqtt_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let Some(text) = self.mqtt.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let addr: SocketAddr = text.parse().map_err(|e| {
            anyhow::anyhow!("mqtt: '{text}' is not an address like 127.0.0.1:1883 ({e})")
        })?;
        if !addr.ip().is_loopback() && !self.insecure {
            anyhow::bail!(
                "mqtt: refusing plain MQTT on non-loopback address {addr} (TLS for MQTT is not \
                 available yet); pass --insecure if this network is trusted"
            );
        }
        Ok(Some(addr))
    }

    /// The MQTT-over-TLS listener address, when TLS is configured.
    pub fn mqtts_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let Some(text) = self.mqtts.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if self.tls_cert.is_none() {
            return Ok(None);
        }
        let addr: SocketAddr = text.parse().map_err(|e| {
            anyhow::anyhow!("mqtts: '{text}' is not an address like 127.0.0.1:8883 ({e})")
        })?;
        Ok(Some(addr))
    }

    /// Checks every value; the error names the offending key.
    pub fn validate(&self) -> anyhow::Result<SocketAddr> {
        self.mqtt_addr()?;
        self.mqtts_addr()?;
        for b in &self.external_brokers {
            b.validate()?;
        }
        let addr: SocketAddr = self.http.parse().map_err(|e| {
            anyhow::anyhow!(
                "http: '{}' is not an address like 127.0.0.1:8080 ({e})",
                self.http
            )
        })?;
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                anyhow::bail!("tls_cert is set but tls_key is not; give both or neither")
            }
            (None, Some(_)) => {
                anyhow::bail!("tls_key is set but tls_cert is not; give both or neither")
            }
            _ => {}
        }
        if self.tls_cert.is_none() && !addr.ip().is_loopback() && !self.insecure {
            anyhow::bail!(
                "http: refusing to serve plain HTTP on non-loopback address {addr}; give --tls-cert and --tls-key, \
                 or pass --insecure if this network is trusted"
            );
        }
        if self.max_body_bytes < 1024 {
            anyhow::bail!(
                "max_body_bytes: {} is too small (minimum 1024)",
                self.max_body_bytes
            );
        }
        if !(1..=4096).contains(&self.shard_count) {
            anyhow::bail!("shard_count: {} is out of range 1..=4096", self.shard_count);
        }
        if self.page_size == 0 || self.page_size > self.max_page_size {
            anyhow::bail!(
                "page_size: must be between 1 and max_page_size ({})",
                self.max_page_size
            );
        }
        self.cluster_config()?;
        if self.write_queue == 0 || self.max_commit_batch == 0 {
            anyhow::bail!("write_queue and max_commit_batch must be positive");
        }
        for (key, value) in [
            ("twin_idle_passivate_ms", self.twin_idle_passivate_ms),
            ("twin_mailbox_limit", self.twin_mailbox_limit.into()),
            ("tenant_restart_window_ms", self.tenant_restart_window_ms),
            ("tenant_suspend_ms", self.tenant_suspend_ms),
        ] {
            if value == 0 {
                anyhow::bail!("{key}: must be positive");
            }
        }
        if self.twin_mailbox_limit > 1_000_000 {
            anyhow::bail!(
                "twin_mailbox_limit: {} is too large (maximum 1000000)",
                self.twin_mailbox_limit
            );
        }
        Ok(addr)
    }

    /// The actor runtime's settings, in typed units.
    /// The Raft/cluster part of the configuration, checked.
    pub fn cluster_config(&self) -> anyhow::Result<doppel_cluster::node::ClusterConfig> {
        if self.node_id == 0 {
            anyhow::bail!("node_id: must be positive");
        }
        let listen = match self.cluster_addr.as_deref().filter(|a| !a.is_empty()) {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|e| {
                anyhow::anyhow!(
                    "cluster_addr: '{text}' is not an address like 127.0.0.1:7001 ({e})"
                )
            })?),
        };
        if listen.is_none() && !self.join.is_empty() {
            anyhow::bail!(
                "join: a joining node needs cluster_addr (--cluster-addr) so peers can reach it"
            );
        }
        if listen.is_some() && self.cluster_certs.is_none() {
            anyhow::bail!(
                "cluster_certs: a cluster node needs the cluster's certificates (--cluster-certs DIR; make them with `doppel cluster init`)"
            );
        }
        if self.raft_heartbeat_ms == 0
            || self.raft_election_timeout_min_ms <= self.raft_heartbeat_ms
            || self.raft_election_timeout_max_ms <= self.raft_election_timeout_min_ms
        {
            anyhow::bail!(
                "raft_election_timeout_min_ms/max_ms: need 0 < heartbeat ({}) < min ({}) < max ({})",
                self.raft_heartbeat_ms,
                self.raft_election_timeout_min_ms,
                self.raft_election_timeout_max_ms
            );
        }
        if self.raft_snapshot_every < 10 {
            anyhow::bail!(
                "raft_snapshot_every: {} is too small (minimum 10)",
                self.raft_snapshot_every
            );
        }
        Ok(doppel_cluster::node::ClusterConfig {
            node_id: self.node_id,
            listen,
            advertise: self.cluster_advertise.clone().filter(|a| !a.is_empty()),
            join: self.join.clone(),
            certs_dir: self.cluster_certs.clone(),
            shard_count: self.shard_count,
            heartbeat_ms: self.raft_heartbeat_ms,
            election_timeout_ms: (
                self.raft_election_timeout_min_ms,
                self.raft_election_timeout_max_ms,
            ),
            snapshot_every: self.raft_snapshot_every,
            logs_to_keep: self.raft_logs_to_keep,
        })
    }

    pub fn actor_settings(&self) -> crate::actors::ActorSettings {
        use std::time::Duration;
        crate::actors::ActorSettings {
            idle_passivate: Duration::from_millis(self.twin_idle_passivate_ms),
            mailbox_limit: self.twin_mailbox_limit,
            intensity: crate::actors::IntensityLimit {
                max_restarts: self.tenant_max_restarts,
                window: Duration::from_millis(self.tenant_restart_window_ms),
                cool_off: Duration::from_millis(self.tenant_suspend_ms),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let addr = NodeConfig::default().validate().unwrap();
        assert!(addr.ip().is_loopback());
    }

    #[test]
    fn non_loopback_plain_http_is_refused_unless_insecure() {
        let mut c = NodeConfig {
            http: "0.0.0.0:8080".into(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("--insecure"));
        c.insecure = true;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<NodeConfig>("htp = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("htp"), "{err}");
    }

    #[test]
    fn actor_keys_are_checked_and_named() {
        let c = NodeConfig {
            twin_mailbox_limit: 0,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("twin_mailbox_limit"));
        let c: NodeConfig = toml::from_str("twin_idle_passivate_ms = 5").unwrap();
        assert_eq!(
            c.actor_settings().idle_passivate,
            std::time::Duration::from_millis(5)
        );
    }

    #[test]
    fn half_tls_is_refused() {
        let c = NodeConfig {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("tls_key"));
    }
}
