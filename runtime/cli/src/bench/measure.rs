//! What the benches share: the PATCH load, latency figures, scratch directories.

use std::time::{Duration, Instant};

/// Latency summary of one measured phase.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The PATCH load of `bench patch` and `bench cluster`: `concurrency` clients, spread
/// over `urls`, replace the `temperature` of twins `sensor-0..twins` round-robin until
/// `ops` requests are acknowledged (each must answer 204).
pub async fn patch_load(
    client: &reqwest::Client,
    urls: &[String],
    auth: &str,
    twins: usize,
    concurrency: usize,
    ops: usize,
) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let n = ops / concurrency + usize::from(w < ops % concurrency);
        let url = urls[w % urls.len()].clone();
        let (client, auth) = (client.clone(), auth.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let twin = (w + i * 7919) % twins;
                let patch = serde_json::json!([{"op": "replace", "path": "/temperature", "value": (i as f64) * 0.1}]);
                let t = Instant::now();
                let r = client
                    .patch(format!("{url}/digitaltwins/sensor-{twin}"))
                    .header("authorization", &auth)
                    .header("content-type", "application/json-patch+json")
                    .json(&patch)
                    .send()
                    .await?;
                anyhow::ensure!(
                    r.status().as_u16() == 204,
                    "PATCH failed: {} {}",
                    r.status(),
                    r.text().await?
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
