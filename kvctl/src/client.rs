//! A smart client for a kvd cluster: finds the leader, follows `leader` hints, and retries
//! across endpoints until a deadline.
//!
//! # Retries and idempotency
//!
//! Every write carries a `(client_id, request_id)` pair. The cluster applies a pair at most
//! once (client sessions are part of the replicated state), so the client may resend a write
//! as often as it likes: [`Client`] keeps the *same* pair on every retry of one call, including
//! retries that go to another node after a failover. A new call takes a new request id from an
//! increasing sequence (nanoseconds since the Unix epoch at start-up, then +1 per call), unless
//! the caller fixes one with [`Client::put_with_id`] / [`Client::delete_with_id`].
//!
//! What is retried: `UNAVAILABLE` (no leader known, node shutting down, connection refused or
//! reset), `DEADLINE_EXCEEDED` from a node that could not reach the cluster in time, and
//! per-attempt timeouts. The next attempt goes to the leader named in the last answer if
//! there was one, otherwise to the next endpoint; after every endpoint has failed once the
//! client sleeps with exponential backoff. Everything else (`INVALID_ARGUMENT`,
//! `FAILED_PRECONDITION`, ...) is returned at once as [`Error::Rejected`].
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), kvctl::client::Error> {
//! use kvctl::client::{Client, ClientConfig, Consistency};
//!
//! let config = ClientConfig::new(["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]);
//! let client = Client::new(config)?;
//! client.put("greeting", b"hello".to_vec()).await?;
//! let answer = client.get("greeting", Consistency::Linearizable).await?;
//! assert_eq!(answer.value.as_deref(), Some(&b"hello"[..]));
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::identity;
use crate::proto::admin::admin_client::AdminClient;
use crate::proto::admin::{StatusRequest, StatusResponse};
use crate::proto::kv::kv_client::KvClient;
use crate::proto::kv::{DeleteRequest, GetRequest, HealthRequest, HealthResponse, PutRequest};

/// What a [`Client`] call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration lists no endpoints.
    #[error("no endpoints given")]
    NoEndpoints,
    /// An endpoint is not a valid `host:port`.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The cluster refused the request; retrying it unchanged would not help.
    #[error("{code:?}: {message}")]
    Rejected {
        /// The gRPC status code (e.g. `InvalidArgument`, `FailedPrecondition`).
        code: Code,
        /// The server's message.
        message: String,
    },
    /// No node completed the request before the deadline.
    #[error(
        "no answer from the cluster within {timeout:?} ({attempts} attempts); last error: {last}"
    )]
    Unavailable {
        /// The overall timeout that ran out.
        timeout: Duration,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        last: String,
    },
}

/// How a read is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Confirmed with a quorum (ReadIndex): sees every write acknowledged before it started.
    #[default]
    Linearizable,
    /// Served from the contacted node's state without confirming leadership; may be stale.
    Stale,
}

/// Settings of a [`Client`]. Build with [`ClientConfig::new`] and adjust the fields' setters.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    endpoints: Vec<String>,
    client_id: String,
    timeout: Duration,
    attempt_timeout: Duration,
    connect_timeout: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl ClientConfig {
    /// Defaults for these endpoints (`host:port` or `http://host:port`): the client id from
    /// [`identity::default_client_id`], a 5 s overall timeout, 2 s per attempt, backoff from
    /// 20 ms doubling up to 500 ms.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            client_id: identity::default_client_id(),
            timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
        }
    }

    /// The client id sent with writes (empty: the cluster does not deduplicate).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// How long one call may take in total, retries included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long one attempt against one node may take.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The first backoff after every endpoint failed once, and its cap.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }
}

/// The answer to a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The request id the write carried (on every attempt).
    pub request_id: u64,
    /// The `leader` field of the final answer: the leader's address when the node that
    /// answered forwarded the write, empty when it was the leader.
    pub leader: String,
    /// The endpoint that gave the final answer.
    pub endpoint: String,
}

