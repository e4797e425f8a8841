//! A sans-IO Raft consensus core.
//!
//! [`Node`] is a pure state machine: the driver feeds it events (peer messages, proposals,
//! reads, timeouts, completions of storage work), each stamped with the current time as an
//! [`Instant`], and drains [`Output`]s from one ordered queue: what to persist, what to send,
//! what to apply. The core never touches a clock, a socket, a file, a thread or a global random
//! generator; the same inputs always give the same outputs. That is what lets [`sim`] test it
//! across thousands of seeded fault schedules, and what lets you embed it with any IO.
//!
//! # The event loop contract
//!
//! ```text
//! loop {
//!     wait for: a peer message | a client request | a storage completion | poll_timeout()
//!     feed it:  step / propose / read_index / persisted / applied / handle_timeout
//!     while let Some(out) = node.poll_output() {
//!         Persist(p)        -> write p (snapshot, entries, hard state), fsync, then persisted(p.token())
//!         Send{to, message} -> hand to the transport
//!         Apply(entries)    -> apply to the state machine, then applied(last index)
//!         ApplySnapshot(s)  -> replace the state machine with s, then applied(s index)
//!         ReadReady{id,..}  -> serve read `id` from the state machine
//!         ReadFailed{..}    -> fail read `id`
//!         FetchEntries{..}  -> read entries from storage, then entries_fetched(entries)
//!         SnapshotNeeded{to}-> send_snapshot(to, latest snapshot)
//!         RoleChanged{..}   -> note leadership (fail requests waiting on a lost leadership)
//!     }
//! }
//! ```
//!
//! Storage completions may come back later, from another thread's work: the core holds back
//! every message that depends on state not yet durable ("persist before you speak"), so an
//! asynchronous driver stays safe. See [`Node`] for the details and a compiled example, and
//! `examples/three_nodes.rs` for a complete three-node program over threads and channels.
//!
//! # What is implemented
//!
//! Leader election with randomized timeouts, PreVote and CheckQuorum; log replication with
//! per-follower probe/replicate states, a bounded window of appends in flight and fast
//! backtracking with conflict hints; commitment only by counting current-term replicas;
//! proposal batching; a cap on uncommitted bytes; batched ReadIndex reads on the leader and
//! forwarded from followers; snapshots, log compaction and InstallSnapshot; learners;
//! one-voter-at-a-time membership changes carried in the log; leadership transfer.

mod config;
mod election;
mod entry;
mod error;
mod log;
mod mem_storage;
mod membership;
mod membership_change;
mod message;
mod node;
mod output;
mod progress;
mod read_index;
mod replication;
mod rng;
pub mod sim;
mod snapshot;
mod stats;
mod step;
mod types;

pub use config::Config;
pub use entry::{Entry, EntryPayload, HardState, Snapshot, SnapshotMeta};
pub use error::Error;
pub use mem_storage::MemStorage;
pub use membership::{Membership, VoteResult};
pub use message::{AppendOutcome, Message};
pub use node::{Node, RestoreState};
pub use output::{Output, Persist, PersistToken};
pub use rng::Rng;
pub use stats::Stats;
pub use types::{Index, Instant, NodeId, Role, Term};
