//! Placeholder until the TCP benches land.

fn main() {}
