//! Raft peer transport over QUIC with mutual TLS (not built yet).
