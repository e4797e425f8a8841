//! The shared conformance suite run against the QUIC transport.

mod support;

transport::conformance_tests!(support::QuicHarness::new());
