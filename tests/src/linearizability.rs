//! A linearizability checker for histories of a key-value register store.
//!
//! A history is a list of [`Operation`]s: what a client asked for ([`Command`]), when it
//! asked (invocation) and when it heard back (completion), and what it heard ([`Outcome`]).
//! [`check`] decides whether some total order of the operations exists that respects real
//! time (an operation that completed before another was invoked comes first) and explains
//! every read with a sequential key-value map.
//!
//! # How
//!
//! Keys are independent registers, so the history is split per key (linearizability is
//! compositional) and each key is checked alone. The search is the one of Wing & Gong as
//! improved by Lowe and used by Porcupine: walk the history's invocation and completion
//! events in time order, try to linearize each pending operation, backtrack on a dead end,
//! and remember every (set of linearized operations, register value) pair already explored
//! so no configuration is searched twice.
//!
//! # Outcomes
//!
//! - [`Outcome::Ok`]: the operation took effect between its invocation and completion.
//! - [`Outcome::Failed`]: it certainly did not take effect; it is left out.
//! - [`Outcome::Unknown`]: a write that may take effect at any time after its invocation,
//!   or never. It is treated as completing at the end of time. A read with an unknown
//!   outcome tells nothing and is left out.
//!
//! An unknown `Put` whose value no read returned is also left out: if the write took
//! effect, nobody saw it before it was overwritten, so removing it from any linearization
//! leaves a valid one. This keeps the search small when faults leave many writes unknown.
//!
//! # Example
//!
//! ```
//! use tests::linearizability::{check, Command, Operation, Outcome, Verdict};
//!
//! let history = vec![
//!     Operation::new(1, Command::put("k", "a"), 0, 10, Outcome::Ok),
//!     // Invoked after the put completed, yet sees nothing: a stale read.
//!     Operation::new(2, Command::get("k", None), 20, 30, Outcome::Ok),
//! ];
//! assert!(matches!(check(&history, 100_000), Verdict::Violation(_)));
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// What an operation asked of the store (and, for a read, what it returned).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Set `key` to `value`.
    Put {
        /// The key written.
        key: String,
        /// The value written (values should be unique per write so reads identify it).
        value: String,
    },
    /// Remove `key`.
    Delete {
        /// The key removed.
        key: String,
    },
    /// Read `key`; `found` is what the read returned (`None`: the key did not exist).
    Get {
        /// The key read.
        key: String,
        /// The value the read returned.
        found: Option<String>,
    },
}

impl Command {
    /// A `Put` of `value` under `key`.
    pub fn put(key: &str, value: &str) -> Self {
        Self::Put {
            key: key.to_string(),
            value: value.to_string(),
        }
    }

    /// A `Delete` of `key`.
    pub fn delete(key: &str) -> Self {
        Self::Delete {
            key: key.to_string(),
        }
    }

    /// A `Get` of `key` that returned `found`.
    pub fn get(key: &str, found: Option<&str>) -> Self {
        Self::Get {
            key: key.to_string(),
            found: found.map(str::to_string),
        }
    }

    /// The key the command is about.
    pub fn key(&self) -> &str {
        match self {
            Self::Put { key, .. } | Self::Delete { key } | Self::Get { key, .. } => key,
        }
    }

    fn is_read(&self) -> bool {
        matches!(self, Self::Get { .. })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Put { key, value } => write!(f, "put {key} = {value:?}"),
            Self::Delete { key } => write!(f, "delete {key}"),
            Self::Get { key, found: None } => write!(f, "get {key} -> (none)"),
            Self::Get {
                key,
                found: Some(value),
            } => write!(f, "get {key} -> {value:?}"),
        }
    }
}

/// How an operation ended, as far as the client could tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Acknowledged: it took effect between invocation and completion.
    Ok,
    /// Definitely did not take effect (e.g. rejected as invalid).
    Failed,
    /// May take effect at any time after invocation, or never (timeout, lost connection).
    Unknown,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        })
    }
}

