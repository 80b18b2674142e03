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
/// such as Azure's device SDK offer their own protocol names or none), and an optional
/// client certificate: devices registered with an X.509 thumbprint present theirs,
/// and the device edge matches it at CONNECT ([`AnyClientCertificate`]).
pub fn mqtt_server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let verifier = Arc::new(AnyClientCertificate(provider()));
    Ok(Arc::new(server_config_with(cert, key, Some(verifier))?))
}

fn base_server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    server_config_with(cert, key, None)
}

/// Asks for, but does not require, a client certificate, and accepts any that proves
/// possession of its key (the TLS signature is checked): the identity is decided at
/// MQTT CONNECT by comparing the certificate's thumbprint with the device registry,
/// as Azure IoT Hub does for self-signed device certificates.
#[derive(Debug)]
pub struct AnyClientCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::server::danger::ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn server_config_with(
    cert: &Path,
    key: &Path,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> anyhow::Result<rustls::ServerConfig> {
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
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("tls_cert/tls_key do not form a usable pair: {e}"))?;
    Ok(config)
}
