//! Relationships, specified through the state machine: declared by the source's
//! model (name, target model or one extending it, properties, maxMultiplicity), kept
//! with their incoming-index entry on the source's shard, guarded by etags, and
//! never renamed.

mod common;

use common::*;
use doppel_twins::keys::{self, Family};
use doppel_twins::{Command, Condition, Outcome};
use serde_json::json;

/// The incoming-relationship index entry; it lives on the shard of the *source*.
fn rel_in_key(target: &str, source: &str, rel: &str) -> Vec<u8> {
    keys::rel_in(
        keys::shard_of(TENANT, source, SHARDS),
        TENANT,
        target,
        source,
        rel,
    )
}

#[test]
fn relationship_is_created_with_its_incoming_index_on_the_source_shard() {
    let mut w = plant();
    let source_shard = keys::shard_of(TENANT, "d1", SHARDS);
    let target = (0..)
        .map(|i| format!("line-{i}"))
        .find(|t| keys::shard_of(TENANT, t, SHARDS) != source_shard)
        .unwrap();
    w.create(&target, LINE, json!({}));
    let out = w
        .relate(
            "d1",
            "r1",
            rel_body(&target, "feeds", json!({"since": "2024-01-01T00:00:00Z"})),
        )
        .unwrap();
    let Outcome::Relationship { rel, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        (rel.source.as_str(), rel.target.as_str(), rel.name.as_str()),
        ("d1", target.as_str(), "feeds")
    );
    assert_eq!(rel.properties["since"], json!("2024-01-01T00:00:00Z"));
    assert_eq!(rel.to_json()["$targetId"], json!(target));
    assert_eq!(
        doppel_twins::load_relationship(&w.mem, SHARDS, TENANT, "d1", "r1").unwrap(),
        Some(rel)
    );
    assert!(w.exists(
        Family::RelOut,
        &keys::rel_out(source_shard, TENANT, "d1", "r1")
    ));
    assert!(w.exists(Family::RelIn, &rel_in_key(&target, "d1", "r1")));
    // …and nowhere else.
    assert_eq!(w.keys_under(Family::RelIn, b"").len(), 1);
    assert_eq!(w.keys_under(Family::RelOut, b"").len(), 1);
}

#[test]
fn relationship_name_must_be_declared_by_the_source_model() {
    let mut w = plant();
    let e = w
        .relate("d1", "r1", rel_body("l1", "owns", json!({})))
        .unwrap_err();
    assert_eq!(e.code(), "ValidationFailed");
    assert!(e.to_string().contains("owns"), "{e}");
    // A property name is not a relationship name.
    assert_eq!(
        code(w.relate("d1", "r1", rel_body("l1", "serial", json!({})))),
        "ValidationFailed"
    );
    assert_eq!(
        code(w.relate("d1", "r1", json!({"$targetId": "l1"}))),
        "InvalidArgument"
    );
    assert_eq!(
        code(w.relate("d1", "r1", json!({"$relationshipName": "feeds"}))),
        "InvalidArgument"
    );
    assert_eq!(
        code(w.relate("nope", "r1", rel_body("l1", "feeds", json!({})))),
        "DigitalTwinNotFound"
    );
    assert_eq!(
        code(w.relate(
            "d1",
            "r1",
            json!({"$targetId": "l1", "$relationshipName": "feeds", "$sourceId": "other"})
        )),
        "InvalidArgument"
    );
}

#[test]
fn relationship_target_must_exist() {
    let mut w = plant();
    let e = w
        .relate("d1", "r1", rel_body("ghost", "feeds", json!({})))
        .unwrap_err();
    assert_eq!(e.code(), "ValidationFailed");
    assert!(e.to_string().contains("ghost"), "{e}");
    assert_eq!(
        code(w.relate("d1", "r1", rel_body("a/b", "near", json!({})))),
        "InvalidArgument"
    );
}

#[test]
fn relationship_target_model_must_be_or_extend_the_declared_target() {
    let mut w = plant();
    w.create("s1", SENSOR, json!({}));
    let e = w
        .relate("d1", "r1", rel_body("s1", "feeds", json!({})))
        .unwrap_err();
    assert_eq!(e.code(), "ValidationFailed");
    assert!(e.to_string().contains(LINE), "{e}");
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    w.relate("d1", "r2", rel_body("a1", "feeds", json!({})))
        .unwrap();
    // A relationship without a declared target may point at anything.
    w.relate("d1", "r3", rel_body("s1", "near", json!({})))
        .unwrap();
}