/// The answer to a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The value, or `None` if the key does not exist.
    pub value: Option<Vec<u8>>,
    /// The `leader` field of the final answer (see [`WriteOutcome::leader`]).
    pub leader: String,
    /// The endpoint that gave the final answer.
    pub endpoint: String,
}

/// Connections shared by every [`Client`] made from the same [`Client::new`].
#[derive(Debug)]
struct Pool {
    config: ClientConfig,
    channels: Mutex<HashMap<String, Channel>>,
    /// The address last seen leading (from a hint or a successful write).
    leader: Mutex<Option<String>>,
}

/// A cluster client. Cheap to clone; clones share connections, identity and request ids.
#[derive(Clone, Debug)]
pub struct Client {
    pool: Arc<Pool>,
    client_id: Arc<str>,
    next_request_id: Arc<AtomicU64>,
}

/// One attempt's failure, classified.
enum AttemptError {
    Retry(String),
    Fatal(Error),
}

impl Client {
    /// A client over `config`'s endpoints. Connections are made lazily, on first use.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        if config.endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let endpoints: Vec<String> = config
            .endpoints
            .iter()
            .map(|e| normalize_endpoint(e))
            .collect();
        let mut channels = HashMap::new();
        for endpoint in &endpoints {
            channels.insert(endpoint.clone(), make_channel(endpoint, &config)?);
        }
        let client_id: Arc<str> = config.client_id.clone().into();
        let config = ClientConfig {
            endpoints,
            ..config
        };
        Ok(Self {
            pool: Arc::new(Pool {
                config,
                channels: Mutex::new(channels),
                leader: Mutex::new(None),
            }),
            client_id,
            next_request_id: Arc::new(AtomicU64::new(identity::initial_request_id())),
        })
    }

    /// A client sharing this one's connections and leader knowledge, with another client id
    /// and its own request id sequence (e.g. one per concurrent worker).
    pub fn with_client_id(&self, client_id: impl Into<String>) -> Self {
        Self {
            pool: Arc::clone(&self.pool),
            client_id: client_id.into().into(),
            next_request_id: Arc::new(AtomicU64::new(identity::initial_request_id())),
        }
    }

    /// A client with the same settings and identity over connections of its own (e.g. to
    /// spread load over several HTTP/2 connections).
    pub fn with_new_connections(&self) -> Result<Self, Error> {
        let fresh = Self::new(self.pool.config.clone())?;
        Ok(Self {
            pool: fresh.pool,
            ..self.clone()
        })
    }

    /// The client id sent with writes.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The endpoints this client was configured with (normalized to `host:port`).
    pub fn endpoints(&self) -> &[String] {
        &self.pool.config.endpoints
    }

    /// Takes the next request id of this client's sequence.
    pub fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Stores `value` under `key` with the next request id.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<WriteOutcome, Error> {
        self.put_with_id(key, value, self.next_request_id()).await
    }

    /// Stores `value` under `key` with a caller-chosen request id. Sending the same
    /// `(client_id, request_id)` again is answered `ok` without applying the write again.
    pub async fn put_with_id(
        &self,
        key: &str,
        value: Vec<u8>,
        request_id: u64,
    ) -> Result<WriteOutcome, Error> {
        let request = PutRequest {
            key: key.to_string(),
            value,
            client_id: self.client_id.to_string(),
            request_id,
        };
        let hint = &self.pool.leader;
        let (endpoint, answer) = self
            .retry(|mut kv| {
                let request = request.clone();
                async move {
                    let answer = kv.put(request).await?.into_inner();
                    if !answer.ok {
                        return Err(not_applied(hint, &answer.leader));
                    }
                    Ok(answer)
                }
            })
            .await?;
        Ok(self.wrote(request_id, answer.leader, endpoint))
    }

    /// Deletes `key` (deleting a missing key succeeds) with the next request id.
    pub async fn delete(&self, key: &str) -> Result<WriteOutcome, Error> {
        self.delete_with_id(key, self.next_request_id()).await
    }

    /// Deletes `key` with a caller-chosen request id (see [`Client::put_with_id`]).
    pub async fn delete_with_id(&self, key: &str, request_id: u64) -> Result<WriteOutcome, Error> {
        let request = DeleteRequest {
            key: key.to_string(),
            client_id: self.client_id.to_string(),
            request_id,
        };
        let hint = &self.pool.leader;
        let (endpoint, answer) = self
            .retry(|mut kv| {
                let request = request.clone();
                async move {
                    let answer = kv.delete(request).await?.into_inner();
                    if !answer.ok {
                        return Err(not_applied(hint, &answer.leader));
                    }
                    Ok(answer)
                }
            })
            .await?;
        Ok(self.wrote(request_id, answer.leader, endpoint))
    }

    /// Reads `key`.
    pub async fn get(&self, key: &str, consistency: Consistency) -> Result<ReadOutcome, Error> {
        let request = GetRequest {
            key: key.to_string(),
            stale: consistency == Consistency::Stale,
        };
        let (endpoint, answer) = self
            .retry(|mut kv| {
                let request = request.clone();
                async move { kv.get(request).await.map(|r| r.into_inner()) }
            })
            .await?;
        if !answer.leader.is_empty() {
            self.remember_leader(&answer.leader);
        }
        Ok(ReadOutcome {
            value: answer.found.then_some(answer.value),
            leader: answer.leader,
            endpoint,
        })
    }

    /// Asks one node for its health, in a single attempt.
    pub async fn health(&self, endpoint: &str) -> Result<HealthResponse, Error> {
        let channel = self.channel(endpoint)?;
        self.once(endpoint, async move {
            KvClient::new(channel).health(HealthRequest {}).await
        })
        .await
    }

    /// Asks one node for its admin status, in a single attempt.
    pub async fn node_status(&self, endpoint: &str) -> Result<StatusResponse, Error> {
        let channel = self.channel(endpoint)?;
        self.once(endpoint, async move {
            AdminClient::new(channel).status(StatusRequest {}).await
        })
        .await
    }

    async fn once<T>(
        &self,
        endpoint: &str,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Error> {
        let timeout = self
            .pool
            .config
            .attempt_timeout
            .min(self.pool.config.timeout);
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(answer)) => Ok(answer.into_inner()),
            Ok(Err(status)) => match classify(endpoint, &status) {
                AttemptError::Fatal(e) => Err(e),
                AttemptError::Retry(last) => Err(Error::Unavailable {
                    timeout,
                    attempts: 1,
                    last,
                }),
            },
            Err(_) => Err(Error::Unavailable {
                timeout,
                attempts: 1,
                last: format!("{endpoint}: no answer within {timeout:?}"),
            }),
        }
    }

    fn wrote(&self, request_id: u64, leader: String, endpoint: String) -> WriteOutcome {
        if leader.is_empty() {
            self.remember_leader(&endpoint);
        } else {
            self.remember_leader(&leader);
        }
        WriteOutcome {
            request_id,
            leader,
            endpoint,
        }
    }

    fn remember_leader(&self, addr: &str) {
        *self.pool.leader.lock().expect("not poisoned") = Some(normalize_endpoint(addr));
    }

    fn channel(&self, endpoint: &str) -> Result<Channel, Error> {
        let endpoint = normalize_endpoint(endpoint);
        let mut channels = self.pool.channels.lock().expect("not poisoned");
        if let Some(channel) = channels.get(&endpoint) {
            return Ok(channel.clone());
        }
        let channel = make_channel(&endpoint, &self.pool.config)?;
        channels.insert(endpoint, channel.clone());
        Ok(channel)
    }

    /// Runs `call` against the cluster until it succeeds, fails for good, or time runs out.
    /// The request inside `call` is identical on every attempt.
    async fn retry<T, F, Fut>(&self, call: F) -> Result<(String, T), Error>
    where
        F: Fn(KvClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let config = &self.pool.config;
        // tokio's clock, the one the backoff sleeps on: a test can pause it and run the whole
        // schedule in virtual time.
        let deadline = Instant::now() + config.timeout;
        let mut backoff = config.initial_backoff;
        let mut attempts = 0u32;
        let mut next_endpoint = 0usize;
        let mut failures_in_round = 0usize;
        let mut last = String::from("no attempt made");
        loop {
            // The leader we know of first; otherwise the configured endpoints in turn.
            let hinted = self.pool.leader.lock().expect("not poisoned").clone();
            let endpoint = match hinted {
                Some(leader) => leader,
                None => {
                    let endpoint = config.endpoints[next_endpoint % config.endpoints.len()].clone();
                    next_endpoint += 1;
                    endpoint
                }
            };
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let attempt_timeout = config.attempt_timeout.min(deadline - now);
            attempts += 1;
            let kv = KvClient::new(self.channel(&endpoint)?);
            let error = match tokio::time::timeout(attempt_timeout, call(kv)).await {
                Ok(Ok(answer)) => return Ok((endpoint, answer)),
                Ok(Err(status)) => classify(&endpoint, &status),
                Err(_) => {
                    AttemptError::Retry(format!("{endpoint}: no answer within {attempt_timeout:?}"))
                }
            };
            match error {
                AttemptError::Fatal(e) => return Err(e),
                AttemptError::Retry(message) => last = message,
            }
            // The node that failed is no longer a leader worth preferring.
            {
                let mut leader = self.pool.leader.lock().expect("not poisoned");
                if leader.as_deref() == Some(endpoint.as_str()) {
                    *leader = None;
                }
            }
            failures_in_round += 1;
            if failures_in_round >= config.endpoints.len() {
                failures_in_round = 0;
                let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
        Err(Error::Unavailable {
            timeout: config.timeout,
            attempts,
            last,
        })
    }
}

/// A write answered `ok: false` was not applied by that node (it does not lead): remember the
/// leader it names and retry there, with the same request id.
fn not_applied(leader_slot: &Mutex<Option<String>>, leader: &str) -> Status {
    if !leader.is_empty() {
        *leader_slot.lock().expect("not poisoned") = Some(normalize_endpoint(leader));
    }
    Status::unavailable(format!("not the leader (leader: {leader:?})"))
}

/// Sorts a failed attempt into "try again (elsewhere)" or "give up".
fn classify(endpoint: &str, status: &Status) -> AttemptError {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
            AttemptError::Retry(format!(
                "{endpoint}: {:?}: {}",
                status.code(),
                status.message()
            ))
        }
        code => AttemptError::Fatal(Error::Rejected {
            code,
            message: status.message().to_string(),
        }),
    }
}

