//! `doppel bench`: benchmarks that print their figure beside a baseline measured in the
//! same run on the same machine and disk (ratios hold on noisy machines; absolute
//! numbers do not).
//!
//! `doppel bench patch` starts a real node on a temporary data directory, creates
//! twins, and drives concurrent JSON-Patch requests over real HTTP with fsync on. The
//! baseline is raw RocksDB `put` + fsync of the same number of bytes, from the same
//! number of concurrent writers, in another database on the same filesystem.
//!
//! `doppel bench ingest` ([`ingest`]) runs simulated MQTT devices against a real node's
//! device edge, beside a mosquitto broker routing the same load.

pub mod cluster;
pub mod ingest;
mod measure;

use measure::{bench_clients, figures, patch_load, plant_sensors, scratch_dir};

use clap::{Args, Subcommand};
use doppel_cluster::{Storage, StorageConfig};
use doppel_node::{Node, NodeConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Twin PATCH throughput and latency on one node, vs raw RocksDB write+fsync.
    Patch(PatchArgs),
    /// Resident memory per active twin and activation time, vs the same twin records
    /// held in a plain map.
    Density(DensityArgs),
    /// Device telemetry over MQTT into durable twin state (messages/s, publish→PUBACK
    /// p50/p99), vs mosquitto routing the same load to one subscriber.
    Ingest(ingest::IngestArgs),
    /// Replicated twin PATCH on a three-node cluster (three processes, QUIC) vs the same
    /// load on one node (RF=1).
    Cluster(cluster::ClusterBenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct DensityArgs {
    /// Twins created and then activated.
    #[arg(long, default_value_t = 100_000)]
    pub twins: usize,
    /// Where to put the temporary database [default: the system temp dir].
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct PatchArgs {
    /// Twins patched (round-robin).
    #[arg(long, default_value_t = 256)]
    pub twins: usize,
    /// Concurrent clients (and concurrent raw writers in the baseline).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Total PATCH requests (and raw writes in the baseline).
    #[arg(long, default_value_t = 20_000)]
    pub ops: usize,
    /// Where to put the temporary databases [default: the system temp dir].
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Patch(a) => bench_patch(a).await,
        BenchCmd::Density(a) => bench_density(a).await,
        BenchCmd::Ingest(a) => ingest::bench_ingest(a).await,
        BenchCmd::Cluster(a) => cluster::bench_cluster(a).await,
    }
}

async fn bench_patch(a: PatchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.twins > 0 && a.concurrency > 0 && a.ops > 0,
        "--twins, --concurrency and --ops must be positive"
    );
    let base = scratch_dir(a.dir.as_deref())?;
    eprintln!(
        "bench patch: {} twins, {} clients, {} ops, data in {}",
        a.twins,
        a.concurrency,
        a.ops,
        base.path().display()
    );

    // --- doppel: a real node over real HTTP -------------------------------------
    let config = NodeConfig {
        data_dir: base.path().join("node"),
        http: "127.0.0.1:0".into(),
        mqtt: None,
        mqtts: None,
        ..Default::default()
    };
    let node = Node::start(config).await?;
    let token = node
        .created_admin_token
        .clone()
        .ok_or_else(|| anyhow::anyhow!("fresh node created no admin token"))?;
    let stats = node.node.proposer.stats.clone();
    let url = node.url.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(node.serve_until(async {
        let _ = stop_rx.await;
    }));
    let clients = bench_clients(std::slice::from_ref(&url), &token, a.concurrency)?;
    let model = serde_json::json!([{
        "@context": "dtmi:dtdl:context;3", "@id": "dtmi:doppel:bench:Sensor;1", "@type": "Interface",
        "contents": [
            {"@type": "Property", "name": "temperature", "schema": "double"},
            {"@type": "Property", "name": "setpoint", "schema": "double", "writable": true},
            {"@type": "Property", "name": "status", "schema": "string"}
        ]
    }]);
    let body = serde_json::json!({"$metadata": {"$model": "dtmi:doppel:bench:Sensor;1"}, "temperature": 20.0, "status": "running"});
    plant_sensors(&clients, &model, &body, a.twins).await?;
    let sample = clients[0]
        .raw(reqwest::Method::GET, "/digitaltwins/sensor-0")
        .send()
        .await?
        .body;
    let record_bytes = sample.len();
    let (groups0, cmds0) = (
        stats.groups.load(std::sync::atomic::Ordering::Relaxed),
        stats.commands.load(std::sync::atomic::Ordering::Relaxed),
    );

    eprintln!("measuring doppel: {} PATCH requests…", a.ops);
    let doppel = patch_load(&clients, a.twins, a.concurrency, a.ops).await?;
    let groups = stats.groups.load(std::sync::atomic::Ordering::Relaxed) - groups0;
    let cmds = stats.commands.load(std::sync::atomic::Ordering::Relaxed) - cmds0;
    let _ = stop_tx.send(());
    server.await??;

    // --- baseline: raw RocksDB put + fsync of the same bytes ---------------------
    eprintln!(
        "measuring baseline: {} raw RocksDB put+fsync of {record_bytes} bytes…",
        a.ops
    );
    let raw = Arc::new(Storage::open(
        &base.path().join("raw"),
        1,
        &StorageConfig::default(),
    )?);
    let value = vec![b'x'; record_bytes];
    let started = Instant::now();
    let mut threads = Vec::new();
    for w in 0..a.concurrency {
        let n = a.ops / a.concurrency + usize::from(w < a.ops % a.concurrency);
        let (raw, value) = (raw.clone(), value.clone());
        threads.push(std::thread::spawn(
            move || -> anyhow::Result<Vec<Duration>> {
                let mut lat = Vec::with_capacity(n);
                for i in 0..n {
                    let key = format!("bench/{w}/{}", i % 1024);
                    let t = Instant::now();
                    raw.raw_put_sync(key.as_bytes(), &value)?;
                    lat.push(t.elapsed());
                }
                Ok(lat)
            },
        ));
    }
    let mut lat = Vec::with_capacity(a.ops);
    for t in threads {
        lat.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("baseline writer panicked"))??,
        );
    }
    let baseline = figures(lat, started.elapsed());

    println!(
        "twin PATCH, 1 node, fsync on, {} clients, {} ops, {} twins, record {} B",
        a.concurrency, a.ops, a.twins, record_bytes
    );
    println!(
        "  {:<44} {:>10} {:>9} {:>9}",
        "", "ops/s", "p50 ms", "p99 ms"
    );
    println!(
        "  {:<44} {:>10.0} {:>9.2} {:>9.2}",
        "doppel PATCH over HTTP (Raft log, RF=1)", doppel.ops_per_s, doppel.p50_ms, doppel.p99_ms
    );
    println!(
        "  {:<44} {:>10.0} {:>9.2} {:>9.2}",
        "baseline: raw RocksDB put+fsync, same bytes",
        baseline.ops_per_s,
        baseline.p50_ms,
        baseline.p99_ms
    );
    println!(
        "  ratio doppel/baseline: throughput {:.2}x, p99 latency {:.2}x; {:.1} commands per Raft entry",
        doppel.ops_per_s / baseline.ops_per_s.max(1e-9),
        doppel.p99_ms / baseline.p99_ms.max(1e-9),
        cmds as f64 / (groups.max(1)) as f64
    );
    Ok(())
}

