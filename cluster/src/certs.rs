//! The cluster's own certificate authority: the files every node needs to join the
//! mutually authenticated QUIC transport ([`crate::transport`]).
//!
//! Layout of a certificate directory (written by [`init_cluster`], extended by
//! [`add_node`]):
//!
//! ```text
//! ca.pem          the cluster CA certificate (the only trust root of every node)
//! ca.key          its private key (0600; only needed to sign certificates for new nodes)
//! node-{id}.pem   node `id`'s certificate, signed by the CA
//! node-{id}.key   its private key (0600)
//! ```
//!
//! Correctness contract — a node's identity is its certificate:
//! - every node certificate carries the DNS SAN (and CN) `doppel-node-{id}` and no other
//!   `doppel-node-*` name, so a peer's node id is read from the certificate it presented
//!   ([`node_id_of_cert`]) and a client dialing node `n` checks the server is valid for
//!   `doppel-node-{n}` (a node cannot pose as another);
//! - node certificates are valid for both TLS server and client authentication;
//! - node id 0 is reserved ([`ANY_NODE`]): it means "any node of this cluster" to
//!   the transport, so no certificate is ever issued for it;
//! - the CA is never silently replaced: that would orphan every issued certificate.
//!
//! Keys are ECDSA P-256 (rcgen with ring; nothing here links aws-lc-rs).

use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Datelike, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// Reserved node id meaning "whichever cluster node answers" (see the module docs).
pub const ANY_NODE: u64 = 0;

/// The prefix of the DNS SAN / CN naming a node: `doppel-node-{id}`.
pub const NODE_NAME_PREFIX: &str = "doppel-node-";

/// File name of the CA certificate in a certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key in a certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// The CA's subject: `CN=doppel cluster CA <random cluster id>, O=doppel`. Distinct per
/// cluster, so a certificate of another cluster fails as "unknown issuer". [`add_node`]
/// loads the issuer from `ca.pem` (rcgen reads its subject, key usages and key
/// identifier method) and the CA key, then verifies the new certificate against
/// `ca.pem`, so a mismatch cannot go unnoticed.
const CA_COMMON_NAME_PREFIX: &str = "doppel cluster CA";
const CA_ORGANIZATION: &str = "doppel";

const NODE_VALIDITY_YEARS: i32 = 10;
const CA_VALIDITY_YEARS: i32 = 20;

/// What a node certificate is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCertSpec {
    /// The node id (not 0, see [`ANY_NODE`]).
    pub id: u64,
    /// Extra names the node is reachable as: IP literals become IP SANs, anything else
    /// a DNS SAN. `localhost`, `127.0.0.1` and `doppel-node-{id}` are always added.
    pub hosts: Vec<String>,
}