/// `http://host:port` and `host:port` both become `host:port`.
fn normalize_endpoint(endpoint: &str) -> String {
    endpoint
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

fn make_channel(endpoint: &str, config: &ClientConfig) -> Result<Channel, Error> {
    let invalid = |reason: String| Error::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason,
    };
    if endpoint.is_empty() || !endpoint.contains(':') {
        return Err(invalid("expected host:port".into()));
    }
    let endpoint = Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| invalid(e.to_string()))?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(normalize_endpoint("http://127.0.0.1:1/"), "127.0.0.1:1");
        assert_eq!(normalize_endpoint(" 127.0.0.1:1 "), "127.0.0.1:1");
    }

    #[tokio::test]
    async fn a_bad_endpoint_is_refused_up_front() {
        let error = Client::new(ClientConfig::new(["nonsense"])).unwrap_err();
        assert!(matches!(error, Error::InvalidEndpoint { .. }), "{error}");
        assert!(matches!(
            Client::new(ClientConfig::new(Vec::<String>::new())),
            Err(Error::NoEndpoints)
        ));
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let retry = |code| {
            matches!(
                classify("e", &Status::new(code, "m")),
                AttemptError::Retry(_)
            )
        };
        assert!(retry(Code::Unavailable));
        assert!(retry(Code::DeadlineExceeded));
        assert!(!retry(Code::InvalidArgument));
        assert!(!retry(Code::FailedPrecondition));
    }

    #[tokio::test]
    async fn nothing_listening_gives_unavailable_after_the_timeout() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = ClientConfig::new([port.to_string()])
            .timeout(Duration::from_millis(300))
            .client_id("t");
        let client = Client::new(config).unwrap();
        // A guard against a client that never gives up, not a measure of how fast it does.
        let error = tokio::time::timeout(Duration::from_secs(60), client.put("k", b"v".to_vec()))
            .await
            .expect("the client gives up once its timeout has passed")
            .unwrap_err();
        match error {
            Error::Unavailable {
                timeout,
                attempts,
                last,
            } => {
                assert_eq!(timeout, Duration::from_millis(300));
                assert!(attempts > 1, "a refused connection is retried: {attempts}");
                assert!(last.contains(&port.to_string()), "{last}");
            }
            other => panic!("expected Unavailable, got {other}"),
        }
    }

    /// Runs `answer` as every attempt of a call against `endpoints`, in virtual time; returns
    /// the call's result, how many attempts ran, and how much virtual time passed.
    async fn retried(
        endpoints: &[&str],
        config: impl FnOnce(ClientConfig) -> ClientConfig,
        answer: impl Fn(u32) -> Result<(), Status>,
    ) -> (Result<(String, ()), Error>, u32, Duration) {
        let client = Client::new(config(ClientConfig::new(endpoints.iter().copied()))).unwrap();
        let calls = AtomicU64::new(0);
        let started = Instant::now();
        // The attempts never touch the network (the channels connect lazily and are not
        // used), so nothing but the client's own timers moves the paused clock.
        let result = client
            .retry(|_kv| {
                let call = calls.fetch_add(1, Ordering::Relaxed) as u32 + 1;
                let outcome = answer(call);
                async move { outcome }
            })
            .await;
        (
            result,
            calls.load(Ordering::Relaxed) as u32,
            started.elapsed(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_nodes_are_retried_in_turn_with_doubling_backoff_until_the_deadline() {
        let (result, calls, spent) = retried(
            &["127.0.0.1:1", "127.0.0.1:2"],
            |c| {
                c.timeout(Duration::from_millis(1000))
                    .backoff(Duration::from_millis(100), Duration::from_millis(400))
            },
            |_| Err(Status::unavailable("no leader")),
        )
        .await;
        // Both endpoints at 0, 100 (after 100), 300 (after 200), 700 (after 400, the cap);
        // the next pause is cut to the 300 ms left, and at 1000 the deadline has passed.
        match result {
            Err(Error::Unavailable {
                timeout,
                attempts,
                last,
            }) => {
                assert_eq!(timeout, Duration::from_millis(1000));
                assert_eq!(attempts, 8);
                assert!(last.starts_with("127.0.0.1:2: Unavailable"), "{last}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert_eq!(calls, 8);
        assert_eq!(
            spent,
            Duration::from_millis(1000),
            "gives up at its deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_returned_at_once_without_a_retry() {
        let (result, calls, spent) = retried(
            &["127.0.0.1:1"],
            |c| c,
            |_| {
                Err(Status::invalid_argument(
                    "key is 5000 bytes; the limit is 4096",
                ))
            },
        )
        .await;
        match result {
            Err(Error::Rejected { code, message }) => {
                assert_eq!(code, Code::InvalidArgument);
                assert!(message.contains("limit is 4096"), "{message}");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        assert_eq!((calls, spent), (1, Duration::ZERO), "not retried");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_after_failed_attempts_is_returned() {
        let (result, calls, spent) = retried(
            &["127.0.0.1:1"],
            |c| c.backoff(Duration::from_millis(20), Duration::from_millis(500)),
            |call| match call {
                1..=3 => Err(Status::unavailable("electing")),
                _ => Ok(()),
            },
        )
        .await;
        assert_eq!(result.unwrap().0, "127.0.0.1:1");
        assert_eq!(calls, 4);
        // Pauses of 20, 40 and 80 ms between the four attempts.
        assert_eq!(spent, Duration::from_millis(140));
    }
}
