//! The `doppel` binary: `doppel serve` runs a node; the other subcommands are clients
//! of a node's REST API (and `models check` validates DTDL files offline).

mod bench;
mod commands;
mod demo;

use clap::{Args, Parser, Subcommand};
use doppel_node::{Node, NodeConfig, RunningNode};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "doppel",
    version,
    about = "doppel — a digital-twin runtime for industrial IoT"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a doppel node (REST API on --http, state in --data-dir).
    Serve(ServeArgs),
    /// Upload, list, inspect, delete and check DTDL models.
    Models {
        #[command(flatten)]
        opts: commands::ClientOpts,
        #[command(subcommand)]
        cmd: commands::ModelsCmd,
    },
    /// Create, read, patch, delete and list digital twins.
    Twins {
        #[command(flatten)]
        opts: commands::ClientOpts,
        #[command(subcommand)]
        cmd: commands::TwinsCmd,
    },
    /// Create, list and delete relationships between twins.
    Rel {
        #[command(flatten)]
        opts: commands::ClientOpts,
        #[command(subcommand)]
        cmd: commands::RelCmd,
    },
    /// Manage devices bound to twins, and make their MQTT credentials.
    Devices {
        #[command(flatten)]
        opts: commands::ClientOpts,
        #[command(subcommand)]
        cmd: commands::DevicesCmd,
    },
    /// Create, list and revoke API tokens.
    Tokens {
        #[command(flatten)]
        opts: commands::ClientOpts,
        #[command(subcommand)]
        cmd: commands::TokensCmd,
    },
    /// Cluster certificates (init, add-node) and health (status).
    Cluster {
        #[command(subcommand)]
        cmd: commands::ClusterCmd,
    },
    /// Start a node with a sample factory and simulated MQTT devices, and show how to watch it.
    Demo(demo::DemoArgs),
    /// Benchmarks that print their figure beside a baseline measured in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file; flags given here override its values.
    #[arg(long, env = "DOPPEL_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: ./doppel-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// REST API address [default: 127.0.0.1:8080]
    #[arg(long)]
    http: Option<String>,
    /// PEM certificate chain for HTTPS (with --tls-key).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with --tls-cert).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Embedded MQTT broker address for devices [default: 127.0.0.1:1883]
    #[arg(long)]
    mqtt: Option<String>,
    /// MQTT-over-TLS listener address, used when --tls-cert/--tls-key are given [default: 127.0.0.1:8883]
    #[arg(long)]
    mqtts: Option<String>,
    /// Do not start the embedded MQTT broker.
    #[arg(long, conflicts_with = "mqtt")]
    no_mqtt: bool,
    /// Allow plain HTTP (and MQTT) on a non-loopback address.
    #[arg(long)]
    insecure: bool,
    /// Largest accepted request body in bytes [default: 1048576]
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Number of data shards, fixed when the data directory is created [default: 64]
    #[arg(long)]
    shards: Option<u32>,
    /// This node's id in its cluster [default: 1]
    #[arg(long)]
    node_id: Option<u64>,
    /// QUIC address for the other nodes (makes this node a cluster member)
    #[arg(long)]
    cluster_addr: Option<String>,
    /// The address peers dial, if not --cluster-addr
    #[arg(long)]
    cluster_advertise: Option<String>,
    /// A member to ask for admission when this node is new (repeatable)
    #[arg(long)]
    join: Vec<String>,
    /// Directory with the cluster CA and this node's certificate (`doppel cluster init`)
    #[arg(long)]
    cluster_certs: Option<PathBuf>,
    /// Enable POST /cluster/fault (network isolation, for fault tests only)
    #[arg(long, hide = true)]
    fault_injection: bool,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<NodeConfig> {
        let mut c = match &self.config {
            Some(path) => NodeConfig::from_file(path)?,
            None => NodeConfig::default(),
        };
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.http {
            c.http = v;
        }
        if let Some(v) = self.tls_cert {
            c.tls_cert = Some(v);
        }
        if let Some(v) = self.tls_key {
            c.tls_key = Some(v);
        }
        if let Some(v) = self.mqtt {
            c.mqtt = Some(v);
        }
        if let Some(v) = self.mqtts {
            c.mqtts = Some(v);
        }
        if self.no_mqtt {
            c.mqtt = None;
            c.mqtts = None;
        }
        c.insecure |= self.insecure;
        if let Some(v) = self.max_body_bytes {
            c.max_body_bytes = v;
        }
        if let Some(v) = self.shards {
            c.shard_count = v;
        }
        if let Some(v) = self.node_id {
            c.node_id = v;
        }
        if let Some(v) = self.cluster_addr {
            c.cluster_addr = Some(v);
        }
        if let Some(v) = self.cluster_advertise {
            c.cluster_advertise = Some(v);
        }
        if !self.join.is_empty() {
            c.join = self.join;
        }
        if let Some(v) = self.cluster_certs {
            c.cluster_certs = Some(v);
        }
        c.fault_injection |= self.fault_injection;
        Ok(c)
    }
}

