//! TLS for the REST API: rustls with the ring provider only.
//!
//! Configs are always built with `builder_with_provider`: if two crypto providers end
//! up linked, rustls' implicit `builder()` panics.

use std::path::Path;
use std::sync::Arc;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide default provider (reqwest's client needs one). Safe to
/// call more than once.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTPS listener's config (ALPN http/1.1).
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut config = base_server_config(cert, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The MQTT-over-TLS listener's config: the same certificate, no ALPN (MQTT clients
/// such as Azure's device SDK offer their own protocol names or none).
pub fn mqtt_server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    Ok(Arc::new(base_server_config(cert, key)?))
}

fn base_server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert)
            .map_err(|e| anyhow::anyhow!("tls_cert {}: {e}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| anyhow::anyhow!("tls_cert {}: not PEM certificates: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("tls_cert {}: holds no certificate", cert.display());
    }
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).map_err(|e| anyhow::anyhow!("tls_key {}: {e}", key.display()))?,
    ))
    .map_err(|e| anyhow::anyhow!("tls_key {}: {e}", key.display()))?
    .ok_or_else(|| anyhow::anyhow!("tls_key {}: holds no private key", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("tls_cert/tls_key do not form a usable pair: {e}"))?;
    Ok(config)
}
