//! Model test: random operation sequences against the engine and a reference model
//! (a `BTreeMap`), compared after every step.
//!
//! Eviction is the engine's choice, so the model learns of it from the removal listener:
//! every removal is checked against the model (the removed value is the one the model
//! holds; `Expired` only past the deadline; `Size` never for a pinned entry, and never
//! while an expired entry could go instead; `Explicit` only from a remove) and applied
//! to it. Everything else the model predicts exactly: the result of every call, what
//! `peek` sees for every key, the counters, and when an insert gets `NoRoom`.
//!
//! One shard, so the model knows the shard's bound. Byte mode, so charges differ.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::Recorder;
use proptest::prelude::*;
use ringcache_engine::{
    Capacity, Condition, ENTRY_OVERHEAD, Engine, EntryView, InsertError, InsertOptions,
    InsertOutcome, MockClock, Policy, Removal, RemovalCause,
};

const KEYS: u8 = 8;
/// Value bytes that carry the insert's serial number, so every removal names the exact
/// insert it undoes.
const SERIAL_LEN: usize = 8;
const MAX_PAD: usize = 16;
/// The charge of a mid-sized entry: bounds are whole numbers of these.
const SLOT: u64 = 16 + SERIAL_LEN as u64 + (MAX_PAD / 2) as u64 + ENTRY_OVERHEAD;

#[derive(Debug, Clone)]
enum Cond {
    Always,
    IfAbsent,
    /// IfVersion with the current version (if any).
    IfCurrent,
    /// IfVersion with a version no entry has.
    IfStale,
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        key: u8,
        pad: usize,
        ttl_ms: Option<u64>,
        tti_ms: Option<u64>,
        pinned: bool,
        cond: Cond,
    },
    GetOrInsert {
        key: u8,
        pad: usize,
        ttl_ms: Option<u64>,
        pinned: bool,
    },
    Get(u8),
    GetEntry(u8),
    Remove(u8),
    RemoveIf {
        key: u8,
        current: bool,
    },
    Touch {
        key: u8,
        ttl_ms: Option<u64>,
    },
    Pin(u8),
    Unpin(u8),
    Advance(u64),
    SetPolicy(Policy),
    SetCapacity(u64),
    Reclaim(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    let ttl = proptest::option::weighted(0.4, 1u64..=5000);
    let tti = proptest::option::weighted(0.2, 1u64..=3000);
    let cond = prop_oneof![
        6 => Just(Cond::Always),
        1 => Just(Cond::IfAbsent),
        1 => Just(Cond::IfCurrent),
        1 => Just(Cond::IfStale),
    ];
    prop_oneof![
        12 => (key.clone(), 0..=MAX_PAD, ttl.clone(), tti, proptest::bool::weighted(0.2), cond).prop_map(
            |(key, pad, ttl_ms, tti_ms, pinned, cond)| Op::Insert { key, pad, ttl_ms, tti_ms, pinned, cond }
        ),
        3 => (key.clone(), 0..=MAX_PAD, ttl.clone(), proptest::bool::weighted(0.1)).prop_map(
            |(key, pad, ttl_ms, pinned)| Op::GetOrInsert { key, pad, ttl_ms, pinned }
        ),
        6 => key.clone().prop_map(Op::Get),
        1 => key.clone().prop_map(Op::GetEntry),
        2 => key.clone().prop_map(Op::Remove),
        1 => (key.clone(), any::<bool>()).prop_map(|(key, current)| Op::RemoveIf { key, current }),
        2 => (key.clone(), ttl).prop_map(|(key, ttl_ms)| Op::Touch { key, ttl_ms }),
        2 => key.clone().prop_map(Op::Pin),
        2 => key.prop_map(Op::Unpin),
        3 => (0u64..=3000).prop_map(Op::Advance),
        1 => proptest::sample::select(Policy::ALL.to_vec()).prop_map(Op::SetPolicy),
        1 => (0u64..=7).prop_map(Op::SetCapacity),
        1 => (0usize..=3).prop_map(Op::Reclaim),
    ]
}

