//! The Raft peer transport interface shared by `transport-tcp` and `transport-quic`.
//!
//! A transport carries [`raft::Message`]s between nodes. Both implementations return the same
//! [`Transport`] handle (non-blocking [`Transport::send`], async [`Transport::shutdown`]) and
//! the same [`Events`] stream ([`Event::Message`], [`Event::Unreachable`],
//! [`Event::PeerInfo`]). What lives here:
//!
//! - [`codec`]: frames `[u32 big-endian length][postcard payload]` with a size limit;
//! - [`handshake`]: the hello exchanged at the start of every connection;
//! - [`TransportConfig`], [`Counters`], [`SendError`];
//! - the engine ([`Engine`], [`Connector`], [`Acceptor`]) that runs per-peer links with bounded
//!   lanes ([`Lane`]), reconnection back-off and clean shutdown on top of any byte stream;
//! - [`faults`]: test-only fault injection (cut peers off, delay messages), for both
//!   transports;
//! - [`conformance`]: the test suite every transport must pass.
//!
//! A driver's loop, in short:
//!
//! ```no_run
//! # async fn drive(transport: transport::Transport, mut events: transport::Events) {
//! use transport::Event;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Message { from, message } => { /* node.step(from, message) */ }
//!         Event::Unreachable { peer } => { /* node.report_unreachable(peer) */ }
//!         Event::PeerInfo { peer, metadata } => { /* remember peer's client address */ }
//!     }
//!     // for each outgoing (to, message) of the core: transport.send(to, message)
//! }
//! transport.shutdown().await;
//! # }
//! ```

mod backoff;
#[cfg(feature = "bench")]
pub mod bench;
pub mod codec;
mod config;
pub mod conformance;
mod counters;
mod engine;
mod error;
mod event;
pub mod faults;
mod handle;
pub mod handshake;
mod inbound;
mod link;
mod outbox;
mod reader;

pub use codec::{FrameCodec, FrameError};
pub use config::{DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_SNAPSHOT_BYTES, TransportConfig};
pub use counters::{Counter, Counters};
pub use engine::{Acceptor, Connector, Engine};
pub use error::SendError;
pub use event::{Event, Events};
pub use faults::{FaultRules, PeerFaults};
pub use handle::Transport;
pub use handshake::Channel;
pub use outbox::Lane;
pub use reader::FrameReader;
