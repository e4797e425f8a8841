//! `kvd dev`: a local cluster in one command.
//!
//! Starts N child `kvd` processes on 127.0.0.1 (clients on ports 50051.., peers on 60051..),
//! with data under `./data/node-<i>`, prints the endpoints and how to use `kvctl`, and on
//! Ctrl+C (or SIGTERM) stops every child gracefully and waits for it. A child that dies is
//! reported and the others keep running, so a failover can be tried by killing the leader.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::config::TransportKind;

/// Options of `kvd dev`.
#[derive(Args, Clone, Debug)]
pub struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Peer transport.
    #[arg(long, value_enum, default_value_t = TransportKind::Tcp)]
    pub transport: TransportKind,
    /// Parent directory of the nodes' data directories.
    #[arg(long = "data-dir", default_value = "data")]
    pub data_dir: PathBuf,
    /// First client port (nodes use consecutive ports).
    #[arg(long = "client-port", default_value_t = 50051)]
    pub client_port: u16,
    /// First Raft port.
    #[arg(long = "raft-port", default_value_t = 60051)]
    pub raft_port: u16,
}

/// Runs the local cluster until interrupted.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=9).contains(&args.nodes),
        "--nodes must be between 1 and 9"
    );
    let exe = std::env::current_exe()?;
    let names: Vec<String> = (1..=args.nodes).map(|i| format!("node-{i}")).collect();
    let raft = |i: u16| format!("127.0.0.1:{}", args.raft_port + i);
    let client = |i: u16| format!("127.0.0.1:{}", args.client_port + i);
    let certs = args.data_dir.join("certs");
    if args.transport == TransportKind::Quic {
        // One CA for the whole cluster, made before any node starts.
        let ids = names.iter().map(|name| crate::config::node_id(name));
        transport_quic::certs::ensure_dev_certs(&certs, ids)?;
    }
    let mut children: Vec<(String, Child)> = Vec::new();
    for (i, name) in (0..args.nodes).zip(&names) {
        let peers: Vec<String> = (0..args.nodes)
            .filter(|&j| j != i)
            .map(|j| format!("{}={}", names[j as usize], raft(j)))
            .collect();
        let mut command = Command::new(&exe);
        command
            .args([
                "--node",
                name,
                "--addr",
                &client(i),
                "--raft-addr",
                &raft(i),
            ])
            .arg("--data-dir")
            .arg(args.data_dir.join(name))
            .args([
                "--peers",
                &peers.join(","),
                "--transport",
                args.transport.name(),
            ])
            .arg("--certs-dir")
            .arg(&certs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        for stream in [
            child.stdout.take().map(box_reader),
            child.stderr.take().map(box_reader),
        ]
        .into_iter()
        .flatten()
        {
            let prefix = name.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("[{prefix}] {line}");
                }
            });
        }
        children.push((name.clone(), child));
    }
    let endpoints: Vec<String> = (0..args.nodes).map(client).collect();
    println!(
        "kvd dev: {} nodes over {} (data in {})",
        args.nodes,
        args.transport.name(),
        args.data_dir.display()
    );
    for (i, name) in (0..args.nodes).zip(&names) {
        println!("  {name}: client {}  raft {}", client(i), raft(i));
    }
    println!("try:");
    println!(
        "  kvctl --endpoints {} put mykey myvalue",
        endpoints.join(",")
    );
    println!("  kvctl -addr {} get mykey", endpoints[0]);
    println!("  kvctl status");
    println!("Ctrl+C stops the cluster.");

    // A node that dies (say, killed to try a failover) is reported; the others keep running.
    let stop = wait_for_stop();
    tokio::pin!(stop);
    let outcome = loop {
        tokio::select! {
            () = &mut stop => break Ok(()),
            (name, status) = first_exit(&mut children) => {
                eprintln!("kvd dev: {name} exited ({status}); the other nodes keep running");
                children.retain(|(n, _)| *n != name);
                if children.is_empty() {
                    break Err(anyhow::anyhow!("every node has exited"));
                }
            }
        }
    };
    stop_all(&mut children).await;
    outcome
}

fn box_reader(
    r: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    Box::new(r)
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn first_exit(children: &mut [(String, Child)]) -> (String, String) {
    loop {
        for (name, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return (name.clone(), status.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends SIGTERM to every child still running (by its PID), then waits up to 10 s each.
async fn stop_all(children: &mut [(String, Child)]) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    for (name, child) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(Ok(status)) => eprintln!("kvd dev: {name} stopped ({status})"),
            _ => {
                eprintln!("kvd dev: {name} did not stop in time; killing it");
                let _ = child.kill().await;
            }
        }
    }
}
