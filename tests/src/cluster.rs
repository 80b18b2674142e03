//! A local cluster of real `doppel serve` processes on loopback: certificates from
//! `doppel cluster init`, node 1 forms the cluster, the others `--join` it, each node
//! with `--fault-injection` so tests can cut the network between nodes.

use crate::{doppel_bin, wait_until, Api, Node};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

pub struct Cluster {
    /// Holds the certificates for the cluster's whole life.
    _root: tempfile::TempDir,
    pub certs: PathBuf,
    /// `nodes[i]` is node id `i + 1`.
    pub nodes: Vec<Node>,
    pub cluster_addrs: Vec<String>,
    config_file: PathBuf,
    pub shards: u32,
    pub token: String,
}

/// A UDP port that was free a moment ago (the QUIC address must be known before start,
/// because joining nodes are told it).
fn free_udp_port() -> Result<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}

impl Cluster {
    /// Starts `n` nodes with `shards` data shards and waits until every group has a
    /// leader and `n` voters.
    pub async fn start(n: usize, shards: u32) -> Result<Cluster> {
        Self::start_with(n, shards, "").await
    }

    /// [`Cluster::start`] with `config` (TOML) as every node's `--config` file.
    pub async fn start_with(n: usize, shards: u32, config: &str) -> Result<Cluster> {
        let root = tempfile::Builder::new()
            .prefix("doppel-cluster-")
            .tempdir()?;
        let certs = root.path().join("certs");
        let out = std::process::Command::new(doppel_bin())
            .args(["cluster", "init", "--dir"])
            .arg(&certs)
            .args(["--nodes", &n.to_string()])
            .output()
            .context("running doppel cluster init")?;
        if !out.status.success() {
            bail!(
                "doppel cluster init failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let config_file = root.path().join("node.toml");
        std::fs::write(&config_file, config)?;
        let mut addrs = Vec::new();
        for _ in 0..n {
            addrs.push(format!("127.0.0.1:{}", free_udp_port()?));
        }
        let mut cluster = Cluster {
            _root: root,
            certs,
            nodes: Vec::new(),
            cluster_addrs: addrs,
            config_file,
            shards,
            token: String::new(),
        };
        for id in 1..=n as u64 {
            let node = Node::start_member(
                &cluster
                    .member_args(id)
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                (id > 1).then(|| cluster.token.clone()),
            )?;
            if id == 1 {
                cluster.token = node.token.clone();
            }
            cluster.nodes.push(node);
        }
        cluster.wait_healthy(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    fn member_args(&self, id: u64) -> Vec<String> {
        let mut a = vec![
            "--node-id".to_string(),
            id.to_string(),
            "--cluster-addr".into(),
            self.cluster_addrs[(id - 1) as usize].clone(),
            "--cluster-certs".into(),
            self.certs.display().to_string(),
            "--shards".into(),
            self.shards.to_string(),
            "--fault-injection".into(),
            "--config".into(),
            self.config_file.display().to_string(),
        ];
        if id > 1 {
            a.push("--join".into());
            a.push(self.cluster_addrs[0].clone());
        }
        a
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn api(&self, id: u64) -> Api {
        Api::new(&self.node(id).url, Some(&self.token))
    }

    /// Ids of the nodes whose process runs.
    pub fn running(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64)
            .filter(|id| self.node(*id).is_running())
            .collect()
    }

    /// `GET /cluster/status` through node `via`.
    pub async fn status(&self, via: u64) -> Result<Value> {
        let r = self.api(via).get("/cluster/status").await?;
        if r.status != reqwest::StatusCode::OK {
            bail!("cluster status via node {via}: {} {}", r.status, r.body);
        }
        Ok(r.body)
    }

    /// Waits until, seen from every running node, every group has a leader and as many
    /// voters as there are nodes (at most 3), and every running node is reachable.
    pub async fn wait_healthy(&self, within: Duration) -> Result<()> {
        let want = self.nodes.len().min(3);
        let last = std::sync::Mutex::new(String::new());
        let res = wait_until("a healthy cluster", within, || {
            let ids = self.running();
            let last = &last;
            async move {
                for id in ids {
                    let Ok(s) = self.status(id).await else {
                        return false;
                    };
                    let groups = s["groups"].as_array().cloned().unwrap_or_default();
                    let ok = !groups.is_empty()
                        && groups.iter().all(|g| {
                            !g["leader"].is_null()
                                && g["voters"].as_array().map(|v| v.len()) == Some(want)
                        });
                    if !ok {
                        *last.lock().unwrap() = s.to_string();
                        return false;
                    }
                }
                true
            }
        })
        .await;
        let last = last.lock().unwrap().clone();
        res.with_context(|| {
            format!(
                "last status: {}",
                last.chars().take(2000).collect::<String>()
            )
        })
    }

    /// The shard group of `twin_id` in tenant `default`.
    pub fn shard_of(&self, twin_id: &str) -> u32 {
        doppel_twins::keys::shard_of("default", twin_id, self.shards)
    }

    /// The node leading `group` ("meta" or a shard number) as `via` sees it.
    pub async fn leader_of(&self, via: u64, group: &str) -> Result<Option<u64>> {
        let s = self.status(via).await?;
        Ok(s["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["group"].as_str() == Some(group))
            .and_then(|g| g["leader"].as_u64()))
    }

    /// Cuts node `id` off from every other node (both directions), or heals with `false`.
    pub async fn isolate(&self, id: u64, isolated: bool) -> Result<()> {
        let n = self.nodes.len() as u64;
        for other in 1..=n {
            if !self.node(other).is_running() {
                continue;
            }
            let peers: Vec<u64> = if !isolated {
                vec![]
            } else if other == id {
                (1..=n).filter(|p| *p != id).collect()
            } else {
                vec![id]
            };
            let r = self
                .api(other)
                .post("/cluster/fault", &json!({ "isolate": peers }))
                .await?;
            if r.status != reqwest::StatusCode::OK {
                bail!("fault injection on node {other}: {} {}", r.status, r.body);
            }
        }
        Ok(())
    }

    /// Cuts the link between nodes `a` and `b` only (both directions), or heals every
    /// cut of the two with `false`; each keeps talking to the other nodes.
    pub async fn cut(&self, a: u64, b: u64, cut: bool) -> Result<()> {
        for (from, to) in [(a, b), (b, a)] {
            let peers: Vec<u64> = if cut { vec![to] } else { vec![] };
            let r = self
                .api(from)
                .post("/cluster/fault", &json!({ "isolate": peers }))
                .await?;
            if r.status != reqwest::StatusCode::OK {
                bail!("fault injection on node {from}: {} {}", r.status, r.body);
            }
        }
        Ok(())
    }

    pub fn kill9(&mut self, id: u64) -> Result<()> {
        self.node_mut(id).kill9()
    }

    /// Restarts a killed node on its data directory (it rejoins as the member it was).
    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.node_mut(id).restart()
    }
}
