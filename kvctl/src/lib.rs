//! The kvctl command-line client (not built yet).
