//! A node's TLS identity and the rustls configurations of the cluster transport.
//!
//! Key type: [`ClusterTls`], loaded from a certificate directory made by
//! [`crate::certs`]. It yields:
//! - a server config that *requires* a client certificate chaining to the cluster CA
//!   (the CA is the only root), so only cluster nodes can connect;
//! - a client config presenting the node's certificate and checking that the server
//!   is valid for `doppel-node-{peer}` — a node holding node 2's certificate cannot
//!   answer for node 3 ([`NodeServerVerifier`]).
//!
//! Both are TLS 1.3 only (QUIC requires it), built with the ring provider explicitly
//! (`builder_with_provider`), with session resumption off: a handshake happens once per
//! node pair, and every connection then carries the peer's full certificate, which is
//! where the peer's node id is read from.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{NodeId, TransportError};
use crate::certs::{self, ANY_NODE, CA_CERT_FILE};

/// ALPN of the cluster transport. Deliberately unversioned: the protocol version
/// travels in every frame, so mismatched nodes still connect and can say what they
/// speak instead of failing the handshake with an opaque ALPN error.
pub(crate) const ALPN: &[u8] = b"doppel-cluster";

/// A node's cluster identity: the CA it trusts, its certificate chain and key, and the
/// rustls configurations built from them (built at load, so a bad key or a certificate
/// from another CA is reported naming its file, before anything listens).
pub struct ClusterTls {
    node_id: NodeId,
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTls")
            .field("node_id", &self.node_id)
            .field("ca_certs", &self.ca.len())
            .field("chain_len", &self.chain.len())
            .field("key", &"[elided]")
            .finish()
    }
}

impl Clone for ClusterTls {
    fn clone(&self) -> Self {
        Self {
            node_id: self.node_id,
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            server: self.server.clone(),
            client: self.client.clone(),
        }
    }
}

impl ClusterTls {
    /// Reads `ca.pem`, `node-{id}.pem` and `node-{id}.key` from `dir` and checks that
    /// the certificate is node `node_id`'s, issued by that CA, and matches the key.
    pub fn load(dir: &Path, node_id: NodeId) -> Result<Self, TransportError> {
        let ca_path = dir.join(CA_CERT_FILE);
        let cert_path = dir.join(certs::node_cert_file(node_id));
        let key_path = dir.join(certs::node_key_file(node_id));
        if node_id == ANY_NODE {
            return Err(TransportError::Tls {
                file: cert_path,
                reason: "node id 0 is reserved; node ids start at 1".into(),
            });
        }
        let ca = read_certs(&ca_path)?;
        let chain = read_certs(&cert_path)?;
        let key = read_key(&key_path)?;
        // Usable if any CA certificate in ca.pem issued it (a CA rollover lists two).
        let mut why_not = String::new();
        let usable =
            ca.iter().any(
                |root| match certs::verify_node_cert(root, &chain[0], node_id) {
                    Ok(()) => true,
                    Err(reason) => {
                        why_not = reason;
                        false
                    }
                },
            );
        if !usable {
            return Err(TransportError::Tls {
                file: cert_path,
                reason: format!("not usable with {}: {why_not}", ca_path.display()),
            });
        }
        Self::build(node_id, ca, chain, key).map_err(|reason| TransportError::Tls {
            file: key_path,
            reason,
        })
    }

    /// Test support: trusts the CA in `ca_dir` but presents node `node_id`'s
    /// certificate from `cert_dir`, without checking they belong together (to play a
    /// node holding a certificate from another CA).
    #[cfg(test)]
    pub(crate) fn load_mismatched(
        ca_dir: &Path,
        cert_dir: &Path,
        node_id: NodeId,
    ) -> Result<Self, TransportError> {
        let ca = read_certs(&ca_dir.join(CA_CERT_FILE))?;
        let chain = read_certs(&cert_dir.join(certs::node_cert_file(node_id)))?;
        let key = read_key(&cert_dir.join(certs::node_key_file(node_id)))?;
        Self::build(node_id, ca, chain, key).map_err(TransportError::Config)
    }

    /// The node id the certificate belongs to.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Secret bytes for the QUIC stateless-reset key, derived from the node's private
    /// key: a restarted node derives the same key, so it can reset its peers' stale
    /// connections to its previous incarnation at once instead of after an idle timeout.
    pub(crate) fn reset_key_seed(&self) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.key.secret_der());
        let tag = ring::hmac::sign(&key, b"doppel cluster QUIC stateless reset v1");
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&tag.as_ref()[..32]);
        seed
    }

    fn build(
        node_id: NodeId,
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in &ca {
            roots
                .add(cert.clone())
                .map_err(|e| format!("unusable CA certificate: {e}"))?;
        }
        let roots = Arc::new(roots);

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| format!("client verifier: {e}"))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        server.max_early_data_size = 0;

        let server_verifier = NodeServerVerifier {
            inner: WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("server verifier: {e}"))?,
        };
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous() // only to wrap the webpki verifier; see NodeServerVerifier
            .with_custom_certificate_verifier(Arc::new(server_verifier))
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        client.resumption = rustls::client::Resumption::disabled();
        client.enable_early_data = false;

        Ok(Self {
            node_id,
            ca,
            chain,
            key,
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// The server name a client uses to dial node `peer` ([`ANY_NODE`] included).
pub(crate) fn server_name_for(peer: NodeId) -> String {
    certs::node_dns_name(peer)
}

/// The node id of the peer on an established connection, from its certificate.
pub(crate) fn peer_node_id(identity: Option<Box<dyn std::any::Any>>) -> Result<NodeId, String> {
    let certs = identity
        .ok_or("the peer presented no certificate")?
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| "the peer identity is not a certificate chain".to_string())?;
    let leaf = certs.first().ok_or("the peer presented no certificate")?;
    certs::node_id_of_cert(leaf)
}

/// rustls' webpki server verifier, plus one rule: the server name `doppel-node-0`
/// ([`ANY_NODE`]) accepts any node of the cluster. The certificate is then still
/// verified in full — chain to the cluster CA, validity, server usage — against the
/// node name the certificate itself carries. Any other name is verified unchanged.
#[derive(Debug)]
struct NodeServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for NodeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let any = ServerName::try_from(server_name_for(ANY_NODE))
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        if *server_name != any {
            return self.inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        let id = certs::node_id_of_cert(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        })?;
        let actual = ServerName::try_from(server_name_for(id))
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &actual, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let bad = |reason: String| TransportError::Tls {
        file: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    let bad = |reason: String| TransportError::Tls {
        file: PathBuf::from(path),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| bad(format!("invalid PEM: {e}")))?
        .ok_or_else(|| bad("no PRIVATE KEY in the file".into()))
}
