//! Shared harness of doppel's cross-crate integration tests: real `doppel` processes on
//! real data directories, talked to over real HTTP.
//!
//! Key items:
//! - [`doppel_bin`]: the `doppel` binary built next to the test executable;
//! - [`Node`]: one `doppel serve` process on a data directory (port 0, URL read from
//!   its stdout with a deadline, admin token read from `admin.token`), which can be
//!   killed with SIGKILL ([`Node::kill9`]), stopped with SIGTERM ([`Node::terminate`])
//!   and started again on the same directory ([`Node::restart`]);
//! - [`Api`]: an authenticated JSON client returning [`Resp`] (status, ETag, JSON
//!   body) and asserting ADT-style errors ([`Resp::assert_error`]);
//! - [`run_doppel`]: one CLI invocation with a deadline, for the client subcommands and
//!   start-up failures;
//! - [`wait_until`]: poll a condition until a deadline (tests never sleep blindly);
//! - [`Mosquitto`]: a real external broker, and a node attached to it.
//!
//! Contract: a node process never outlives its [`Node`] (dropping it sends SIGKILL),
//! and every failure message carries the node's stderr log so a red test explains
//! itself.

use anyhow::{bail, Context, Result};
use doppel_client::{collect_pages, parse_page, ApiClient, ClientError, RawRequest};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod cluster;
pub mod mosquitto;

pub use mosquitto::Mosquitto;

