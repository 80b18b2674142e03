//! The storage keyspace of twin state: column families and key encodings.
//!
//! Every key starts with `shard_id (u32 BE)` then the tenant, so that one shard is one
//! contiguous range and one tenant of one shard is a contiguous sub-range:
//!
//! ```text
//! twins       shard | tenant \0 | twin_id                          -> Twin record
//! rel_out     shard | tenant \0 | source \0 | rel_id                -> Relationship record
//! rel_in      shard | tenant \0 | target \0 | source \0 | rel_id    -> ()   (on the SOURCE's shard)
//! telemetry   shard | tenant \0 | twin \0 | name \0 | ts_ms (u64 BE) | seq (u32 BE) -> value
//! devices     shard | tenant \0 | twin_id                          -> Device record (the twin's device)
//! meta        META  | tenant \0 | kind \0 | id                     -> tenants, models, tokens, config
//! meta        shard | tenant \0 | model_use \0 | model \0 | twin   -> ()   (on the twin's shard)
//! ```
//!
//! Tenants, twin ids, relationship ids and telemetry names never contain `\0` (their
//! validation forbids control characters), so `\0` is an unambiguous separator and
//! prefix scans never bleed into a neighbour (`tenant\0` is not a prefix of `tenant2\0`).
//!
//! Models, tokens and tenants belong to the meta shard ([`META_SHARD`]); twins,
//! relationships, telemetry and devices to the data shard `shard_of(tenant, twin_id)`.
//!
//! **Shard-locality rule:** every key a command writes starts with the prefix of the
//! shard [`crate::Command::shard`] assigns the command to, so that a shard's Raft log
//! and its snapshot (the key range of its 4-byte prefix, in every family) hold all of
//! its state. Hence the two indexes that point across twins live with the twin whose
//! command writes them:
//! - `rel_in` is written by the relationship's command, which runs on the *source*'s
//!   shard: finding the relationships *into* a twin scans `rel_in_prefix(s, tenant,
//!   target)` for every data shard `s` in `0..shard_count`;
//! - `model_use` is written by twin commands, so it lives on the *twin*'s shard (in the
//!   `meta` family): "is model M in use" scans `model_use_prefix(s, tenant, M)` for
//!   every data shard `s`.
//!
//! Reading other shards while evaluating a command is fine (the shard leader
//! evaluates and replicates the resulting writes); only writes must stay in the shard.

/// The version of this key layout, stored with the data so that a node refuses a data
/// directory written with another layout.
///
/// - 1: `rel_in` on the *target* twin's shard; `model_use` under the meta shard
///   (`META | tenant \0 | model_use \0 | model \0 | twin`).
/// - 2: `rel_in` on the *source* twin's shard (`shard(source) | tenant \0 | target \0 |
///   source \0 | rel_id`); `model_use` on the twin's shard (`shard(twin) | tenant \0 |
///   model_use \0 | model \0 | twin`, meta family), so that every command writes only
///   keys of its own shard.
pub const LAYOUT_VERSION: u32 = 2;

/// The column families doppel's state lives in. Storage maps each to a RocksDB CF.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Family {
    Twins,
    RelOut,
    RelIn,
    Telemetry,
    Meta,
    Devices,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Twins,
        Family::RelOut,
        Family::RelIn,
        Family::Telemetry,
        Family::Meta,
        Family::Devices,
    ];

    /// The column family name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Family::Twins => "twins",
            Family::RelOut => "rel_out",
            Family::RelIn => "rel_in",
            Family::Telemetry => "telemetry",
            Family::Meta => "meta",
            Family::Devices => "devices",
        }
    }
}

/// The shard that holds tenant- and cluster-wide records (models, tokens, tenants).
pub const META_SHARD: u32 = u32::MAX;

/// The default number of data shards.
pub const DEFAULT_SHARD_COUNT: u32 = 64;

/// `shard = hash(tenant, twin id) mod shard_count`, with a hash that is stable across
/// builds, platforms and releases (FNV-1a 64): changing it would move every twin.
pub fn shard_of(tenant: &str, twin_id: &str, shard_count: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tenant.bytes().chain([0u8]).chain(twin_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(shard_count.max(1))) as u32
}

fn start(shard: u32, tenant: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + tenant.len() + 48);
    k.extend_from_slice(&shard.to_be_bytes());
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k
}

fn push(mut k: Vec<u8>, part: &str) -> Vec<u8> {
    k.extend_from_slice(part.as_bytes());
    k.push(0);
    k
}

/// All keys of one tenant within one shard (any family).
pub fn tenant_prefix(shard: u32, tenant: &str) -> Vec<u8> {
    start(shard, tenant)
}

pub fn twin(shard: u32, tenant: &str, twin_id: &str) -> Vec<u8> {
    let mut k = start(shard, tenant);
    k.extend_from_slice(twin_id.as_bytes());
    k
}

pub fn rel_out_prefix(shard: u32, tenant: &str, source: &str) -> Vec<u8> {
    push(start(shard, tenant), source)
}

pub fn rel_out(shard: u32, tenant: &str, source: &str, rel_id: &str) -> Vec<u8> {
    let mut k = rel_out_prefix(shard, tenant, source);
    k.extend_from_slice(rel_id.as_bytes());
    k
}

/// The `rel_in` entries of `target` held by data shard `shard` (the shard of their
/// sources): one data shard's part of the incoming relationships of `target`.
pub fn rel_in_prefix(shard: u32, tenant: &str, target: &str) -> Vec<u8> {
    push(start(shard, tenant), target)
}

