//! Bad configuration fails at start with one clear line and a non-zero exit, never a panic.

use std::net::TcpListener;
use std::process::Command;

/// Runs kvd with `args`; returns (success, stderr).
fn kvd(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kvd"))
        .args(args)
        .env("KVD_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line_error(stderr: &str, want: &str) {
    assert!(stderr.contains(want), "expected {want:?} in: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("kvd: ")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
}

fn free_addr() -> String {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

#[test]
fn client_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = dir.path().to_str().unwrap();
    let (ok, err) = kvd(&[
        "--addr",
        &addr,
        "--raft-addr",
        &free_addr(),
        "--data-dir",
        data,
        "--peers",
        "",
    ]);
    assert!(!ok);
    assert_one_line_error(&err, "cannot listen for clients");
}

#[test]
fn data_dir_that_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let data = file.join("sub");
    let (ok, err) = kvd(&[
        "--addr",
        &free_addr(),
        "--raft-addr",
        &free_addr(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert_one_line_error(&err, "data directory");
}

#[test]
fn duplicate_peer_names_and_bad_flags() {
    let (ok, err) = kvd(&["--node", "a", "--peers", "b=127.0.0.1:1,b=127.0.0.1:2"]);
    assert!(!ok);
    assert_one_line_error(&err, "twice");
    let out = Command::new(env!("CARGO_BIN_EXE_kvd"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn a_peer_list_that_disagrees_with_stored_membership() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let (client, raft) = (free_addr(), free_addr());
    // First start as a single-node cluster, stopped by SIGTERM once it is up.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvd"))
        .args([
            "--node",
            "a",
            "--addr",
            &client,
            "--raft-addr",
            &raft,
            "--data-dir",
            &data,
            "--peers",
            "",
        ])
        .env("KVD_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(
        lines.any(|l| l.unwrap().contains("role=leader")),
        "single node never led"
    );
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    // Restarting it as part of a three-node cluster must be refused.
    let (ok, err) = kvd(&[
        "--node",
        "a",
        "--addr",
        &client,
        "--raft-addr",
        &raft,
        "--data-dir",
        &data,
        "--peers",
        "b=127.0.0.1:1,c=127.0.0.1:2",
    ]);
    assert!(!ok);
    assert_one_line_error(&err, "disagrees with the membership stored");
}