/// Why a certificate directory could not be created, extended or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} already exists: refusing to replace the cluster CA (force it only to start a new \
         cluster; every node certificate must then be re-issued)",
        path.display()
    )]
    CaExists { path: PathBuf },
    #[error(
        "{}: no cluster CA here ({reason}); create one with `doppel cluster init`",
        path.display()
    )]
    CaMissing { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error("{}: the CA key does not sign for the CA certificate: {reason}", path.display())]
    CaMismatch { path: PathBuf, reason: String },
    #[error(
        "{} already exists: refusing to replace node {id}'s certificate (delete both \
         node-{id}.pem and node-{id}.key to re-issue it)",
        path.display()
    )]
    NodeExists { id: u64, path: PathBuf },
    #[error("node id 0 is reserved (it means \"any node\"); node ids start at 1")]
    ReservedNodeId,
    #[error("node {0} is listed more than once")]
    DuplicateNode(u64),
    #[error("no nodes given: a cluster needs at least one node certificate")]
    NoNodes,
    #[error("node {id}: host {host:?} is neither an IP address nor a valid DNS name")]
    BadHost { id: u64, host: String },
    #[error("node {id}: host {host:?} is another node's identity; a node may not carry it")]
    ForeignNodeName { id: u64, host: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

/// The DNS name (SAN and CN) of node `id`.
pub fn node_dns_name(id: u64) -> String {
    format!("{NODE_NAME_PREFIX}{id}")
}

/// File name of node `id`'s certificate.
pub fn node_cert_file(id: u64) -> String {
    format!("node-{id}.pem")
}

/// File name of node `id`'s private key.
pub fn node_key_file(id: u64) -> String {
    format!("node-{id}.key")
}

/// Creates the cluster CA in `dir` and a certificate for each node; returns the files
/// written (`ca.pem`, `ca.key`, then `node-{id}.pem`, `node-{id}.key` per node).
///
/// Refuses to replace an existing `ca.pem` / `ca.key` unless `force`.
pub fn init_cluster(
    dir: &Path,
    nodes: &[NodeCertSpec],
    force: bool,
) -> Result<Vec<PathBuf>, CertError> {
    if nodes.is_empty() {
        return Err(CertError::NoNodes);
    }
    let mut seen = HashSet::new();
    for spec in nodes {
        if !seen.insert(spec.id) {
            return Err(CertError::DuplicateNode(spec.id));
        }
        // Validate every spec before writing anything.
        node_params(spec)?;
    }
    let ca_cert_path = dir.join(CA_CERT_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);
    if !force {
        for path in [&ca_cert_path, &ca_key_path] {
            if path.exists() {
                return Err(CertError::CaExists { path: path.clone() });
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })?;

    let ca_key = KeyPair::generate().map_err(generate_err)?;
    let ca_name = format!("{CA_COMMON_NAME_PREFIX} {:016x}", rand::random::<u64>());
    let ca_params = ca_params(&ca_name);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut written = Vec::with_capacity(2 + 2 * nodes.len());
    // Key first: a CA certificate without its key would be useless for add_node.
    write_file(&ca_key_path, &issuer.key().serialize_pem(), true)?;
    write_file(&ca_cert_path, &ca_cert.pem(), false)?;
    written.push(ca_cert_path);
    written.push(ca_key_path);
    for spec in nodes {
        let (cert_path, key_path) = issue_node(dir, spec, &issuer)?;
        written.push(cert_path);
        written.push(key_path);
    }
    Ok(written)
}

/// Signs a certificate for a node joining later with the CA already in `dir`; returns
/// the path of the new `node-{id}.pem` (its key is written beside it).
///
/// Refuses to replace an existing certificate of the same node.
pub fn add_node(dir: &Path, spec: &NodeCertSpec) -> Result<PathBuf, CertError> {
    node_params(spec)?;
    let ca_cert_path = dir.join(CA_CERT_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);
    let ca_pem = std::fs::read_to_string(&ca_cert_path).map_err(|e| CertError::CaMissing {
        path: ca_cert_path.clone(),
        reason: e.to_string(),
    })?;
    let ca_der = first_cert(&ca_pem).map_err(|reason| CertError::BadFile {
        path: ca_cert_path.clone(),
        reason,
    })?;
    let key_pem = std::fs::read_to_string(&ca_key_path).map_err(|e| CertError::CaMissing {
        path: ca_key_path.clone(),
        reason: e.to_string(),
    })?;
    let ca_key = KeyPair::from_pem(&key_pem).map_err(|e| CertError::BadFile {
        path: ca_key_path.clone(),
        reason: format!("not a private key: {e}"),
    })?;
    for path in [
        dir.join(node_cert_file(spec.id)),
        dir.join(node_key_file(spec.id)),
    ] {
        if path.exists() {
            return Err(CertError::NodeExists { id: spec.id, path });
        }
    }

    let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key).map_err(|e| CertError::BadFile {
        path: ca_cert_path.clone(),
        reason: format!("not a usable CA certificate: {e}"),
    })?;
    let key = KeyPair::generate().map_err(generate_err)?;
    let cert = node_params(spec)?
        .signed_by(&key, &issuer)
        .map_err(generate_err)?;
    verify_node_cert(&ca_der, cert.der(), spec.id).map_err(|reason| CertError::CaMismatch {
        path: ca_key_path.clone(),
        reason,
    })?;
    let (cert_path, key_path) = (
        dir.join(node_cert_file(spec.id)),
        dir.join(node_key_file(spec.id)),
    );
    write_file(&key_path, &key.serialize_pem(), true)?;
    write_file(&cert_path, &cert.pem(), false)?;
    Ok(cert_path)
}

/// The node id a (CA-verified) node certificate names: its single `doppel-node-{id}`
/// DNS SAN. Errors if there is none, more than one, or the id is not a valid node id.
pub fn node_id_of_cert(cert: &CertificateDer<'_>) -> Result<u64, String> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    let mut found = None;
    for name in parsed.valid_dns_names() {
        let Some(suffix) = name.strip_prefix(NODE_NAME_PREFIX) else {
            continue;
        };
        let id = parse_node_id(suffix)
            .ok_or_else(|| format!("certificate names a malformed node identity {name:?}"))?;
        if found.is_some_and(|other| other != id) {
            return Err("certificate names more than one node identity".into());
        }
        found = Some(id);
    }
    found.ok_or_else(|| format!("certificate has no {NODE_NAME_PREFIX}<id> DNS name"))
}

/// Checks that `cert` is a certificate for node `id` issued by the CA `ca`, usable as
/// both TLS server and client certificate (what the transport will check at handshake).
pub fn verify_node_cert(
    ca: &CertificateDer<'_>,
    cert: &CertificateDer<'_>,
    id: u64,
) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone().into_owned())
        .map_err(|e| format!("the CA certificate is unusable: {e}"))?;
    let roots = Arc::new(roots);
    let now = UnixTime::now();
    let name = ServerName::try_from(node_dns_name(id)).map_err(|e| e.to_string())?;
    WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| e.to_string())?
        .verify_server_cert(cert, &[], &name, &[], now)
        .map_err(|e| format!("not a server certificate for {}: {e}", node_dns_name(id)))?;
    WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| e.to_string())?
        .verify_client_cert(cert, &[], now)
        .map_err(|e| format!("not a client certificate of this CA: {e}"))?;
    match node_id_of_cert(cert)? {
        found if found == id => Ok(()),
        found => Err(format!("certificate is node {found}'s, not node {id}'s")),
    }
}

