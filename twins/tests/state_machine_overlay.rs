//! The overlay the state machine writes into reads exactly like the state its writes
//! would produce: seeded random puts, deletes and prefix deletes over a base, with
//! every get and scan (prefix, resume point, limit) checked against a plain map.

use doppel_twins::keys::Family;
use doppel_twins::{MemState, Overlay, StateRead};
use std::collections::BTreeMap;

/// xorshift64*: tiny, seedable, good enough to shuffle keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A short key over a 3-letter alphabet, so that keys collide and prefix often.
    fn key(&mut self, max_len: u64) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| b"abc"[self.below(3) as usize]).collect()
    }
}

fn model_scan(
    model: &BTreeMap<(Family, Vec<u8>), Vec<u8>>,
    family: Family,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .filter(|((f, k), _)| *f == family && k.starts_with(prefix))
        .filter(|((_, k), _)| after.is_none_or(|a| k.as_slice() > a))
        .take(limit)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

/// Checks every read of `view` against `model` for a batch of random scans and gets.
fn check_reads(
    rng: &mut Rng,
    view: &dyn StateRead,
    model: &BTreeMap<(Family, Vec<u8>), Vec<u8>>,
    ctx: &str,
) {
    for _ in 0..8 {
        let family = if rng.below(4) == 0 {
            Family::RelIn
        } else {
            Family::Twins
        };
        let prefix = rng.key(2);
        let after = (rng.below(2) == 0).then(|| rng.key(5));
        // Small limits (one base page, many shadowed), page-sized ones, and "all".
        let limit = match rng.below(5) {
            0 => 0,
            1 => 1,
            2 => rng.below(5) as usize,
            3 => rng.below(100) as usize,
            _ => 1000,
        };
        let got = view.scan(family, &prefix, after.as_deref(), limit).unwrap();
        let want = model_scan(model, family, &prefix, after.as_deref(), limit);
        assert_eq!(
            got, want,
            "{ctx}: scan {family:?} {prefix:?} after {after:?} limit {limit}"
        );
        let k = rng.key(5);
        assert_eq!(
            view.get(family, &k).unwrap(),
            model.get(&(family, k.clone())).cloned(),
            "{ctx}: get {k:?}"
        );
    }
}

/// One random write, applied to both the overlay and the model.
fn random_write(
    rng: &mut Rng,
    overlay: &mut Overlay<'_>,
    model: &mut BTreeMap<(Family, Vec<u8>), Vec<u8>>,
    step: usize,
) {
    let family = if rng.below(4) == 0 {
        Family::RelIn
    } else {
        Family::Twins
    };
    match rng.below(10) {
        0..=4 => {
            let k = rng.key(5);
            let v = format!("v{step}").into_bytes();
            overlay.put(family, k.clone(), v.clone());
            model.insert((family, k), v);
        }
        5..=8 => {
            let k = rng.key(5);
            overlay.delete(family, k.clone());
            model.remove(&(family, k));
        }
        _ => {
            // Mostly one or two bytes: a whole-family wipe (empty prefix) is rare.
            let p = match rng.key(2) {
                p if p.is_empty() && rng.below(4) != 0 => vec![b'a'],
                p => p,
            };
            overlay.delete_prefix(family, p.clone());
            model.retain(|(f, k), _| !(*f == family && k.starts_with(&p)));
        }
    }
}

fn overlay_matches_model(seed: u64) {
    let ctx = format!("seed {seed:#x}");
    let mut rng = Rng(seed | 1);
    // A base big enough that scans need more than one base page (batches of >= 64).
    let mut base = MemState::default();
    // Keys of at most 5 letters over 3: dense, so deletes and prefixes hit base keys.
    for i in 0..300 {
        let family = if i % 4 == 0 {
            Family::RelIn
        } else {
            Family::Twins
        };
        base.data
            .insert((family, rng.key(5)), format!("base{i}").into_bytes());
    }
    let mut model = base.data.clone();
    let mut parent = Overlay::new(&base);
    for step in 0..150 {
        random_write(&mut rng, &mut parent, &mut model, step);
        if step % 5 == 0 {
            check_reads(&mut rng, &parent, &model, &ctx);
        }
    }
    check_reads(&mut rng, &parent, &model, &ctx);

    // A child overlay over the parent (group commit): reads see both layers; the
    // child's writes extend the parent to the same state.
    let mut child_model = model.clone();
    let child_writes = {
        let mut child = Overlay::new(&parent);
        for step in 150..250 {
            random_write(&mut rng, &mut child, &mut child_model, step);
            if step % 5 == 0 {
                check_reads(&mut rng, &child, &child_model, &ctx);
            }
        }
        child.into_writes()
    };
    // A dropped child leaves the parent as it was.
    check_reads(&mut rng, &parent, &model, &format!("{ctx} (child dropped)"));
    parent.extend(child_writes);
    check_reads(
        &mut rng,
        &parent,
        &child_model,
        &format!("{ctx} (child kept)"),
    );

    // Applying the writes in order reproduces the model exactly.
    let writes = parent.into_writes();
    base.apply(writes);
    assert_eq!(base.data, child_model, "{ctx}: applied writes");
}

#[test]
fn overlay_scan_matches_a_model_under_random_puts_deletes_and_prefix_deletes() {
    let seeds: Vec<u64> = match std::env::var("DOPPEL_SEED") {
        Ok(s) => vec![u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex seed")],
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            vec![0x1234_5678, 0xdead_beef, 42, t]
        }
    };
    for seed in seeds {
        println!("overlay property test seed {seed:#x} (replay: DOPPEL_SEED={seed:x})");
        overlay_matches_model(seed);
    }
}