/// Resident set size of this process in KiB (Linux `/proc/self/statm`).
fn rss_kib() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unreadable /proc/self/statm"))?;
    Ok(pages * 4)
}

async fn bench_density(a: DensityArgs) -> anyhow::Result<()> {
    use doppel_twins::{Command, Condition, Outcome, TwinRecord};
    anyhow::ensure!(a.twins > 1, "--twins must be at least 2");
    let base = scratch_dir(a.dir.as_deref())?;
    let config = NodeConfig {
        data_dir: base.path().join("node"),
        http: "127.0.0.1:0".into(),
        mqtt: None,
        mqtts: None,
        // Nothing may passivate while we count.
        twin_idle_passivate_ms: 3_600_000,
        ..Default::default()
    };
    let node = Node::start(config).await?;
    let st = node.node.clone();
    let model = serde_json::json!({
        "@context": "dtmi:dtdl:context;3", "@id": "dtmi:doppel:bench:Sensor;1", "@type": "Interface",
        "contents": [
            {"@type": "Property", "name": "temperature", "schema": "double"},
            {"@type": "Property", "name": "setpoint", "schema": "double", "writable": true},
            {"@type": "Property", "name": "status", "schema": "string"}
        ]
    });
    st.proposer
        .propose(Command::UploadModels {
            tenant: "default".into(),
            documents: vec![model],
        })
        .await
        .map_err(|e| anyhow::anyhow!("model upload: {e}"))?;
    eprintln!("bench density: creating {} twins…", a.twins);
    let body = serde_json::json!({"$metadata": {"$model": "dtmi:doppel:bench:Sensor;1"},
        "temperature": 20.5, "setpoint": 21.0, "status": "running"});
    let mut records: Vec<TwinRecord> = Vec::with_capacity(a.twins);
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..a.twins {
        let (p, body) = (st.proposer.clone(), body.clone());
        pending.spawn(async move {
            p.propose(Command::PutTwin {
                tenant: "default".into(),
                twin_id: format!("sensor-{i}"),
                body,
                condition: Condition::Always,
            })
            .await
        });
        if pending.len() >= 2048 {
            if let Some(r) = pending.join_next().await {
                if let Outcome::Twin { twin, .. } = r?.map_err(|e| anyhow::anyhow!("{e}"))? {
                    records.push(twin);
                }
            }
        }
    }
    while let Some(r) = pending.join_next().await {
        if let Outcome::Twin { twin, .. } = r?.map_err(|e| anyhow::anyhow!("{e}"))? {
            records.push(twin);
        }
    }

    // Baseline: the same records in a plain map (what any twin cache must hold).
    let before_map = rss_kib()?;
    let map: std::collections::HashMap<String, TwinRecord> =
        records.iter().map(|t| (t.id.clone(), t.clone())).collect();
    let map_kib = rss_kib()?.saturating_sub(before_map);
    eprintln!(
        "bench density: baseline map built (RSS {} MiB); activating the twins…",
        rss_kib()? / 1024
    );

    // doppel: activate every twin (a no-op patch activates the twin on its tenant ×
    // shard host, which loads its record from RocksDB, and writes nothing).
    let noop = |i: usize| Command::PatchTwin {
        tenant: "default".into(),
        twin_id: format!("sensor-{i}"),
        patch: serde_json::json!([]),
        condition: Condition::Always,
    };
    st.twins
        .execute(noop(0))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let before = rss_kib()?;
    // One no-op request to each twin but the first, timed.
    let touch_all = || async {
        let started = Instant::now();
        for i in 1..a.twins {
            st.twins
                .execute(noop(i))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        anyhow::Ok(started.elapsed())
    };
    let took = touch_all().await?;
    let after = rss_kib()?;
    let actors_kib = after.saturating_sub(before);
    eprintln!(
        "bench density: RSS {} MiB before activating, {} MiB after",
        before / 1024,
        after / 1024
    );
    anyhow::ensure!(
        st.twins.active_twins() == a.twins,
        "expected {} active twins, found {}",
        a.twins,
        st.twins.active_twins()
    );
    // The same request on the now active twins: what the first use costs beyond it is
    // the activation itself.
    let warm = touch_all().await?;
    let n = (a.twins - 1) as f64;
    let us = |d: Duration| d.as_micros() as f64 / n;
    let per = |kib: u64| kib as f64 * 1024.0 / n;
    println!("twin density, 1 node, {} twins", a.twins);
    println!("  {:<48} {:>12} {:>14}", "", "B per twin", "activation µs");
    println!(
        "  {:<48} {:>12.0} {:>14.1}",
        "doppel: active twins (entity, gate, directory)",
        per(actors_kib),
        us(took)
    );
    println!(
        "  {:<48} {:>12.0} {:>14}",
        "baseline: the same records in a HashMap",
        map_kib as f64 * 1024.0 / a.twins as f64,
        "-"
    );
    println!(
        "  ratio doppel/baseline memory: {:.2}x (target: <= 2048 B per idle active twin)",
        per(actors_kib) / (map_kib as f64 * 1024.0 / a.twins as f64).max(1.0)
    );
    println!(
        "  activation µs = a twin's first request (record read from RocksDB + a no-op patch); \
         the same patch on the active twin takes {:.1} µs, so activating adds {:.1} µs",
        us(warm),
        us(took) - us(warm)
    );
    // Freed only now: memory freed before the doppel measurement would be reused by the
    // twins and hide their cost.
    drop(records);
    drop(map);
    st.twins.stop();
    Ok(())
}
