//! Benchmarks: the criterion suites live in `benches/benches/`.
