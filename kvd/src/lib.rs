//! The kvd server: node loop, storage, state machine and gRPC API.
//!
//! Built so far: the replicated command format ([`command`]) and the state machine with
//! client sessions ([`state_machine`]).

pub mod command;
pub mod config;
pub mod proto;
pub mod state_machine;
