//! The gRPC front-end: the seed-compatible `kv.KV` service and kvd's `kvd.admin.Admin`.
//!
//! Writes go to the node loop; on a follower they are forwarded to the leader's client
//! address, and the answer names that address in `leader`. With no leader known the request
//! fails with `UNAVAILABLE`. Gets are linearizable (ReadIndex, also on followers) unless the
//! request sets `stale`.

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

    /// The leader's address for a `NotLeader` answer, or `UNAVAILABLE`.
    fn leader_addr(&self, leader: Option<raft::NodeId>) -> Result<String, Status> {
        let view = self.view.borrow();
        match leader
            .or(view.leader)
            .and_then(|id| view.client_addrs.get(&id))
        {
            Some(addr) if addr != &self.config.client_addr => Ok(addr.clone()),
            _ => Err(Status::unavailable(
                "no leader is known right now; retry shortly",
            )),
        }
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

    /// Replicates an encoded write; `Some(leader address)` when this node does not lead.
    async fn write(
        &self,
        command: Bytes,
        client_id: &str,
        request_id: u64,
    ) -> Result<Option<String>, Status> {
        let result = self
            .call(|reply| ClientRequest::Write { command, reply })
            .await?;
        match result {
            Ok(WriteResult::Applied | WriteResult::Duplicate) => Ok(None),
            Ok(WriteResult::TooOld) => Err(Status::failed_precondition(format!(
                "request id {request_id} of client {client_id:?} is older than the ids this cluster remembers; use a new request id"
            ))),
            Err(ClientError::NotLeader { leader }) => {
                let addr = self.leader_addr(leader)?;
                Ok(Some(addr))
            }
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

#[tonic::async_trait]
impl Kv for Api {
    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let hop = is_forwarded(&request);
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
            Some(addr) if hop => Err(not_leader_here(&addr)),
            Some(addr) => {
                let mut client = self.leader_client(&addr).await?;
                let mut answer = client
                    .put(forwarded(req))
                    .await
                    .map_err(|e| forward_error(&addr, e))?
                    .into_inner();
                answer.leader = addr;
                Ok(Response::new(answer))
            }
        }
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let hop = is_forwarded(&request);
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
                let addr = self.leader_addr(leader)?;
                Err(not_leader_here(&addr))
            }
            Err(ClientError::NotLeader { leader }) => {
                let addr = self.leader_addr(leader)?;
                let mut client = self.leader_client(&addr).await?;
                let mut answer = client
                    .get(forwarded(req))
                    .await
                    .map_err(|e| forward_error(&addr, e))?
                    .into_inner();
                answer.leader = addr;
                Ok(Response::new(answer))
            }
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let hop = is_forwarded(&request);
        let req = request.into_inner();
        self.check_key(&req.key)?;
        let command = command::encode_delete(&req.client_id, req.request_id, &req.key);
        match self.write(command, &req.client_id, req.request_id).await? {
            None => Ok(Response::new(DeleteResponse {
                ok: true,
                leader: String::new(),
            })),
            Some(addr) if hop => Err(not_leader_here(&addr)),
            Some(addr) => {
                let mut client = self.leader_client(&addr).await?;
                let mut answer = client
                    .delete(forwarded(req))
                    .await
                    .map_err(|e| forward_error(&addr, e))?
                    .into_inner();
                answer.leader = addr;
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

/// Metadata key marking a request another node forwarded; such a request is never forwarded
/// again (so two nodes with stale views cannot bounce it between them).
const FORWARDED: &str = "x-kvd-forwarded";

fn is_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED)
}

fn forwarded<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
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
                leader: self.leader_addr(leader).unwrap_or_default(),
            })),
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }
}