/// One operation of a history. Times are nanoseconds on one monotonic clock shared by all
/// clients of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    client: u64,
    command: Command,
    invoked_ns: u64,
    completed_ns: u64,
    outcome: Outcome,
    note: String,
}

impl Operation {
    /// An operation by `client`, invoked at `invoked_ns` and answered at `completed_ns`
    /// (for an [`Outcome::Unknown`] write, when the client gave up).
    pub fn new(
        client: u64,
        command: Command,
        invoked_ns: u64,
        completed_ns: u64,
        outcome: Outcome,
    ) -> Self {
        assert!(
            invoked_ns <= completed_ns,
            "operation completes ({completed_ns}) before it is invoked ({invoked_ns})"
        );
        Self {
            client,
            command,
            invoked_ns,
            completed_ns,
            outcome,
            note: String::new(),
        }
    }

    /// The same operation with a free-form note for reports (e.g. which node answered).
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// The note given with [`Operation::with_note`] (empty if none).
    pub fn note(&self) -> &str {
        &self.note
    }

    /// The client (process) that ran the operation.
    pub fn client(&self) -> u64 {
        self.client
    }

    /// What was asked (and read).
    pub fn command(&self) -> &Command {
        &self.command
    }

    /// When the client sent it.
    pub fn invoked_ns(&self) -> u64 {
        self.invoked_ns
    }

    /// When the client heard back or gave up.
    pub fn completed_ns(&self) -> u64 {
        self.completed_ns
    }

    /// How it ended.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>12.6}s .. {:>12.6}s  client {:<3} {:<8} {}",
            self.invoked_ns as f64 / 1e9,
            self.completed_ns as f64 / 1e9,
            self.client,
            self.outcome.to_string(),
            self.command
        )?;
        if !self.note.is_empty() {
            write!(f, "  [{}]", self.note)?;
        }
        Ok(())
    }
}

/// The result of [`check`].
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Every key's history is linearizable.
    Linearizable,
    /// Some key's history is not.
    Violation(Box<Violation>),
    /// The search for `key` explored more states than the budget allowed: no answer.
    Unknown {
        /// The key whose search was cut short.
        key: String,
    },
}

impl Verdict {
    /// `linearizable`, `violation` or `unknown`, for summary lines.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Linearizable => "linearizable",
            Self::Violation(_) => "violation",
            Self::Unknown { .. } => "unknown",
        }
    }
}

/// A key whose history cannot be linearized, with an explanation.
#[derive(Clone, Debug)]
pub struct Violation {
    key: String,
    history: Vec<Operation>,
    excerpt: String,
}

impl Violation {
    /// The offending key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Every operation on the key, in invocation order.
    pub fn history(&self) -> &[Operation] {
        &self.history
    }

    /// A short, readable explanation: where the longest linearization found got stuck.
    pub fn excerpt(&self) -> &str {
        &self.excerpt
    }

    /// Writes the excerpt and the key's full history to `<dir>/<name>.txt`; returns the path.
    pub fn write_to(&self, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.txt"));
        let mut text = String::new();
        text.push_str(&self.excerpt);
        let _ = writeln!(
            text,
            "\nfull history of key {:?} ({} operations):",
            self.key,
            self.history.len()
        );
        for operation in &self.history {
            let _ = writeln!(text, "  {operation}");
        }
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

/// Checks `history` key by key. `budget` (plus 8 per operation of the key) caps the states
/// explored per key; a key that
/// needs more is reported as [`Verdict::Unknown`] (violations win over unknowns).
pub fn check(history: &[Operation], budget: usize) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for operation in history {
        by_key
            .entry(operation.command.key())
            .or_default()
            .push(operation);
    }
    let mut unknown = None;
    for (key, operations) in by_key {
        match check_key(key, &operations, budget) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Violation(violation) => return Verdict::Violation(violation),
            KeyVerdict::Unknown => {
                unknown.get_or_insert_with(|| key.to_string());
            }
        }
    }
    match unknown {
        Some(key) => Verdict::Unknown { key },
        None => Verdict::Linearizable,
    }
}

