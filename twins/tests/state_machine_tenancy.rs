//! Tenants and tokens, specified through the state machine: a token creates its
//! tenant, a token is revoked only within its tenant, tenants never see each other's
//! twins, models or relationships, and tenant names that could alias keys are refused.

mod common;

use common::*;
use doppel_twins::keys::{self, Family, MetaKind, SYSTEM_TENANT};
use doppel_twins::{Command, Condition, Outcome};
use serde_json::json;

// ---- tokens and tenants ---------------------------------------------------------

#[test]
fn put_token_creates_its_tenant() {
    let mut w = World::new();
    let out = w.ok(Command::PutToken {
        token: token("t1", "newco"),
    });
    assert_eq!(out, Outcome::Token(token("t1", "newco")));
    assert!(w.exists(
        Family::Meta,
        &keys::meta(SYSTEM_TENANT, MetaKind::Tenant, "newco")
    ));
    assert!(w.exists(
        Family::Meta,
        &keys::meta(SYSTEM_TENANT, MetaKind::Token, "t1")
    ));
    w.err_no_writes(
        Command::PutToken {
            token: token("t2", "Bad Tenant"),
        },
        "InvalidArgument",
    );
}

#[test]
fn ensure_tenant_is_idempotent_and_validates_the_name() {
    let mut w = World::new();
    w.ok(Command::EnsureTenant {
        tenant: "acme".into(),
    });
    let snapshot = w.mem.data.clone();
    let (r, writes) = w.run_with_writes(Command::EnsureTenant {
        tenant: "acme".into(),
    });
    r.unwrap();
    assert!(
        writes.is_empty(),
        "the tenant record keeps its creation time"
    );
    assert_eq!(w.mem.data, snapshot);
    for bad in ["", "Acme", "-x", "a/b", "a\0b"] {
        w.err_no_writes(
            Command::EnsureTenant { tenant: bad.into() },
            "InvalidArgument",
        );
    }
}

#[test]
fn revoke_token_only_within_its_tenant() {
    let mut w = World::new();
    w.ok(Command::PutToken {
        token: token("t1", "acme"),
    });
    w.ok(Command::PutToken {
        token: token("t2", "other"),
    });
    w.err_no_writes(
        Command::RevokeToken {
            tenant: "acme".into(),
            token_id: "t2".into(),
        },
        "TokenNotFound",
    );
    w.err_no_writes(
        Command::RevokeToken {
            tenant: "acme".into(),
            token_id: "nope".into(),
        },
        "TokenNotFound",
    );
    w.ok(Command::RevokeToken {
        tenant: "acme".into(),
        token_id: "t1".into(),
    });
    assert!(!w.exists(
        Family::Meta,
        &keys::meta(SYSTEM_TENANT, MetaKind::Token, "t1")
    ));
    assert!(w.exists(
        Family::Meta,
        &keys::meta(SYSTEM_TENANT, MetaKind::Token, "t2")
    ));
    w.err(
        Command::RevokeToken {
            tenant: "acme".into(),
            token_id: "t1".into(),
        },
        "TokenNotFound",
    );
}

// ---- isolation ------------------------------------------------------------------

#[test]
fn tenants_never_see_each_others_twins_models_or_relationships() {
    let mut w = World::with_models();
    w.ok(upload("beta", vec![line_model(), sensor_model()]));
    w.create("x", LINE, json!({"title": "acme's"}));
    w.ok(put_twin(
        "beta",
        "x",
        twin_body("x", SENSOR, json!({"kind": "beta's"})),
        Condition::Always,
    ));
    assert_eq!(w.twin_in(TENANT, "x").unwrap().model, LINE);
    assert_eq!(w.twin_in("beta", "x").unwrap().model, SENSOR);
    // beta never uploaded Device: its model registry is its own.
    w.err(
        put_twin(
            "beta",
            "d",
            twin_body("d", DEVICE, json!({})),
            Condition::Always,
        ),
        "ModelNotFound",
    );
    // A relationship in acme cannot target beta's twin; same id, other tenant's twin is
    // invisible.
    w.create("d1", DEVICE, json!({}));
    w.ok(put_twin(
        "beta",
        "only-beta",
        twin_body("only-beta", LINE, json!({})),
        Condition::Always,
    ));
    assert_eq!(
        code(w.relate("d1", "r", rel_body("only-beta", "feeds", json!({})))),
        "ValidationFailed"
    );
    // acme's "x" is a Line: the relationship lands on acme's twin.
    w.relate("d1", "r", rel_body("x", "feeds", json!({})))
        .unwrap();
    // Deleting beta's x is not blocked by acme's relationship, and leaves acme's x.
    w.ok(Command::DeleteTwin {
        tenant: "beta".into(),
        twin_id: "x".into(),
        condition: Condition::Always,
    });
    assert!(w.twin_in(TENANT, "x").is_some());
    // Models in use in one tenant can be deleted in the other.
    w.ok(Command::DeleteTwin {
        tenant: "beta".into(),
        twin_id: "only-beta".into(),
        condition: Condition::Always,
    });
    w.ok(Command::DeleteModel {
        tenant: "beta".into(),
        model: LINE.into(),
    });
    assert_eq!(code(w.run(delete_model(LINE))), "ModelInUse");
}

#[test]
fn tenant_names_that_could_alias_keys_are_refused() {
    // Keys are `tenant \0 …`: a tenant containing '\0' (or any non-tenant character)
    // could address another tenant's keys, so every tenant-scoped command refuses it.
    let mut w = World::with_models();
    w.create("d1", DEVICE, json!({}));
    let evil = format!("{TENANT}\0model");
    for cmd in [
        upload(&evil, vec![line_model()]),
        Command::DeleteModel {
            tenant: evil.clone(),
            model: LINE.into(),
        },
        Command::SetModelDecommissioned {
            tenant: evil.clone(),
            model: LINE.into(),
            decommissioned: true,
        },
        put_twin(
            &evil,
            "x",
            twin_body("x", LINE, json!({})),
            Condition::Always,
        ),
        Command::PatchTwin {
            tenant: evil.clone(),
            twin_id: "x".into(),
            patch: json!([]),
            condition: Condition::Always,
        },
        Command::DeleteTwin {
            tenant: evil.clone(),
            twin_id: "x".into(),
            condition: Condition::Always,
        },
        put_rel(&evil, "x", "r", rel_body("y", "feeds", json!({}))),
        Command::DeleteRelationship {
            tenant: evil.clone(),
            source: "x".into(),
            rel_id: "r".into(),
            condition: Condition::Always,
        },
        Command::RecordTelemetry {
            tenant: evil.clone(),
            twin_id: "x".into(),
            body: json!({"temp": 1.0}),
            source_time: None,
        },
        Command::RevokeToken {
            tenant: evil.clone(),
            token_id: "t".into(),
        },
        upload("", vec![line_model()]),
        put_twin("", "x", twin_body("x", LINE, json!({})), Condition::Always),
    ] {
        let shown = format!("{cmd:?}");
        let (r, writes) = w.run_with_writes(cmd);
        let e = r.expect_err(&shown);
        assert!(
            ["InvalidArgument", "TokenNotFound"].contains(&e.code().as_str()),
            "{shown}: {e}"
        );
        assert!(writes.is_empty(), "{shown}");
    }
}
