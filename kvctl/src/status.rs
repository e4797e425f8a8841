//! `kvctl status`: the whole cluster in one table.
//!
//! Every endpoint is asked for its admin status; nodes named in an answer's peer list but not
//! among the endpoints are asked too. A follower's lag comes from the leader's view: the
//! leader's last log index minus the follower's match index.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::client::Client;
use crate::proto::admin::StatusResponse;

/// One node's row.
#[derive(Clone, Debug, Serialize)]
pub struct NodeRow {
    /// Node name (empty if it could not be reached and no peer list named it).
    pub name: String,
    /// Raft id (0 if unknown).
    pub id: u64,
    /// Client address.
    pub address: String,
    /// `leader`, `follower`, `candidate`, `pre-candidate`, or `unreachable`.
    pub role: String,
    /// Current term.
    pub term: Option<u64>,
    /// Commit index.
    pub commit_index: Option<u64>,
    /// Applied index.
    pub applied_index: Option<u64>,
    /// Last log index.
    pub last_index: Option<u64>,
    /// The leader this node follows (name, or address if the name is unknown).
    pub leader: String,
    /// Entries the node is behind the leader's log (from the leader's view).
    pub lag: Option<u64>,
    /// Why the node could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answers of every node that could be reached, and the ones that could not.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    /// One row per node, in the order the endpoints were given (discovered peers last).
    pub nodes: Vec<NodeRow>,
}