#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    version: u64,
    flags: u32,
    /// TTL deadline (ns).
    deadline: Option<u64>,
    /// Time to idle (ns) and the last read or write that restarts it.
    tti: Option<u64>,
    last_access: u64,
    pinned: bool,
    charge: u64,
}

impl Entry {
    /// When the entry stops being readable: the earlier of its TTL and idle deadlines.
    fn effective_deadline(&self) -> Option<u64> {
        let idle = self.tti.map(|t| self.last_access.saturating_add(t));
        match (self.deadline, idle) {
            (Some(d), Some(i)) => Some(d.min(i)),
            (d, i) => d.or(i),
        }
    }
}

/// What the engine should hold. Entries stay here until the engine reports removing
/// them, expired or not, exactly as in the engine.
struct Model {
    entries: BTreeMap<u8, Entry>,
    now: u64,
    limit: u64,
    serial: u64,
    hits: u64,
    misses: u64,
}

impl Model {
    fn expired(&self, e: &Entry) -> bool {
        e.effective_deadline().is_some_and(|d| d <= self.now)
    }

    fn live(&self, k: u8) -> Option<&Entry> {
        self.entries.get(&k).filter(|e| !self.expired(e))
    }

    /// Charge of live (unexpired) pinned entries other than `k`: what an insert of `k`
    /// cannot evict. Expired entries do not count: callers cannot see them, and they
    /// go before anything live.
    fn live_pinned_charge_except(&self, k: u8) -> u64 {
        self.entries
            .iter()
            .filter(|(key, e)| **key != k && e.pinned && !self.expired(e))
            .map(|(_, e)| e.charge)
            .sum()
    }

    /// Checks one removal against the model and applies it.
    fn apply(&mut self, r: &Removal, explicit_ok: bool) -> Result<(), TestCaseError> {
        let k = model_key(&r.key);
        let e = self.entries.get(&k).cloned();
        let Some(e) = e else {
            return Err(TestCaseError::fail(format!(
                "removal of {k}, which the model does not hold: {r:?}"
            )));
        };
        prop_assert_eq!(
            &r.value,
            &e.value,
            "removal of key {} names another value",
            k
        );
        prop_assert_eq!(r.version, e.version);
        match r.cause {
            RemovalCause::Expired => {
                prop_assert!(
                    self.expired(&e),
                    "key {} removed as expired at {}: {:?}",
                    k,
                    self.now,
                    e
                );
            }
            RemovalCause::Size => {
                prop_assert!(!e.pinned, "pinned key {} was evicted", k);
                let expired: Vec<u8> = self
                    .entries
                    .iter()
                    .filter(|(_, e)| self.expired(e))
                    .map(|(k, _)| *k)
                    .collect();
                prop_assert!(
                    expired.is_empty(),
                    "key {} evicted while expired {:?} were held",
                    k,
                    expired
                );
            }
            RemovalCause::Explicit => {
                prop_assert!(explicit_ok, "explicit removal of {} outside a remove", k)
            }
            other => prop_assert!(false, "unexpected removal cause {:?} for {}", other, k),
        }
        self.entries.remove(&k);
        Ok(())
    }

    /// The entry an insert of `k` will create, and the options that create it.
    fn plan(
        &mut self,
        k: u8,
        pad: usize,
        ttl_ms: Option<u64>,
        tti_ms: Option<u64>,
        pinned: bool,
        condition: Condition,
    ) -> (Entry, InsertOptions) {
        self.serial += 1;
        let mut value = self.serial.to_le_bytes().to_vec();
        value.resize(SERIAL_LEN + pad, 0xEE);
        let value = Bytes::from(value);
        let flags = (self.serial as u32).wrapping_mul(0x9E37_79B9);
        let mut opts = InsertOptions::new()
            .version(self.serial)
            .flags(flags)
            .pinned(pinned)
            .condition(condition);
        if let Some(t) = ttl_ms {
            opts = opts.ttl(ms(t));
        }
        if let Some(t) = tti_ms {
            opts = opts.tti(ms(t));
        }
        let charge = key_bytes(k).len() as u64 + value.len() as u64 + ENTRY_OVERHEAD;
        let entry = Entry {
            value,
            version: self.serial,
            flags,
            deadline: ttl_ms.map(|t| self.now + ms(t).as_nanos() as u64),
            tti: tti_ms.map(|t| ms(t).as_nanos() as u64),
            last_access: self.now,
            pinned,
            charge,
        };
        (entry, opts)
    }

