//! Raft peer transport over plain TCP with length-prefixed frames (not built yet).