enum KeyVerdict {
    Linearizable,
    Violation(Box<Violation>),
    Unknown,
}

/// A value of the register, interned: `None` is "absent".
type State = Option<u32>;

#[derive(Clone, Copy)]
enum Step {
    Put(u32),
    Delete,
    Get(State),
}

impl Step {
    /// The register after this step from `state`, or `None` if the step is impossible there.
    fn apply(self, state: State) -> Option<State> {
        match self {
            Self::Put(value) => Some(Some(value)),
            Self::Delete => Some(None),
            Self::Get(found) => (found == state).then_some(state),
        }
    }
}

/// The key's operations that matter to the search.
fn relevant<'a>(operations: &[&'a Operation]) -> Vec<&'a Operation> {
    let read_values: HashSet<&str> = operations
        .iter()
        .filter(|op| op.outcome == Outcome::Ok)
        .filter_map(|op| match &op.command {
            Command::Get {
                found: Some(value), ..
            } => Some(value.as_str()),
            _ => None,
        })
        .collect();
    operations
        .iter()
        .copied()
        .filter(|op| match (op.outcome, &op.command) {
            (Outcome::Failed, _) => false,
            (Outcome::Unknown, command) if command.is_read() => false,
            (Outcome::Unknown, Command::Put { value, .. }) => read_values.contains(value.as_str()),
            _ => true,
        })
        .collect()
}

/// Where the deepest partial linearization got stuck, for the excerpt.
struct Deepest {
    depth: usize,
    last: Vec<usize>,
    state: State,
    candidates: Vec<usize>,
}