    /// Checks an insert's result (`Ok(None)`: succeeded, outcome not reported) and the
    /// removals it caused against the model, and applies them. Call before the model
    /// learns anything else about this call.
    fn check_insert(
        &mut self,
        k: u8,
        new: &Entry,
        condition: Condition,
        result: Result<Option<InsertOutcome>, InsertError>,
        events: &[Removal],
    ) -> Result<(), TestCaseError> {
        let old_live = self.live(k).cloned();
        let pinned_others = self.live_pinned_charge_except(k);
        let charge = new.charge;
        if charge > self.limit {
            prop_assert_eq!(
                result,
                Err(InsertError::TooLarge {
                    charge,
                    limit: self.limit
                })
            );
            prop_assert!(
                events.iter().all(|r| r.cause == RemovalCause::Expired),
                "TooLarge removes nothing live: {:?}",
                events
            );
            return self.apply_all(events, false);
        }
        let holds = match condition {
            Condition::Always => true,
            Condition::IfAbsent => old_live.is_none(),
            Condition::IfVersion(v) => old_live.as_ref().is_some_and(|e| e.version == v),
        };
        if !holds {
            let current = old_live.as_ref().map(|e| e.version);
            prop_assert_eq!(result, Err(InsertError::ConditionFailed { current }));
            prop_assert!(
                events.iter().all(|r| r.cause == RemovalCause::Expired),
                "{:?}",
                events
            );
            return self.apply_all(events, false);
        }
        // NoRoom is decided by what live pinned entries other than this key hold; a
        // refused insert removes nothing but expired entries.
        if let Err(InsertError::NoRoom {
            charge: c,
            pinned: p,
            limit: l,
        }) = result
        {
            prop_assert!(
                events.iter().all(|r| r.cause == RemovalCause::Expired),
                "NoRoom removes nothing live: {:?}",
                events
            );
            self.apply_all(events, false)?;
            prop_assert!(
                pinned_others + charge > self.limit,
                "NoRoom with {} live pinned elsewhere, charge {}, limit {}",
                pinned_others,
                charge,
                self.limit
            );
            prop_assert_eq!((c, l), (charge, self.limit));
            prop_assert!(p + charge > l, "NoRoom reports pinned charge {}", p);
            return Ok(());
        }
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                return Err(TestCaseError::fail(format!("insert of {k} failed: {e:?}")));
            }
        };
        prop_assert!(
            pinned_others + charge <= self.limit,
            "insert stored although live pinned entries leave no room"
        );
        // Removals come in order: expired entries, the old value (Replaced), then
        // evictions, which may include the new entry itself (a rejection).
        let mut applied = false;
        let mut rejected = false;
        let mut replaced = None;
        for r in events {
            let same_key = model_key(&r.key) == k;
            if same_key && r.value == new.value {
                prop_assert_eq!(
                    r.cause,
                    RemovalCause::Size,
                    "the new entry can only be rejected"
                );
                if !applied {
                    self.entries.insert(k, new.clone());
                    applied = true;
                }
                rejected = true;
                self.apply(r, false)?;
            } else if r.cause == RemovalCause::Replaced {
                prop_assert!(same_key && !applied, "unexpected {:?}", r);
                let old = old_live.as_ref().expect("Replaced needs a live old entry");
                prop_assert_eq!((&r.value, r.version), (&old.value, old.version));
                replaced = Some(old.version);
                self.entries.insert(k, new.clone());
                applied = true;
            } else {
                if r.cause == RemovalCause::Size && !applied {
                    self.entries.insert(k, new.clone());
                    applied = true;
                }
                self.apply(r, false)?;
            }
        }
        if !applied {
            self.entries.insert(k, new.clone());
        }
        if old_live.is_some() && !rejected {
            prop_assert!(
                replaced.is_some(),
                "an overwrite of a live entry reports Replaced"
            );
        }
        let expected = if rejected {
            InsertOutcome::Rejected
        } else if let Some(v) = replaced {
            InsertOutcome::Replaced {
                previous_version: v,
            }
        } else {
            InsertOutcome::Inserted
        };
        if let Some(outcome) = outcome {
            prop_assert_eq!(outcome, expected);
        }
        Ok(())
    }

    fn apply_all(&mut self, events: &[Removal], explicit_ok: bool) -> Result<(), TestCaseError> {
        for r in events {
            self.apply(r, explicit_ok)?;
        }
        Ok(())
    }
}

