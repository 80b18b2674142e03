//! Bearer-token authentication of HTTP requests and role checks (tokens themselves:
//! [`crate::tokens`]).

use super::api_error::{ApiError, ApiResult};
use crate::node::Node;
use crate::tokens::{self, TokenError};
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use doppel_twins::ErrorCode;
use doppel_twins::{Role, StateRead, TokenRecord};

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
                ErrorCode::Forbidden,
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
    ApiError::new(ErrorCode::Unauthorized, message)
}

pub fn authenticate(state: &dyn StateRead, header_value: Option<&str>) -> ApiResult<Caller> {
    let value = header_value.ok_or_else(|| {
        unauthorized("missing Authorization header; send 'Authorization: Bearer <token>'")
    })?;
    let token = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| unauthorized("the Authorization header must read 'Bearer <token>'"))?
        .trim();
    let record = tokens::verify(state, token).map_err(|e| match e {
        TokenError::Storage(m) => ApiError::internal(m),
        e => unauthorized(&e.to_string()),
    })?;
    Ok(Caller { token: record })
}

impl FromRequestParts<Node> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Node) -> Result<Self, Self::Rejection> {
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
    use crate::tokens::mint_token;
    use axum::http::StatusCode;
    use doppel_twins::codec::encode;
    use doppel_twins::keys::{self, Family, MetaKind, SYSTEM_TENANT};
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
