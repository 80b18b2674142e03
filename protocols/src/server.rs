//! The listener: accepts TCP (optionally TLS) connections and gives each its
//! own task ([`crate::connection`]).
//!
//! Key types: [`MqttServer`] (bind, address, registry, shutdown).
//! Contract: one task per connection, so a slow or hostile device costs only
//! its own task; nothing a peer sends can stop the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, MqttServerConfig};
use crate::connection::{self, ServerContext};
use crate::edge::{DisconnectReason, EdgeHandler};
use crate::registry::ConnectionRegistry;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running MQTT server. Dropping it does not stop it; call [`MqttServer::shutdown`].
pub struct MqttServer {
    local_addr: SocketAddr,
    registry: ConnectionRegistry,
    stop: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

impl std::fmt::Debug for MqttServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttServer")
            .field("local_addr", &self.local_addr)
            .field("registry", &self.registry)
            .finish()
    }
}

impl MqttServer {
    /// Validate the config, listen, and start accepting. With `tls`, every
    /// connection is TLS (the caller builds the `ServerConfig` with the ring
    /// provider via `builder_with_provider`).
    pub async fn bind(
        config: MqttServerConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: Arc<dyn EdgeHandler>,
    ) -> Result<MqttServer, ServerError> {
        Self::bind_with_registry(config, tls, handler, ConnectionRegistry::new()).await
    }

    /// Like [`MqttServer::bind`], sharing `registry` with other listeners (e.g. a
    /// plain and a TLS one): a device is one connection, whichever port it uses, and
    /// the application reaches it through the one registry.
    pub async fn bind_with_registry(
        config: MqttServerConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: Arc<dyn EdgeHandler>,
        registry: ConnectionRegistry,
    ) -> Result<MqttServer, ServerError> {
        config.validate()?;
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.bind_addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.bind_addr,
            source,
        })?;
        let ctx = Arc::new(ServerContext {
            handler,
            registry: registry.clone(),
            config,
        });
        let (stop, stop_rx) = watch::channel(false);
        let acceptor = tls.map(TlsAcceptor::from);
        tracing::info!(%local_addr, tls = acceptor.is_some(), "MQTT server listening");
        let accept_task = tokio::spawn(accept_loop(listener, acceptor, ctx, stop_rx));
        Ok(MqttServer {
            local_addr,
            registry,
            stop,
            accept_task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The handle through which the application reaches connected devices.
    pub fn registry(&self) -> ConnectionRegistry {
        self.registry.clone()
    }

    /// Stop accepting and disconnect every device (MQTT 5: reason 0x8B).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept_task.await;
        self.registry
            .disconnect_all(DisconnectReason::ServerShuttingDown);
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    ctx: Arc<ServerContext>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer_addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // E.g. out of file descriptors: back off briefly, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(handle_connection(
            tcp,
            peer_addr,
            acceptor.clone(),
            ctx.clone(),
        ));
    }
}

async fn handle_connection(
    tcp: TcpStream,
    peer_addr: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    ctx: Arc<ServerContext>,
) {
    let deadline = Instant::now() + ctx.config.connect_timeout();
    match acceptor {
        None => connection::serve(tcp, peer_addr, None, deadline, ctx).await,
        Some(acceptor) => {
            let tls = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer_addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer_addr, "TLS handshake timed out");
                    return;
                }
            };
            let client_certificate = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| cert.as_ref().to_vec());
            connection::serve(tls, peer_addr, client_certificate, deadline, ctx).await
        }
    }
}
