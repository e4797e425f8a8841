//! The clients of a chaos run: concurrent tasks doing put/get/delete over a small key set,
//! each write with a value no other write uses (so a read names the write it saw), every
//! operation recorded with its outcome.
//!
//! Outcomes: an acknowledged call is [`Outcome::Ok`]; a write the cluster refused
//! (`INVALID_ARGUMENT`, `FAILED_PRECONDITION`) is [`Outcome::Failed`]; a write that ran out
//! of time or connections (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, timeouts, anything else) is
//! [`Outcome::Unknown`]. A read that got no answer had no effect and is recorded as failed,
//! which the checker ignores.
//!
//! # Forwarded answers
//!
//! A node that is not the leader forwards a request to the node it believes leads and
//! relays the answer, naming that node in `leader`. The chaos runs once found a forwarded
//! write answered `ok: false` by a deposed leader and relayed as if applied; kvd now answers
//! such a request with `UNAVAILABLE` and kvctl retries `ok: false` answers (see
//! `tests/forwarded_answers.rs`). Relayed answers are therefore trusted by default; a
//! [`Worker`] that does not [`trust_forwarded`](Worker::trust_forwarded) answers records
//! forwarded writes as [`Outcome::Unknown`] and forwarded reads as failed, a weaker check kept
//! for comparison (`CHAOS_DISTRUST_FORWARDED=1`).

use std::time::Duration;

use kvctl::client::{Client, Consistency, Error, WriteOutcome};
use tokio::sync::watch;
use tonic::Code;

use crate::history::Recorder;
use crate::linearizability::{Command, Outcome};
use crate::rng::Rng;

/// One client task's settings.
#[derive(Clone, Debug)]
pub struct Worker {
    id: u64,
    keys: Vec<String>,
    consistency: Consistency,
    seed: u64,
    trust_forwarded: bool,
}

impl Worker {
    /// Client `id` over `keys`, reading with `consistency`, choosing operations from `seed`.
    pub fn new(id: u64, keys: Vec<String>, consistency: Consistency, seed: u64) -> Self {
        Self {
            id,
            keys,
            consistency,
            seed,
            trust_forwarded: true,
        }
    }

    /// Records answers relayed by a forwarding node like any other (see the module docs:
    /// with today's kvd and kvctl this reports false acknowledgements as violations).
    pub fn trust_forwarded(mut self, trust: bool) -> Self {
        self.trust_forwarded = trust;
        self
    }

    /// Runs operations one after another until `stop` is true (an operation in flight
    /// finishes first), recording each in `recorder`. `client` should carry a client id of its
    /// own (see [`Client::with_client_id`]).
    pub async fn run(self, client: Client, recorder: Recorder, stop: watch::Receiver<bool>) {
        let mut rng = Rng::new(self.seed);
        let mut written = 0u64;
        while !*stop.borrow() {
            let key = &self.keys[rng.index(self.keys.len())];
            let roll = rng.below(100);
            let invoked = recorder.now_ns();
            if roll < 50 {
                let result = client.get(key, self.consistency).await;
                let (found, outcome, note) = match result {
                    Ok(answer) => {
                        let note = answered_by(&answer.endpoint, &answer.leader);
                        if answer.leader.is_empty() || self.trust_forwarded {
                            (answer.value, Outcome::Ok, note)
                        } else {
                            (answer.value, Outcome::Failed, note)
                        }
                    }
                    Err(_) => (None, Outcome::Failed, String::new()),
                };
                let found = found.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
                let command = Command::Get {
                    key: key.clone(),
                    found,
                };
                recorder.record_with_note(self.id, command, invoked, outcome, &note);
            } else if roll < 85 {
                written += 1;
                let value = format!("{}-{written}", self.id);
                let result = client.put(key, value.clone().into_bytes()).await;
                let command = Command::Put {
                    key: key.clone(),
                    value,
                };
                let outcome = self.write_outcome(&result);
                recorder.record_with_note(self.id, command, invoked, outcome, &note_of(&result));
            } else {
                let result = client.delete(key).await;
                let command = Command::Delete { key: key.clone() };
                let outcome = self.write_outcome(&result);
                recorder.record_with_note(self.id, command, invoked, outcome, &note_of(&result));
            }
            // Leave the two cores some room for the nodes themselves.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl Worker {
    fn write_outcome(&self, result: &Result<WriteOutcome, Error>) -> Outcome {
        match result {
            Ok(answer) if !answer.leader.is_empty() && !self.trust_forwarded => Outcome::Unknown,
            _ => write_outcome(result),
        }
    }
}

/// `via <endpoint>`, plus `-> <leader>` when that node forwarded the request.
fn answered_by(endpoint: &str, leader: &str) -> String {
    if leader.is_empty() {
        format!("via {endpoint}")
    } else {
        format!("via {endpoint} -> {leader}")
    }
}

fn note_of(result: &Result<WriteOutcome, Error>) -> String {
    match result {
        Ok(answer) => answered_by(&answer.endpoint, &answer.leader),
        Err(error) => error.to_string(),
    }
}

/// What a write's result says about whether it took effect.
pub fn write_outcome(result: &Result<WriteOutcome, Error>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(Error::Rejected {
            code: Code::InvalidArgument | Code::FailedPrecondition,
            ..
        }) => Outcome::Failed,
        Err(_) => Outcome::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_are_certain_failures() {
        let rejected = |code| {
            write_outcome(&Err(Error::Rejected {
                code,
                message: String::new(),
            }))
        };
        assert_eq!(rejected(Code::InvalidArgument), Outcome::Failed);
        assert_eq!(rejected(Code::FailedPrecondition), Outcome::Failed);
        assert_eq!(rejected(Code::Internal), Outcome::Unknown);
        let timed_out = Err(Error::Unavailable {
            timeout: Duration::from_secs(1),
            attempts: 3,
            last: "no answer".into(),
        });
        assert_eq!(write_outcome(&timed_out), Outcome::Unknown);
        let ok = Ok(WriteOutcome {
            request_id: 1,
            leader: String::new(),
            endpoint: "e".into(),
        });
        assert_eq!(write_outcome(&ok), Outcome::Ok);
    }
}
