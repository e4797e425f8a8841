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
//! per-follower probe/replicate states, a bounded window of appends in flight, fast
//! backtracking with conflict hints and a bounded, backed-off resend to a follower that
//! acknowledges nothing; commitment only by counting current-term replicas; proposal
//! batching; a cap on uncommitted bytes; batched ReadIndex reads on the leader and forwarded
//! from followers, each with a deadline and a cap; snapshots, log compaction and
//! InstallSnapshot; membership changes (below); leadership transfer.
//!
//! # Changing the membership
//!
//! [`Node::propose_membership`] takes the *target* configuration ([`Membership`]: voters and
//! learners) and picks the way there:
//! - a change of **at most one voter** (learners may change alongside) is appended as it is:
//!   any majority of the old voters overlaps any majority of the new ones;
//! - **anything else** — replacing a node, adding or removing several voters — goes through
//!   **joint consensus**: the core appends `C_old,new`, where every election and commit needs
//!   a majority of both voter sets, and once that commits it appends `C_new` by itself.
//!
//! A configuration takes effect on a node as soon as it is in its log. The rules that keep
//! changes safe, each refused with its own [`Error`]:
//! - only the leader changes the membership ([`Error::NotLeader`]), not during a leadership
//!   transfer ([`Error::TransferInProgress`]), and only once it has committed an entry of its
//!   own term ([`Error::LeaderNotReady`]);
//! - one change at a time: the previous one, and the joint configuration it entered, must
//!   have committed ([`Error::MembershipChangeInProgress`]);
//! - a node becomes a voter only once its log is within [`Config::catch_up_entries`] of the
//!   leader's: add it as a learner first ([`Error::NotCaughtUp`]);
//! - a target must keep a voter and name no node 0 ([`Error::InvalidMembership`]).
//!
//! A new node starts with [`Node::new`] and an empty [`Membership`], and waits for the leader
//! to reach it. A leader that removes itself keeps leading until the configuration without it
//! commits, then steps down. A removed node never campaigns once its removal is in its log and
//! committed; one that never learned of its removal is kept from disturbing the cluster by
//! PreVote and CheckQuorum (keep at least one of them on; both are by default). A driver
//! should stop a node that learns it was removed ([`Node::membership`] no longer contains it).
//!
//! # Testing with the simulator
//!
//! [`sim`] is public API: a deterministic simulator of whole clusters under faults, with
//! Raft's safety properties checked after every step, that embedders run on their own state
//! machines. The `test-util` feature adds hooks only tests need (injected bugs for the
//! simulator's negative controls, building a [`MemStorage`] by hand); production builds leave
//! it off.

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
