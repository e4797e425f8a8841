//! The gRPC front-end: the seed-compatible `kv.KV` service and kvd's `kvd.admin.Admin`.
//!
//! Writes go to the node loop; on a follower they are forwarded to the leader's client
//! address, and the answer names that address in `leader`. With no leader known the request
//! fails with `UNAVAILABLE`. Gets are linearizable (ReadIndex, also on followers) unless the
//! request sets `stale`.
//!
//! With test-only fault rules ([`crate::faults`]), forwarding honours them like Raft traffic:
//! a request is not forwarded to a leader this node is cut off from, an answer that comes back
//! after the cut is lost, and a request forwarded by a node this one is cut off from is
//! refused; all three fail with `UNAVAILABLE` (the client retries elsewhere).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use bytes::Bytes;

use crate::command;
use crate::node_loop::{ClientError, ClientRequest, ClusterView};
use crate::proto::admin::admin_server::Admin;
use crate::proto::admin::{
    PeerStatus, StatusRequest, StatusResponse, TransferLeaderRequest, TransferLeaderResponse,
};
use crate::proto::kv::kv_client::KvClient;
use crate::proto::kv::kv_server::Kv;
use crate::proto::kv::{
    DeleteRequest, DeleteResponse, GetRequest, GetResponse, HealthRequest, HealthResponse,
    PutRequest, PutResponse,
};
use crate::state_machine::WriteResult;

/// Limits and identity the API checks and reports.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// This node's name (reported by Health).
    pub name: String,
    /// This node's Raft id.
    pub id: raft::NodeId,
    /// This node's client address.
    pub client_addr: String,
    /// Largest key accepted.
    pub max_key_bytes: usize,
    /// Largest value accepted.
    pub max_value_bytes: usize,
    /// How long a request may wait for the cluster before `DEADLINE_EXCEEDED`.
    pub request_timeout: Duration,
    /// Transport name, for status.
    pub transport: String,
    /// Peer names by id, for status.
    pub peer_names: HashMap<raft::NodeId, String>,
    /// Test-only fault rules forwarding must honour (`None` in production).
    pub faults: Option<transport::FaultRules>,
}

/// Serves both services; cheap to clone.
#[derive(Clone)]
pub struct Api {
    config: Arc<ApiConfig>,
    requests: mpsc::Sender<ClientRequest>,
    view: watch::Receiver<ClusterView>,
    leaders: Arc<Mutex<HashMap<String, KvClient<Channel>>>>,
}

