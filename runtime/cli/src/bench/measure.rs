//! What the benches share: the PATCH load, latency figures, scratch directories.

use anyhow::Context;
use doppel_client::{ApiClient, Preconditions, RequestBody};
use reqwest::Method;
use std::time::{Duration, Instant};

/// Latency summary of one measured phase.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One client per node URL for a load of `concurrency` workers, all sharing one
/// connection pool, with `token`.
pub fn bench_clients(
    urls: &[String],
    token: &str,
    concurrency: usize,
) -> anyhow::Result<Vec<ApiClient>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    urls.iter()
        .map(|url| Ok(ApiClient::with_http(http.clone(), url, Some(token))?))
        .collect()
}

/// Uploads `model` (an array holding the Sensor interface) through the first client
/// and creates twins `sensor-0..twins` of it round-robin over the clients, each with
/// `body`.
pub async fn plant_sensors(
    clients: &[ApiClient],
    model: &serde_json::Value,
    body: &serde_json::Value,
    twins: usize,
) -> anyhow::Result<()> {
    let none = Preconditions::default();
    let first = &clients[0];
    first
        .call(
            Method::POST,
            first.url(&["models"], &[])?,
            Some(RequestBody::Json(model)),
            &none,
        )
        .await
        .context("model upload")?;
    eprintln!("creating {twins} twins…");
    for i in 0..twins {
        let client = &clients[i % clients.len()];
        let url = client.url(&["digitaltwins", &format!("sensor-{i}")], &[])?;
        client
            .call(Method::PUT, url, Some(RequestBody::Json(body)), &none)
            .await
            .with_context(|| format!("creating twin sensor-{i}"))?;
    }
    Ok(())
}

/// The PATCH load of `bench patch` and `bench cluster`: `concurrency` workers, spread
/// over `clients` (one per node), replace the `temperature` of twins `sensor-0..twins`
/// round-robin until `ops` requests are acknowledged (each must answer 204).
pub async fn patch_load(
    clients: &[ApiClient],
    twins: usize,
    concurrency: usize,
    ops: usize,
) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let n = ops / concurrency + usize::from(w < ops % concurrency);
        let client = clients[w % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            let none = Preconditions::default();
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let twin = (w + i * 7919) % twins;
                let patch = serde_json::json!([{"op": "replace", "path": "/temperature", "value": (i as f64) * 0.1}]);
                let url = client.url(&["digitaltwins", &format!("sensor-{twin}")], &[])?;
                let t = Instant::now();
                let r = client
                    .call(Method::PATCH, url, Some(RequestBody::JsonPatch(&patch)), &none)
                    .await
                    .context("PATCH failed")?;
                anyhow::ensure!(
                    r.status.as_u16() == 204,
                    "PATCH answered {} instead of 204",
                    r.status
                );
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::with_capacity(ops);
    for t in tasks {
        lat.extend(t.await??);
    }
    Ok(figures(lat, started.elapsed()))
}

pub fn figures(mut lat: Vec<Duration>, wall: Duration) -> Figures {
    lat.sort_unstable();
    let pick = |q: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    Figures {
        ops_per_s: lat.len() as f64 / wall.as_secs_f64().max(1e-9),
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
    }
}

/// A fresh temporary directory for one benchmark's data, under `dir` if given (else
/// the system temp dir); removed when dropped.
pub fn scratch_dir(dir: Option<&std::path::Path>) -> std::io::Result<tempfile::TempDir> {
    let builder = tempfile::Builder::new().prefix("doppel-bench-").clone();
    match dir {
        Some(d) => builder.tempdir_in(d),
        None => builder.tempdir(),
    }
}