/// The incoming-relationship index entry of `source`'s relationship `rel_id` to
/// `target`; `shard` is the shard of `source` (the shard that writes it).
pub fn rel_in(shard: u32, tenant: &str, target: &str, source: &str, rel_id: &str) -> Vec<u8> {
    let mut k = push(rel_in_prefix(shard, tenant, target), source);
    k.extend_from_slice(rel_id.as_bytes());
    k
}

/// Splits the `source \0 rel_id` tail of a `rel_in` key.
pub fn split_rel_in_tail(tail: &[u8]) -> Option<(String, String)> {
    let pos = tail.iter().position(|b| *b == 0)?;
    let source = std::str::from_utf8(&tail[..pos]).ok()?;
    let rel = std::str::from_utf8(&tail[pos + 1..]).ok()?;
    Some((source.to_owned(), rel.to_owned()))
}

pub fn telemetry_prefix(shard: u32, tenant: &str, twin_id: &str) -> Vec<u8> {
    push(start(shard, tenant), twin_id)
}

pub fn telemetry(
    shard: u32,
    tenant: &str,
    twin_id: &str,
    name: &str,
    ts_ms: u64,
    seq: u32,
) -> Vec<u8> {
    let mut k = push(telemetry_prefix(shard, tenant, twin_id), name);
    k.extend_from_slice(&ts_ms.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Kinds of records in the meta shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    Tenant,
    Model,
    Token,
    Config,
}

impl MetaKind {
    fn tag(self) -> &'static str {
        match self {
            MetaKind::Tenant => "tenant",
            MetaKind::Model => "model",
            MetaKind::Token => "token",
            MetaKind::Config => "config",
        }
    }
}

/// The kind tag of `model_use` records (meta family, data shards). Distinct from every
/// [`MetaKind`] tag, though those only occur under [`META_SHARD`] anyway.
const MODEL_USE_TAG: &str = "model_use";

pub fn meta_prefix(tenant: &str, kind: MetaKind) -> Vec<u8> {
    push(start(META_SHARD, tenant), kind.tag())
}

pub fn meta(tenant: &str, kind: MetaKind, id: &str) -> Vec<u8> {
    let mut k = meta_prefix(tenant, kind);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `model_use` records of data shard `shard`: which of its twins use `model` (to
/// refuse deleting a model in use). "Is the model in use" scans every data shard.
pub fn model_use_prefix(shard: u32, tenant: &str, model: &str) -> Vec<u8> {
    push(push(start(shard, tenant), MODEL_USE_TAG), model)
}

/// The record that twin `twin_id` (on data shard `shard`, its own) uses `model`;
/// family [`Family::Meta`].
pub fn model_use(shard: u32, tenant: &str, model: &str, twin_id: &str) -> Vec<u8> {
    let mut k = model_use_prefix(shard, tenant, model);
    k.extend_from_slice(twin_id.as_bytes());
    k
}

/// The kind tag of twin-deletion marks (meta family, data shards).
const TWIN_DELETING_TAG: &str = "twin_deleting";

/// The mark that the deletion of twin `twin_id` (on data shard `shard`, its own) has
/// begun: no relationship may start to target it. Family [`Family::Meta`].
pub fn twin_deleting(shard: u32, tenant: &str, twin_id: &str) -> Vec<u8> {
    let mut k = push(start(shard, tenant), TWIN_DELETING_TAG);
    k.extend_from_slice(twin_id.as_bytes());
    k
}

/// Node-wide records (the tenant list, the shard count) live under the empty tenant,
/// which no real tenant can be named.
pub const SYSTEM_TENANT: &str = "";

/// The smallest key strictly greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_hash_is_stable_and_in_range() {
        // Pinned values: changing the hash would silently move every stored twin.
        assert_eq!(
            shard_of("default", "pump-1", 64),
            shard_of("default", "pump-1", 64)
        );
        let a = shard_of("default", "pump-1", 64);
        assert!(a < 64);
        assert_eq!(shard_of("t", "x", 1), 0);
        let spread: std::collections::HashSet<u32> = (0..1000)
            .map(|i| shard_of("default", &format!("twin-{i}"), 64))
            .collect();
        assert!(
            spread.len() > 60,
            "hash spreads twins over shards: {}",
            spread.len()
        );
    }

    #[test]
    fn tenant_prefixes_do_not_overlap() {
        let a = twin(1, "acme", "x");
        let p = tenant_prefix(1, "acm");
        assert!(!a.starts_with(&p));
        assert!(a.starts_with(&tenant_prefix(1, "acme")));
    }

    #[test]
    fn rel_in_round_trip() {
        let p = rel_in_prefix(3, "t", "target");
        let k = rel_in(3, "t", "target", "src", "r1");
        assert_eq!(
            split_rel_in_tail(&k[p.len()..]),
            Some(("src".into(), "r1".into()))
        );
    }

    #[test]
    fn model_use_lives_on_the_given_data_shard() {
        let k = model_use(5, "t", "dtmi:x;1", "pump");
        assert!(k.starts_with(&5u32.to_be_bytes()));
        assert!(k.starts_with(&model_use_prefix(5, "t", "dtmi:x;1")));
        assert!(k.starts_with(&tenant_prefix(5, "t")));
        assert!(!k.starts_with(&model_use_prefix(5, "t", "dtmi:x;")));
        // Not confused with a meta-shard record of the same tenant.
        assert!(!k.starts_with(&start(META_SHARD, "t")));
    }

    #[test]
    fn prefix_end_is_exclusive_upper_bound() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }
}