#[test]
fn relationship_properties_are_validated() {
    let mut w = plant();
    let e = w
        .relate(
            "d1",
            "r1",
            rel_body("l1", "feeds", json!({"since": "yesterday"})),
        )
        .unwrap_err();
    assert_eq!(e.code(), "ValidationFailed");
    assert!(e.to_string().contains("/since"), "{e}");
    let e = w
        .relate("d1", "r1", rel_body("l1", "feeds", json!({"weight": 1})))
        .unwrap_err();
    assert_eq!(e.code(), "ValidationFailed");
    assert!(e.to_string().contains("weight"), "{e}");
    assert_eq!(
        code(w.relate("d1", "r1", rel_body("l1", "feeds", json!({"$bogus": 1})))),
        "InvalidArgument"
    );
}

#[test]
fn relationship_max_multiplicity_is_enforced() {
    let mut w = plant();
    w.create("l2", LINE, json!({}));
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    w.relate("d1", "r2", rel_body("l2", "feeds", json!({})))
        .unwrap();
    let e = w
        .relate("d1", "r3", rel_body("a1", "feeds", json!({})))
        .unwrap_err();
    assert_eq!(e.code(), "ValidationFailed");
    assert!(e.to_string().contains("maxMultiplicity"), "{e}");
    // Replacing an existing relationship does not count it twice.
    w.relate(
        "d1",
        "r2",
        rel_body("a1", "feeds", json!({"since": "2024-02-02T00:00:00Z"})),
    )
    .unwrap();
    // Other relationship names do not count.
    for i in 0..5 {
        w.relate("d1", &format!("n{i}"), rel_body("l1", "near", json!({})))
            .unwrap();
    }
    // Deleting one frees a slot.
    w.delete_rel("d1", "r1").unwrap();
    w.relate("d1", "r3", rel_body("l1", "feeds", json!({})))
        .unwrap();
}

#[test]
fn relationship_name_cannot_change_on_replace() {
    let mut w = plant();
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    assert_eq!(
        code(w.relate("d1", "r1", rel_body("l1", "near", json!({})))),
        "InvalidArgument"
    );
}

#[test]
fn relationship_retarget_moves_the_incoming_index() {
    let mut w = plant();
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    w.relate("d1", "r1", rel_body("a1", "feeds", json!({})))
        .unwrap();
    assert!(!w.exists(Family::RelIn, &rel_in_key("l1", "d1", "r1")));
    assert!(w.exists(Family::RelIn, &rel_in_key("a1", "d1", "r1")));
    // The old target is free to go; the new one is not.
    w.delete_twin("l1").unwrap();
    assert_eq!(code(w.delete_twin("a1")), "DigitalTwinHasRelationships");
    // Replacing with the same target keeps the index.
    w.relate("d1", "r1", rel_body("a1", "feeds", json!({})))
        .unwrap();
    assert!(w.exists(Family::RelIn, &rel_in_key("a1", "d1", "r1")));
}

#[test]
fn relationship_delete_removes_both_records() {
    let mut w = plant();
    w.relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap();
    w.delete_rel("d1", "r1").unwrap();
    assert!(!w.exists(Family::RelIn, &rel_in_key("l1", "d1", "r1")));
    assert!(
        doppel_twins::load_relationship(&w.mem, SHARDS, TENANT, "d1", "r1")
            .unwrap()
            .is_none()
    );
    assert_eq!(code(w.delete_rel("d1", "r1")), "RelationshipNotFound");
}

#[test]
fn relationship_conditions_follow_etags() {
    let mut w = plant();
    let Outcome::Relationship { rel, .. } = w
        .relate("d1", "r1", rel_body("l1", "feeds", json!({})))
        .unwrap()
    else {
        panic!()
    };
    let mut cmd = put_rel(TENANT, "d1", "r1", rel_body("l1", "feeds", json!({})));
    if let Command::PutRelationship { condition, .. } = &mut cmd {
        *condition = Condition::IfNoneMatchAny;
    }
    w.err(cmd, "PreconditionFailed");
    w.err(
        Command::DeleteRelationship {
            tenant: TENANT.into(),
            source: "d1".into(),
            rel_id: "r1".into(),
            condition: Condition::IfMatch("W/\"stale\"".into()),
        },
        "PreconditionFailed",
    );
    w.ok(Command::DeleteRelationship {
        tenant: TENANT.into(),
        source: "d1".into(),
        rel_id: "r1".into(),
        condition: Condition::IfMatch(rel.etag),
    });
}

#[test]
fn relationship_create_with_if_match_fails_and_if_none_match_succeeds() {
    let mut w = plant();
    let with = |condition: Condition| Command::PutRelationship {
        tenant: TENANT.into(),
        source: "d1".into(),
        rel_id: "r1".into(),
        body: rel_body("l1", "feeds", json!({})),
        condition,
    };
    w.err_no_writes(with(Condition::IfMatch("*".into())), "PreconditionFailed");
    w.ok(with(Condition::IfNoneMatchAny));
    w.ok(with(Condition::IfMatch("*".into())));
}
