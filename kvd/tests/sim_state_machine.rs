//! kvd's own state machine ([`KvStore`]) replicated by raft's deterministic simulator through
//! crashes, partitions, lossy networks, stalled disks, snapshots and membership changes, with
//! every client-visible answer checked against a model of the documented semantics.
//!
//! Clients propose puts and deletes over a few keys; they retry earlier requests (same client
//! id, request id and payload), send ids older than the remembered window, leave holes in their
//! ids and fill them later, and sometimes write without a client id. The session limits are
//! tiny (a window of 4 ids, 3 sessions, expiry after 12 entries) so that every limit is hit.
//!
//! One model is shared by every replica of a run: the first replica to apply an index advances
//! the model and records the expected answer and state; every replica that applies that index
//! (after a restart too, or after installing a snapshot) must produce the same. The simulator
//! itself checks that replicas agree with each other; the model checks that they agree with
//! the documentation, which catches a bug every replica shares (such as a broken dedupe).
//!
//! `KVD_SIM_SEEDS=N` runs N seeds instead of the default; `KVD_SIM_SEED=S` runs only seed S (to
//! replay a failure, whose report prints the command). `KVD_SIM_INJECT=<defect>` runs the main
//! test with a defective machine (see [`Defect`]), which must then fail.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;

use bytes::Bytes;
use kvd::command::{self, Op, Request, Write};
use kvd::state_machine::{KvStore, SessionLimits, WriteResult};
use raft::sim::{Report, SimConfig, Simulation, StateMachine};
use raft::{Entry, EntryPayload, Index, Rng};
use serde::Deserialize;

/// The session limits of every run: small enough that the window, eviction and expiry all
/// matter within a few hundred entries.
const LIMITS: SessionLimits = SessionLimits {
    request_window: 4,
    max_sessions: 3,
    session_expiry_entries: 12,
};

/// Clients and how often each writes: the rare ones go idle long enough to expire, and there
/// are more of them than `max_sessions`, so sessions are evicted too.
const CLIENTS: [(&str, u64); 5] = [("c1", 6), ("c2", 4), ("c3", 2), ("c4", 1), ("c5", 1)];

const KEYS: [&str; 6] = ["k0", "k1", "k2", "k3", "k4", "k5"];

/// Seeds run by default (each is a few hundred entries and five virtual seconds of faults).
const DEFAULT_SEEDS: u64 = 200;

/// Mismatches kept per run for the report (the rest are only counted).
const MAX_REPORTED: usize = 5;

/// Defects a machine can be given to show the model catches them. None is in kvd: each is
/// made in this file, around or beside an unchanged [`KvStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Defect {
    /// A broken dedupe: a retry that `KvStore` recognises is applied again anyway (as a write
    /// without a client id) and answered `Applied`.
    ReapplyRetries,
    /// The store remembers 5 request ids per client while the documented limit is 4.
    WindowOneLarger,
    /// The store forgets an idle client one entry later than documented.
    ExpiryOneLater,
    /// The store keeps one more session than documented.
    OneMoreSession,
}

