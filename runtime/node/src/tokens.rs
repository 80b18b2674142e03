//! API tokens: minting and verifying.
//!
//! A token reads `dpl_<id>_<secret>`. The node stores the token's record (tenant,
//! roles) under `<id>` with only a SHA-256 digest of `<secret>`; a token is verified by
//! looking the id up and comparing digests in constant time. Every lookup reads the
//! store, so a revoked token stops working at once.

use doppel_twins::{Role, StateRead, TokenRecord};
use rand::RngCore;

/// Why a presented token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token; doppel tokens look like dpl_<id>_<secret>")]
    Malformed,
    #[error("unknown or revoked token")]
    Unknown,
    #[error("tokens cannot be read: {0}")]
    Storage(String),
}

/// Lower-case hex of the SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new token: its stored record and the secret string to hand out once.
pub fn mint_token(tenant: &str, name: &str, roles: Vec<Role>, now: &str) -> (TokenRecord, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 24];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let record = TokenRecord {
        id: id.clone(),
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        roles,
        secret_sha256: sha256_hex(secret.as_bytes()),
        created: now.to_owned(),
    };
    (record, format!("dpl_{id}_{secret}"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The record of `token` (`dpl_<id>_<secret>`), if it is one this node issued and
/// nobody has revoked.
pub fn verify(state: &dyn StateRead, token: &str) -> Result<TokenRecord, TokenError> {
    let mut parts = token.splitn(3, '_');
    let (Some("dpl"), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let record = doppel_twins::read::Reader::new(state, 1)
        .token(id)
        .map_err(|e| match e {
            doppel_twins::TwinError::TokenNotFound { .. } => TokenError::Unknown,
            e => TokenError::Storage(e.to_string()),
        })?;
    if !constant_time_eq(
        sha256_hex(secret.as_bytes()).as_bytes(),
        record.secret_sha256.as_bytes(),
    ) {
        return Err(TokenError::Unknown);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_twins::codec::encode;
    use doppel_twins::keys::{self, Family, MetaKind, SYSTEM_TENANT};
    use doppel_twins::MemState;

    #[test]
    fn sha256_matches_the_standard_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn minted_token_verifies_and_tampered_one_does_not() {
        let (rec, secret) = mint_token("default", "t", vec![Role::Reader], "now");
        let mut st = MemState::default();
        st.data.insert(
            (
                Family::Meta,
                keys::meta(SYSTEM_TENANT, MetaKind::Token, &rec.id),
            ),
            encode(&rec),
        );
        assert_eq!(verify(&st, &secret).unwrap().tenant, "default");
        let mut bad = secret.clone();
        bad.pop();
        bad.push('x');
        assert!(matches!(verify(&st, &bad), Err(TokenError::Unknown)));
        assert!(matches!(verify(&st, "nope"), Err(TokenError::Malformed)));
        assert!(matches!(
            verify(&st, "dpl_0000_abc"),
            Err(TokenError::Unknown)
        ));
    }
}
