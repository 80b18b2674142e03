//! Bearer-token authentication and role checks.
//!
//! A token reads `dpl_<id>_<secret>`. The node stores the token's record (tenant,
//! roles) under `<id>` with only a SHA-256 digest of `<secret>`; a request is
//! authenticated by looking the id up and comparing digests in constant time. Every
//! lookup reads the store, so a revoked token stops working at once.

use super::api_error::{ApiError, ApiResult};
use super::AppState;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, StatusCode};
use doppel_twins::codec::decode;
use doppel_twins::keys::{self, Family, MetaKind, SYSTEM_TENANT};
use doppel_twins::{Role, StateRead, TokenRecord};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: TokenRecord,
}

impl Caller {
    pub fn tenant(&self) -> &str {
        &self.token.tenant
    }

    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.token.allows(role) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "token '{}' lacks the {role:?} role this operation needs",
                    self.token.id
                )
                .to_lowercase(),
            ))
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
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

pub fn authenticate(state: &dyn StateRead, header_value: Option<&str>) -> ApiResult<Caller> {
    let value = header_value.ok_or_else(|| {
        unauthorized("missing Authorization header; send 'Authorization: Bearer <token>'")
    })?;
    let token = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| unauthorized("the Authorization header must read 'Bearer <token>'"))?
        .trim();
    let mut parts = token.splitn(3, '_');
    let (Some("dpl"), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(unauthorized(
            "malformed token; doppel tokens look like dpl_<id>_<secret>",
        ));
    };
    let record = state
        .get(
            Family::Meta,
            &keys::meta(SYSTEM_TENANT, MetaKind::Token, id),
        )
        .map_err(ApiError::from)?
        .ok_or_else(|| unauthorized("unknown or revoked token"))?;
    let record: TokenRecord =
        decode("token", &record).map_err(|e| ApiError::internal(e.to_string()))?;
    if !constant_time_eq(
        sha256_hex(secret.as_bytes()).as_bytes(),
        record.secret_sha256.as_bytes(),
    ) {
        return Err(unauthorized("unknown or revoked token"));
    }
    Ok(Caller { token: record })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Already authenticated by the cluster routing middleware for this request.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| {
                v.to_str()
                    .map_err(|_| unauthorized("the Authorization header is not valid text"))
            })
            .transpose()?;
        authenticate(&state.storage, header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_twins::codec::encode;
    use doppel_twins::MemState;

    #[test]
    fn minted_token_authenticates_and_tampered_one_does_not() {
        let (rec, secret) = mint_token("default", "t", vec![Role::Reader], "now");
        let mut st = MemState::default();
        st.data.insert(
            (
                Family::Meta,
                keys::meta(SYSTEM_TENANT, MetaKind::Token, &rec.id),
            ),
            encode(&rec),
        );
        let ok = authenticate(&st, Some(&format!("Bearer {secret}"))).unwrap();
        assert_eq!(ok.tenant(), "default");
        assert!(ok.require(Role::Reader).is_ok());
        assert_eq!(
            ok.require(Role::Writer).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let mut bad = secret.clone();
        bad.pop();
        bad.push('x');
        assert_eq!(
            authenticate(&st, Some(&format!("Bearer {bad}")))
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            authenticate(&st, None).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            authenticate(&st, Some("Basic abc")).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            authenticate(&st, Some("Bearer nope")).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }
}
