//! Shard locality: every key a command writes starts with the 4-byte prefix of the
//! shard `Command::shard` assigns the command to.
//!
//! Each data shard is its own Raft group whose log carries the writes its leader
//! evaluated, and a shard's snapshot is exactly the key range of its prefix; a write
//! outside that range would be replicated by the wrong group and lost from snapshots.
//! Reads of other shards while evaluating are fine. The cross-twin indexes follow from
//! this: `rel_in` lives on the relationship's *source* shard, `model_use` on the twin's
//! shard, and their readers look at every data shard.

mod common;

use common::*;
use doppel_twins::keys::{self, Family, META_SHARD};
use doppel_twins::{
    Command, Condition, DeviceSpec, DeviceStatus, Outcome, Role, TokenRecord, TwinError, Write,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Shows a key with its shard split off, for failure messages.
fn show(key: &[u8]) -> String {
    match key.split_first_chunk::<4>() {
        Some((shard, rest)) => format!(
            "shard {} | {:?}",
            u32::from_be_bytes(*shard),
            String::from_utf8_lossy(rest)
        ),
        None => format!("{key:?} (shorter than a shard prefix)"),
    }
}

/// Asserts every write of `cmd` stays in `cmd.shard(SHARDS)`; returns that shard.
#[track_caller]
fn assert_local(cmd: &Command, writes: &[Write]) -> u32 {
    let shard = cmd.shard(SHARDS);
    let prefix = shard.to_be_bytes();
    for w in writes {
        let (what, family, key) = match w {
            Write::Put { family, key, .. } => ("put", family, key),
            Write::Delete { family, key } => ("delete", family, key),
            Write::DeletePrefix { family, prefix } => ("prefix delete", family, prefix),
        };
        assert!(
            key.starts_with(&prefix),
            "{what} of {family:?} key [{}] by a command of shard {shard}: {cmd:?}",
            show(key)
        );
    }
    shard
}

/// A [`World`] that checks the writes of every command it applies (failed ones too,
/// though those are dropped) for shard locality.
struct Checked {
    w: World,
    /// Shards that received writes, and how many writes were checked.
    shards_written: BTreeSet<u32>,
    writes_checked: usize,
}

impl Checked {
    fn new() -> Self {
        Checked {
            w: World::new(),
            shards_written: BTreeSet::new(),
            writes_checked: 0,
        }
    }

    #[track_caller]
    fn run(&mut self, cmd: Command) -> Result<Outcome, TwinError> {
        let (r, writes) = self.w.run_with_writes(cmd.clone());
        let shard = assert_local(&cmd, &writes);
        if r.is_ok() && !writes.is_empty() {
            self.shards_written.insert(shard);
        }
        self.writes_checked += writes.len();
        r
    }

    #[track_caller]
    fn ok(&mut self, cmd: Command) -> Outcome {
        let shown = format!("{cmd:?}");
        self.run(cmd)
            .unwrap_or_else(|e| panic!("command failed: {e} [{}]\n{shown}", e.code()))
    }

    #[track_caller]
    fn err(&mut self, cmd: Command, code: &str) -> TwinError {
        let shown = format!("{cmd:?}");
        match self.run(cmd) {
            Ok(o) => panic!("expected {code}, got {o:?}\n{shown}"),
            Err(e) => {
                assert_eq!(e.code(), code, "{e}\n{shown}");
                e
            }
        }
    }
}

fn t(id: &str) -> String {
    id.to_owned()
}

fn put(id: &str, model: &str, props: Value) -> Command {
    put_twin(TENANT, id, twin_body(id, model, props), Condition::Always)
}

fn patch(id: &str, patch: Value) -> Command {
    Command::PatchTwin {
        tenant: t(TENANT),
        twin_id: t(id),
        patch,
        condition: Condition::Always,
    }
}

fn relate(source: &str, rel_id: &str, target: &str, name: &str) -> Command {
    put_rel(TENANT, source, rel_id, rel_body(target, name, json!({})))
}

fn unrelate(source: &str, rel_id: &str) -> Command {
    Command::DeleteRelationship {
        tenant: t(TENANT),
        source: t(source),
        rel_id: t(rel_id),
        condition: Condition::Always,
    }
}

fn delete_twin(id: &str) -> Command {
    Command::DeleteTwin {
        tenant: t(TENANT),
        twin_id: t(id),
        condition: Condition::Always,
    }
}

fn delete_model(model: &str) -> Command {
    Command::DeleteModel {
        tenant: t(TENANT),
        model: t(model),
    }
}

fn token(id: &str, tenant: &str) -> TokenRecord {
    TokenRecord {
        id: t(id),
        tenant: t(tenant),
        name: format!("{id} token"),
        roles: vec![Role::Writer],
        secret_sha256: "00".repeat(32),
        created: t("2024-01-01T00:00:00Z"),
    }
}

fn key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

fn put_device(id: &str, status: Option<DeviceStatus>) -> Command {
    Command::PutDevice {
        tenant: t(TENANT),
        device_id: t(id),
        spec: DeviceSpec {
            status,
            status_reason: None,
            primary_key: None,
            secondary_key: None,
            x509_thumbprint: None,
            fresh_keys: (key(1), key(2)),
        },
        condition: Condition::Always,
    }
}

fn shard(id: &str) -> u32 {
    keys::shard_of(TENANT, id, SHARDS)
}

/// `count` twin ids `{stem}-{i}`.
fn ids(stem: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{stem}-{i}")).collect()
}

/// Ids `{stem}-{i}`, the first found on each data shard: one per shard.
fn one_per_shard(stem: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    (0..)
        .map(|i| format!("{stem}-{i}"))
        .filter(|id| seen.insert(shard(id)))
        .take(SHARDS as usize)
        .collect()
}

#[test]
fn every_command_writes_only_keys_of_its_own_shard() {
    let mut c = Checked::new();

    // Tenants and tokens (meta shard).
    c.ok(Command::EnsureTenant { tenant: t(TENANT) });
    c.ok(Command::EnsureTenant { tenant: t("beta") });
    c.ok(Command::PutToken {
        token: token("tok-1", TENANT),
    });
    c.ok(Command::PutToken {
        token: token("tok-2", "gamma"),
    });
    c.ok(Command::RevokeToken {
        tenant: t(TENANT),
        token_id: t("tok-1"),
    });

    // Models (meta shard).
    c.ok(Command::UploadModels {
        tenant: t(TENANT),
        documents: models(),
    });
    c.ok(Command::UploadModels {
        tenant: t("beta"),
        documents: vec![line_model()],
    });
    c.ok(Command::SetModelDecommissioned {
        tenant: t("beta"),
        model: t(LINE),
        decommissioned: true,
    });

    // Twins, spread over the data shards.
    let devices = ids("dev", 12);
    let lines = ids("line", 6);
    let asms = ids("asm", 3);
    let sensors = ids("sen", 3);
    for d in &devices {
        c.ok(put(d, DEVICE, json!({"serial": format!("S-{d}")})));
    }
    for l in &lines {
        c.ok(put(l, LINE, json!({"title": l})));
    }
    for a in &asms {
        c.ok(put(a, ASSEMBLY_LINE, json!({"title": a, "stations": 3})));
    }
    for s in &sensors {
        c.ok(put(s, SENSOR, json!({"kind": "temp"})));
    }
    let twin_shards: BTreeSet<u32> = devices
        .iter()
        .chain(&lines)
        .chain(&asms)
        .chain(&sensors)
        .map(|id| shard(id))
        .collect();
    assert!(
        twin_shards.len() >= 4,
        "twins spread over shards: {twin_shards:?}"
    );

    // Relationships: devices feed lines and assembly lines, sit near sensors, and are
    // near each other in both directions.
    let mut rels: Vec<(String, String, String)> = Vec::new(); // (source, rel id, target)
    let n = devices.len();
    for (i, d) in devices.iter().enumerate() {
        let next = &devices[(i + 1) % n];
        for (rel_id, target, name) in [
            ("feeds-a", &lines[i % lines.len()], "feeds"),
            ("feeds-b", &asms[i % asms.len()], "feeds"),
            ("near-sensor", &sensors[i % sensors.len()], "near"),
            ("near-next", next, "near"),
        ] {
            c.ok(relate(d, rel_id, target, name));
            rels.push((d.clone(), t(rel_id), target.clone()));
        }
        // …and the reverse edge, from the next device back to this one.
        c.ok(relate(next, "near-prev", d, "near"));
        rels.push((next.clone(), t("near-prev"), d.clone()));
    }
    let crossing = rels
        .iter()
        .filter(|(s, _, tg)| shard(s) != shard(tg))
        .count();
    assert!(crossing >= 10, "relationships cross shards: {crossing}");
    let pair_crosses = devices
        .iter()
        .zip(devices.iter().cycle().skip(1))
        .any(|(a, b)| shard(a) != shard(b));
    assert!(
        pair_crosses,
        "some twin pair relates both ways across shards"
    );
    // A relationship replaced with the same target, then retargeted (moving its index).
    c.ok(relate(&devices[0], "feeds-a", &lines[0], "feeds"));
    let retarget = lines
        .iter()
        .find(|l| shard(l) != shard(&lines[0]))
        .expect("a line on another shard");
    c.ok(relate(&devices[0], "feeds-a", retarget, "feeds"));
    rels.retain(|(s, r, _)| !(s == &devices[0] && r == "feeds-a"));
    rels.push((devices[0].clone(), t("feeds-a"), retarget.clone()));

    // Patches, reported properties, connection state, telemetry.
    for d in &devices {
        c.ok(patch(
            d,
            json!([
                {"op": "add", "path": "/setPoint", "value": 21.5},
                {"op": "add", "path": "/mode", "value": "auto"},
                {"op": "add", "path": "/motor/limit", "value": 90}
            ]),
        ));
        c.ok(Command::ReportProperties {
            tenant: t(TENANT),
            twin_id: d.clone(),
            reported: json!({
                "setPoint": {"value": 21.5, "ac": 200, "av": 1, "ad": "ok"},
                "motor": {"__t": "c", "rpm": 1200}
            }),
        });
        c.ok(Command::SetConnection {
            tenant: t(TENANT),
            twin_id: d.clone(),
            connected: true,
            last_activity: None,
            node: None,
        });
        c.ok(Command::RecordTelemetry {
            tenant: t(TENANT),
            twin_id: d.clone(),
            body: json!({"temp": 20.5, "motor": {"vibration": 0.25}}),
            source_time: None,
        });
        c.ok(Command::SetConnection {
            tenant: t(TENANT),
            twin_id: d.clone(),
            connected: false,
            last_activity: Some(t("2024-05-01T00:00:00Z")),
            node: None,
        });
    }
    c.ok(patch(
        &lines[1],
        json!([{"op": "replace", "path": "/title", "value": "renamed"}]),
    ));

    // Re-modelling: a line with incoming relationships becomes an assembly line (fits);
    // one becoming a sensor does not.
    c.ok(put(&lines[0], ASSEMBLY_LINE, json!({"stations": 2})));
    c.err(put(&lines[1], SENSOR, json!({})), "ValidationFailed");

    // Devices.
    let with_device = &devices[..4];
    for d in with_device {
        c.ok(put_device(d, None));
    }
    c.ok(put_device(&devices[0], Some(DeviceStatus::Disabled)));

    // Refusals read other shards; they write nothing anywhere.
    c.err(delete_twin(&lines[1]), "DigitalTwinHasRelationships");
    c.err(delete_twin(&devices[0]), "DigitalTwinHasDevice");
    c.err(delete_model(SENSOR), "ModelInUse");
    c.err(delete_model(MOTOR), "ModelReferencesNotDeleted");

    // Deletes: devices, relationships, twins, models, tokens.
    for d in with_device {
        c.ok(Command::DeleteDevice {
            tenant: t(TENANT),
            device_id: d.clone(),
            condition: Condition::Always,
        });
    }
    for (source, rel_id, _) in &rels {
        c.ok(unrelate(source, rel_id));
    }
    for id in devices.iter().chain(&lines).chain(&asms).chain(&sensors) {
        c.ok(delete_twin(id));
    }
    c.ok(Command::SetModelDecommissioned {
        tenant: t(TENANT),
        model: t(SENSOR),
        decommissioned: true,
    });
    // Deleting across shards: the mark and its lifting are meta writes, each shard's
    // check writes nothing.
    c.ok(Command::BeginModelDelete {
        tenant: t(TENANT),
        model: t(SENSOR),
    });
    for shard in 0..SHARDS {
        c.ok(Command::CheckModelUnused {
            tenant: t(TENANT),
            model: t(SENSOR),
            shard,
        });
    }
    c.ok(Command::AbortModelDelete {
        tenant: t(TENANT),
        model: t(SENSOR),
    });
    for m in [SENSOR, DEVICE, MOTOR, ASSEMBLY_LINE, LINE] {
        c.ok(delete_model(m));
    }
    c.ok(Command::RevokeToken {
        tenant: t("gamma"),
        token_id: t("tok-2"),
    });

    // Every data shard a twin lives on was written, and the meta shard.
    assert!(c.shards_written.contains(&META_SHARD));
    assert!(
        twin_shards.iter().all(|s| c.shards_written.contains(s)),
        "{:?} ⊆ {:?}",
        twin_shards,
        c.shards_written
    );
    assert!(c.writes_checked > 300, "{} writes", c.writes_checked);
    // With every twin deleted, no data-shard key is left behind (no stale index).
    let leftovers: Vec<String> =
        c.w.mem
            .data
            .keys()
            .filter(|(_, k)| !k.starts_with(&META_SHARD.to_be_bytes()))
            .map(|(f, k)| format!("{f:?} [{}]", show(k)))
            .collect();
    assert!(leftovers.is_empty(), "left on data shards: {leftovers:?}");
}

#[test]
fn incoming_relationships_from_every_shard_block_delete_and_remodel() {
    let mut w = World::with_models();
    w.create("hub", LINE, json!({}));
    let sources = one_per_shard("src");
    for s in &sources {
        w.create(s, DEVICE, json!({}));
        w.relate(s, "r", rel_body("hub", "feeds", json!({})))
            .unwrap();
        // Each index entry is on its source's shard, none on another.
        assert_eq!(
            w.keys_under(Family::RelIn, &keys::rel_in_prefix(shard(s), TENANT, "hub")),
            vec![keys::rel_in(shard(s), TENANT, "hub", s, "r")]
        );
    }
    assert_eq!(w.keys_under(Family::RelIn, b"").len(), SHARDS as usize);

    // Refusals name the first incoming relationship in (source, id) order, wherever
    // its shard: the same one a single index would have named.
    let mut left: BTreeSet<String> = sources.iter().cloned().collect();
    while let Some(first) = left.first().cloned() {
        let e = w.delete_twin("hub").unwrap_err();
        assert_eq!(e.code(), "DigitalTwinHasRelationships");
        assert!(
            e.to_string()
                .contains(&format!("incoming relationships (e.g. '{first}/r')")),
            "{e}"
        );
        let e = w.err_no_writes(
            put_twin(
                TENANT,
                "hub",
                twin_body("hub", SENSOR, json!({})),
                Condition::Always,
            ),
            "ValidationFailed",
        );
        assert!(
            e.to_string()
                .contains(&format!("incoming relationship 'r' of '{first}'")),
            "{e}"
        );
        // Remove the one on the highest shard next, so that what remains is spread.
        let last = left.iter().max_by_key(|s| shard(s)).cloned().unwrap();
        w.delete_rel(&last, "r").unwrap();
        left.remove(&last);
    }
    assert!(w.keys_under(Family::RelIn, b"").is_empty());
    w.delete_twin("hub").unwrap();
}

#[test]
fn a_remodel_sees_incoming_relationships_from_other_shards() {
    let mut w = World::with_models();
    w.create("target", LINE, json!({}));
    let source = (0..)
        .map(|i| format!("d{i}"))
        .find(|d| shard(d) != shard("target"))
        .unwrap();
    w.create(&source, DEVICE, json!({}));
    w.relate(&source, "r1", rel_body("target", "feeds", json!({})))
        .unwrap();
    let e = w.err_no_writes(
        put_twin(
            TENANT,
            "target",
            twin_body("target", SENSOR, json!({})),
            Condition::Always,
        ),
        "ValidationFailed",
    );
    assert!(
        e.to_string()
            .contains(&format!("incoming relationship 'r1' of '{source}'")),
        "{e}"
    );
    // An AssemblyLine extends Line: accepted, and the index stays on the source shard.
    w.ok(put_twin(
        TENANT,
        "target",
        twin_body("target", ASSEMBLY_LINE, json!({})),
        Condition::Always,
    ));
    assert!(w.exists(
        Family::RelIn,
        &keys::rel_in(shard(&source), TENANT, "target", &source, "r1")
    ));
}

#[test]
fn model_delete_is_refused_while_a_twin_on_any_shard_uses_it() {
    let mut w = World::with_models();
    let sensors = one_per_shard("sen");
    for s in &sensors {
        w.create(s, SENSOR, json!({}));
        assert!(w.exists(Family::Meta, &keys::model_use(shard(s), TENANT, SENSOR, s)));
    }
    // No model-use record on the meta shard.
    assert!(w
        .keys_under(
            Family::Meta,
            &keys::model_use_prefix(META_SHARD, TENANT, SENSOR)
        )
        .is_empty());
    let mut left: BTreeSet<String> = sensors.iter().cloned().collect();
    while let Some(first) = left.first().cloned() {
        let e = w.err_no_writes(delete_model(SENSOR), "ModelInUse");
        assert!(
            e.to_string().contains(&format!("used by twin '{first}'")),
            "names the first twin in id order: {e}"
        );
        // Delete from the lowest shard up, so the last user sits on the highest one.
        let next = left.iter().min_by_key(|s| shard(s)).cloned().unwrap();
        w.delete_twin(&next).unwrap();
        assert!(!w.exists(
            Family::Meta,
            &keys::model_use(shard(&next), TENANT, SENSOR, &next)
        ));
        left.remove(&next);
    }
    w.ok(delete_model(SENSOR));
}

#[test]
fn model_use_moves_within_the_twins_shard_on_a_remodel() {
    let mut w = World::with_models();
    w.create("x", LINE, json!({}));
    let (r, writes) = w.run_with_writes(put("x", SENSOR, json!({})));
    r.unwrap();
    let s = shard("x");
    assert!(writes.contains(&Write::Delete {
        family: Family::Meta,
        key: keys::model_use(s, TENANT, LINE, "x"),
    }));
    assert!(writes.iter().any(
        |wr| matches!(wr, Write::Put { family: Family::Meta, key, .. }
            if *key == keys::model_use(s, TENANT, SENSOR, "x"))
    ));
    // SENSOR is in use now; LINE is not (only AssemblyLine, which extends it, holds it).
    assert_eq!(code(w.run(delete_model(SENSOR))), "ModelInUse");
    assert_eq!(code(w.run(delete_model(LINE))), "ModelReferencesNotDeleted");
}

#[test]
fn commands_route_to_the_shard_of_their_twin_or_the_meta_shard() {
    let cmd = put_twin(TENANT, "d1", json!({}), Condition::Always);
    assert_eq!(cmd.shard(SHARDS), keys::shard_of(TENANT, "d1", SHARDS));
    assert_eq!(cmd.tenant(), TENANT);
    let rel = put_rel(TENANT, "d1", "r", json!({}));
    assert_eq!(rel.shard(SHARDS), keys::shard_of(TENANT, "d1", SHARDS));
    assert_eq!(upload(TENANT, vec![]).shard(SHARDS), keys::META_SHARD);
    assert_eq!(
        Command::PutToken {
            token: token("t", "beta")
        }
        .tenant(),
        "beta"
    );
}
