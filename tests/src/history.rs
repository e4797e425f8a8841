//! Recording a history while concurrent clients run: every operation's invocation and
//! completion on one monotonic clock, and its outcome.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::linearizability::{Command, Operation, Outcome};

/// A shared, append-only history. Cheap to clone; clones append to the same history.
#[derive(Clone, Debug)]
pub struct Recorder {
    origin: Instant,
    operations: Arc<Mutex<Vec<Operation>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty history whose clock starts now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            operations: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Nanoseconds since the history began. Take it just before sending a request.
    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Appends an operation invoked at `invoked_ns` that completes now with `outcome`.
    pub fn record(&self, client: u64, command: Command, invoked_ns: u64, outcome: Outcome) {
        self.record_with_note(client, command, invoked_ns, outcome, "");
    }

    /// [`Recorder::record`] with a note for reports (e.g. the node that answered).
    pub fn record_with_note(
        &self,
        client: u64,
        command: Command,
        invoked_ns: u64,
        outcome: Outcome,
        note: &str,
    ) {
        let completed_ns = self.now_ns().max(invoked_ns);
        let operation =
            Operation::new(client, command, invoked_ns, completed_ns, outcome).with_note(note);
        self.operations
            .lock()
            .expect("not poisoned")
            .push(operation);
    }

    /// A copy of every operation recorded so far.
    pub fn operations(&self) -> Vec<Operation> {
        self.operations.lock().expect("not poisoned").clone()
    }
}

/// Counts of a history's operations by outcome, for summary lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Every operation.
    pub operations: usize,
    /// Acknowledged.
    pub ok: usize,
    /// Writes that may or may not have taken effect.
    pub unknown: usize,
    /// Failed for sure (and reads that got no answer).
    pub failed: usize,
}

impl Tally {
    /// Counts `history`.
    pub fn of(history: &[Operation]) -> Self {
        let mut tally = Self::default();
        for operation in history {
            tally.operations += 1;
            match operation.outcome() {
                Outcome::Ok => tally.ok += 1,
                Outcome::Unknown => tally.unknown += 1,
                Outcome::Failed => tally.failed += 1,
            }
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_recorded_in_time() {
        let recorder = Recorder::new();
        let invoked = recorder.now_ns();
        recorder.record(1, Command::put("k", "v"), invoked, Outcome::Ok);
        recorder
            .clone()
            .record(2, Command::delete("k"), invoked, Outcome::Unknown);
        let history = recorder.operations();
        assert_eq!(history.len(), 2);
        assert!(history[0].completed_ns() >= history[0].invoked_ns());
        let tally = Tally::of(&history);
        assert_eq!((tally.operations, tally.ok, tally.unknown), (2, 1, 1));
    }
}
