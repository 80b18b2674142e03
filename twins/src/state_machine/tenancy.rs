//! Tenants and API tokens: records of the meta shard, under the system tenant.
//!
//! Key types: [`TenantRecord`], [`TokenRecord`] (see `crate::tenancy`).
//!
//! Contract: a tenant exists once any token of it has been stored (`PutToken`
//! creates it; `EnsureTenant` is idempotent); a token can only be revoked within its
//! own tenant — a token of another tenant is reported as not found, so tenants cannot
//! learn each other's token ids.

use super::preconditions::check_id;
use crate::codec::{decode, encode};
use crate::command::{Outcome, Stamp};
use crate::error::TwinError;
use crate::ids;
use crate::keys::{self, Family, MetaKind, SYSTEM_TENANT};
use crate::store::{Overlay, StateRead};
use crate::tenancy::{TenantRecord, TokenRecord};

pub(super) fn ensure_tenant(
    out: &mut Overlay<'_>,
    tenant: &str,
    stamp: &Stamp,
) -> Result<(), TwinError> {
    check_id("tenant", tenant, ids::check_tenant)?;
    let key = keys::meta(SYSTEM_TENANT, MetaKind::Tenant, tenant);
    if out.get(Family::Meta, &key)?.is_none() {
        let rec = TenantRecord {
            name: tenant.to_owned(),
            created: stamp.now.clone(),
        };
        out.put(Family::Meta, key, encode(&rec));
    }
    Ok(())
}

pub(super) fn put_token(
    out: &mut Overlay<'_>,
    token: &TokenRecord,
    stamp: &Stamp,
) -> Result<Outcome, TwinError> {
    ensure_tenant(out, &token.tenant, stamp)?;
    out.put(
        Family::Meta,
        keys::meta(SYSTEM_TENANT, MetaKind::Token, &token.id),
        encode(token),
    );
    Ok(Outcome::Token(token.clone()))
}

pub(super) fn revoke_token(
    out: &mut Overlay<'_>,
    tenant: &str,
    token_id: &str,
) -> Result<Outcome, TwinError> {
    let key = keys::meta(SYSTEM_TENANT, MetaKind::Token, token_id);
    match out.get(Family::Meta, &key)? {
        Some(b) if decode::<TokenRecord>("token", &b)?.tenant == *tenant => {
            out.delete(Family::Meta, key);
            Ok(Outcome::Done)
        }
        _ => Err(TwinError::TokenNotFound {
            id: token_id.to_owned(),
        }),
    }
}
