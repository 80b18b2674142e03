//! Lets a restarted node end its peers' connections to its previous incarnation at
//! once, instead of leaving them to wait for the idle timeout.
//!
//! A QUIC endpoint that receives a packet for a connection it does not know answers
//! with a *stateless reset*: a packet ending in a token that only the endpoint which
//! issued the connection id can compute, `HMAC(reset key, connection id)`; the peer
//! recognizes it and drops the connection. quinn draws both the reset key and the key
//! its connection ids are checked with at random per endpoint, so after a restart a
//! node would ignore its peers' packets as carrying unknown ids, and could not produce
//! a token they accept anyway. Both keys are derived here from the node's private key
//! instead: stable across restarts, secret, and different for every node.

use std::sync::Arc;

use quinn::EndpointConfig;
use quinn_proto::HashedConnectionIdGenerator;
use ring::hmac;

/// An endpoint configuration whose stateless-reset and connection-id keys derive from
/// `seed` (secret, stable across restarts of the node).
pub(crate) fn endpoint_config(seed: &[u8; 32]) -> EndpointConfig {
    let master = hmac::Key::new(hmac::HMAC_SHA256, seed);
    let reset_key = hmac::Key::new(
        hmac::HMAC_SHA256,
        hmac::sign(&master, b"stateless reset").as_ref(),
    );
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&hmac::sign(&master, b"connection id").as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);

    let mut config = EndpointConfig::new(Arc::new(reset_key));
    config.cid_generator(move || Box::new(HashedConnectionIdGenerator::from_key(cid_key)));
    config
}
