//! `doppel cluster init|status`: make the cluster's certificates; show its health.
//!
//! `init` works offline (it only writes files). `status` asks a node's
//! `GET /cluster/status` and prints one line per node and per group (`--json` for the
//! raw answer).

use super::error::{report, CliError};
use super::output::{print_json, print_line};
use super::ClientOpts;
use doppel_client::ApiClient;
use serde_json::Value;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCmd {
    /// Create the cluster CA and one certificate per node (mutual TLS between nodes)
    Init {
        /// Directory to write ca.pem, ca.key, node-<id>.pem, node-<id>.key into
        #[arg(long, default_value = "./doppel-certs")]
        dir: PathBuf,
        /// Number of nodes (ids 1..=N)
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Extra host name or IP every node certificate is valid for (repeatable)
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Replace an existing CA in --dir (invalidates every node certificate)
        #[arg(long)]
        force: bool,
    },
    /// Sign a certificate for one more node with the existing CA in --dir
    AddNode {
        #[arg(long, default_value = "./doppel-certs")]
        dir: PathBuf,
        /// The new node's id
        #[arg(long)]
        id: u64,
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Show nodes, groups, leaders, replica health and lag
    Status {
        #[command(flatten)]
        opts: ClientOpts,
        /// Print the server's JSON answer instead of the summary
        #[arg(long)]
        json: bool,
        /// Also list every group (default: only groups that are not healthy)
        #[arg(long)]
        all: bool,
    },
}

pub async fn run_cluster(cmd: ClusterCmd) -> anyhow::Result<i32> {
    match cmd {
        ClusterCmd::Init {
            dir,
            nodes,
            hosts,
            force,
        } => {
            if nodes == 0 {
                anyhow::bail!("--nodes must be at least 1");
            }
            let specs: Vec<_> = (1..=nodes)
                .map(|id| doppel_cluster::certs::NodeCertSpec {
                    id,
                    hosts: hosts.clone(),
                })
                .collect();
            let files = doppel_cluster::certs::init_cluster(&dir, &specs, force)?;
            for f in files {
                println!("wrote {}", f.display());
            }
            println!(
                "start node N with: doppel serve --node-id N --cluster-addr HOST:PORT --cluster-certs {} [--join HOST:PORT of a member]",
                dir.display()
            );
            Ok(0)
        }
        ClusterCmd::AddNode { dir, id, hosts } => {
            let path = doppel_cluster::certs::add_node(
                &dir,
                &doppel_cluster::certs::NodeCertSpec { id, hosts },
            )?;
            println!("wrote {}", path.display());
            Ok(0)
        }
        ClusterCmd::Status { opts, json, all } => Ok(report(status(&opts, json, all).await)),
    }
}

async fn status(opts: &ClientOpts, json: bool, all: bool) -> Result<(), CliError> {
    let client = ApiClient::new(&opts.config())?;
    let v = client
        .get_json(client.url(&["cluster", "status"], &[])?)
        .await?;
    if json {
        return print_json(&v);
    }
    print_line(&summary(&v, all))
}

/// The human-readable summary of a `/cluster/status` answer.
pub fn summary(v: &Value, all: bool) -> String {
    let mut out = String::new();
    let healthy = v["healthy"].as_bool().unwrap_or(false);
    out.push_str(&format!(
        "cluster: {} ({} data shards + meta; {} without a leader)\n",
        if healthy { "healthy" } else { "DEGRADED" },
        v["shards"],
        v["groupsWithoutLeader"]
    ));
    out.push_str("nodes:\n");
    for n in v["nodes"].as_array().into_iter().flatten() {
        let reach = if n["reachable"].as_bool().unwrap_or(false) {
            format!("up, leads {} groups", n["leaderOf"])
        } else {
            format!("UNREACHABLE ({})", n["error"].as_str().unwrap_or("?"))
        };
        out.push_str(&format!(
            "  node {:<3} {:<22} {reach}\n",
            n["nodeId"],
            n["addr"].as_str().unwrap_or("?")
        ));
    }
    let groups = v["groups"].as_array().cloned().unwrap_or_default();
    let mut max_lag = 0u64;
    let mut shown = 0;
    let mut lines = String::new();
    for g in &groups {
        let replicas = g["replicas"].as_array().cloned().unwrap_or_default();
        let lags: Vec<String> = replicas
            .iter()
            .map(|r| {
                let lag = r["lag"].as_u64();
                if let Some(l) = lag {
                    max_lag = max_lag.max(l);
                }
                format!(
                    "{}:{}",
                    r["node"],
                    lag.map(|l| l.to_string()).unwrap_or_else(|| "?".into())
                )
            })
            .collect();
        let unhealthy = g["leader"].is_null()
            || replicas.len() < 3.min(v["nodes"].as_array().map_or(1, |n| n.len()))
            || replicas
                .iter()
                .any(|r| r["lag"].as_u64().is_none_or(|l| l > 100));
        if all || unhealthy {
            shown += 1;
            lines.push_str(&format!(
                "  group {:<5} leader {:<4} term {:<4} last index {:<8} replica lag {}\n",
                g["group"].as_str().unwrap_or("?"),
                if g["leader"].is_null() {
                    "-".to_string()
                } else {
                    g["leader"].to_string()
                },
                g["term"],
                g["lastLogIndex"],
                lags.join(" ")
            ));
        }
    }
    out.push_str(&format!(
        "groups: {} (largest replica lag: {max_lag} entries){}\n",
        groups.len(),
        if shown == 0 && !all {
            "; all healthy (--all lists them)"
        } else {
            ""
        }
    ));
    out.push_str(&lines);
    out.trim_end().to_owned()
}