fn main() {
    let cli = Cli::parse();
    doppel_node::tls::install_default_provider();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = rt.block_on(async move {
        let result = match cli.cmd {
            Cmd::Serve(args) => serve(args).await.map(|()| 0),
            Cmd::Demo(args) => demo::run(args).await.map(|()| 0),
            Cmd::Models { opts, cmd } => commands::run_models(&opts, cmd).await,
            Cmd::Twins { opts, cmd } => commands::run_twins(&opts, cmd).await,
            Cmd::Rel { opts, cmd } => commands::run_rel(&opts, cmd).await,
            Cmd::Tokens { opts, cmd } => commands::run_tokens(&opts, cmd).await,
            Cmd::Devices { opts, cmd } => commands::run_devices(&opts, cmd).await,
            Cmd::Cluster { cmd } => commands::run_cluster(cmd).await,
            Cmd::Bench(cmd) => bench::run(cmd).await.map(|()| 0),
        };
        result.unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            2
        })
    });
    std::process::exit(code);
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging("info,openraft=warn");
    let config = args.into_config()?;
    let started = start_node(config).await?;
    println!("{}", serving_line(&started));
    println!(
        "try: curl -H \"Authorization: Bearer $(cat {})\" {}/models",
        started.admin_token_path.display(),
        started.url
    );
    serve_until(started, shutdown_signal()).await
}

/// Logs to stderr, filtered by `RUST_LOG` (else `default`); colours only on a terminal.
fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.to_owned().into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Starts the node ([`Node::start`]) and prints the admin-token and devices lines
/// (what `doppel serve` and `doppel demo` share).
async fn start_node(config: NodeConfig) -> anyhow::Result<RunningNode> {
    let started = Node::start(config).await?;
    let token_path = &started.admin_token_path;
    match &started.created_admin_token {
        Some(_) => println!(
            "first start: created tenant 'default' and an admin token in {} (mode 0600)",
            token_path.display()
        ),
        None => println!(
            "admin token: {} (if you still have it)",
            token_path.display()
        ),
    }
    if let Some(addr) = started.mqtt_addr() {
        println!(
            "devices: mqtt://{addr} (MQTT 3.1.1/5, Azure IoT Hub topics; user name <tenant>.doppel/<device id>/?api-version=2021-04-12, password a SAS token)"
        );
    }
    if let Some(addr) = started.mqtts_addr() {
        println!("devices: mqtts://{addr} (MQTT over TLS with the --tls-cert certificate)");
    }
    for (broker, _) in &started.external_brokers {
        println!(
            "devices: tenant '{}' attached to external broker mqtt://{} (shared subscription group '{}')",
            broker.tenant, broker.address, broker.share_group
        );
    }
    Ok(started)
}

/// The `doppel <version> serving <url> (data in <dir>)` line tools look for.
fn serving_line(started: &RunningNode) -> String {
    format!(
        "doppel {} serving {} (data in {})",
        env!("CARGO_PKG_VERSION"),
        started.url,
        started.node.config.data_dir.display()
    )
}

/// Serves the API until `shutdown` resolves, then stops the device edge and flushes
/// storage.
async fn serve_until(
    started: RunningNode,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    started.serve_until(shutdown).await?;
    println!("doppel stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
