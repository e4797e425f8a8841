//! Placeholder until the QUIC benches land.

fn main() {}
