//! The read façade over state written by the state machine itself.

use super::paging::{encode_token, FOREIGN_TOKEN};
use super::*;
use crate::command::{Command, Condition, Stamp};
use crate::devices::{DeviceSpec, DeviceStatus};
use crate::keys::Family;
use crate::state_machine::StateMachine;
use crate::store::{MemState, Overlay};
use crate::tenancy::Role;
use serde_json::{json, Value};

const SHARDS: u32 = 8;
const T: &str = "acme";
const BASE: &str = "dtmi:read:Base;1";
const MOTOR: &str = "dtmi:read:Motor;1";
const MACHINE: &str = "dtmi:read:Machine;1";
const LINE: &str = "dtmi:read:Line;1";

fn iface(id: &str, extra: Value) -> Value {
    let mut v = json!({"@context": "dtmi:dtdl:context;3", "@id": id, "@type": "Interface"});
    for (k, x) in extra.as_object().into_iter().flatten() {
        v[k] = x.clone();
    }
    v
}

/// A state machine and the state it wrote.
struct World {
    sm: StateMachine,
    mem: MemState,
    clock: u64,
}

impl World {
    fn new() -> Self {
        let mut w = World {
            sm: StateMachine::new(SHARDS),
            mem: MemState::default(),
            clock: 0,
        };
        for tenant in [T, "other"] {
            w.run(Command::UploadModels {
                tenant: tenant.into(),
                documents: vec![
                    iface(
                        BASE,
                        json!({"contents": [
                        {"@type": "Property", "name": "name", "schema": "string"}]}),
                    ),
                    iface(
                        MOTOR,
                        json!({"contents": [
                        {"@type": "Property", "name": "rpm", "schema": "integer"}]}),
                    ),
                    iface(LINE, json!({})),
                    iface(
                        MACHINE,
                        json!({"extends": BASE, "contents": [
                        {"@type": "Relationship", "name": "feeds", "target": LINE},
                        {"@type": "Relationship", "name": "near"},
                        {"@type": "Component", "name": "motor", "schema": MOTOR}]}),
                    ),
                ],
            });
        }
        w
    }

    #[track_caller]
    fn run(&mut self, cmd: Command) {
        self.clock += 1;
        let stamp = Stamp {
            now: format!("2024-05-01T00:00:{:02}Z", self.clock % 60),
            nonce: self.clock,
        };
        let writes = {
            let mut out = Overlay::new(&self.mem);
            if let Err(e) = self.sm.apply(&cmd, &stamp, &mut out) {
                panic!("{cmd:?} failed: {e}");
            }
            out.into_writes()
        };
        self.mem.apply(writes);
    }

    fn twin(&mut self, tenant: &str, id: &str, model: &str) {
        self.run(Command::PutTwin {
            tenant: tenant.into(),
            twin_id: id.into(),
            body: json!({"$metadata": {"$model": model}}),
            condition: Condition::Always,
        });
    }

    fn relate(&mut self, source: &str, rel_id: &str, target: &str, name: &str) {
        self.run(Command::PutRelationship {
            tenant: T.into(),
            source: source.into(),
            rel_id: rel_id.into(),
            body: json!({"$targetId": target, "$relationshipName": name}),
            condition: Condition::Always,
        });
    }

    fn reader(&self) -> Reader<'_> {
        Reader::new(&self.mem, SHARDS)
    }
}

/// Machines m00..m{n}, lines l00..l{n}, in tenant T; one twin of another tenant.
fn plant(n: usize) -> World {
    let mut w = World::new();
    for i in 0..n {
        w.twin(T, &format!("m{i:02}"), MACHINE);
        w.twin(T, &format!("l{i:02}"), LINE);
    }
    w.twin("other", "m00", MACHINE);
    w
}