impl Defect {
    const ALL: [Self; 4] = [
        Self::ReapplyRetries,
        Self::WindowOneLarger,
        Self::ExpiryOneLater,
        Self::OneMoreSession,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::ReapplyRetries => "reapply-retries",
            Self::WindowOneLarger => "window-one-larger",
            Self::ExpiryOneLater => "expiry-one-later",
            Self::OneMoreSession => "one-more-session",
        }
    }

    /// The limits the defective store is built with (the model always uses [`LIMITS`]).
    fn limits(self) -> SessionLimits {
        match self {
            Self::ReapplyRetries => LIMITS,
            Self::WindowOneLarger => SessionLimits {
                request_window: LIMITS.request_window + 1,
                ..LIMITS
            },
            Self::ExpiryOneLater => SessionLimits {
                session_expiry_entries: LIMITS.session_expiry_entries + 1,
                ..LIMITS
            },
            Self::OneMoreSession => SessionLimits {
                max_sessions: LIMITS.max_sessions + 1,
                ..LIMITS
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Environment

/// The value of a test-only variable; unset and empty both mean "not given".
fn env_value(var: &str) -> Option<String> {
    let value = std::env::var_os(var)?;
    let Some(value) = value.to_str() else {
        panic!("{var} must be valid UTF-8, not {value:?}");
    };
    (!value.is_empty()).then(|| value.to_owned())
}

fn env_number(var: &str) -> Option<u64> {
    let value = env_value(var)?;
    match value.parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{var} must be a whole number, not {value:?}"),
    }
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = env_number("KVD_SIM_SEED") {
        return vec![seed];
    }
    match env_number("KVD_SIM_SEEDS") {
        Some(0) => panic!("KVD_SIM_SEEDS must be at least 1, not 0"),
        Some(n) => (0..n).collect(),
        None => (0..DEFAULT_SEEDS).collect(),
    }
}

fn injected_defect() -> Option<Defect> {
    let value = env_value("KVD_SIM_INJECT")?;
    match Defect::ALL.into_iter().find(|d| d.name() == value) {
        Some(defect) => Some(defect),
        None => {
            let names: Vec<_> = Defect::ALL.iter().map(|d| d.name()).collect();
            panic!(
                "KVD_SIM_INJECT must be one of {}, not {value:?}",
                names.join(", ")
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

/// One client's requests so far, for retries and for ids out of order.
#[derive(Default)]
struct ClientRequests {
    next_id: u64,
    /// The last requests sent (encoded), newest last: retries resend one of them unchanged.
    sent: VecDeque<Bytes>,
    /// Ids skipped on purpose, to be sent later (below ids already sent).
    holes: Vec<u64>,
}

/// Proposes the clients' writes. Every random choice comes from the simulation's generator.
struct Workload {
    clients: Vec<ClientRequests>,
}

impl Workload {
    const SENT_KEPT: usize = 16;
    const HOLES_KEPT: usize = 4;

    fn new() -> Self {
        Self {
            clients: CLIENTS
                .iter()
                .map(|_| ClientRequests {
                    next_id: 1,
                    ..ClientRequests::default()
                })
                .collect(),
        }
    }

    fn pick_client(rng: &mut Rng) -> usize {
        let total: u64 = CLIENTS.iter().map(|(_, weight)| weight).sum();
        let mut roll = rng.range(0, total);
        for (i, (_, weight)) in CLIENTS.iter().enumerate() {
            if roll < *weight {
                return i;
            }
            roll -= weight;
        }
        unreachable!("the roll is below the sum of the weights")
    }

    /// The `n`-th command.
    fn next(&mut self, rng: &mut Rng, n: u64) -> Bytes {
        let client = Self::pick_client(rng);
        let roll = rng.range(0, 100);
        let name = CLIENTS[client].0;
        let state = &mut self.clients[client];
        if roll < 20 && !state.sent.is_empty() {
            // A retry, usually of a recent request, sometimes of one long gone from the window.
            let len = state.sent.len() as u64;
            let back = if rng.chance(0.75) {
                rng.range(0, len.min(5))
            } else {
                rng.range(0, len)
            };
            return state.sent[(len - 1 - back) as usize].clone();
        }
        let id = if roll < 26 && state.next_id > LIMITS.request_window as u64 + 2 {
            // A new request under an id older than the window.
            rng.range(1, state.next_id - LIMITS.request_window as u64 - 1)
        } else if roll < 30 && !state.holes.is_empty() {
            let at = rng.range(0, state.holes.len() as u64) as usize;
            state.holes.swap_remove(at)
        } else if roll < 38 {
            // No client id: no dedupe, so the request id means nothing (and often repeats).
            return Self::write("", rng.range(0, 3), rng, n);
        } else {
            if rng.chance(0.1) && state.holes.len() < Self::HOLES_KEPT {
                state.holes.push(state.next_id);
                state.next_id += 1;
            }
            state.next_id += 1;
            state.next_id - 1
        };
        let command = Self::write(name, id, rng, n);
        if state.sent.len() == Self::SENT_KEPT {
            state.sent.pop_front();
        }
        state.sent.push_back(command.clone());
        command
    }

    fn write(client: &str, id: u64, rng: &mut Rng, n: u64) -> Bytes {
        let key = KEYS[rng.range(0, KEYS.len() as u64) as usize];
        if rng.chance(0.25) {
            return command::encode_delete(client, id, key);
        }
        let roll = rng.range(0, 100);
        let value: Vec<u8> = if roll < 4 {
            // Larger than the size under which KvStore copies values out of the log entry.
            let len = rng.range(1100, 3000) as usize;
            (0..len).map(|i| (n as u8).wrapping_add(i as u8)).collect()
        } else if roll < 7 {
            Vec::new()
        } else {
            format!("v{n}").into_bytes()
        };
        command::encode_put(client, id, key, &value)
    }
}

// ---------------------------------------------------------------------------------------------
// The model

/// A client session as the documentation describes it.
#[derive(Debug)]
struct ModelSession {
    /// Every request id applied in this session (the window is its highest ids).
    applied: BTreeSet<u64>,
    /// Index of the client's last applied write.
    last_write: Index,
}

/// What happened in the model, summed over runs: shows the runs reached every rule.
#[derive(Clone, Debug, Default)]
struct Counts {
    commands: u64,
    applied: u64,
    duplicates: u64,
    too_old: u64,
    without_client: u64,
    large_values: u64,
    expired: u64,
    evicted: u64,
    /// Requests applied a second time because their client had been forgotten in between.
    reapplied_after_forgotten: u64,
    /// Answers compared (one per replica and applied command).
    checks: u64,
    /// Of those, by a machine whose state came from a snapshot.
    checks_after_snapshot: u64,
    /// Of those, by a machine made after a crash.
    checks_after_crash: u64,
    /// Retries recognised as duplicates by a machine whose state came from a snapshot: the
    /// sessions travelled with it.
    duplicates_after_snapshot: u64,
}

impl Counts {
    fn add(&mut self, other: &Self) {
        self.commands += other.commands;
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.too_old += other.too_old;
        self.without_client += other.without_client;
        self.large_values += other.large_values;
        self.expired += other.expired;
        self.evicted += other.evicted;
        self.reapplied_after_forgotten += other.reapplied_after_forgotten;
        self.checks += other.checks;
        self.checks_after_snapshot += other.checks_after_snapshot;
        self.checks_after_crash += other.checks_after_crash;
        self.duplicates_after_snapshot += other.duplicates_after_snapshot;
    }
}

/// The semantics of the README's "API" section and the `state_machine` docs, written from
/// them with plain collections, without calling [`KvStore`]:
///
/// - a put sets the key, a delete removes it; with an empty client id every write is applied;
/// - a request whose id is among its client's last `request_window` applied ids (its highest
///   ones: clients use increasing ids) is a duplicate: nothing changes;
/// - an id that left the window, or is below one that did, is too old: nothing changes;
/// - any other id is applied (out of order is fine while it is above every forgotten id);
/// - a client is forgotten once `session_expiry_entries` entries (of any kind) passed after
///   its last applied write without another one; duplicates and refusals are not writes;
/// - beyond `max_sessions` clients, the one whose last write is oldest is forgotten.
///
/// A forgotten client starts afresh: its old ids are applied again.
#[derive(Debug, Default)]
struct Model {
    data: BTreeMap<String, Bytes>,
    sessions: BTreeMap<String, ModelSession>,
    /// Every (client, id) ever applied, to count re-applications after forgetting.
    ever_applied: HashSet<(String, u64)>,
    counts: Counts,
}

impl Model {
    fn apply(&mut self, index: Index, request: &Request) -> WriteResult {
        let expiry = LIMITS.session_expiry_entries;
        let before = self.sessions.len();
        self.sessions
            .retain(|_, session| index - 1 - session.last_write < expiry);
        self.counts.expired += (before - self.sessions.len()) as u64;
        self.counts.commands += 1;
        let result = self.answer(request);
        match result {
            WriteResult::Duplicate => self.counts.duplicates += 1,
            WriteResult::TooOld => self.counts.too_old += 1,
            WriteResult::Applied => {
                self.counts.applied += 1;
                if request.client_id.is_empty() {
                    self.counts.without_client += 1;
                } else {
                    let session =
                        self.sessions
                            .entry(request.client_id.clone())
                            .or_insert(ModelSession {
                                applied: BTreeSet::new(),
                                last_write: index,
                            });
                    session.applied.insert(request.request_id);
                    session.last_write = index;
                    let key = (request.client_id.clone(), request.request_id);
                    if !self.ever_applied.insert(key) {
                        self.counts.reapplied_after_forgotten += 1;
                    }
                    while self.sessions.len() > LIMITS.max_sessions {
                        let oldest = self
                            .sessions
                            .iter()
                            .min_by_key(|(_, s)| s.last_write)
                            .map(|(client, _)| client.clone())
                            .expect("more sessions than the limit");
                        self.sessions.remove(&oldest);
                        self.counts.evicted += 1;
                    }
                }
                match &request.op {
                    Op::Put { key, value } => {
                        if value.len() > 1024 {
                            self.counts.large_values += 1;
                        }
                        self.data.insert(key.clone(), value.clone());
                    }
                    Op::Delete { key } => {
                        self.data.remove(key);
                    }
                }
            }
        }
        result
    }

    fn answer(&self, request: &Request) -> WriteResult {
        if request.client_id.is_empty() {
            return WriteResult::Applied;
        }
        let Some(session) = self.sessions.get(&request.client_id) else {
            return WriteResult::Applied;
        };
        let mut highest_first = session.applied.iter().rev();
        let window: Vec<u64> = highest_first
            .by_ref()
            .take(LIMITS.request_window)
            .copied()
            .collect();
        if window.contains(&request.request_id) {
            return WriteResult::Duplicate;
        }
        match highest_first.next() {
            Some(&forgotten) if request.request_id <= forgotten => WriteResult::TooOld,
            _ => WriteResult::Applied,
        }
    }

    fn data_bytes(&self) -> u64 {
        self.data
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// The record of a run, shared by its replicas

/// A write's outcome as a client and a reader see it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    answer: Result<WriteResult, String>,
    /// The written key.
    key: String,
    /// Every key's value afterwards, in the order of [`KEYS`] (the whole key space).
    values: Vec<Option<Bytes>>,
    keys: usize,
    sessions: usize,
    data_bytes: u64,
}

impl Outcome {
    fn value(&self, key: &str) -> Option<&Bytes> {
        let at = KEYS.iter().position(|k| *k == key)?;
        self.values[at].as_ref()
    }

    fn show(&self) -> String {
        let answer = match &self.answer {
            Ok(result) => format!("{result:?}"),
            Err(error) => format!("refused ({error})"),
        };
        format!(
            "{answer}, {:?} then {}, {} keys, {} sessions, {} data bytes",
            self.key,
            show_value(self.value(&self.key)),
            self.keys,
            self.sessions,
            self.data_bytes
        )
    }

    /// Keys other than the written one whose values differ.
    fn other_keys_differing(&self, other: &Self) -> Vec<String> {
        KEYS.iter()
            .filter(|k| **k != self.key && self.value(k) != other.value(k))
            .map(|k| {
                format!(
                    "{k:?} is {} in KvStore, {} in the model",
                    show_value(self.value(k)),
                    show_value(other.value(k))
                )
            })
            .collect()
    }
}

fn show_value(value: Option<&Bytes>) -> String {
    match value {
        None => "absent".into(),
        Some(v) if v.len() <= 24 => format!("{:?}", String::from_utf8_lossy(v)),
        Some(v) => format!("<{} bytes>", v.len()),
    }
}

fn describe(request: &Request) -> String {
    match &request.op {
        Op::Put { key, value } => format!(
            "put(client {:?}, request {}, {key:?} = {})",
            request.client_id,
            request.request_id,
            show_value(Some(value))
        ),
        Op::Delete { key } => format!(
            "delete(client {:?}, request {}, {key:?})",
            request.client_id, request.request_id
        ),
    }
}

/// What the model says about one index.
struct Expected {
    command: Bytes,
    request: Request,
    outcome: Outcome,
}

/// Where a machine's state came from, for the reports.
#[derive(Clone, Copy)]
struct MachineInfo {
    number: u64,
    from_snapshot: bool,
    after_crash: bool,
}

impl MachineInfo {
    fn show(self) -> String {
        let mut text = format!("machine {}", self.number);
        if self.after_crash {
            text.push_str(" (made after a crash)");
        }
        if self.from_snapshot {
            text.push_str(" (state from a snapshot)");
        }
        text
    }
}

struct RunRecord {
    seed: u64,
    model: Model,
    /// The model's answer and state for every command index applied so far.
    expected: BTreeMap<Index, Expected>,
    machines_made: u64,
    /// Machines made at the start (one per simulated node); later ones replace crashed nodes.
    initial_machines: u64,
    mismatches: Vec<String>,
    mismatch_count: u64,
}

type Shared = Rc<RefCell<RunRecord>>;

impl RunRecord {
    fn mismatch(&mut self, text: String) {
        self.mismatch_count += 1;
        if self.mismatches.len() < MAX_REPORTED {
            self.mismatches.push(text);
        }
    }

    /// Checks a replica's outcome at `index`; the first replica to get there advances the
    /// model.
    fn check(&mut self, index: Index, command: &Bytes, observed: &Outcome, machine: MachineInfo) {
        let last = self.expected.keys().next_back().copied().unwrap_or(0);
        if index > last {
            match Request::decode(command) {
                Ok(request) => {
                    let answer = self.model.apply(index, &request);
                    let key = match &request.op {
                        Op::Put { key, .. } | Op::Delete { key } => key.clone(),
                    };
                    let outcome = Outcome {
                        answer: Ok(answer),
                        key,
                        values: KEYS
                            .iter()
                            .map(|k| self.model.data.get(*k).cloned())
                            .collect(),
                        keys: self.model.data.len(),
                        sessions: self.model.sessions.len(),
                        data_bytes: self.model.data_bytes(),
                    };
                    let expected = Expected {
                        command: command.clone(),
                        request,
                        outcome,
                    };
                    self.expected.insert(index, expected);
                }
                Err(error) => {
                    let seed = self.seed;
                    self.mismatch(format!(
                        "seed {seed}, index {index}: the workload proposed an undecodable \
                         command ({error})"
                    ));
                    return;
                }
            }
        }
        self.model.counts.checks += 1;
        if machine.from_snapshot {
            self.model.counts.checks_after_snapshot += 1;
        }
        if machine.after_crash {
            self.model.counts.checks_after_crash += 1;
        }
        let seed = self.seed;
        let problem = match self.expected.get(&index) {
            None => Some(format!(
                "seed {seed}, index {index}, {}: a command applied where the first replica to \
                 get there applied none",
                machine.show()
            )),
            Some(expected) if expected.command != *command => Some(format!(
                "seed {seed}, index {index}, {}: applied a different command than the first \
                 replica",
                machine.show()
            )),
            Some(expected) if expected.outcome != *observed => {
                let mut text = format!(
                    "seed {seed}, index {index}, {}: {}\n  KvStore: {}\n  model:   {}\n",
                    machine.show(),
                    describe(&expected.request),
                    observed.show(),
                    expected.outcome.show(),
                );
                for line in observed.other_keys_differing(&expected.outcome) {
                    let _ = writeln!(text, "  {line}");
                }
                text.push_str(&self.client_history(index, &expected.request.client_id));
                Some(text)
            }
            Some(expected) => {
                if machine.from_snapshot && expected.outcome.answer == Ok(WriteResult::Duplicate) {
                    self.model.counts.duplicates_after_snapshot += 1;
                }
                None
            }
        };
        if let Some(problem) = problem {
            self.mismatch(problem);
        }
    }

    /// The model's last answers to `client` up to `index`, to explain a mismatch.
    fn client_history(&self, index: Index, client: &str) -> String {
        let mut lines: Vec<String> = self
            .expected
            .range(..=index)
            .rev()
            .filter(|(_, e)| e.request.client_id == client)
            .take(10)
            .map(|(i, e)| {
                let answer = e
                    .outcome
                    .answer
                    .as_ref()
                    .map_or("?".into(), |r| format!("{r:?}"));
                format!("    {i}: {} -> {answer}", describe(&e.request))
            })
            .collect();
        lines.reverse();
        format!(
            "  client {client:?} as the model saw it:\n{}",
            lines.join("\n")
        )
    }
}

// ---------------------------------------------------------------------------------------------
// KvStore as a simulated state machine

/// The snapshot image as `KvStore::snapshot` lays it out (part of the on-disk format), read
/// back to fingerprint the state: the session table is a hash map whose iteration order
/// differs between instances, so replicas' snapshot bytes differ while their states agree.
#[derive(Deserialize)]
struct SnapshotImage {
    applied: Index,
    data: Vec<(String, Bytes)>,
    sessions: Vec<(String, SessionImage)>,
}

#[derive(Deserialize, Hash)]
struct SessionImage {
    last_index: Index,
    recent: BTreeSet<u64>,
    forgotten_up_to: Option<u64>,
}

/// [`KvStore`] driven the way kvd's node loop drives it.
struct KvMachine {
    kv: KvStore,
    record: Shared,
    defect: Option<Defect>,
    info: MachineInfo,
}

impl KvMachine {
    fn new(record: &Shared, defect: Option<Defect>) -> Self {
        let mut shared = record.borrow_mut();
        shared.machines_made += 1;
        let info = MachineInfo {
            number: shared.machines_made,
            from_snapshot: false,
            after_crash: shared.machines_made > shared.initial_machines,
        };
        Self {
            kv: KvStore::new(defect.map_or(LIMITS, Defect::limits)),
            record: record.clone(),
            defect,
            info,
        }
    }
}

impl StateMachine for KvMachine {
    /// A no-op or membership entry: kvd's node loop hands it to `KvStore::apply_entry`, which
    /// skips it (sessions may expire there).
    fn skip(&mut self, index: Index) {
        self.kv.skip(index);
    }

    fn apply(&mut self, index: Index, command: &Bytes) {
        let entry = Entry::new(0, index, EntryPayload::Command(command.clone()));
        let mut answer = match self.kv.apply_entry(&entry) {
            Ok(Some(result)) => Ok(result),
            Ok(None) => Err("no result for a command".to_owned()),
            Err(error) => Err(error.to_string()),
        };
        let write = command::decode(command).ok();
        if self.defect == Some(Defect::ReapplyRetries)
            && answer == Ok(WriteResult::Duplicate)
            && let Some(write) = &write
        {
            let again = Write {
                client_id: "",
                ..write.clone()
            };
            answer = Ok(self.kv.apply(index, &again));
        }
        let key = write.map_or("", |w| match w.op {
            command::WriteOp::Put { key, .. } | command::WriteOp::Delete { key } => key,
        });
        let observed = Outcome {
            answer,
            key: key.to_owned(),
            values: KEYS.iter().map(|k| self.kv.get(k).cloned()).collect(),
            keys: self.kv.len(),
            sessions: self.kv.sessions(),
            data_bytes: self.kv.data_bytes(),
        };
        self.record
            .borrow_mut()
            .check(index, command, &observed, self.info);
    }

    fn snapshot(&self) -> Bytes {
        self.kv.snapshot()
    }

    fn restore(&mut self, data: &Bytes) {
        if let Err(error) = self.kv.restore(data) {
            let mut record = self.record.borrow_mut();
            let seed = record.seed;
            record.mismatch(format!(
                "seed {seed}, {}: a snapshot of {} bytes could not be restored: {error}",
                self.info.show(),
                data.len()
            ));
        }
        self.info.from_snapshot = !data.is_empty();
    }

    fn fingerprint(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        match postcard::from_bytes::<SnapshotImage>(&self.kv.snapshot()) {
            Ok(mut image) => {
                image.sessions.sort_by(|a, b| a.0.cmp(&b.0));
                image.applied.hash(&mut hasher);
                image.data.hash(&mut hasher);
                image.sessions.hash(&mut hasher);
            }
            Err(error) => {
                let mut record = self.record.borrow_mut();
                let seed = record.seed;
                record.mismatch(format!(
                    "seed {seed}: KvStore's snapshot does not read as this test's copy of its \
                     layout ({error}); update `SnapshotImage` here"
                ));
            }
        }
        hasher.finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Running seeds

struct SeedRun {
    result: Result<Report, raft::sim::Violation>,
    record: RunRecord,
    trace: Vec<String>,
}

fn run_seed(seed: u64, defect: Option<Defect>, trace: bool) -> SeedRun {
    let cfg = SimConfig {
        trace,
        ..SimConfig::new(seed)
    };
    let record: Shared = Rc::new(RefCell::new(RunRecord {
        seed,
        model: Model::default(),
        expected: BTreeMap::new(),
        machines_made: 0,
        initial_machines: (cfg.nodes + cfg.spare_nodes) as u64,
        mismatches: Vec::new(),
        mismatch_count: 0,
    }));
    let mut workload = Workload::new();
    let factory = record.clone();
    let mut sim = Simulation::with_machine(cfg, move || KvMachine::new(&factory, defect))
        .with_commands(move |rng, n| workload.next(rng, n));
    let result = sim.run();
    let trace = sim.trace().map(str::to_owned).collect();
    drop(sim);
    let record = Rc::try_unwrap(record)
        .ok()
        .expect("the simulation, and with it every machine, is gone")
        .into_inner();
    SeedRun {
        result,
        record,
        trace,
    }
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    committed: u64,
    crashes: u64,
    snapshots_installed: u64,
    membership_changes: u64,
    counts: Counts,
}

/// Runs the seeds; on the first that fails (a simulator invariant or a model mismatch),
/// returns its report with the command that replays it.
fn check_seeds(seeds: &[u64], defect: Option<Defect>) -> Result<Totals, String> {
    let mut totals = Totals::default();
    for &seed in seeds {
        let run = run_seed(seed, defect, false);
        if let Ok(report) = &run.result
            && run.record.mismatch_count == 0
        {
            totals.seeds += 1;
            totals.committed += report.committed;
            totals.crashes += report.crashes;
            totals.snapshots_installed += report.snapshots_installed;
            totals.membership_changes += report.membership_changes;
            totals.counts.add(&run.record.model.counts);
            continue;
        }
        let mut text = String::new();
        let record = &run.record;
        if record.mismatch_count > 0 {
            let _ = writeln!(
                text,
                "seed {seed}: {} answers differ from the model; the first {}:",
                record.mismatch_count,
                record.mismatches.len()
            );
            for mismatch in &record.mismatches {
                let _ = writeln!(text, "- {mismatch}");
            }
        }
        if let Err(violation) = &run.result {
            // The trace is recorded only on demand: it slows every run down.
            let traced = run_seed(seed, defect, true);
            let tail = &traced.trace[traced.trace.len().saturating_sub(60)..];
            let _ = writeln!(
                text,
                "seed {seed}: simulator invariant broken: {violation}\nlast events:\n{}",
                tail.join("\n")
            );
        }
        let inject = defect.map_or(String::new(), |d| format!("KVD_SIM_INJECT={} ", d.name()));
        let _ = write!(
            text,
            "replay with: {inject}KVD_SIM_SEED={seed} cargo test -p kvd --test sim_state_machine"
        );
        return Err(text);
    }
    Ok(totals)
}

#[test]
fn kvstore_answers_as_documented_through_faults() {
    let defect = injected_defect();
    let seeds = seeds();
    let totals = check_seeds(&seeds, defect).unwrap_or_else(|failure| {
        let note = defect.map_or(String::new(), |d| {
            format!(
                "\n(KVD_SIM_INJECT={} is on: this failure is expected)",
                d.name()
            )
        });
        panic!("{failure}{note}")
    });
    let c = &totals.counts;
    eprintln!(
        "{} seeds: {} entries committed, {} crashes, {} snapshots installed, {} membership \
         changes; {} commands: {} applied ({} without client id, {} large values), {} \
         duplicates, {} too old, {} sessions expired, {} evicted, {} requests applied again \
         after their client was forgotten; {} answers checked, {} by machines restored from a \
         snapshot ({} of them duplicates), {} by machines made after a crash",
        totals.seeds,
        totals.committed,
        totals.crashes,
        totals.snapshots_installed,
        totals.membership_changes,
        c.commands,
        c.applied,
        c.without_client,
        c.large_values,
        c.duplicates,
        c.too_old,
        c.expired,
        c.evicted,
        c.reapplied_after_forgotten,
        c.checks,
        c.checks_after_snapshot,
        c.duplicates_after_snapshot,
        c.checks_after_crash,
    );
    // A replayed seed may legitimately miss some of these; a batch must not, or the test
    // would pass without exercising what it claims to check.
    if totals.seeds >= 20 {
        let floors = [
            ("duplicates", c.duplicates),
            ("too-old refusals", c.too_old),
            ("writes without client id", c.without_client),
            ("large values", c.large_values),
            ("session expiries", c.expired),
            ("session evictions", c.evicted),
            (
                "re-applications after forgetting",
                c.reapplied_after_forgotten,
            ),
            ("checks after a snapshot", c.checks_after_snapshot),
            ("duplicates after a snapshot", c.duplicates_after_snapshot),
            ("checks after a crash", c.checks_after_crash),
            ("snapshots installed", totals.snapshots_installed),
        ];
        for (what, count) in floors {
            assert!(
                count * 4 >= totals.seeds,
                "only {count} {what} in {} seeds (fewer than one in four): the workload or the \
                 faults no longer reach it",
                totals.seeds
            );
        }
    }
}

/// The negative controls: each defect must be caught, and its report must name the mismatch.
#[test]
fn the_model_catches_a_defective_machine() {
    let seeds: Vec<u64> = (0..40).collect();
    for defect in Defect::ALL {
        let failure = match check_seeds(&seeds, Some(defect)) {
            Ok(totals) => panic!(
                "{} went unnoticed through {} seeds",
                defect.name(),
                totals.seeds
            ),
            Err(failure) => failure,
        };
        assert!(
            failure.contains("differ from the model"),
            "{}: caught, but not by the model:\n{failure}",
            defect.name()
        );
        if defect == Defect::ReapplyRetries {
            assert!(
                failure.contains("KvStore: Applied") && failure.contains("model:   Duplicate"),
                "the re-applied retry is not what was reported:\n{failure}"
            );
        }
        let first: Vec<&str> = failure.lines().take(6).collect();
        eprintln!(
            "{} caught as expected:\n{}\n",
            defect.name(),
            first.join("\n")
        );
    }
}
