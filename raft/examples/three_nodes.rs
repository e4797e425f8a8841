//! Embedding the core: nodes in one process, a thread each, `std::sync::mpsc` channels as the
//! network, [`MemStorage`] as the disk and a `BTreeMap` of `key=value` commands as the state
//! machine. Each thread feeds its node every input stamped with the current time, drains
//! `poll_output()` until `None`, and sleeps until the next message or `poll_timeout()`. Three
//! nodes start the cluster; node 4 starts knowing no membership, joins as a learner and is
//! promoted to voter once caught up. Linearizable reads on every node check that all agree.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use raft::{Config, Error, Index, Instant, MemStorage, Membership, Message, Node, NodeId};
use raft::{Output, Role, Term};

type State = BTreeMap<String, String>;
type Peers = BTreeMap<NodeId, Sender<Event>>;
type Reply = Sender<Result<(), Error>>;

/// What a node's thread receives: a peer's message, a client's request, or the order to stop.
enum Event {
    Peer(NodeId, Message),
    /// Answered once the command is applied on this leader.
    Propose(String, Reply),
    /// Answered once the new membership is applied on this leader.
    Change(Membership, Reply),
    /// Answered with the state once a linearizable read may be served from it.
    Read(Sender<(Index, State)>),
    Stop,
}

/// Drives node `id` until told to stop. Node 4 starts knowing no membership: it joins later.
fn run_node(id: NodeId, peers: Peers, inbox: Receiver<Event>, start: StdInstant) {
    let now = || Instant::from_nanos(start.elapsed().as_nanos() as u64);
    let initial = if id <= 3 {
        Membership::new([1, 2, 3])
    } else {
        Membership::default()
    };
    let mut node = Node::new(Config::new(id), initial, now()).unwrap();
    let mut storage = MemStorage::new();
    let mut state = State::new();
    let mut pending: BTreeMap<Index, (Term, Reply)> = BTreeMap::new();
    let mut reads: BTreeMap<u64, Sender<(Index, State)>> = BTreeMap::new();
    let mut next_read_id = 0;
    loop {
        while let Some(output) = node.poll_output() {
            match output {
                Output::Persist(persist) => {
                    storage.persist(&persist); // a real store would also fsync here
                    node.persisted(now(), persist.token());
                }
                Output::Send { to, message } => drop(peers[&to].send(Event::Peer(id, message))),
                Output::Apply(entries) => {
                    for entry in &entries {
                        if let Some(command) = entry.command() {
                            let command = String::from_utf8_lossy(command);
                            let (key, value) = command.split_once('=').unwrap_or((&command, ""));
                            state.insert(key.to_string(), value.to_string());
                        }
                        // A request succeeded if its index holds an entry of its term.
                        if let Some((term, reply)) = pending.remove(&entry.index())
                            && term == entry.term()
                        {
                            let _ = reply.send(Ok(()));
                        }
                    }
                    node.applied(now(), entries.last().map_or(0, |e| e.index()));
                }
                Output::ReadReady { id, .. } => {
                    if let Some(reply) = reads.remove(&id) {
                        let _ = reply.send((node.applied_index(), state.clone()));
                    }
                }
                Output::ReadFailed { id, .. } => drop(reads.remove(&id)), // the client retries
                Output::FetchEntries { first, last } => {
                    node.entries_fetched(now(), storage.entries(first, last));
                }
                Output::RoleChanged { role, .. } if role != Role::Leader => pending.clear(),
                _ => {} // this example never compacts its log: no snapshots to handle
            }
        }
        let deadline = node.poll_timeout(); // checked after any event too: timers never starve
        let mut track = |result: Result<Index, Error>, reply: Reply, term| match result {
            Ok(index) => drop(pending.insert(index, (term, reply))),
            Err(error) => drop(reply.send(Err(error))),
        };
        match inbox.recv_timeout(deadline.saturating_duration_since(now())) {
            Ok(Event::Peer(from, message)) => node.step(now(), from, message),
            Ok(Event::Propose(command, reply)) => {
                track(node.propose(now(), command.into()), reply, node.term())
            }
            Ok(Event::Change(membership, reply)) => track(
                node.propose_membership(now(), membership),
                reply,
                node.term(),
            ),
            Ok(Event::Read(reply)) => {
                next_read_id += 1;
                if node.read_index(now(), next_read_id).is_ok() {
                    reads.insert(next_read_id, reply);
                }
            }
            Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if deadline <= now() {
            node.handle_timeout(now());
        }
    }
}

/// Sends a request until it is answered.
fn call<T>(node: &Sender<Event>, request: impl Fn(Sender<T>) -> Event) -> T {
    loop {
        let (reply, answer) = mpsc::channel();
        node.send(request(reply)).unwrap();
        match answer.recv() {
            Ok(answer) => return answer,
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Sends a request to the leader until it succeeds, following leader hints and waiting out
/// refusals that pass (no leader yet, a change in progress, a learner still catching up).
fn on_leader(nodes: &[Sender<Event>], leader: &mut NodeId, request: impl Fn(Reply) -> Event) {
    loop {
        match call(&nodes[*leader as usize - 1], &request) {
            Ok(()) => return,
            Err(Error::NotLeader { leader: Some(hint) }) => *leader = hint,
            Err(Error::NotLeader { leader: None }) => *leader = *leader % 3 + 1,
            Err(_) => {}
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let start = StdInstant::now();
    let (nodes, inboxes): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::channel()).unzip();
    let mut threads = Vec::new();
    for (id, inbox) in (1..).zip(inboxes) {
        let peers = (1..).zip(nodes.clone()).collect();
        threads.push(thread::spawn(move || run_node(id, peers, inbox, start)));
    }

    let mut leader = 1;
    for command in ["color=red", "shape=circle", "color=blue"] {
        on_leader(&nodes, &mut leader, |reply| {
            Event::Propose(command.into(), reply)
        });
        println!("node {leader} (leader) applied {command}");
    }
    // Node 4 joins as a learner, then becomes a voter once it has caught up.
    for target in [
        Membership::new([1, 2, 3]).with_learners([4]),
        Membership::new([1, 2, 3, 4]),
    ] {
        on_leader(&nodes, &mut leader, |reply| {
            Event::Change(target.clone(), reply)
        });
        println!("membership is now {:?}", target.voters());
    }
    on_leader(&nodes, &mut leader, |reply| {
        Event::Propose("size=large".into(), reply)
    });

    // A linearizable read on each node is served once that node has caught up.
    let mut states = Vec::new();
    for (id, node) in (1..).zip(&nodes) {
        let (index, state) = call(node, Event::Read);
        println!("node {id} read at index {index}: {state:?}");
        states.push(state);
    }
    assert!(
        states
            .iter()
            .all(|state| *state == states[0] && state.len() == 3)
    );
    println!("all four state machines agree");

    for (node, thread) in nodes.iter().zip(threads) {
        node.send(Event::Stop).unwrap();
        thread.join().unwrap();
    }
}

/// The example runs to completion as part of `cargo test`.
#[test]
fn runs() {
    main();
}