/// Key lengths by model key: empty, short, and either side of the engine's inline-key
/// limit (22 bytes), so both key representations are exercised.
const KEY_LEN: [usize; KEYS as usize] = [0, 1, 2, 7, 21, 22, 23, 48];

fn key_bytes(k: u8) -> Vec<u8> {
    vec![b'a' + k; KEY_LEN[usize::from(k)]]
}

fn model_key(key: &[u8]) -> u8 {
    let k = key.first().map_or(0, |b| b - b'a');
    assert_eq!(
        key,
        key_bytes(k),
        "a removal names a key the model never used"
    );
    k
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Harness {
    engine: Engine,
    rec: Recorder,
    clock: MockClock,
    model: Model,
}

impl Harness {
    fn new(policy: Policy, slots: u64) -> Self {
        let rec = Recorder::new();
        let clock = MockClock::new();
        let engine = rec
            .install(
                Engine::builder(Capacity::Bytes(slots * SLOT))
                    .policy(policy)
                    .shards(1)
                    .clock(Arc::new(clock.clone())),
            )
            .build();
        let model = Model {
            entries: BTreeMap::new(),
            now: 0,
            limit: slots * SLOT,
            serial: 0,
            hits: 0,
            misses: 0,
        };
        Self {
            engine,
            rec,
            clock,
            model,
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let (engine, m) = (&self.engine, &mut self.model);
        match op {
            Op::Insert {
                key: k,
                pad,
                ttl_ms,
                tti_ms,
                pinned,
                cond,
            } => {
                let k = *k;
                let old_live = m.live(k).cloned();
                let condition = match cond {
                    Cond::Always => Condition::Always,
                    Cond::IfAbsent => Condition::IfAbsent,
                    Cond::IfCurrent => {
                        Condition::IfVersion(old_live.as_ref().map_or(m.serial + 2, |e| e.version))
                    }
                    Cond::IfStale => Condition::IfVersion(u64::MAX),
                };
                let (new, opts) = m.plan(k, *pad, *ttl_ms, *tti_ms, *pinned, condition);
                let result = engine.insert(&key_bytes(k), new.value.clone(), &opts);
                let events = self.rec.take();
                m.check_insert(k, &new, condition, result.map(Some), &events)?;
            }
            Op::GetOrInsert {
                key: k,
                pad,
                ttl_ms,
                pinned,
            } => {
                let k = *k;
                let (new, opts) = m.plan(k, *pad, *ttl_ms, None, *pinned, Condition::Always);
                let mut made = 0;
                let result = engine.get_or_insert_with(&key_bytes(k), &opts, || {
                    made += 1;
                    new.value.clone()
                });
                let events = self.rec.take();
                if let Some(e) = m.live(k).cloned() {
                    prop_assert_eq!(result, Ok((e.value, true)), "get_or_insert_with({}) hit", k);
                    prop_assert_eq!(made, 0, "make() runs only on a miss");
                    m.hits += 1;
                    let now = m.now;
                    m.entries.get_mut(&k).expect("live").last_access = now;
                    m.apply_all(&events, false)?;
                } else {
                    prop_assert_eq!(made, 1, "make() runs once on a miss");
                    m.misses += 1;
                    let result = result.map(|(v, hit)| {
                        assert!(!hit && v == new.value, "a miss returns the made value");
                        None
                    });
                    m.check_insert(k, &new, Condition::Always, result, &events)?;
                }
            }
            Op::Get(k) | Op::GetEntry(k) => {
                let k = *k;
                let expected = m.live(k).cloned();
                let got = if matches!(op, Op::Get(_)) {
                    engine.get(&key_bytes(k))
                } else {
                    engine.get_entry(&key_bytes(k)).map(|v| v.value)
                };
                prop_assert_eq!(
                    &got,
                    &expected.as_ref().map(|e| e.value.clone()),
                    "get({})",
                    k
                );
                if got.is_some() {
                    m.hits += 1;
                    let now = m.now;
                    m.entries.get_mut(&k).expect("live").last_access = now;
                } else {
                    m.misses += 1;
                }
                m.apply_all(&self.rec.take(), false)?;
            }
            Op::Remove(k) => {
                let k = *k;
                let expected = m.live(k).cloned();
                let got = engine.remove(&key_bytes(k));
                prop_assert_eq!(
                    got.map(|v| v.value),
                    expected.map(|e| e.value),
                    "remove({})",
                    k
                );
                m.apply_all(&self.rec.take(), true)?;
                prop_assert!(!m.entries.contains_key(&k), "removed key {} still held", k);
                prop_assert!(engine.get(&key_bytes(k)).is_none(), "get after remove");
                m.misses += 1;
                m.apply_all(&self.rec.take(), false)?;
            }
            Op::RemoveIf { key: k, current } => {
                let k = *k;
                let live = m.live(k).cloned();
                let v = if *current {
                    live.as_ref().map_or(u64::MAX - 1, |e| e.version)
                } else {
                    u64::MAX
                };
                let got = engine.remove_if(&key_bytes(k), Condition::IfVersion(v));
                match &live {
                    Some(e) if e.version == v => {
                        prop_assert_eq!(got.map(|o| o.map(|v| v.value)), Ok(Some(e.value.clone())));
                    }
                    _ => prop_assert_eq!(
                        got,
                        Err(InsertError::ConditionFailed {
                            current: live.as_ref().map(|e| e.version)
                        })
                    ),
                }
                m.apply_all(&self.rec.take(), true)?;
            }
            Op::Touch { key: k, ttl_ms } => {
                let k = *k;
                let exists = m.live(k).is_some();
                prop_assert_eq!(
                    engine.touch(&key_bytes(k), ttl_ms.map(ms)),
                    exists,
                    "touch({})",
                    k
                );
                m.apply_all(&self.rec.take(), false)?;
                if exists {
                    let now = m.now;
                    let e = m.entries.get_mut(&k).expect("live");
                    e.deadline = ttl_ms.map(|t| now + ms(t).as_nanos() as u64);
                    // touch() also counts as activity for the idle time.
                    e.last_access = now;
                }
            }
            Op::Pin(k) | Op::Unpin(k) => {
                let k = *k;
                let pin = matches!(op, Op::Pin(_));
                let exists = m.live(k).is_some();
                let got = if pin {
                    engine.pin(&key_bytes(k))
                } else {
                    engine.unpin(&key_bytes(k))
                };
                prop_assert_eq!(got, exists, "pin/unpin({})", k);
                let events = self.rec.take();
                if exists {
                    m.entries.get_mut(&k).expect("live").pinned = pin;
                }
                m.apply_all(&events, false)?;
            }
            Op::Advance(n) => {
                self.clock.advance(ms(*n));
                m.now += ms(*n).as_nanos() as u64;
            }
            Op::SetPolicy(p) => {
                engine.set_policy(*p);
                prop_assert_eq!(engine.policy(), *p);
                let events = self.rec.take();
                prop_assert!(events.is_empty(), "set_policy removed {:?}", events);
            }
            Op::SetCapacity(slots) => {
                m.limit = slots * SLOT;
                engine.set_capacity(m.limit);
                m.apply_all(&self.rec.take(), false)?;
            }
            Op::Reclaim(budget) => {
                let expired = m.entries.values().filter(|e| m.expired(e)).count();
                let n = engine.reclaim_expired(*budget);
                prop_assert_eq!(n, expired.min(*budget), "reclaim_expired({})", budget);
                let events = self.rec.take();
                prop_assert_eq!(events.len(), n);
                m.apply_all(&events, false)?;
            }
        }
        Ok(())
    }

    /// Compares everything observable without side effects.
    fn compare(&self) -> Result<(), TestCaseError> {
        let (engine, m) = (&self.engine, &self.model);
        for k in 0..KEYS {
            let got = engine.peek(&key_bytes(k));
            let want = m.live(k).map(|e| EntryView {
                value: e.value.clone(),
                version: e.version,
                flags: e.flags,
                expires_in: e
                    .effective_deadline()
                    .map(|d| Duration::from_nanos(d - m.now)),
                pinned: e.pinned,
                charge: e.charge,
            });
            prop_assert_eq!(got, want, "peek({})", k);
        }
        let s = engine.stats();
        let pinned: Vec<&Entry> = m.entries.values().filter(|e| e.pinned).collect();
        prop_assert_eq!(engine.len(), m.entries.len());
        prop_assert_eq!(s.entries, m.entries.len() as u64);
        prop_assert_eq!(s.used, m.entries.values().map(|e| e.charge).sum::<u64>());
        prop_assert_eq!(s.pinned_used, pinned.iter().map(|e| e.charge).sum::<u64>());
        prop_assert_eq!(s.pinned_entries, pinned.len() as u64);
        prop_assert_eq!((s.hits, s.misses), (m.hits, m.misses));
        prop_assert_eq!(s.capacity, m.limit);
        prop_assert!(
            s.used <= m.limit || s.pinned_used > m.limit,
            "over the bound: {:?}",
            s
        );
        engine.check_invariants();
        Ok(())
    }
}

fn run(policy: Policy, slots: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new(policy, slots);
    for op in ops {
        h.step(op)?;
        h.compare()?;
    }
    Ok(())
}

fn config() -> ProptestConfig {
    // PROPTEST_CASES raises the count for a longer hunt.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..200)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn model_adaptive(slots in 1u64..=6, ops in ops()) { run(Policy::Adaptive, slots, &ops)?; }

    #[test]
    fn model_lru(slots in 1u64..=6, ops in ops()) { run(Policy::Lru, slots, &ops)?; }

    #[test]
    fn model_lfu(slots in 1u64..=6, ops in ops()) { run(Policy::Lfu, slots, &ops)?; }

    #[test]
    fn model_fifo(slots in 1u64..=6, ops in ops()) { run(Policy::Fifo, slots, &ops)?; }

    #[test]
    fn model_random(slots in 1u64..=6, ops in ops()) { run(Policy::Random, slots, &ops)?; }

    #[test]
    fn model_ttl(slots in 1u64..=6, ops in ops()) { run(Policy::Ttl, slots, &ops)?; }

    #[test]
    fn model_s3fifo(slots in 1u64..=6, ops in ops()) { run(Policy::S3Fifo, slots, &ops)?; }

    /// Any policy, including ones added after the named tests above were written.
    #[test]
    fn model_any_policy(
        policy in proptest::sample::select(Policy::ALL.to_vec()),
        slots in 1u64..=6,
        ops in ops(),
    ) {
        run(policy, slots, &ops)?;
    }
}
