//! Shared harness for the state-machine specification tests.
//!
//! A [`World`] is one replica: a [`StateMachine`] over a [`MemState`], fed commands
//! exactly as the storage shell feeds them (apply into an [`Overlay`], keep its writes
//! only on success). Stamps come from a counter, so runs are reproducible.
//!
//! The test models ([`models`]) form a small plant: a `Device` with properties
//! (one writable), telemetry, a command, relationships and a `motor` component; a
//! `Line` and an `AssemblyLine` that extends it (relationship targets).

#![allow(dead_code)] // each test binary uses a different subset

use doppel_twins::{
    keys::{self, Family},
    Command, Condition, MemState, Outcome, Overlay, Role, Stamp, StateMachine, TokenRecord,
    TwinError, TwinRecord, Write,
};
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, RngSeed};
use serde_json::{json, Value};

pub const TENANT: &str = "acme";
/// More than one shard, so that source and target of a relationship usually differ.
pub const SHARDS: u32 = 8;

pub const DEVICE: &str = "dtmi:test:Device;1";
pub const MOTOR: &str = "dtmi:test:Motor;1";
pub const LINE: &str = "dtmi:test:Line;1";
pub const ASSEMBLY_LINE: &str = "dtmi:test:AssemblyLine;1";
pub const SENSOR: &str = "dtmi:test:Sensor;1";