/// Parses a node id as written in `doppel-node-{id}`: canonical decimal, not 0.
fn parse_node_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
        return None;
    }
    s.parse().ok().filter(|&id| id != ANY_NODE)
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    set_validity(&mut params, CA_VALIDITY_YEARS);
    params
}

fn node_params(spec: &NodeCertSpec) -> Result<CertificateParams, CertError> {
    if spec.id == ANY_NODE {
        return Err(CertError::ReservedNodeId);
    }
    let own_name = node_dns_name(spec.id);
    let mut sans: Vec<SanType> = Vec::new();
    let mut push = |san: SanType| {
        if !sans.contains(&san) {
            sans.push(san);
        }
    };
    let dns = |host: &str| {
        rcgen::string::Ia5String::try_from(host.to_string())
            .map(SanType::DnsName)
            .map_err(|_| CertError::BadHost {
                id: spec.id,
                host: host.to_string(),
            })
    };
    push(dns(&own_name)?);
    push(dns("localhost")?);
    push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    for host in &spec.hosts {
        let host = host.trim();
        if let Ok(ip) = host.parse::<IpAddr>() {
            push(SanType::IpAddress(ip));
            continue;
        }
        if !is_dns_name(host) {
            return Err(CertError::BadHost {
                id: spec.id,
                host: host.to_string(),
            });
        }
        let lower = host.to_ascii_lowercase();
        if lower.starts_with(NODE_NAME_PREFIX) && lower != own_name {
            return Err(CertError::ForeignNodeName {
                id: spec.id,
                host: host.to_string(),
            });
        }
        push(dns(&lower)?);
    }

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, own_name);
    dn.push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    set_validity(&mut params, NODE_VALIDITY_YEARS);
    Ok(params)
}

/// A hostname as RFC 1123 allows it (labels of letters, digits and inner hyphens).
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Valid from yesterday (tolerates clock skew between nodes) for `years` years.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let from = Utc::now() - chrono::Duration::days(1);
    // Day clamped to 28: the same day `years` later always exists.
    let (month, day) = (from.month() as u8, from.day().min(28) as u8);
    params.not_before = rcgen::date_time_ymd(from.year(), month, day);
    params.not_after = rcgen::date_time_ymd(from.year() + years, month, day);
}

/// A random positive 128-bit serial with a non-zero leading byte (minimal DER).
fn random_serial() -> [u8; 16] {
    let mut serial: [u8; 16] = rand::random();
    serial[0] = (serial[0] & 0x7f) | 0x40;
    serial
}

fn first_cert(pem: &str) -> Result<CertificateDer<'static>, String> {
    let mut reader = pem.as_bytes();
    let first = rustls_pemfile::certs(&mut reader).next();
    match first {
        Some(Ok(der)) => Ok(der),
        Some(Err(e)) => Err(format!("invalid PEM: {e}")),
        None => Err("no CERTIFICATE block".into()),
    }
}