impl Api {
    /// An API that talks to the node loop through `requests` and reads `view`.
    pub fn new(
        config: ApiConfig,
        requests: mpsc::Sender<ClientRequest>,
        view: watch::Receiver<ClusterView>,
    ) -> Self {
        Self {
            config: Arc::new(config),
            requests,
            view,
            leaders: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> ClientRequest,
    ) -> Result<T, Status> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(make(reply))
            .await
            .map_err(|_| Status::unavailable("node is shutting down"))?;
        match tokio::time::timeout(self.config.request_timeout, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(Status::unavailable("node is shutting down")),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer from the cluster within {:?}",
                self.config.request_timeout
            ))),
        }
    }

    fn check_key(&self, key: &str) -> Result<(), Status> {
        if key.is_empty() {
            return Err(Status::invalid_argument("key must not be empty"));
        }
        if key.len() > self.config.max_key_bytes {
            return Err(Status::invalid_argument(format!(
                "key is {} bytes; the limit is {}",
                key.len(),
                self.config.max_key_bytes
            )));
        }
        Ok(())
    }

    /// The leader (id and client address) for a `NotLeader` answer, or `UNAVAILABLE`.
    fn leader_addr(&self, leader: Option<raft::NodeId>) -> Result<Leader, Status> {
        let view = self.view.borrow();
        let id = leader.or(view.leader);
        match id.and_then(|id| Some((id, view.client_addrs.get(&id)?))) {
            Some((id, addr)) if addr != &self.config.client_addr => Ok(Leader {
                id,
                addr: addr.clone(),
            }),
            _ => Err(Status::unavailable(
                "no leader is known right now; retry shortly",
            )),
        }
    }

    /// Fails if fault rules cut this node off from `peer`.
    fn reachable(&self, peer: raft::NodeId, what: &str) -> Result<(), Status> {
        if self
            .config
            .faults
            .as_ref()
            .is_some_and(|rules| rules.blocks(peer))
        {
            return Err(Status::unavailable(format!(
                "{what}: this node is cut off from node {peer} (fault injection); retry"
            )));
        }
        Ok(())
    }

    /// Whether `request` was forwarded by another node; refuses it if fault rules cut this
    /// node off from the one that forwarded it.
    fn admit<T>(&self, request: &Request<T>) -> Result<bool, Status> {
        let Some(value) = request.metadata().get(FORWARDED) else {
            return Ok(false);
        };
        if let Some(from) = value.to_str().ok().and_then(|v| v.parse().ok()) {
            self.reachable(from, "forwarded request refused")?;
        }
        Ok(true)
    }

    /// Forwards `req` to `leader` with `call` and relays the answer, honouring fault rules on
    /// the way there and back.
    async fn forward<Req, Resp, F, Fut>(
        &self,
        leader: &Leader,
        req: Req,
        call: F,
    ) -> Result<Resp, Status>
    where
        F: FnOnce(KvClient<Channel>, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        self.reachable(leader.id, "cannot forward to the leader")?;
        let client = self.leader_client(&leader.addr).await?;
        let answer = call(client, forwarded(req, self.config.id))
            .await
            .map_err(|e| forward_error(&leader.addr, e))?;
        // Cut off while the request was out: the answer is lost with the link.
        self.reachable(leader.id, "the leader's answer was lost")?;
        Ok(answer.into_inner())
    }

    async fn leader_client(&self, addr: &str) -> Result<KvClient<Channel>, Status> {
        if let Some(client) = self.leaders.lock().expect("not poisoned").get(addr) {
            return Ok(client.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Status::internal(format!("bad leader address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true);
        let client = KvClient::new(endpoint.connect_lazy());
        self.leaders
            .lock()
            .expect("not poisoned")
            .insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Replicates an encoded write; `Some(leader)` when this node does not lead.
    async fn write(
        &self,
        command: Bytes,
        client_id: &str,
        request_id: u64,
    ) -> Result<Option<Leader>, Status> {
        let result = self
            .call(|reply| ClientRequest::Write { command, reply })
            .await?;
        match result {
            Ok(WriteResult::Applied | WriteResult::Duplicate) => Ok(None),
            Ok(WriteResult::TooOld) => Err(Status::failed_precondition(format!(
                "request id {request_id} of client {client_id:?} is older than the ids this cluster remembers; use a new request id"
            ))),
            Err(ClientError::NotLeader { leader }) => Ok(Some(self.leader_addr(leader)?)),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

/// The node a request is forwarded to.
struct Leader {
    id: raft::NodeId,
    addr: String,
}

#[tonic::async_trait]
impl Kv for Api {
    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let hop = self.admit(&request)?;
        let req = request.into_inner();
        self.check_key(&req.key)?;
        if req.value.len() > self.config.max_value_bytes {
            return Err(Status::invalid_argument(format!(
                "value is {} bytes; the limit is {}",
                req.value.len(),
                self.config.max_value_bytes
            )));
        }
        let command = command::encode_put(&req.client_id, req.request_id, &req.key, &req.value);
        match self.write(command, &req.client_id, req.request_id).await? {
            None => Ok(Response::new(PutResponse {
                ok: true,
                leader: String::new(),
            })),
            Some(leader) if hop => Err(not_leader_here(&leader.addr)),
            Some(leader) => {
                let mut answer = self
                    .forward(&leader, req, |mut c, r| async move { c.put(r).await })
                    .await?;
                answer.leader = leader.addr;
                Ok(Response::new(answer))
            }
        }
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let hop = self.admit(&request)?;
        let req = request.into_inner();
        self.check_key(&req.key)?;
        let key = req.key.clone();
        let stale = req.stale;
        match self
            .call(|reply| ClientRequest::Read { key, stale, reply })
            .await?
        {
            Ok(value) => Ok(Response::new(GetResponse {
                found: value.is_some(),
                value: value.unwrap_or_default(),
                leader: String::new(),
            })),
            Err(ClientError::NotLeader { leader }) if hop => {
                Err(not_leader_here(&self.leader_addr(leader)?.addr))
            }
            Err(ClientError::NotLeader { leader }) => {
                let leader = self.leader_addr(leader)?;
                let mut answer = self
                    .forward(&leader, req, |mut c, r| async move { c.get(r).await })
                    .await?;
                answer.leader = leader.addr;
                Ok(Response::new(answer))
            }
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let hop = self.admit(&request)?;
        let req = request.into_inner();
        self.check_key(&req.key)?;
        let command = command::encode_delete(&req.client_id, req.request_id, &req.key);
        match self.write(command, &req.client_id, req.request_id).await? {
            None => Ok(Response::new(DeleteResponse {
                ok: true,
                leader: String::new(),
            })),
            Some(leader) if hop => Err(not_leader_here(&leader.addr)),
            Some(leader) => {
                let mut answer = self
                    .forward(&leader, req, |mut c, r| async move { c.delete(r).await })
                    .await?;
                answer.leader = leader.addr;
                Ok(Response::new(answer))
            }
        }
    }

    async fn health(
        &self,
        _request: Request<HealthRequest>,
    ) -> Result<Response<HealthResponse>, Status> {
        let view = self.view.borrow().clone();
        Ok(Response::new(HealthResponse {
            node_id: self.config.name.clone(),
            is_leader: view.is_leader,
            term: view.term,
        }))
    }
}

/// Metadata key marking a request another node forwarded, with that node's id as value;
/// such a request is never forwarded again (so two nodes with stale views cannot bounce it
/// between them).
const FORWARDED: &str = "x-kvd-forwarded";

fn forwarded<T>(message: T, from: raft::NodeId) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from(from));
    request
}

/// Answer to a forwarded request that reached a node that does not lead (its sender's view
/// was stale): an error, so the forwarding node and the client retry. An `ok: false` answer
/// would be relayed as if it were the leader's and could pass for success.
fn not_leader_here(leader: &str) -> Status {
    Status::unavailable(format!("not the leader (leader: {leader}); retry"))
}

fn forward_error(addr: &str, status: Status) -> Status {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            Status::unavailable(format!(
                "forwarding to the leader at {addr} failed: {}",
                status.message()
            ))
        }
        _ => status,
    }
}

#[tonic::async_trait]
impl Admin for Api {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let status = self.call(|reply| ClientRequest::Status { reply }).await?;
        let view = self.view.borrow().clone();
        let peers = status
            .peers
            .iter()
            .map(|&(id, match_index, voter)| PeerStatus {
                id,
                name: self.config.peer_names.get(&id).cloned().unwrap_or_default(),
                client_addr: view.client_addrs.get(&id).cloned().unwrap_or_default(),
                match_index,
                voter,
            })
            .collect();
        Ok(Response::new(StatusResponse {
            id: self.config.id,
            name: self.config.name.clone(),
            client_addr: self.config.client_addr.clone(),
            role: status.role,
            term: status.term,
            leader_id: status.leader,
            leader_addr: view.leader_addr().unwrap_or_default().to_string(),
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            last_index: status.last_index,
            snapshot_index: status.snapshot_index,
            peers,
            transport: self.config.transport.clone(),
            keys: status.keys,
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let to = request.into_inner().to;
        match self
            .call(|reply| ClientRequest::Transfer { to, reply })
            .await?
        {
            Ok(()) => Ok(Response::new(TransferLeaderResponse {
                ok: true,
                leader: String::new(),
            })),
            Err(ClientError::NotLeader { leader }) => Ok(Response::new(TransferLeaderResponse {
                ok: false,
                leader: self
                    .leader_addr(leader)
                    .map(|leader| leader.addr)
                    .unwrap_or_default(),
            })),
            // The core's refusal names the target and the reason ("it is a learner", ...).
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }
}