impl ClusterStatus {
    /// Asks every endpoint, then every peer they name, concurrently.
    pub async fn collect(client: &Client) -> Self {
        let mut asked: Vec<String> = Vec::new();
        let mut answers: Vec<(String, Result<StatusResponse, String>)> = Vec::new();
        let mut pending: Vec<String> = client.endpoints().to_vec();
        while !pending.is_empty() {
            let mut batch: Vec<String> = Vec::new();
            for endpoint in pending.drain(..) {
                if !asked.contains(&endpoint) {
                    asked.push(endpoint.clone());
                    batch.push(endpoint);
                }
            }
            let probes: Vec<_> = batch
                .into_iter()
                .map(|endpoint| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let answer = client.node_status(&endpoint).await;
                        (endpoint, answer.map_err(|e| e.to_string()))
                    })
                })
                .collect();
            for probe in probes {
                let (endpoint, answer) = probe.await.expect("status probe does not panic");
                if let Ok(status) = &answer {
                    for peer in &status.peers {
                        if !peer.client_addr.is_empty()
                            && !asked.contains(&peer.client_addr)
                            && !pending.contains(&peer.client_addr)
                        {
                            pending.push(peer.client_addr.clone());
                        }
                    }
                }
                answers.push((endpoint, answer));
            }
        }
        Self::from_answers(&answers)
    }

    /// Builds the rows from each endpoint's answer.
    pub fn from_answers(answers: &[(String, Result<StatusResponse, String>)]) -> Self {
        let reached: Vec<&StatusResponse> = answers
            .iter()
            .filter_map(|(_, a)| a.as_ref().ok())
            .collect();
        // The leader with the highest term is the current one.
        let leader = reached
            .iter()
            .filter(|s| s.role == "leader")
            .max_by_key(|s| s.term)
            .copied();
        let name_of = |id: u64, addr: &str| -> String {
            reached
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.name.clone())
                .or_else(|| {
                    reached
                        .iter()
                        .flat_map(|s| &s.peers)
                        .find(|p| p.id == id && !p.name.is_empty())
                        .map(|p| p.name.clone())
                })
                .unwrap_or_else(|| addr.to_string())
        };
        let lag_of = |id: u64| -> Option<u64> {
            let leader = leader?;
            if leader.id == id {
                return Some(0);
            }
            let peer = leader.peers.iter().find(|p| p.id == id)?;
            Some(leader.last_index.saturating_sub(peer.match_index))
        };
        let mut seen = BTreeSet::new();
        let mut nodes = Vec::new();
        for (endpoint, answer) in answers {
            let row = match answer {
                Ok(s) => NodeRow {
                    name: s.name.clone(),
                    id: s.id,
                    address: endpoint.clone(),
                    role: s.role.clone(),
                    term: Some(s.term),
                    commit_index: Some(s.commit_index),
                    applied_index: Some(s.applied_index),
                    last_index: Some(s.last_index),
                    leader: if s.leader_id == 0 {
                        String::new()
                    } else {
                        name_of(s.leader_id, &s.leader_addr)
                    },
                    lag: lag_of(s.id),
                    error: None,
                },
                Err(error) => {
                    // The leader's peer list may still say who this is and how far behind.
                    let peer = reached
                        .iter()
                        .flat_map(|s| &s.peers)
                        .find(|p| &p.client_addr == endpoint);
                    NodeRow {
                        name: peer.map(|p| p.name.clone()).unwrap_or_default(),
                        id: peer.map_or(0, |p| p.id),
                        address: endpoint.clone(),
                        role: "unreachable".into(),
                        term: None,
                        commit_index: None,
                        applied_index: None,
                        last_index: None,
                        leader: String::new(),
                        lag: peer.and_then(|p| lag_of(p.id)),
                        error: Some(error.clone()),
                    }
                }
            };
            // The same node reached under two addresses (e.g. localhost and 127.0.0.1).
            if row.id != 0 && !seen.insert(row.id) {
                continue;
            }
            nodes.push(row);
        }
        Self { nodes }
    }

    /// Whether any node answered.
    pub fn any_reachable(&self) -> bool {
        self.nodes.iter().any(|n| n.error.is_none())
    }

    /// The table, with a header line and one line per node.
    pub fn table(&self) -> String {
        let header = [
            "NODE", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LEADER", "LAG",
        ];
        let show = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let rows: Vec<[String; 8]> = self
            .nodes
            .iter()
            .map(|n| {
                [
                    if n.name.is_empty() {
                        "?".into()
                    } else {
                        n.name.clone()
                    },
                    n.address.clone(),
                    n.role.clone(),
                    show(n.term),
                    show(n.commit_index),
                    show(n.applied_index),
                    if n.leader.is_empty() {
                        "-".into()
                    } else {
                        n.leader.clone()
                    },
                    show(n.lag),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let text: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            out.push_str(text.join("  ").trim_end());
            out.push('\n');
        };
        line(&header.map(str::to_string));
        for row in &rows {
            line(row);
        }
        for node in &self.nodes {
            if let Some(error) = &node.error {
                out.push_str(&format!("{}: {error}\n", node.address));
            }
        }
        out
    }

    /// One JSON line: `{"nodes": [...]}`.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("status serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::admin::PeerStatus;

    fn node(id: u64, role: &str, last_index: u64, peers: Vec<PeerStatus>) -> StatusResponse {
        StatusResponse {
            id,
            name: format!("node-{id}"),
            client_addr: format!("127.0.0.1:{id}"),
            role: role.into(),
            term: 3,
            leader_id: 1,
            leader_addr: "127.0.0.1:1".into(),
            commit_index: 10,
            applied_index: 10,
            last_index,
            peers,
            ..Default::default()
        }
    }

    fn peer(id: u64, match_index: u64) -> PeerStatus {
        PeerStatus {
            id,
            name: format!("node-{id}"),
            client_addr: format!("127.0.0.1:{id}"),
            match_index,
            voter: true,
        }
    }

    #[test]
    fn lag_comes_from_the_leaders_peer_list() {
        let answers = vec![
            (
                "127.0.0.1:1".to_string(),
                Ok(node(1, "leader", 12, vec![peer(2, 12), peer(3, 7)])),
            ),
            (
                "127.0.0.1:2".to_string(),
                Ok(node(2, "follower", 12, vec![])),
            ),
            (
                "127.0.0.1:3".to_string(),
                Err("connection refused".to_string()),
            ),
        ];
        let status = ClusterStatus::from_answers(&answers);
        let lags: Vec<Option<u64>> = status.nodes.iter().map(|n| n.lag).collect();
        assert_eq!(lags, [Some(0), Some(0), Some(5)]);
        assert_eq!(status.nodes[2].name, "node-3");
        assert_eq!(status.nodes[2].role, "unreachable");
        assert_eq!(status.nodes[1].leader, "node-1");
        let table = status.table();
        assert!(table.starts_with("NODE"), "{table}");
        assert!(
            table.contains("node-3  127.0.0.1:3  unreachable"),
            "{table}"
        );
        assert!(status.any_reachable());
    }
}
