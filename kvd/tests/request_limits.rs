//! Key and value limits at their edges, against a real one-node `kvd`: a key or value of
//! exactly the limit is accepted and reads back byte for byte; one byte more is
//! `INVALID_ARGUMENT` naming the limit, and nothing reaches the log (the node's last index,
//! key count and client sessions are unchanged). An empty key is refused everywhere.
//!
//! Most checks run with small limits (`KVD_MAX_KEY_BYTES`, `KVD_MAX_VALUE_BYTES`) so they
//! are quick; one test runs the defaults (4096-byte keys, 1 MiB values).

mod support;

use kvd::proto::admin::admin_client::AdminClient;
use kvd::proto::admin::{StatusRequest, StatusResponse};
use kvd::proto::kv::GetRequest as KvdGetRequest;
use kvd::proto::kv::kv_client::KvClient as KvdClient;
use support::Cluster;
use support::seed::{DeleteRequest, GetRequest, PutRequest};
use tonic::transport::Channel;
use tonic::{Code, Status};

const SMALL_KEY_LIMIT: usize = 16;
const SMALL_VALUE_LIMIT: usize = 64;

/// A one-node cluster with the given limits (`None`: the default), once it leads.
async fn one_node(limits: Option<(usize, usize)>) -> Cluster {
    let key_limit;
    let value_limit;
    let env: Vec<(&str, &str)> = match limits {
        Some((key, value)) => {
            key_limit = key.to_string();
            value_limit = value.to_string();
            vec![
                ("KVD_MAX_KEY_BYTES", key_limit.as_str()),
                ("KVD_MAX_VALUE_BYTES", value_limit.as_str()),
            ]
        }
        None => Vec::new(),
    };
    let cluster = Cluster::start_with(1, "tcp", &env);
    cluster.leader().await;
    cluster
}

fn channel(cluster: &Cluster) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.client[0]))
        .expect("endpoint")
        .connect_lazy()
}

async fn status(cluster: &Cluster) -> StatusResponse {
    AdminClient::new(channel(cluster))
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

/// A key of `bytes` bytes (ASCII, so bytes and characters agree).
fn key_of(bytes: usize, fill: char) -> String {
    std::iter::repeat_n(fill, bytes).collect()
}

/// A value of `bytes` bytes with a pattern, so a truncated or shifted read-back shows.
fn value_of(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| (i % 251) as u8).collect()
}

fn put(key: &str, value: Vec<u8>) -> PutRequest {
    PutRequest {
        key: key.to_string(),
        value,
        client_id: String::new(),
        request_id: 0,
    }
}

/// Asserts `result` is `INVALID_ARGUMENT` and its message contains every one of `words`.
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, words: &[&str], what: &str) {
    match result {
        Err(status) => {
            assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
            for word in words {
                assert!(
                    status.message().contains(word),
                    "{what}: {word:?} missing from {:?}",
                    status.message()
                );
            }
        }
        Ok(answer) => panic!("{what}: accepted ({answer:?}), expected INVALID_ARGUMENT"),
    }
}