/// How long a node may take to print its URL after being started.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM (its own grace period is 10 s).
pub const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// The `doppel` binary of the target directory these tests were built into.
///
/// The test executable is `<target>/<profile>/deps/<test>-<hash>`; the binary is
/// `<target>/<profile>/doppel`. Cargo does not build another package's binary for
/// `cargo test -p doppel-tests`, so it may be missing (or stale).
///
/// `DOPPEL_BIN` names another binary instead: several checkouts that share one
/// target directory (to share its RocksDB build) share `<target>/debug/doppel`
/// too, so each copies its own build aside and points the tests at it.
pub fn doppel_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("DOPPEL_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "DOPPEL_BIN={} is not a file", bin.display());
        return bin;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps");
    let bin = profile_dir.join("doppel");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p doppel-cli` first (`cargo test --workspace` builds it)",
        bin.display()
    );
    bin
}

/// Makes ring rustls' process-wide crypto provider; reqwest is built without one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client for plain-HTTP nodes.
pub fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client")
}

/// Polls `condition` every 20 ms until it holds; fails naming `what` after `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return Ok(());
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One `doppel serve` process on a data directory.
pub struct Node {
    /// Holds the data directory (and the logs) for the node's whole life.
    root: tempfile::TempDir,
    data_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// Lines the current process printed on stdout after its URL line.
    stdout: Option<mpsc::Receiver<String>>,
    starts: usize,
    /// The admin token to use when the data directory has no `admin.token` (a node that
    /// joined a cluster uses the token of the node that formed it).
    fixed_token: Option<String>,
    /// Extra environment of the process (e.g. `FAILPOINTS`), for this and later starts.
    env: Vec<(String, String)>,
    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub url: String,
    /// The admin bearer token from `<data-dir>/admin.token`.
    pub token: String,
    /// Everything the current process printed on stdout before its URL line.
    pub banner: Vec<String>,
}

impl Node {
    /// Starts a node on a fresh temporary data directory with `--http 127.0.0.1:0`.
    pub fn start() -> Result<Node> {
        Self::start_with(&[])
    }

    /// [`Node::start`] with extra `serve` arguments (e.g. `--max-body-bytes 2048`).
    /// Give `--http` in `extra` to override the loopback port-0 default.
    pub fn start_with(extra: &[&str]) -> Result<Node> {
        Self::start_with_env(extra, &[])
    }

    /// [`Node::start_with`] with extra environment variables for the process (kept for
    /// restarts until [`Node::set_env`] changes them).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Result<Node> {
        let root = tempfile::Builder::new().prefix("doppel-test-").tempdir()?;
        let data_dir = root.path().join("data");
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        if !extra.contains(&"--http") {
            args.extend(["--http".into(), "127.0.0.1:0".into()]);
        }
        // Nodes run side by side: never the fixed default MQTT port.
        if !extra.contains(&"--mqtt") && !extra.contains(&"--no-mqtt") {
            args.extend(["--mqtt".into(), "127.0.0.1:0".into()]);
        }
        if extra.contains(&"--tls-cert")
            && !extra.contains(&"--mqtts")
            && !extra.contains(&"--no-mqtt")
        {
            args.extend(["--mqtts".into(), "127.0.0.1:0".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::launch_with(root, data_dir, args, None, env)
    }

    /// A cluster member: `serve` with `extra` (cluster flags included) on a fresh data
    /// directory; `token` is the cluster's admin token when this node joins.
    pub fn start_member(extra: &[&str], token: Option<String>) -> Result<Node> {
        let root = tempfile::Builder::new()
            .prefix("doppel-member-")
            .tempdir()?;
        let data_dir = root.path().join("data");
        let args = loopback_args("serve", &data_dir, extra);
        Self::launch_with_token(root, data_dir, args, token)
    }

    /// Whether the node's process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `doppel demo` on a fresh temporary data directory, both listeners on loopback
    /// port 0, with extra `demo` arguments (e.g. `--machines 3`). Returns once the demo
    /// has set up its sample and printed its `serving` line; its guide follows on
    /// stdout ([`Node::stdout_after_exit`]).
    pub fn start_demo(extra: &[&str]) -> Result<Node> {
        let root = tempfile::Builder::new().prefix("doppel-demo-").tempdir()?;
        let data_dir = root.path().join("data");
        let args = loopback_args("demo", &data_dir, extra);
        Self::launch(root, data_dir, args)
    }

    fn launch(root: tempfile::TempDir, data_dir: PathBuf, args: Vec<String>) -> Result<Node> {
        Self::launch_with_token(root, data_dir, args, None)
    }

    fn launch_with_token(
        root: tempfile::TempDir,
        data_dir: PathBuf,
        args: Vec<String>,
        fixed_token: Option<String>,
    ) -> Result<Node> {
        Self::launch_with(root, data_dir, args, fixed_token, &[])
    }

    fn launch_with(
        root: tempfile::TempDir,
        data_dir: PathBuf,
        args: Vec<String>,
        fixed_token: Option<String>,
        env: &[(&str, &str)],
    ) -> Result<Node> {
        let mut node = Node {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            root,
            data_dir,
            args,
            child: None,
            stdout: None,
            starts: 0,
            fixed_token,
            url: String::new(),
            token: String::new(),
            banner: Vec::new(),
        };
        node.spawn()?;
        Ok(node)
    }

    /// The `host:port` of the node's MQTT-over-TLS listener (`mqtts://…` banner line).
    pub fn mqtts_addr(&self) -> Option<String> {
        self.banner.iter().find_map(|l| {
            let rest = l.split("mqtts://").nth(1)?;
            Some(rest.split_whitespace().next()?.to_owned())
        })
    }

    /// The `host:port` of the node's MQTT listener, from its `mqtt://…` banner line.
    pub fn mqtt_addr(&self) -> Option<String> {
        self.banner.iter().find_map(|l| {
            let rest = l.split("mqtt://").nth(1)?;
            Some(rest.split_whitespace().next()?.to_owned())
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A scratch directory beside the data directory, removed with the node.
    pub fn scratch(&self) -> &Path {
        self.root.path()
    }

    /// The OS process id of the running node.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the node is running").id()
    }

    fn log_path(&self, start: usize) -> PathBuf {
        self.root.path().join(format!("node-{start}.stderr.log"))
    }

    /// The current process's stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    fn spawn(&mut self) -> Result<()> {
        assert!(self.child.is_none(), "the node is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts))?;
        let mut child = Command::new(doppel_bin())
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("spawning doppel serve")?;
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        // A thread drains stdout for the process's whole life, so the pipe never fills.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep draining.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + START_DEADLINE;
        self.banner.clear();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(url) = serving_url(&line) {
                        self.url = url;
                        break;
                    }
                    self.banner.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = self.child.as_mut().expect("child").try_wait()? {
                        self.child = None;
                        bail!(
                            "doppel serve exited with {status} before serving; stderr:\n{}",
                            self.log()
                        );
                    }
                    if Instant::now() >= deadline {
                        bail!(
                            "doppel serve printed no 'serving' line within {START_DEADLINE:?}; stderr:\n{}",
                            self.log()
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().expect("child").wait()?;
                    self.child = None;
                    bail!(
                        "doppel serve closed stdout ({status}) before serving; stderr:\n{}",
                        self.log()
                    );
                }
            }
        }
        self.stdout = Some(rx);
        self.token = match (
            &self.fixed_token,
            std::fs::read_to_string(self.data_dir.join("admin.token")),
        ) {
            (_, Ok(t)) => t.trim().to_owned(),
            (Some(t), Err(_)) => t.clone(),
            (None, Err(e)) => return Err(e).context("reading admin.token"),
        };
        Ok(())
    }

    /// Replaces the extra environment of the next starts (see [`Node::start_with_env`]).
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// SIGKILL (`Child::kill`): no flush, no graceful shutdown; waits for the exit.
    pub fn kill9(&mut self) -> Result<()> {
        let mut child = self.child.take().context("the node is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERM, then waits (with a deadline) for a clean exit; returns its status.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let pid = self.pid();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {pid} failed: {status}");
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "doppel serve did not exit within {STOP_DEADLINE:?} of SIGTERM; stderr:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the last process printed on stdout after its URL line, up to its exit
    /// (call after [`Node::terminate`] or [`Node::kill9`]).
    pub fn stdout_after_exit(&mut self) -> Vec<String> {
        assert!(self.child.is_none(), "the node is still running");
        let Some(rx) = self.stdout.take() else {
            return Vec::new();
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut lines = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        lines
    }

    /// Starts the node again on the same data directory with the same arguments. The
    /// URL changes (port 0); the token is re-read from `admin.token`.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("restart: the node is still running; kill9() or terminate() it first");
        }
        self.spawn()
    }

    /// An authenticated client of this node, using the admin token.
    pub fn api(&self) -> Api {
        Api::new(&self.url, Some(&self.token))
    }

    /// A client of this node with another token (or none).
    pub fn api_with(&self, token: Option<&str>) -> Api {
        Api::new(&self.url, token)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The URL of a `doppel <v> serving <url> (data in <dir>)` line.
fn serving_url(line: &str) -> Option<String> {
    let rest = line.strip_prefix("doppel ")?;
    let (_, rest) = rest.split_once(" serving ")?;
    let url = rest.split_whitespace().next()?;
    Some(url.trim_end_matches('/').to_owned())
}

/// A response: status, `ETag` header and the body parsed as JSON (`Null` if empty).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub body: Value,
    /// The raw body text, for non-JSON answers.
    pub text: String,
}

impl Resp {
    /// Asserts `status` and returns the body.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        &self.body
    }

    /// Asserts an ADT-style error `{"error":{"code","message"}}` with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.body["error"]["code"].as_str(),
            Some(code),
            "unexpected error code; body: {}",
            self.text
        );
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "the error has no message; body: {}",
            self.text
        );
    }
}

/// An HTTP client of one node, with an optional bearer token: the raw layer of
/// `doppel-client` (any path, header and body; every status comes back as a [`Resp`]).
#[derive(Clone)]
pub struct Api {
    pub client: ApiClient,
    pub url: String,
    pub token: Option<String>,
}

impl Api {
    pub fn new(url: &str, token: Option<&str>) -> Api {
        Self::with_client(http_client(), url, token)
    }

    pub fn with_client(client: reqwest::Client, url: &str, token: Option<&str>) -> Api {
        Api {
            client: ApiClient::with_http(client, url, token).expect("a usable node URL and token"),
            url: url.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
        }
    }

    /// A request to `path` (relative to the node, e.g. `/models?x=y`, or an absolute
    /// URL such as a `nextLink`), with the bearer token.
    pub fn request(&self, method: Method, path: &str) -> RawRequest<'_> {
        self.client.raw(method, path)
    }

    /// Sends `rb` and reads the whole answer.
    pub async fn send(rb: RawRequest<'_>) -> Result<Resp> {
        let r = rb.send().await?;
        Ok(Resp {
            status: r.status,
            etag: r.etag().map(str::to_owned),
            body: r.json().unwrap_or(Value::Null),
            text: r.text(),
        })
    }

    /// [`Api::send`] for calls that must get an answer: panics on transport errors.
    pub async fn send_with(&self, rb: RawRequest<'_>) -> Resp {
        Self::send(rb).await.expect("the node answers")
    }

    pub async fn get(&self, path: &str) -> Result<Resp> {
        Self::send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Resp> {
        Self::send(self.request(Method::DELETE, path)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Resp> {
        Self::send(self.request(Method::PUT, path).json(body)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Resp> {
        Self::send(self.request(Method::POST, path).json(body)).await
    }

    /// PATCH with a JSON Patch body (`application/json-patch+json`).
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Resp> {
        Self::send(
            self.request(Method::PATCH, path)
                .header("content-type", "application/json-patch+json")
                .body(body.to_string()),
        )
        .await
    }

    /// Reads every page of a `{"value": [...], "nextLink": ...}` collection (the
    /// client's paging: a `nextLink` loop is an error); returns the items and the
    /// number of pages read. Every page must answer 200.
    pub async fn get_all(&self, path: &str) -> Result<(Vec<Value>, usize)> {
        let mut pages = 0;
        let first = self.client.resolve(path)?;
        let items = collect_pages(
            first,
            None,
            |url: reqwest::Url| {
                pages += 1;
                async move {
                    let r = self.client.raw(Method::GET, url.as_str()).send().await?;
                    if r.status != StatusCode::OK {
                        return Err(ClientError::BadResponse {
                            url: url.to_string(),
                            what: format!("{} {}", r.status, r.text()),
                        });
                    }
                    parse_page(r.json().unwrap_or(Value::Null), &url)
                }
            },
            |link: &str| self.client.resolve(link),
        )
        .await
        .with_context(|| format!("GET {path} (all pages)"))?;
        Ok((items, pages))
    }

    /// Uploads models (an array of DTDL Interfaces); asserts 201.
    pub async fn upload_models(&self, models: &Value) -> Result<Value> {
        let r = self.post("/models", models).await?;
        if r.status != StatusCode::CREATED {
            bail!("POST /models: {} {}", r.status, r.text);
        }
        Ok(r.body)
    }

    /// Creates or replaces a twin; asserts 200 and returns the twin.
    pub async fn put_twin(&self, id: &str, body: &Value) -> Result<Value> {
        let r = self.put(&format!("/digitaltwins/{id}"), body).await?;
        if r.status != StatusCode::OK {
            bail!("PUT /digitaltwins/{id}: {} {}", r.status, r.text);
        }
        Ok(r.body)
    }
}

/// Registers `device` (symmetric keys) through `api` and returns a SAS token for IoT
/// Hub host `hub`, signed with its primary key and valid for an hour; asserts 201.
pub async fn register_device_with_sas(api: &Api, hub: &str, device: &str) -> String {
    let r = api
        .put(&format!("/devices/{device}"), &serde_json::json!({}))
        .await
        .expect("the node answers");
    let key = r.expect(StatusCode::CREATED)["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("a primary key")
        .to_owned();
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
        + 3600;
    doppel_protocols::sas::make_sas_token(&format!("{hub}/devices/{device}"), &key, expiry, None)
        .expect("a SAS token")
}

/// What a finished CLI invocation left behind.
#[derive(Debug)]
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Asserts exit code 0 and returns stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        assert_eq!(self.code, Some(0), "exit code; stderr: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `doppel <args>` with `env` set (and `DOPPEL_*` variables of the test process
/// removed), killing it if it has not finished within `deadline`.
pub fn run_doppel(args: &[&str], env: &[(&str, &str)], deadline: Duration) -> Result<CliOutput> {
    let dir = tempfile::tempdir()?;
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut cmd = Command::new(doppel_bin());
    cmd.args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?);
    for (k, _) in std::env::vars() {
        if k.starts_with("DOPPEL_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().context("spawning doppel")?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`doppel {}` did not finish within {deadline:?}; stderr:\n{}",
                args.join(" "),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(CliOutput {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path)?,
        stderr: std::fs::read_to_string(&err_path)?,
    })
}

/// A DTDL v3 Interface with `contents`.
pub fn interface(id: &str, contents: Value) -> Value {
    serde_json::json!({
        "@context": "dtmi:dtdl:context;3",
        "@id": id,
        "@type": "Interface",
        "contents": contents,
    })
}

/// Everything a client can see of a tenant: models with definitions, twins,
/// relationships both ways, tokens. Two equal snapshots mean no visible change.
pub async fn visible_state(api: &Api) -> Value {
    let (models, _) = api
        .get_all("/models?includeModelDefinition=true")
        .await
        .expect("models");
    let (twins, _) = api.get_all("/digitaltwins").await.expect("twins");
    let mut rels = serde_json::Map::new();
    for t in &twins {
        let id = t["$dtId"].as_str().unwrap();
        let (out, _) = api
            .get_all(&format!("/digitaltwins/{id}/relationships"))
            .await
            .expect("rels");
        let (inc, _) = api
            .get_all(&format!("/digitaltwins/{id}/incomingrelationships"))
            .await
            .expect("incoming");
        rels.insert(id.to_owned(), serde_json::json!({"out": out, "in": inc}));
    }
    let (tokens, _) = api.get_all("/tokens").await.expect("tokens");
    serde_json::json!({"models": models, "twins": twins, "relationships": rels, "tokens": tokens})
}

/// An open SSE stream (the client's [`doppel_client::EventStream`]) whose reads
/// panic after a deadline, for tests.
pub struct EventStream {
    inner: doppel_client::EventStream,
}

impl EventStream {
    pub async fn open(node: &Node, path: &str, token: &str) -> EventStream {
        Self::open_with(&node.api_with(Some(token)), path).await
    }

    /// Opens `path` with `api`'s client and token (e.g. an HTTPS client).
    pub async fn open_with(api: &Api, path: &str) -> EventStream {
        let inner = api
            .client
            .events(path)
            .await
            .unwrap_or_else(|e| panic!("open stream GET {path}: {e}"));
        EventStream { inner }
    }

    /// The next event, or panics after `within`.
    pub async fn next(&mut self, within: Duration) -> (String, Value) {
        match tokio::time::timeout(within, self.inner.next()).await {
            Ok(Ok(Some(event))) => (event.kind, event.data),
            Ok(Ok(None)) => panic!("stream ended"),
            Ok(Err(e)) => panic!("stream failed: {e}"),
            Err(_) => panic!("no event within {within:?}"),
        }
    }
}

/// `doppel <command> --data-dir <data_dir>` with both listeners on loopback port 0,
/// then `extra`.
fn loopback_args(command: &str, data_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        command.into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--http".into(),
        "127.0.0.1:0".into(),
        "--mqtt".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files in
/// `dir`; returns (cert path, key path, certificate DER).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf, rustls::pki_types::CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("rcgen");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().clone())
}

/// A reqwest client trusting exactly `trusted` (ring provider, no system roots).
pub fn https_client(trusted: &[rustls::pki_types::CertificateDer<'static>]) -> reqwest::Client {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted {
        roots.add(c.clone()).expect("a usable root");
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("https client")
}

/// A device program (a Python script driving a real MQTT client or SDK) that prints
/// one JSON progress record per line; tests read the records in order.
pub struct ScriptDevice {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl ScriptDevice {
    /// Runs `program args…` with stdout piped; `what` says what to install if missing.
    pub fn start(program: &Path, args: &[&str], what: &str) -> ScriptDevice {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} ({what}): {e}", program.display()));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&line).unwrap_or(serde_json::json!({ "raw": line }));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        ScriptDevice { child, lines: rx }
    }

    /// The next record, which must be `{"step": step, …}`.
    pub fn expect(&self, step: &str, within: Duration) -> Value {
        let v = self
            .lines
            .recv_timeout(within)
            .unwrap_or_else(|_| panic!("the device printed nothing while we waited for {step}"));
        assert_eq!(v["step"], step, "the device said {v}");
        v
    }
}

impl Drop for ScriptDevice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `node`'s binary has failpoints compiled in (`GET /cluster/failpoints`
/// answers; a build without `--features doppel-cluster/failpoints,doppel-node/failpoints`
/// has no such endpoint). Without them a failpoint test cannot run: it is skipped with a
/// note, except when `DOPPEL_REQUIRE_FAILPOINTS` is set (deploy/test.sh sets it), where
/// this fails instead, so the README's test command never skips one.
pub async fn failpoints_or_skip(node: &Node, test: &str) -> bool {
    let r = node
        .api()
        .get("/cluster/failpoints")
        .await
        .expect("GET /cluster/failpoints");
    if r.status == StatusCode::OK {
        return true;
    }
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "GET /cluster/failpoints: {}",
        r.text
    );
    assert!(
        std::env::var_os("DOPPEL_REQUIRE_FAILPOINTS").is_none(),
        "{test}: {} was built without failpoints; build it with \
         `cargo build --workspace --bins --features doppel-cluster/failpoints,doppel-node/failpoints` \
         (deploy/test.sh does)",
        doppel_bin().display()
    );
    eprintln!("{test}: SKIPPED: the doppel binary has no failpoints compiled in");
    false
}

/// Sets failpoint `name` of a running node to `actions` (fail's syntax, e.g. `panic`;
/// `off` disarms it).
pub async fn set_failpoint(node: &Node, name: &str, actions: &str) {
    let r = node
        .api()
        .put(
            &format!("/cluster/failpoints/{name}"),
            &serde_json::json!({ "actions": actions }),
        )
        .await
        .expect("PUT /cluster/failpoints");
    assert_eq!(
        r.status,
        StatusCode::OK,
        "setting failpoint {name}: {}",
        r.text
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_line_is_parsed() {
        assert_eq!(
            serving_url("doppel 0.1.0 serving http://127.0.0.1:41234 (data in /tmp/x)"),
            Some("http://127.0.0.1:41234".to_owned())
        );
        assert_eq!(
            serving_url("doppel 0.1.0 serving https://[::1]:8443/ (data in d)"),
            Some("https://[::1]:8443".to_owned())
        );
        assert_eq!(serving_url("first start: created tenant"), None);
    }
}
