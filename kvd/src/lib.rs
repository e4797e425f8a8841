//! The kvd server: node loop, storage, state machine and gRPC API (not built yet).
