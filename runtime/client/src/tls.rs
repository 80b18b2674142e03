//! The rustls configuration the client's HTTP connections use.
//!
//! Key item: [`client_tls_config`].
//!
//! Contract: the crypto provider is passed explicitly (ring) — never the process-wide
//! default, because `ClientConfig::builder()` panics when two providers are linked,
//! and reqwest (built without a provider) panics if it has to pick one itself. So a
//! config is always handed to reqwest, even for plain-http URLs, where it is never
//! used. The only trusted roots are the certificates in `--ca-cert`: a doppel node
//! normally runs with a self-signed certificate, not one from a public CA.

use crate::error::ClientError;
use rustls::pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;

/// A rustls client config trusting exactly the certificates in `ca_cert` (none if `None`).
pub fn client_tls_config(ca_cert: Option<&Path>) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_cert {
        for cert in read_pem_certs(path)? {
            roots.add(cert).map_err(|e| {
                ClientError::Usage(format!(
                    "--ca-cert {}: certificate rejected: {e}",
                    path.display()
                ))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Usage(format!("TLS set-up failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest leaves ALPN to a preconfigured config; offer both, the server picks.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// All certificates in a PEM file; an error if there are none.
fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let bad = |why: String| ClientError::Usage(format!("--ca-cert {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE blocks found".to_owned()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_ca_the_config_still_builds() {
        let config = client_tls_config(None).expect("config");
        assert_eq!(config.alpn_protocols.len(), 2);
    }

    #[test]
    fn a_file_without_certificates_is_a_usage_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a pem file\n").expect("write");
        let err = client_tls_config(Some(&file)).expect_err("no certs");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    }

    #[test]
    fn a_missing_file_is_a_usage_error() {
        let err = client_tls_config(Some(Path::new("/nonexistent/ca.pem"))).expect_err("missing");
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