/// Every item of a listing, page by page, checking that only the last page is short.
fn all_pages<T>(
    size: usize,
    list: impl Fn(Option<&str>, usize) -> Result<Page<T>, TwinError>,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = list(token.as_deref(), size).unwrap();
        assert!(page.items.len() <= size);
        if page.next.is_some() {
            assert_eq!(page.items.len(), size, "only the last page is short");
        }
        out.extend(page.items);
        match page.next {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

/// The same sequence whatever the page size; returns it.
fn same_for_every_page_size<T: PartialEq + std::fmt::Debug>(
    list: impl Fn(Option<&str>, usize) -> Result<Page<T>, TwinError>,
) -> Vec<T> {
    let whole = all_pages(10_000, &list);
    for size in [1, 2, 3, 7] {
        assert_eq!(all_pages(size, &list), whole, "page size {size}");
    }
    whole
}

fn ids<R>(items: &[R], id: impl Fn(&R) -> &str) -> Vec<String> {
    items.iter().map(|r| id(r).to_owned()).collect()
}

// ---- point reads --------------------------------------------------------------------

#[test]
fn point_reads_find_records_or_name_what_is_missing() {
    let mut w = plant(2);
    w.relate("m00", "r1", "l00", "feeds");
    w.run(Command::PutDevice {
        tenant: T.into(),
        device_id: "m01".into(),
        spec: DeviceSpec {
            status: Some(DeviceStatus::Enabled),
            status_reason: None,
            primary_key: None,
            secondary_key: None,
            x509_thumbprint: None,
            fresh_keys: ("a".repeat(24), "b".repeat(24)),
        },
        condition: Condition::Always,
    });
    let token = TokenRecord {
        id: "tok1".into(),
        tenant: T.into(),
        name: "ci".into(),
        roles: vec![Role::Reader],
        secret_sha256: "00".repeat(32),
        created: "2024-01-01T00:00:00Z".into(),
    };
    w.run(Command::PutToken {
        token: token.clone(),
    });
    let r = w.reader();

    assert_eq!(r.twin(T, "m00").unwrap().model, MACHINE);
    assert_eq!(r.find_twin(T, "nope").unwrap(), None);
    assert_eq!(r.twin(T, "nope").unwrap_err().code(), "DigitalTwinNotFound");
    // Tenants are separate.
    assert_eq!(
        r.twin("other", "m01").unwrap_err().code(),
        "DigitalTwinNotFound"
    );

    assert_eq!(r.relationship(T, "m00", "r1").unwrap().target, "l00");
    assert_eq!(
        r.relationship(T, "m00", "r2").unwrap_err().code(),
        "RelationshipNotFound"
    );
    // A missing source twin is the twin's 404, as the handler answered.
    assert_eq!(
        r.relationship(T, "ghost", "r1").unwrap_err().code(),
        "DigitalTwinNotFound"
    );

    assert_eq!(r.device(T, "m01").unwrap().status, DeviceStatus::Enabled);
    assert_eq!(r.device(T, "m00").unwrap_err().code(), "DeviceNotFound");

    assert_eq!(r.model(T, MACHINE).unwrap().id, MACHINE);
    assert_eq!(
        r.model(T, "dtmi:read:Nope;1").unwrap_err().code(),
        "ModelNotFound"
    );
    let machine = r.resolved_model(T, MACHINE).unwrap();
    assert!(machine.relationships.contains_key("feeds"));
    assert!(machine.is_or_extends(BASE));

    assert_eq!(r.token("tok1").unwrap(), token);
    assert_eq!(r.token("tok2").unwrap_err().code(), "TokenNotFound");
}

#[test]
fn a_corrupt_record_is_an_internal_error_not_a_panic() {
    let mut w = plant(1);
    let key = keys::twin(shard_of(T, "m00", SHARDS), T, "m00");
    w.mem
        .data
        .insert((Family::Twins, key), b"\x09garbage".to_vec());
    let r = w.reader();
    let e = r.twin(T, "m00").unwrap_err();
    assert_eq!(
        (e.code().as_str(), e.kind()),
        ("InternalServerError", crate::ErrorKind::Internal)
    );
    assert_eq!(
        r.twins(T, None, None, 10).unwrap_err().code(),
        "InternalServerError"
    );
}

// ---- listings ---------------------------------------------------------------------------

#[test]
fn twins_page_the_same_whatever_the_page_size_and_filter_by_model() {
    let w = plant(12);
    let r = w.reader();
    let all = same_for_every_page_size(|tok, n| r.twins(T, None, tok, n));
    assert_eq!(all.len(), 24);
    let mut names = ids(&all, |t| &t.id);
    names.sort();
    let mut want: Vec<String> = (0..12)
        .flat_map(|i| [format!("l{i:02}"), format!("m{i:02}")])
        .collect();
    want.sort();
    assert_eq!(
        names, want,
        "each twin of the tenant once, no other tenant's"
    );

    let machines = same_for_every_page_size(|tok, n| r.twins(T, Some(MACHINE), tok, n));
    assert_eq!(machines.len(), 12);
    assert!(machines.iter().all(|t| t.model == MACHINE));
    // A filter that matches nothing: one empty page.
    assert_eq!(
        r.twins(T, Some("dtmi:read:Nope;1"), None, 5).unwrap(),
        Page {
            items: vec![],
            next: None
        }
    );
}

#[test]
fn models_page_in_id_order_with_the_last_key_as_token() {
    let w = plant(0);
    let r = w.reader();
    let all = same_for_every_page_size(|tok, n| r.models(T, tok, n));
    assert_eq!(ids(&all, |m| &m.id), [BASE, LINE, MACHINE, MOTOR]);
    let first = r.models(T, None, 1).unwrap();
    assert_eq!(
        first.next,
        Some(encode_token(&keys::meta(T, MetaKind::Model, BASE))),
        "the token format clients already hold"
    );
    // Another tenant's token is not this listing's.
    let theirs = w.reader().models("other", None, 1).unwrap().next;
    let e = r.models(T, theirs.as_deref(), 1).unwrap_err();
    assert_eq!(e.to_string(), FOREIGN_TOKEN);
}

#[test]
fn dependencies_for_resolves_extends_and_components_once_each() {
    let w = plant(0);
    let r = w.reader();
    let got = ids(&r.dependencies_for(T, MACHINE).unwrap(), |m| &m.id);
    assert_eq!(got[0], MACHINE);
    let mut rest = got[1..].to_vec();
    rest.sort();
    assert_eq!(rest, [BASE, MOTOR]);
    let both = ids(
        &r.dependencies_for(T, &format!(" {MACHINE} ,{BASE},,{LINE}"))
            .unwrap(),
        |m| &m.id,
    );
    assert_eq!(both.len(), 4, "{both:?}");
    assert_eq!(both[..3], got[..]);
    assert_eq!(both[3], LINE);
    assert_eq!(
        r.dependencies_for(T, " , ").unwrap_err().code(),
        "InvalidArgument"
    );
    assert_eq!(
        r.dependencies_for(T, &format!("{BASE},dtmi:read:Nope;1"))
            .unwrap_err()
            .code(),
        "ModelNotFound"
    );
}

#[test]
fn outgoing_relationships_page_and_filter_by_name() {
    let mut w = plant(6);
    for i in 0..6 {
        w.relate("m00", &format!("f{i}"), &format!("l{i:02}"), "feeds");
        w.relate("m00", &format!("n{i}"), &format!("m{i:02}"), "near");
    }
    w.relate("m01", "x", "l00", "feeds");
    let r = w.reader();
    let all = same_for_every_page_size(|tok, n| r.outgoing_relationships(T, "m00", None, tok, n));
    assert_eq!(
        ids(&all, |r| &r.id),
        ["f0", "f1", "f2", "f3", "f4", "f5", "n0", "n1", "n2", "n3", "n4", "n5"]
    );
    let near =
        same_for_every_page_size(|tok, n| r.outgoing_relationships(T, "m00", Some("near"), tok, n));
    assert_eq!(ids(&near, |r| &r.id), ["n0", "n1", "n2", "n3", "n4", "n5"]);
    assert!(r
        .outgoing_relationships(T, "l00", None, None, 5)
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        r.outgoing_relationships(T, "ghost", None, None, 5)
            .unwrap_err()
            .code(),
        "DigitalTwinNotFound"
    );
    // m01's token is not m00's.
    let theirs = r.outgoing_relationships(T, "m01", None, None, 1).unwrap();
    assert_eq!(theirs.next, None);
    let page = r.outgoing_relationships(T, "m00", None, None, 1).unwrap();
    let e = r
        .outgoing_relationships(T, "m01", None, page.next.as_deref(), 1)
        .unwrap_err();
    assert_eq!(e.to_string(), FOREIGN_TOKEN);
}

#[test]
fn incoming_relationships_come_from_every_shard() {
    let mut w = plant(12);
    for i in 0..12 {
        w.relate(&format!("m{i:02}"), "feeds-l00", "l00", "feeds");
        w.relate(&format!("m{i:02}"), "near-l01", "l01", "near");
    }
    let r = w.reader();
    let sources: std::collections::HashSet<u32> = (0..12)
        .map(|i| shard_of(T, &format!("m{i:02}"), SHARDS))
        .collect();
    assert!(sources.len() > 3, "the sources are spread over shards");
    let all = same_for_every_page_size(|tok, n| r.incoming_relationships(T, "l00", tok, n));
    let mut got = ids(&all, |r| &r.source);
    got.sort();
    let want: Vec<String> = (0..12).map(|i| format!("m{i:02}")).collect();
    assert_eq!(got, want);
    assert!(all.iter().all(|r| r.target == "l00" && r.name == "feeds"));
    assert_eq!(
        r.incoming_relationships(T, "ghost", None, 5)
            .unwrap_err()
            .code(),
        "DigitalTwinNotFound"
    );
    // l01's token is not l00's; garbage is nobody's.
    let theirs = r.incoming_relationships(T, "l01", None, 1).unwrap().next;
    for token in [theirs.as_deref(), Some("@@@"), Some("AAA")] {
        let e = r.incoming_relationships(T, "l00", token, 1).unwrap_err();
        assert_eq!(
            (e.code().as_str(), e.to_string()),
            ("InvalidArgument", FOREIGN_TOKEN.into())
        );
    }
}

#[test]
fn devices_and_tokens_list_only_the_tenants_own() {
    let mut w = plant(5);
    for (tenant, id) in [(T, "m00"), (T, "m03"), (T, "l04"), ("other", "m00")] {
        w.run(Command::PutDevice {
            tenant: tenant.into(),
            device_id: id.into(),
            spec: DeviceSpec {
                status: None,
                status_reason: None,
                primary_key: None,
                secondary_key: None,
                x509_thumbprint: None,
                fresh_keys: ("a".repeat(24), "b".repeat(24)),
            },
            condition: Condition::Always,
        });
    }
    for (id, tenant) in [("t1", T), ("t2", "other"), ("t3", T)] {
        w.run(Command::PutToken {
            token: TokenRecord {
                id: id.into(),
                tenant: tenant.into(),
                name: id.into(),
                roles: vec![Role::Admin],
                secret_sha256: "00".repeat(32),
                created: "2024-01-01T00:00:00Z".into(),
            },
        });
    }
    let r = w.reader();
    let devices = same_for_every_page_size(|tok, n| r.devices(T, tok, n));
    let mut got = ids(&devices, |d| &d.id);
    got.sort();
    assert_eq!(got, ["l04", "m00", "m03"]);
    assert_eq!(ids(&r.tokens(T).unwrap(), |t| &t.id), ["t1", "t3"]);
    assert_eq!(ids(&r.tokens("other").unwrap(), |t| &t.id), ["t2"]);
    assert!(r.tokens("nobody").unwrap().is_empty());
}
