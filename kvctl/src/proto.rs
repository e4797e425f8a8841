//! Generated gRPC clients for kvd's client API (`kv`, compatible with the seed's `kv.proto`)
//! and admin API (`kvd.admin`).

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// The client API, package `kv`.
pub mod kv {
    tonic::include_proto!("kv");
}

/// The admin API, package `kvd.admin`.
pub mod admin {
    tonic::include_proto!("kvd.admin");
}