/// One DTDL v3 Interface with the given extra members.
pub fn iface(id: &str, extra: Value) -> Value {
    let mut v = json!({"@context": "dtmi:dtdl:context;3", "@id": id, "@type": "Interface"});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

pub fn motor_model() -> Value {
    iface(
        MOTOR,
        json!({"contents": [
            {"@type": "Property", "name": "rpm", "schema": "integer"},
            {"@type": "Property", "name": "limit", "schema": "integer", "writable": true},
            {"@type": "Telemetry", "name": "vibration", "schema": "double"}
        ]}),
    )
}

pub fn line_model() -> Value {
    iface(
        LINE,
        json!({"contents": [{"@type": "Property", "name": "title", "schema": "string"}]}),
    )
}

pub fn assembly_line_model() -> Value {
    iface(
        ASSEMBLY_LINE,
        json!({"extends": LINE, "contents": [
            {"@type": "Property", "name": "stations", "schema": "integer"}
        ]}),
    )
}

/// A model unrelated to `Line` (a wrong relationship target).
pub fn sensor_model() -> Value {
    iface(
        SENSOR,
        json!({"contents": [{"@type": "Property", "name": "kind", "schema": "string"}]}),
    )
}

pub fn device_model() -> Value {
    iface(
        DEVICE,
        json!({"contents": [
            {"@type": "Property", "name": "serial", "schema": "string"},
            {"@type": "Property", "name": "setPoint", "schema": "double", "writable": true},
            {"@type": "Property", "name": "mode",
             "schema": {"@type": "Enum", "valueSchema": "string", "enumValues": [
                {"name": "auto", "enumValue": "auto"},
                {"name": "manual", "enumValue": "manual"}]}},
            {"@type": "Telemetry", "name": "temp", "schema": "double"},
            {"@type": "Command", "name": "reboot"},
            {"@type": "Relationship", "name": "feeds", "target": LINE, "maxMultiplicity": 2,
             "properties": [{"@type": "Property", "name": "since", "schema": "dateTime"}]},
            {"@type": "Relationship", "name": "near"},
            {"@type": "Component", "name": "motor", "schema": MOTOR}
        ]}),
    )
}

/// Every test model, dependencies first.
pub fn models() -> Vec<Value> {
    vec![
        motor_model(),
        line_model(),
        assembly_line_model(),
        sensor_model(),
        device_model(),
    ]
}

/// A twin PUT body.
pub fn twin_body(id: &str, model: &str, props: Value) -> Value {
    let mut body = json!({"$dtId": id, "$metadata": {"$model": model}});
    if let (Some(o), Some(p)) = (body.as_object_mut(), props.as_object()) {
        for (k, v) in p {
            o.insert(k.clone(), v.clone());
        }
    }
    body
}

pub fn rel_body(target: &str, name: &str, props: Value) -> Value {
    let mut body = json!({"$targetId": target, "$relationshipName": name});
    if let (Some(o), Some(p)) = (body.as_object_mut(), props.as_object()) {
        for (k, v) in p {
            o.insert(k.clone(), v.clone());
        }
    }
    body
}

/// The `n`th stamp of a run: one second apart, nonce `n`.
pub fn stamp_at(n: u64) -> Stamp {
    Stamp {
        now: format!(
            "2024-05-01T{:02}:{:02}:{:02}Z",
            (n / 3600) % 24,
            (n / 60) % 60,
            n % 60
        ),
        nonce: 0x5eed_0000_0000 + n,
    }
}

/// Applies `cmd` to a fresh overlay over `mem`; returns the result and the writes the
/// overlay collected (whether or not the command failed).
pub fn apply_raw(
    sm: &mut StateMachine,
    mem: &MemState,
    cmd: &Command,
    stamp: &Stamp,
) -> (Result<Outcome, TwinError>, Vec<Write>) {
    let mut overlay = Overlay::new(mem);
    let r = sm.apply(cmd, stamp, &mut overlay);
    (r, overlay.into_writes())
}

/// Applies a group of commands the way `cluster::group_commit` does: one child overlay
/// per command over the group's overlay, kept on success, dropped on error; then the
/// group's writes are applied to `mem` in one go.
pub fn apply_group(
    sm: &mut StateMachine,
    mem: &mut MemState,
    group: &[(Command, Stamp)],
) -> Vec<Result<Outcome, TwinError>> {
    let mut results = Vec::with_capacity(group.len());
    let writes = {
        let mut overlay = Overlay::new(&*mem);
        for (cmd, stamp) in group {
            let applied = {
                let mut tx = Overlay::new(&overlay);
                sm.apply(cmd, stamp, &mut tx).map(|o| (o, tx.into_writes()))
            };
            match applied {
                Ok((outcome, writes)) => {
                    overlay.extend(writes);
                    results.push(Ok(outcome));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        overlay.into_writes()
    };
    mem.apply(writes);
    results
}

/// One replica.
pub struct World {
    pub sm: StateMachine,
    pub mem: MemState,
    pub clock: u64,
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    pub fn new() -> Self {
        World {
            sm: StateMachine::new(SHARDS),
            mem: MemState::default(),
            clock: 0,
        }
    }

    /// A world with the tenant and all test models registered.
    pub fn with_models() -> Self {
        let mut w = World::new();
        w.ok(Command::EnsureTenant {
            tenant: TENANT.into(),
        });
        w.ok(Command::UploadModels {
            tenant: TENANT.into(),
            documents: models(),
        });
        w
    }

    pub fn next_stamp(&mut self) -> Stamp {
        self.clock += 1;
        stamp_at(self.clock)
    }

    /// Applies `cmd`; keeps its writes only on success (as the storage shell does).
    /// On error, asserts that the stored state is untouched.
    pub fn run(&mut self, cmd: Command) -> Result<Outcome, TwinError> {
        let stamp = self.next_stamp();
        let before = self.mem.data.clone();
        let (r, writes) = apply_raw(&mut self.sm, &self.mem, &cmd, &stamp);
        match &r {
            Ok(_) => self.mem.apply(writes),
            Err(_) => assert_eq!(self.mem.data, before),
        }
        r
    }

    /// Applies `cmd` and returns the writes it produced, committing them on success.
    pub fn run_with_writes(&mut self, cmd: Command) -> (Result<Outcome, TwinError>, Vec<Write>) {
        let stamp = self.next_stamp();
        let (r, writes) = apply_raw(&mut self.sm, &self.mem, &cmd, &stamp);
        if r.is_ok() {
            self.mem.apply(writes.clone());
        }
        (r, writes)
    }

    #[track_caller]
    pub fn ok(&mut self, cmd: Command) -> Outcome {
        let shown = format!("{cmd:?}");
        match self.run(cmd) {
            Ok(o) => o,
            Err(e) => panic!("command failed: {e} [{}]\n{shown}", e.code()),
        }
    }

    /// Applies `cmd`, expects it to fail with `code`, and returns the error.
    #[track_caller]
    pub fn err(&mut self, cmd: Command, code: &str) -> TwinError {
        let shown = format!("{cmd:?}");
        match self.run(cmd) {
            Ok(o) => panic!("expected {code}, got success {o:?}\n{shown}"),
            Err(e) => {
                assert_eq!(e.code(), code, "unexpected error: {e}\n{shown}");
                e
            }
        }
    }

    /// Like [`World::err`], and also asserts the command wrote nothing at all into its
    /// overlay (stronger than the contract, which lets the caller drop the overlay).
    #[track_caller]
    pub fn err_no_writes(&mut self, cmd: Command, code: &str) -> TwinError {
        let shown = format!("{cmd:?}");
        let (r, writes) = self.run_with_writes(cmd);
        match r {
            Ok(o) => panic!("expected {code}, got success {o:?}\n{shown}"),
            Err(e) => {
                assert_eq!(e.code(), code, "unexpected error: {e}\n{shown}");
                assert!(writes.is_empty(), "a rejected command wrote {writes:?}");
                e
            }
        }
    }

    // ---- command shorthands (tenant TENANT) ------------------------------------

    pub fn put_twin(&mut self, id: &str, body: Value) -> Result<Outcome, TwinError> {
        self.put_twin_if(id, body, Condition::Always)
    }

    pub fn put_twin_if(
        &mut self,
        id: &str,
        body: Value,
        condition: Condition,
    ) -> Result<Outcome, TwinError> {
        self.run(put_twin(TENANT, id, body, condition))
    }

    #[track_caller]
    pub fn create(&mut self, id: &str, model: &str, props: Value) -> TwinRecord {
        match self.ok(put_twin(
            TENANT,
            id,
            twin_body(id, model, props),
            Condition::Always,
        )) {
            Outcome::Twin { twin, .. } => twin,
            other => panic!("unexpected outcome {other:?}"),
        }
    }

    pub fn patch(&mut self, id: &str, patch: Value) -> Result<Outcome, TwinError> {
        self.run(Command::PatchTwin {
            tenant: TENANT.into(),
            twin_id: id.into(),
            patch,
            condition: Condition::Always,
        })
    }

    pub fn relate(
        &mut self,
        source: &str,
        rel_id: &str,
        body: Value,
    ) -> Result<Outcome, TwinError> {
        self.run(put_rel(TENANT, source, rel_id, body))
    }

    pub fn delete_twin(&mut self, id: &str) -> Result<Outcome, TwinError> {
        self.run(Command::DeleteTwin {
            tenant: TENANT.into(),
            twin_id: id.into(),
            condition: Condition::Always,
        })
    }

    pub fn delete_rel(&mut self, source: &str, rel_id: &str) -> Result<Outcome, TwinError> {
        self.run(Command::DeleteRelationship {
            tenant: TENANT.into(),
            source: source.into(),
            rel_id: rel_id.into(),
            condition: Condition::Always,
        })
    }

    pub fn telemetry(&mut self, id: &str, body: Value) -> Result<Outcome, TwinError> {
        self.run(Command::RecordTelemetry {
            tenant: TENANT.into(),
            twin_id: id.into(),
            body,
            source_time: None,
        })
    }

    // ---- reads -------------------------------------------------------------------

    pub fn twin_in(&self, tenant: &str, id: &str) -> Option<TwinRecord> {
        doppel_twins::load_twin(&self.mem, keys::shard_of(tenant, id, SHARDS), tenant, id)
            .expect("readable twin")
    }

    #[track_caller]
    pub fn twin(&self, id: &str) -> TwinRecord {
        self.twin_in(TENANT, id)
            .unwrap_or_else(|| panic!("twin {id} exists"))
    }

    /// All keys of a family that start with `prefix`.
    pub fn keys_under(&self, family: Family, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.mem
            .data
            .keys()
            .filter(|(f, k)| *f == family && k.starts_with(prefix))
            .map(|(_, k)| k.clone())
            .collect()
    }

    pub fn exists(&self, family: Family, key: &[u8]) -> bool {
        self.mem.data.contains_key(&(family, key.to_vec()))
    }
}

pub fn put_twin(tenant: &str, id: &str, body: Value, condition: Condition) -> Command {
    Command::PutTwin {
        tenant: tenant.into(),
        twin_id: id.into(),
        body,
        condition,
    }
}

pub fn put_rel(tenant: &str, source: &str, rel_id: &str, body: Value) -> Command {
    Command::PutRelationship {
        tenant: tenant.into(),
        source: source.into(),
        rel_id: rel_id.into(),
        body,
        condition: Condition::Always,
    }
}

/// The code of a failed result, for `assert_eq!`.
#[track_caller]
pub fn code<T: std::fmt::Debug>(r: Result<T, TwinError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().as_str(),
    }
}

#[track_caller]
pub fn twin_of(o: Outcome) -> TwinRecord {
    match o {
        Outcome::Twin { twin, .. } => twin,
        other => panic!("expected a twin, got {other:?}"),
    }
}

// ---- shared fixtures of the state-machine specification tests ------------------

pub fn upload(tenant: &str, documents: Vec<Value>) -> Command {
    Command::UploadModels {
        tenant: tenant.into(),
        documents,
    }
}

pub fn delete_model(model: &str) -> Command {
    Command::DeleteModel {
        tenant: TENANT.into(),
        model: model.into(),
    }
}

pub fn decommission(model: &str, decommissioned: bool) -> Command {
    Command::SetModelDecommissioned {
        tenant: TENANT.into(),
        model: model.into(),
        decommissioned,
    }
}

pub fn token(id: &str, tenant: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        tenant: tenant.into(),
        name: format!("{id} token"),
        roles: vec![Role::Writer],
        secret_sha256: "00".repeat(32),
        created: "2024-01-01T00:00:00Z".into(),
    }
}

/// A plant with a device `d1` (motor component), a line `l1` and an assembly line `a1`.
pub fn plant() -> World {
    let mut w = World::with_models();
    w.create("d1", DEVICE, json!({"serial": "S-1"}));
    w.create("l1", LINE, json!({"title": "Line 1"}));
    w.create(
        "a1",
        ASSEMBLY_LINE,
        json!({"title": "Assembly", "stations": 4}),
    );
    w
}

/// Proptest's settings for `cases` cases from the seed `DOPPEL_SEED` names (printed): a
/// fixed one by default, so CI is deterministic; `DOPPEL_SEED=<n>` replays a run and
/// `DOPPEL_SEED=random` explores. Nothing is persisted: the seed replays a run, and a
/// failure prints its shrunk input. XorShift, since proptest's default ChaCha is several
/// times slower in a debug build.
pub fn proptest_config(cases: u32, default_seed: u64) -> ProptestConfig {
    let seed = match std::env::var("DOPPEL_SEED").ok().as_deref() {
        Some("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        Some(s) => s.parse().expect("DOPPEL_SEED is a number or \"random\""),
        None => default_seed,
    };
    println!("seed {seed} (replay with DOPPEL_SEED={seed})");
    ProptestConfig {
        rng_seed: RngSeed::Fixed(seed),
        rng_algorithm: RngAlgorithm::XorShift,
        failure_persistence: None,
        // Shrink until minimal (the default stops after 4 × cases), within a minute.
        max_shrink_iters: 100_000,
        max_shrink_time: 60_000,
        ..ProptestConfig::with_cases(cases)
    }
}