fn check_key(key: &str, all: &[&Operation], budget: usize) -> KeyVerdict {
    let operations = relevant(all);
    let count = operations.len();
    if count == 0 {
        return KeyVerdict::Linearizable;
    }
    // Even a plain sequential history needs one state per operation: the budget guards
    // against blow-ups in the branching, so it grows with the history.
    let budget = budget.saturating_add(count.saturating_mul(8));
    let mut values: HashMap<&str, u32> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let mut steps = Vec::with_capacity(count);
    for operation in &operations {
        steps.push(match &operation.command {
            Command::Put { value, .. } => Step::Put(intern(value, &mut values, &mut names)),
            Command::Delete { .. } => Step::Delete,
            Command::Get { found: None, .. } => Step::Get(None),
            Command::Get {
                found: Some(value), ..
            } => Step::Get(Some(intern(value, &mut values, &mut names))),
        });
    }

    // Events: index 0 is the head sentinel, 2 * count + 1 the tail sentinel; event
    // 1 + 2i is operation i's invocation, 2 + 2i its completion.
    // An unknown-outcome put whose value was read did take effect, and before the first read
    // that saw it completed: that bounds it like a completion (when no other put wrote the
    // same value). Otherwise it would stay pending to the end of the history, and the search
    // would try it at every step of a long run.
    let mut writers: HashMap<&str, usize> = HashMap::new();
    let mut first_seen: HashMap<&str, u64> = HashMap::new();
    for operation in &operations {
        match (&operation.command, operation.outcome) {
            (Command::Put { value, .. }, _) => *writers.entry(value.as_str()).or_default() += 1,
            (
                Command::Get {
                    found: Some(value), ..
                },
                Outcome::Ok,
            ) => {
                let seen = first_seen.entry(value.as_str()).or_insert(u64::MAX);
                *seen = (*seen).min(operation.completed_ns);
            }
            _ => {}
        }
    }
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * count);
    for (i, operation) in operations.iter().enumerate() {
        let completed = match (&operation.command, operation.outcome) {
            (Command::Put { value, .. }, Outcome::Unknown)
                if writers.get(value.as_str()) == Some(&1) =>
            {
                first_seen
                    .get(value.as_str())
                    .copied()
                    .unwrap_or(u64::MAX)
                    .max(operation.invoked_ns)
            }
            (_, Outcome::Unknown) => u64::MAX,
            _ => operation.completed_ns,
        };
        // At equal times an invocation sorts before a completion (`false < true`), so
        // operations touching at one instant count as concurrent: never a false alarm.
        order.push((operation.invoked_ns, false, i));
        order.push((completed, true, i));
    }
    order.sort();
    let head = 0;
    let tail = 2 * count + 1;
    let event_of = |i: usize, is_completion: bool| 1 + 2 * i + usize::from(is_completion);
    let mut next = vec![tail; 2 * count + 2];
    let mut prev = vec![head; 2 * count + 2];
    let mut previous = head;
    for &(_, is_completion, i) in &order {
        let event = event_of(i, is_completion);
        next[previous] = event;
        prev[event] = previous;
        previous = event;
    }
    next[previous] = tail;
    prev[tail] = previous;
    let operation_of = |event: usize| (event - 1) / 2;
    let is_invocation = |event: usize| (event - 1).is_multiple_of(2);

    // Search states are memoised by (set of linearized operations, state). The set is kept
    // as a 128-bit Zobrist hash (XOR of a random key per operation) rather than a bitmap, so
    // a state costs the same in a history of a million operations as in one of ten. A
    // collision could only prune a branch (a false alarm, never a missed violation) and has
    // odds of about states² / 2^128.
    let keys: Vec<u128> = {
        let mut rng = crate::rng::Rng::new(0x1ea5_ab1e ^ count as u64);
        (0..count)
            .map(|_| (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()))
            .collect()
    };
    let mut linearized: u128 = 0;
    let mut seen: HashSet<(u128, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state: State = None;
    let mut deepest = Deepest {
        depth: 0,
        last: Vec::new(),
        state: None,
        candidates: Vec::new(),
    };
    let mut event = next[head];
    loop {
        if next[head] == tail {
            return KeyVerdict::Linearizable;
        }
        if is_invocation(event) {
            let i = operation_of(event);
            if let Some(after) = steps[i].apply(state) {
                linearized ^= keys[i];
                if seen.insert((linearized, after)) {
                    if seen.len() > budget {
                        return KeyVerdict::Unknown;
                    }
                    stack.push((event, state));
                    state = after;
                    // Lift the operation out of the list: its invocation and completion.
                    let completion = event + 1;
                    next[prev[event]] = next[event];
                    prev[next[event]] = prev[event];
                    next[prev[completion]] = next[completion];
                    prev[next[completion]] = prev[completion];
                    if stack.len() > deepest.depth {
                        deepest = Deepest {
                            depth: stack.len(),
                            last: stack
                                .iter()
                                .rev()
                                .take(5)
                                .map(|&(e, _)| operation_of(e))
                                .collect(),
                            state,
                            candidates: pending(&next, head, tail, operation_of, is_invocation),
                        };
                    }
                    event = next[head];
                    continue;
                }
                linearized ^= keys[i];
            }
            event = next[event];
        } else {
            // A completion reached: its operation must have been linearized by now.
            let Some((lifted, before)) = stack.pop() else {
                if deepest.depth == 0 {
                    deepest.candidates = pending(&next, head, tail, operation_of, is_invocation);
                }
                return KeyVerdict::Violation(Box::new(violation(
                    key,
                    all,
                    &operations,
                    &deepest,
                    &names,
                    count,
                )));
            };
            let i = operation_of(lifted);
            linearized ^= keys[i];
            state = before;
            // Put the operation back, in the reverse order of lifting.
            let completion = lifted + 1;
            next[prev[completion]] = completion;
            prev[next[completion]] = completion;
            next[prev[lifted]] = lifted;
            prev[next[lifted]] = lifted;
            event = next[lifted];
        }
    }
}

