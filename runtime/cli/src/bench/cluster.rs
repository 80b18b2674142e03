//! `doppel bench cluster`: replicated twin-update throughput and latency on a real
//! three-node cluster (three `doppel serve` processes over QUIC on loopback, every
//! write committed by a majority), beside the same workload on one node (RF = 1, one
//! process), measured in the same run on the same machine.
//!
//! The workload is `bench patch`'s: concurrent HTTP clients PATCH one property of
//! round-robin twins; each request returns after its write is durable (fsynced on a
//! majority of the replicas for RF = 3). Cluster clients are spread over all three
//! nodes, so two thirds of them reach their shard's leader through a forward.

use super::measure::{bench_clients, patch_load, plant_sensors, Figures};
use anyhow::{bail, Context, Result};
use clap::Args;
use doppel_client::ApiClient;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct ClusterBenchArgs {
    /// Twins patched (round-robin).
    #[arg(long, default_value_t = 256)]
    pub twins: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// PATCH requests per configuration.
    #[arg(long, default_value_t = 10_000)]
    pub ops: usize,
    /// Data shards (Raft groups) per configuration.
    #[arg(long, default_value_t = 64)]
    pub shards: u32,
    /// Where to put the temporary data directories [default: the system temp dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One `doppel serve` child process; killed on drop.
struct Proc {
    child: Child,
    url: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[String], log: &Path) -> Result<Proc> {
    let exe = std::env::current_exe().context("locating the doppel binary")?;
    let mut child = Command::new(exe)
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("spawning doppel serve")?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.split(" serving ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                    return Ok(Proc { child, url });
                }
            }
            Err(_) => bail!(
                "a doppel node did not start; its log: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
    }
}

fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn bench_cluster(a: ClusterBenchArgs) -> Result<()> {
    anyhow::ensure!(
        a.twins > 0 && a.concurrency > 0 && a.ops > 0,
        "--twins, --concurrency and --ops must be positive"
    );
    let base = super::measure::scratch_dir(a.dir.as_deref())?;
    let root = base.path();
    eprintln!(
        "bench cluster: {} twins, {} clients, {} PATCHes per configuration, {} shards, data in {}",
        a.twins,
        a.concurrency,
        a.ops,
        a.shards,
        root.display()
    );
    let common = |dir: &str| -> Vec<String> {
        vec![
            "--data-dir".into(),
            root.join(dir).display().to_string(),
            "--http".into(),
            "127.0.0.1:0".into(),
            "--no-mqtt".into(),
            "--shards".into(),
            a.shards.to_string(),
        ]
    };

    // --- RF = 1: one node, one process ---------------------------------------------
    let single = {
        let p = spawn(&common("single"), &root.join("single.log"))?;
        let token = std::fs::read_to_string(root.join("single").join("admin.token"))?;
        eprintln!("RF=1: node at {}", p.url);
        let f = run_load(&a, std::slice::from_ref(&p.url), token.trim()).await?;
        drop(p);
        f
    };

    // --- RF = 3: three nodes, three processes, QUIC + mutual TLS ---------------------
    let certs = root.join("certs");
    let specs: Vec<_> = (1..=3)
        .map(|id| doppel_cluster::certs::NodeCertSpec { id, hosts: vec![] })
        .collect();
    doppel_cluster::certs::init_cluster(&certs, &specs, false)?;
    let addrs: Vec<String> = (0..3)
        .map(|_| free_udp_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<Result<_>>()?;
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let mut args = common(&format!("n{id}"));
        args.extend([
            "--node-id".into(),
            id.to_string(),
            "--cluster-addr".into(),
            addrs[(id - 1) as usize].clone(),
            "--cluster-certs".into(),
            certs.display().to_string(),
        ]);
        if id > 1 {
            args.extend(["--join".into(), addrs[0].clone()]);
        }
        nodes.push(spawn(&args, &root.join(format!("n{id}.log")))?);
        eprintln!("RF=3: node {id} at {}", nodes[(id - 1) as usize].url);
    }
    let token = std::fs::read_to_string(root.join("n1").join("admin.token"))?;
    // Spread leadership: ask nothing of Raft, but wait until every group has 3 voters.
    wait_replicated(&nodes[0].url, token.trim()).await?;
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let cluster = run_load(&a, &urls, token.trim()).await?;
    drop(nodes);

    println!(
        "replicated twin PATCH, fsync on, {} clients, {} ops, {} twins, {} shards",
        a.concurrency, a.ops, a.twins, a.shards
    );
    println!(
        "  {:<52} {:>10} {:>9} {:>9}",
        "", "ops/s", "p50 ms", "p99 ms"
    );
    for (name, f) in [
        ("1 node (RF=1), one process", single),
        (
            "3 nodes (RF=3), 3 processes, QUIC mTLS, clients on all",
            cluster,
        ),
    ] {
        println!(
            "  {name:<52} {:>10.0} {:>9.2} {:>9.2}",
            f.ops_per_s, f.p50_ms, f.p99_ms
        );
    }
    println!(
        "  ratio RF=3 / RF=1: throughput {:.2}x, p50 latency {:.2}x, p99 latency {:.2}x",
        cluster.ops_per_s / single.ops_per_s,
        cluster.p50_ms / single.p50_ms,
        cluster.p99_ms / single.p99_ms
    );
    Ok(())
}

async fn wait_replicated(url: &str, token: &str) -> Result<()> {
    let client = ApiClient::with_http(reqwest::Client::new(), url, Some(token))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = client
            .get_json(client.url(&["cluster", "status"], &[])?)
            .await?;
        let ok = s["groups"].as_array().is_some_and(|g| {
            g.iter().all(|g| {
                !g["leader"].is_null() && g["voters"].as_array().map(|v| v.len()) == Some(3)
            })
        });
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the cluster did not reach 3 replicas per group within 120 s: {s}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates the model and twins through `urls[0]`, then runs the PATCH load with
/// clients spread over `urls`.
async fn run_load(a: &ClusterBenchArgs, urls: &[String], token: &str) -> Result<Figures> {
    let clients = bench_clients(urls, token, a.concurrency)?;
    let model = serde_json::json!([{
        "@context": "dtmi:dtdl:context;3", "@id": "dtmi:doppel:bench:Sensor;1", "@type": "Interface",
        "contents": [
            {"@type": "Property", "name": "temperature", "schema": "double"},
            {"@type": "Property", "name": "status", "schema": "string"}
        ]
    }]);
    let body = serde_json::json!({"$metadata": {"$model": "dtmi:doppel:bench:Sensor;1"},
        "temperature": 20.0, "status": "running"});
    plant_sensors(&clients, &model, &body, a.twins).await?;
    patch_load(&clients, a.twins, a.concurrency, a.ops).await
}