fn generate_err(e: rcgen::Error) -> CertError {
    CertError::Generate(e.to_string())
}

/// Writes `contents` to `path` atomically (temporary file + rename); private files are
/// created with mode 0600 so a key is never readable by others, even briefly.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        {
            // `mode` only applies on creation; a stale temporary file keeps its mode.
            use std::os::unix::fs::PermissionsExt;
            let mode = if private { 0o600 } else { 0o644 };
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

fn issue_node(
    dir: &Path,
    spec: &NodeCertSpec,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(PathBuf, PathBuf), CertError> {
    let key = KeyPair::generate().map_err(generate_err)?;
    let cert = node_params(spec)?
        .signed_by(&key, issuer)
        .map_err(generate_err)?;
    let cert_path = dir.join(node_cert_file(spec.id));
    let key_path = dir.join(node_key_file(spec.id));
    write_file(&key_path, &key.serialize_pem(), true)?;
    write_file(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: u64, hosts: &[&str]) -> NodeCertSpec {
        NodeCertSpec {
            id,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    fn read_cert(path: &Path) -> CertificateDer<'static> {
        first_cert(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The common name in a certificate's subject.
    fn subject_common_name(cert: &CertificateDer<'_>) -> String {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert).unwrap();
        let cn = parsed
            .subject()
            .iter_common_name()
            .next()
            .expect("a common name");
        cn.as_str().unwrap().to_owned()
    }

    /// Whether `cert` (issued by `ca`) is valid for the server name `name`.
    fn valid_for(ca: &CertificateDer<'_>, cert: &CertificateDer<'_>, name: &str) -> bool {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned()).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn init_writes_the_ca_and_node_certificates_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let written = init_cluster(dir.path(), &[spec(1, &[]), spec(2, &[])], false).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "ca.pem",
                "ca.key",
                "node-1.pem",
                "node-1.key",
                "node-2.pem",
                "node-2.key"
            ]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |f: &str| {
                std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode("ca.key"), 0o600);
            assert_eq!(mode("node-1.key"), 0o600);
            assert_eq!(mode("node-2.key"), 0o600);
            assert_eq!(mode("ca.pem"), 0o644);
        }
        let ca = read_cert(&dir.path().join("ca.pem"));
        for id in [1, 2] {
            let cert = read_cert(&dir.path().join(node_cert_file(id)));
            verify_node_cert(&ca, &cert, id).unwrap();
            assert_eq!(node_id_of_cert(&cert), Ok(id));
        }
        let one = read_cert(&dir.path().join("node-1.pem"));
        assert!(verify_node_cert(&ca, &one, 2).is_err());
    }

    #[test]
    fn init_refuses_to_replace_a_ca_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(dir.path(), &[spec(1, &[])], false).unwrap();
        let before = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let err = init_cluster(dir.path(), &[spec(1, &[])], false).unwrap_err();
        assert!(matches!(&err, CertError::CaExists { path } if path.ends_with("ca.pem")));
        assert!(err.to_string().contains("ca.pem"), "{err}");
        assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), before);

        init_cluster(dir.path(), &[spec(1, &[])], true).unwrap();
        assert_ne!(std::fs::read(dir.path().join("ca.pem")).unwrap(), before);
    }

    #[test]
    fn a_node_certificate_covers_its_hosts_and_the_defaults_only() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = ["10.1.2.3", "Node1.Example.com", "::1"];
        init_cluster(dir.path(), &[spec(1, &hosts)], false).unwrap();
        let ca = read_cert(&dir.path().join("ca.pem"));
        let cert = read_cert(&dir.path().join("node-1.pem"));
        for name in [
            "doppel-node-1",
            "localhost",
            "127.0.0.1",
            "10.1.2.3",
            "node1.example.com",
            "::1",
        ] {
            assert!(valid_for(&ca, &cert, name), "{name}");
        }
        for name in ["doppel-node-2", "10.1.2.4", "example.com"] {
            assert!(!valid_for(&ca, &cert, name), "{name}");
        }
    }

    #[test]
    fn add_node_signs_with_the_existing_ca_and_keeps_existing_nodes() {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(dir.path(), &[spec(1, &[])], false).unwrap();
        let path = add_node(dir.path(), &spec(7, &["192.168.0.7"])).unwrap();
        assert!(path.ends_with("node-7.pem"));
        let ca = read_cert(&dir.path().join("ca.pem"));
        let cert = read_cert(&path);
        verify_node_cert(&ca, &cert, 7).unwrap();
        assert!(valid_for(&ca, &cert, "192.168.0.7"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dir.path().join("node-7.key")).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }

        let err = add_node(dir.path(), &spec(7, &[])).unwrap_err();
        assert!(matches!(err, CertError::NodeExists { id: 7, .. }), "{err}");
        let err = add_node(dir.path(), &spec(1, &[])).unwrap_err();
        assert!(matches!(err, CertError::NodeExists { id: 1, .. }), "{err}");
    }

    #[test]
    fn add_node_needs_the_ca_of_the_directory() {
        let empty = tempfile::tempdir().unwrap();
        let err = add_node(empty.path(), &spec(2, &[])).unwrap_err();
        assert!(matches!(&err, CertError::CaMissing { path, .. } if path.ends_with("ca.pem")));

        // A CA key that is not the CA certificate's: detected, nothing written.
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        init_cluster(one.path(), &[spec(1, &[])], false).unwrap();
        init_cluster(two.path(), &[spec(1, &[])], false).unwrap();
        std::fs::copy(two.path().join("ca.key"), one.path().join("ca.key")).unwrap();
        let err = add_node(one.path(), &spec(2, &[])).unwrap_err();
        assert!(matches!(err, CertError::CaMismatch { .. }), "{err}");
        assert!(!one.path().join("node-2.pem").exists());
    }

    #[test]
    fn add_node_signs_with_a_ca_whatever_its_subject() {
        // A CA made elsewhere (say, an operator's own tooling) with a subject of its own.
        let dir = tempfile::tempdir().unwrap();
        let mut params = ca_params("Acme Root");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "DE");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Acme");
        params
            .distinguished_name
            .push(DnType::CommonName, "Acme Root");
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("ca.key"), key.serialize_pem()).unwrap();

        let cert = add_node(dir.path(), &spec(3, &[])).unwrap();
        verify_node_cert(ca.der(), &read_cert(&cert), 3).unwrap();
    }

    #[test]
    fn add_node_refuses_a_ca_file_that_is_no_certificate() {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(dir.path(), &[spec(1, &[])], false).unwrap();
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        std::fs::write(dir.path().join("ca.pem"), garbage).unwrap();
        let err = add_node(dir.path(), &spec(2, &[])).unwrap_err();
        assert!(
            matches!(&err, CertError::BadFile { path, .. } if path.ends_with("ca.pem")),
            "{err}"
        );
        assert!(!dir.path().join("node-2.pem").exists());
    }

    #[test]
    fn bad_specs_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (vec![], "no nodes"),
            (vec![spec(0, &[])], "reserved"),
            (vec![spec(1, &[]), spec(1, &[])], "more than once"),
            (vec![spec(1, &["bad host!"])], "neither an IP"),
            (vec![spec(1, &[""])], "neither an IP"),
            (vec![spec(1, &["doppel-node-2"])], "another node"),
        ];
        for (specs, expected) in cases {
            let err = init_cluster(dir.path(), &specs, false).unwrap_err();
            assert!(err.to_string().contains(expected), "{err} / {expected}");
        }
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
        // A node may list its own name.
        init_cluster(dir.path(), &[spec(2, &["doppel-node-2"])], false).unwrap();
    }

    #[test]
    fn every_cluster_gets_its_own_ca_name() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        init_cluster(one.path(), &[spec(1, &[])], false).unwrap();
        init_cluster(two.path(), &[spec(1, &[])], false).unwrap();
        let name = |dir: &Path, file: &str| subject_common_name(&read_cert(&dir.join(file)));
        let ca_one = name(one.path(), "ca.pem");
        assert!(ca_one.starts_with(CA_COMMON_NAME_PREFIX), "{ca_one}");
        assert_ne!(ca_one, name(two.path(), "ca.pem"));
        assert_eq!(name(one.path(), "node-1.pem"), "doppel-node-1");
    }

    #[test]
    fn node_ids_are_read_in_canonical_form_only() {
        assert_eq!(parse_node_id("12"), Some(12));
        assert_eq!(parse_node_id("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "0", "007", "+1", "1a", "18446744073709551616"] {
            assert_eq!(parse_node_id(bad), None, "{bad}");
        }
    }
}
