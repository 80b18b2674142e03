//! Tenants and API tokens.
//!
//! A token belongs to exactly one tenant and carries roles. Only a SHA-256 digest of
//! its secret is stored; the secret is shown once, when the token is created.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub name: String,
    pub created: String,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read models, twins and relationships.
    Reader,
    /// Reader, plus create/change/delete models, twins and relationships.
    Writer,
    /// Writer, plus manage its tenant's tokens.
    Admin,
    /// Manage tenants and tokens of any tenant (the node's first token has it).
    Operator,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub roles: Vec<Role>,
    /// Hex SHA-256 of the secret part of the token.
    pub secret_sha256: String,
    pub created: String,
}

impl TokenRecord {
    /// Whether the token's roles grant `needed` (roles are cumulative: admin ⊇ writer ⊇ reader).
    pub fn allows(&self, needed: Role) -> bool {
        self.roles.iter().any(|r| match needed {
            Role::Operator => *r == Role::Operator,
            _ => *r >= needed,
        })
    }

    /// The listing shape (never the digest).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "roles": self.roles,
            "created": self.created,
        })
    }
}