/// The small number standing for `value` in the search.
fn intern<'a>(value: &'a str, values: &mut HashMap<&'a str, u32>, names: &mut Vec<&'a str>) -> u32 {
    *values.entry(value).or_insert_with(|| {
        names.push(value);
        names.len() as u32 - 1
    })
}

/// The operations that could be linearized next: invocations before the first completion.
fn pending(
    next: &[usize],
    head: usize,
    tail: usize,
    operation_of: impl Fn(usize) -> usize,
    is_invocation: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let mut candidates = Vec::new();
    let mut event = next[head];
    while event != tail && is_invocation(event) && candidates.len() < 10 {
        candidates.push(operation_of(event));
        event = next[event];
    }
    if event != tail && !is_invocation(event) {
        // The first completion: the operation that had to be linearized before it.
        let stuck = operation_of(event);
        if !candidates.contains(&stuck) {
            candidates.push(stuck);
        }
    }
    candidates
}

fn violation(
    key: &str,
    all: &[&Operation],
    operations: &[&Operation],
    deepest: &Deepest,
    names: &[&str],
    count: usize,
) -> Violation {
    let mut excerpt = String::new();
    let _ = writeln!(
        excerpt,
        "key {key:?} is not linearizable: the longest linearization found covers {} of {count} \
         operations",
        deepest.depth
    );
    if !deepest.last.is_empty() {
        let _ = writeln!(
            excerpt,
            "last operations of that linearization (latest first):"
        );
        for &i in &deepest.last {
            let _ = writeln!(excerpt, "  {}", operations[i]);
        }
    }
    let state = match deepest.state {
        None => "(none)".to_string(),
        Some(id) => format!("{:?}", names[id as usize]),
    };
    let _ = writeln!(excerpt, "value of {key:?} after it: {state}");
    let _ = writeln!(
        excerpt,
        "none of these can come next (impossible from that value, or a dead end later):"
    );
    for &i in &deepest.candidates {
        let _ = writeln!(excerpt, "  {}", operations[i]);
    }
    let mut history: Vec<Operation> = all.iter().map(|&op| op.clone()).collect();
    history.sort_by_key(|op| (op.invoked_ns, op.completed_ns));
    Violation {
        key: key.to_string(),
        history,
        excerpt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: usize = 100_000;

    fn op(client: u64, command: Command, invoked: u64, completed: u64) -> Operation {
        Operation::new(client, command, invoked, completed, Outcome::Ok)
    }

    fn unknown(client: u64, command: Command, invoked: u64, completed: u64) -> Operation {
        Operation::new(client, command, invoked, completed, Outcome::Unknown)
    }

    fn assert_linearizable(history: &[Operation]) {
        match check(history, BUDGET) {
            Verdict::Linearizable => {}
            Verdict::Violation(v) => panic!("unexpected violation:\n{}", v.excerpt()),
            Verdict::Unknown { key } => panic!("budget exhausted on {key}"),
        }
    }

    fn assert_violation(history: &[Operation]) -> Box<Violation> {
        match check(history, BUDGET) {
            Verdict::Violation(v) => v,
            other => panic!("expected a violation, got {}", other.label()),
        }
    }

    #[test]
    fn an_empty_history_is_linearizable() {
        assert_linearizable(&[]);
    }

    #[test]
    fn sequential_put_get_delete_get() {
        assert_linearizable(&[
            op(1, Command::get("k", None), 0, 1),
            op(1, Command::put("k", "a"), 2, 3),
            op(1, Command::get("k", Some("a")), 4, 5),
            op(1, Command::delete("k"), 6, 7),
            op(1, Command::get("k", None), 8, 9),
        ]);
    }

    #[test]
    fn a_stale_read_is_a_violation() {
        let violation = assert_violation(&[
            op(1, Command::put("k", "a"), 0, 10),
            op(1, Command::put("k", "b"), 20, 30),
            op(2, Command::get("k", Some("a")), 40, 50),
        ]);
        assert_eq!(violation.key(), "k");
        assert!(
            violation.excerpt().contains("get k -> \"a\""),
            "{}",
            violation.excerpt()
        );
    }

    #[test]
    fn a_lost_acknowledged_write_is_a_violation() {
        assert_violation(&[
            op(1, Command::put("k", "a"), 0, 10),
            op(2, Command::get("k", None), 20, 30),
        ]);
        // Lost after a read already saw it.
        assert_violation(&[
            op(1, Command::put("k", "a"), 0, 10),
            op(2, Command::get("k", Some("a")), 20, 30),
            op(3, Command::get("k", None), 40, 50),
        ]);
    }

    #[test]
    fn reading_a_value_never_written_is_a_violation() {
        assert_violation(&[
            op(1, Command::put("k", "a"), 0, 10),
            op(2, Command::get("k", Some("z")), 5, 30),
        ]);
    }

    #[test]
    fn a_failed_write_must_not_be_seen() {
        assert_violation(&[
            Operation::new(1, Command::put("k", "a"), 0, 10, Outcome::Failed),
            op(2, Command::get("k", Some("a")), 20, 30),
        ]);
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        for seen in [Some("a"), Some("b")] {
            assert_linearizable(&[
                op(1, Command::put("k", "a"), 0, 10),
                op(1, Command::put("k", "b"), 20, 40),
                op(2, Command::get("k", seen), 25, 35),
            ]);
        }
    }

    #[test]
    fn two_reads_cannot_see_a_write_undone() {
        // Both reads overlap the put of "b", but once one saw "b" a later read cannot see
        // "a" again.
        assert_violation(&[
            op(1, Command::put("k", "a"), 0, 10),
            op(1, Command::put("k", "b"), 20, 100),
            op(2, Command::get("k", Some("b")), 30, 40),
            op(3, Command::get("k", Some("a")), 50, 60),
        ]);
    }

    #[test]
    fn an_unknown_write_may_appear_later() {
        assert_linearizable(&[
            unknown(1, Command::put("k", "a"), 0, 10),
            op(2, Command::get("k", None), 20, 30),
            op(2, Command::get("k", Some("a")), 40, 50),
            op(2, Command::get("k", Some("a")), 60, 70),
        ]);
    }

    #[test]
    fn an_unknown_write_may_never_appear() {
        assert_linearizable(&[
            unknown(1, Command::put("k", "a"), 0, 10),
            op(2, Command::get("k", None), 20, 30),
        ]);
    }

    #[test]
    fn an_unknown_write_takes_effect_at_most_once() {
        assert_violation(&[
            op(1, Command::put("k", "a"), 0, 10),
            unknown(1, Command::put("k", "b"), 20, 30),
            op(2, Command::get("k", Some("b")), 40, 50),
            op(1, Command::put("k", "c"), 60, 70),
            op(2, Command::get("k", Some("b")), 80, 90),
        ]);
    }

    #[test]
    fn an_unknown_write_cannot_take_effect_before_it_was_invoked() {
        assert_violation(&[
            op(2, Command::get("k", Some("a")), 0, 10),
            unknown(1, Command::put("k", "a"), 20, 30),
        ]);
    }

    #[test]
    fn an_unknown_delete_may_explain_a_missing_key() {
        assert_linearizable(&[
            op(1, Command::put("k", "a"), 0, 10),
            unknown(1, Command::delete("k"), 20, 30),
            op(2, Command::get("k", None), 40, 50),
        ]);
    }

    #[test]
    fn unknown_and_failed_reads_are_ignored() {
        assert_linearizable(&[
            op(1, Command::put("k", "a"), 0, 10),
            unknown(2, Command::get("k", Some("zzz")), 20, 30),
            Operation::new(2, Command::get("k", None), 40, 50, Outcome::Failed),
        ]);
    }

    #[test]
    fn keys_are_independent() {
        assert_linearizable(&[
            op(1, Command::put("x", "1"), 0, 10),
            op(1, Command::put("y", "2"), 20, 30),
            op(2, Command::get("x", Some("1")), 40, 50),
            op(2, Command::get("y", Some("2")), 40, 50),
        ]);
        let violation = assert_violation(&[
            op(1, Command::put("x", "1"), 0, 10),
            op(2, Command::get("y", Some("1")), 40, 50),
        ]);
        assert_eq!(violation.key(), "y");
    }

    #[test]
    fn many_concurrent_clients_with_unknowns_finish_quickly() {
        // Four clients, each writing then reading its own value back, all overlapping, with
        // every other write unknown: many interleavings, all linearizable.
        let mut history = Vec::new();
        for round in 0..200u64 {
            let base = round * 100;
            for client in 0..4u64 {
                let value = format!("{round}-{client}");
                let outcome = if client % 2 == 0 {
                    Outcome::Ok
                } else {
                    Outcome::Unknown
                };
                history.push(Operation::new(
                    client,
                    Command::put("k", &value),
                    base + client,
                    base + 50,
                    outcome,
                ));
            }
            history.push(op(
                9,
                Command::get("k", Some(&format!("{round}-0"))),
                base + 10,
                base + 20,
            ));
        }
        assert_linearizable(&history);
    }

    #[test]
    fn the_budget_turns_a_hard_search_into_unknown() {
        let mut history = Vec::new();
        for client in 0..12u64 {
            history.push(op(client, Command::put("k", &client.to_string()), 0, 100));
        }
        history.push(op(99, Command::get("k", Some("nope")), 200, 300));
        assert!(matches!(check(&history, 50), Verdict::Unknown { .. }));
    }

    #[test]
    fn a_violation_is_written_with_the_whole_key_history() {
        let violation = assert_violation(&[
            op(1, Command::put("k", "a"), 0, 10),
            op(1, Command::put("other", "x"), 0, 10),
            op(2, Command::get("k", None), 20, 30),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = violation.write_to(dir.path(), "violation").unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("put k = \"a\""), "{text}");
        assert!(text.contains("get k -> (none)"), "{text}");
        assert!(!text.contains("other"), "{text}");
    }

    /// A long run on one key: four clients, overlapping operations, and every so often a put
    /// whose client gave up (unknown outcome) but whose value a later read saw.
    fn long_history(ops: u64) -> Vec<Operation> {
        let mut history = Vec::new();
        let mut last = String::from("v0");
        history.push(op(0, Command::put("k", &last), 0, 5));
        for n in 1..ops {
            let t = n * 100;
            let client = n % 4;
            if n % 3 == 0 {
                history.push(op(client, Command::get("k", Some(&last)), t, t + 150));
            } else {
                let value = format!("v{n}");
                if n % 1000 == 1 {
                    // The client gave up long after; a read below sees the value.
                    history.push(unknown(client, Command::put("k", &value), t, t + 1));
                } else {
                    history.push(op(client, Command::put("k", &value), t, t + 90));
                }
                last = value;
            }
        }
        history
    }

    #[test]
    fn a_long_history_with_observed_unknown_writes_is_checked_within_the_budget() {
        assert_linearizable(&long_history(200_000));
    }

    #[test]
    fn a_stale_read_at_the_end_of_a_long_history_is_caught() {
        let mut history = long_history(100_000);
        let end = 100_000 * 100 + 1_000;
        // v2 was acknowledged and overwritten long ago (v1, an unknown write, could still
        // land late, so reading it would not be a violation).
        history.push(op(7, Command::get("k", Some("v2")), end, end + 10));
        assert_violation(&history);
    }
}