/// Reads `key` linearizably and from local state; both must agree.
async fn read(cluster: &Cluster, key: &str) -> Option<Vec<u8>> {
    let mut seed = cluster.client(0).await;
    let answer = seed
        .get(GetRequest { key: key.into() })
        .await
        .expect("get")
        .into_inner();
    let linearizable = answer.found.then_some(answer.value);
    let stale = KvdClient::new(channel(cluster))
        .get(KvdGetRequest {
            key: key.into(),
            stale: true,
        })
        .await
        .expect("stale get")
        .into_inner();
    let local = stale.found.then(|| stale.value.to_vec());
    assert_eq!(
        linearizable, local,
        "stale and linearizable reads of {key:?}"
    );
    linearizable
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_values_at_the_limit_pass_and_one_byte_over_is_refused() {
    let cluster = one_node(Some((SMALL_KEY_LIMIT, SMALL_VALUE_LIMIT))).await;
    let mut kv = cluster.client(0).await;
    let limit_key = key_of(SMALL_KEY_LIMIT, 'k');
    let over_key = key_of(SMALL_KEY_LIMIT + 1, 'k');
    let limit_value = value_of(SMALL_VALUE_LIMIT);

    // At the limit, key and value together: stored and read back exactly.
    let answer = kv.put(put(&limit_key, limit_value.clone())).await;
    assert!(answer.expect("put at the limit").into_inner().ok);
    assert_eq!(read(&cluster, &limit_key).await, Some(limit_value.clone()));
    let before = status(&cluster).await;

    // One byte over, for every request that carries a key or a value.
    let key_words = ["key", &(SMALL_KEY_LIMIT + 1).to_string(), "limit is 16"];
    assert_invalid(
        kv.put(put(&over_key, b"v".to_vec())).await,
        &key_words,
        "put, key one over",
    );
    assert_invalid(
        kv.get(GetRequest {
            key: over_key.clone(),
        })
        .await,
        &key_words,
        "get, key one over",
    );
    assert_invalid(
        KvdClient::new(channel(&cluster))
            .get(KvdGetRequest {
                key: over_key.clone(),
                stale: true,
            })
            .await,
        &key_words,
        "stale get, key one over",
    );
    assert_invalid(
        kv.delete(DeleteRequest {
            key: over_key.clone(),
            client_id: String::new(),
            request_id: 0,
        })
        .await,
        &key_words,
        "delete, key one over",
    );
    let value_words = ["value", &(SMALL_VALUE_LIMIT + 1).to_string(), "limit is 64"];
    assert_invalid(
        kv.put(put(&limit_key, value_of(SMALL_VALUE_LIMIT + 1)))
            .await,
        &value_words,
        "put, value one over",
    );
    // The refused put did not overwrite the value already stored under its key.
    assert_eq!(read(&cluster, &limit_key).await, Some(limit_value));

    // The limit counts bytes, not characters: 8 two-byte characters fit, 8 and one more
    // byte do not.
    let wide = key_of(SMALL_KEY_LIMIT / 2, 'é');
    assert_eq!(wide.len(), SMALL_KEY_LIMIT);
    assert_invalid(
        kv.put(put(&format!("{wide}!"), b"w".to_vec())).await,
        &["limit is 16"],
        "put, multi-byte key one byte over",
    );

    // Nothing refused reached the log or the state.
    let after = status(&cluster).await;
    assert_eq!(
        after.last_index, before.last_index,
        "a refused request was logged"
    );
    assert_eq!(after.keys, before.keys);

    assert!(
        kv.put(put(&wide, b"w".to_vec()))
            .await
            .unwrap()
            .into_inner()
            .ok
    );
    assert_eq!(read(&cluster, &wide).await, Some(b"w".to_vec()));
    // Delete at the limit works too.
    let deleted = kv
        .delete(DeleteRequest {
            key: limit_key.clone(),
            client_id: String::new(),
            request_id: 0,
        })
        .await;
    assert!(deleted.expect("delete at the limit").into_inner().ok);
    assert_eq!(read(&cluster, &limit_key).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_does_not_use_up_its_request_id() {
    let cluster = one_node(Some((SMALL_KEY_LIMIT, SMALL_VALUE_LIMIT))).await;
    let mut kv = cluster.client(0).await;
    let with_id = |key: &str, value: Vec<u8>| PutRequest {
        client_id: "edge-client".into(),
        request_id: 7,
        ..put(key, value)
    };
    assert_invalid(
        kv.put(with_id("session", value_of(SMALL_VALUE_LIMIT + 1)))
            .await,
        &["limit is 64"],
        "put with ids, value one over",
    );
    assert_invalid(
        kv.put(with_id(&key_of(SMALL_KEY_LIMIT + 1, 's'), b"x".to_vec()))
            .await,
        &["limit is 16"],
        "put with ids, key one over",
    );
    // Had a refused request been recorded in the client's session, this one (same ids)
    // would be answered as a duplicate and not applied.
    let answer = kv.put(with_id("session", b"applied".to_vec())).await;
    assert!(answer.expect("put with ids").into_inner().ok);
    assert_eq!(read(&cluster, "session").await, Some(b"applied".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_key_is_refused_by_every_request() {
    let cluster = one_node(Some((SMALL_KEY_LIMIT, SMALL_VALUE_LIMIT))).await;
    let mut kv = cluster.client(0).await;
    let before = status(&cluster).await;
    let words = ["key", "empty"];
    assert_invalid(kv.put(put("", b"v".to_vec())).await, &words, "put");
    assert_invalid(kv.get(GetRequest { key: "".into() }).await, &words, "get");
    assert_invalid(
        KvdClient::new(channel(&cluster))
            .get(KvdGetRequest {
                key: "".into(),
                stale: true,
            })
            .await,
        &words,
        "stale get",
    );
    assert_invalid(
        kv.delete(DeleteRequest {
            key: "".into(),
            client_id: String::new(),
            request_id: 0,
        })
        .await,
        &words,
        "delete",
    );
    let after = status(&cluster).await;
    assert_eq!(
        after.last_index, before.last_index,
        "a refused request was logged"
    );
    assert_eq!(after.keys, 0);
    // An empty value is a value like any other.
    assert!(kv.put(put("k", Vec::new())).await.unwrap().into_inner().ok);
    assert_eq!(read(&cluster, "k").await, Some(Vec::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limits_are_4096_byte_keys_and_1_mib_values() {
    const KEY_LIMIT: usize = 4096;
    const VALUE_LIMIT: usize = 1 << 20;
    let cluster = one_node(None).await;
    let mut kv = cluster.client(0).await;
    let limit_key = key_of(KEY_LIMIT, 'd');
    let limit_value = value_of(VALUE_LIMIT);

    let answer = kv.put(put(&limit_key, limit_value.clone())).await;
    assert!(answer.expect("put at the default limits").into_inner().ok);
    assert_eq!(read(&cluster, &limit_key).await, Some(limit_value.clone()));
    let before = status(&cluster).await;

    assert_invalid(
        kv.put(put(&key_of(KEY_LIMIT + 1, 'd'), b"v".to_vec()))
            .await,
        &["4097", "limit is 4096"],
        "put, key one over the default",
    );
    assert_invalid(
        kv.get(GetRequest {
            key: key_of(KEY_LIMIT + 1, 'd'),
        })
        .await,
        &["limit is 4096"],
        "get, key one over the default",
    );
    assert_invalid(
        kv.put(put(&limit_key, value_of(VALUE_LIMIT + 1))).await,
        &["1048577", "limit is 1048576"],
        "put, value one over the default",
    );
    assert_eq!(read(&cluster, &limit_key).await, Some(limit_value));
    let after = status(&cluster).await;
    assert_eq!(
        after.last_index, before.last_index,
        "a refused request was logged"
    );
    assert_eq!(after.keys, before.keys);
}
