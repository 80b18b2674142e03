//! First start: create tenant `default` and an admin token, and leave the token where
//! the operator can find it (`<data-dir>/admin.token`, mode 0600).
//!
//! The file is written (and fsynced) *before* the token is committed: a crash between
//! the two leaves a file whose token does not work yet, and the next start, still
//! seeing no `default` tenant, mints a fresh one and overwrites the file. The reverse
//! order could commit a token nobody can ever read.

use crate::node::Node;
use crate::tokens::mint_token;
use doppel_twins::keys::{self, Family, MetaKind, SYSTEM_TENANT};
use doppel_twins::{Command, Role, StateRead};
use std::io::Write;

pub const ADMIN_TOKEN_FILE: &str = "admin.token";
pub const DEFAULT_TENANT: &str = "default";

pub async fn first_start(state: &Node) -> anyhow::Result<Option<String>> {
    let marker = keys::meta(SYSTEM_TENANT, MetaKind::Tenant, DEFAULT_TENANT);
    if state.storage.get(Family::Meta, &marker)?.is_some() {
        return Ok(None);
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (record, secret) = mint_token(
        DEFAULT_TENANT,
        "admin",
        vec![Role::Admin, Role::Operator],
        &now,
    );
    let path = state.config.data_dir.join(ADMIN_TOKEN_FILE);
    write_private(&path, &secret)?;
    state
        .proposer
        .propose(Command::PutToken { token: record })
        .await
        .map_err(|e| anyhow::anyhow!("creating the admin token: {e}"))?;
    Ok(Some(secret))
}

fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("token.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
