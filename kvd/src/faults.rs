//! Test-only fault injection: network partitions and delays read from a rules file, a
//! failpoint that tears a WAL write and aborts, and one that panics in the node loop.
//!
//! **Not for production.** Both are switched on by environment variables that the chaos suite
//! (the `tests` crate) sets; they are deliberately not flags and do not show in `--help`.
//! Without them kvd carries none of this: the transport has no fault rules (its hot path
//! checks an `Option`) and the storage has no failpoint.
//!
//! # `KVD_FAULTS_FILE=PATH`: partitions and delays
//!
//! kvd reads PATH at start-up and then every 25 ms. Each line is one rule about a peer, named
//! as in `--peers` (its name, or its Raft address in the address-only form):
//!
//! ```text
//! # comments and blank lines are ignored
//! block node-2          # messages to and from node-2 are lost
//! delay node-3 20-200   # each message to node-3 waits 20 to 200 ms (drawn per message)
//! ```
//!
//! A blocked peer is cut off both ways (see [`transport::faults`]: messages from it are
//! dropped on arrival too, so a cut works even before the peer's own rules change), and
//! client requests this node would forward to it fail with `UNAVAILABLE`, as do requests it
//! forwards here: a partition is a partition for forwarded requests as well. Delays reorder
//! messages (each draws its own delay). A missing or empty file means no faults (heal by
//! emptying or removing it). A malformed file — an unknown keyword or peer, a bad range — is
//! logged as an error and ignored: the previous rules stay in force, and the node never stops
//! over it. Write the file atomically (write another file, then rename it over PATH) so a
//! half-written file is never read.
//!
//! # `KVD_FAILPOINT_TORN_WRITE=N`: a crash in the middle of a WAL write
//!
//! The N-th WAL persist after start-up writes only the first half of its records, hands them
//! to the OS and aborts the process before any fsync or acknowledgement (see
//! [`storage::Options::torn_write_at`]). The next start must cut the torn tail off and
//! recover; the cluster must not lose an acknowledged write.
//!
//! # `KVD_FAILPOINT_PANIC=N`: a bug that panics
//!
//! The node loop panics when it applies its N-th entry after start-up (entries re-applied from
//! the log after a restart count too). A negative control for kvd's fail-stop panic handling
//! and for the chaos suite, which must report the crash instead of restarting the node
//! quietly: the process must exit non-zero with the panic message on stderr, never keep
//! serving without its node loop.
//!
//! Each numeric variable must be a whole number of at least 1; anything else (including text
//! that is not UTF-8) stops kvd at start-up with an error naming the variable. An empty value
//! counts as unset.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raft::NodeId;
use tracing::{error, info, warn};
use transport::{FaultRules, PeerFaults};

use crate::config::Peer;

/// Environment variable naming the fault rules file.
pub const FAULTS_FILE_ENV: &str = "KVD_FAULTS_FILE";
/// Environment variable arming the torn-write failpoint.
pub const TORN_WRITE_ENV: &str = "KVD_FAILPOINT_TORN_WRITE";
/// Environment variable arming the panic failpoint.
pub const PANIC_ENV: &str = "KVD_FAILPOINT_PANIC";
/// How often the rules file is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The test-only faults a node runs with (none by default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestFaults {
    rules_file: Option<PathBuf>,
    torn_write_at: Option<u64>,
    panic_at_apply: Option<u64>,
}

impl TestFaults {
    /// No fault injection.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads [`FAULTS_FILE_ENV`], [`TORN_WRITE_ENV`] and [`PANIC_ENV`] from the process
    /// environment; see [`TestFaults::from_lookup`].
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Reads the variables through `lookup` (the environment, or a table in tests); fails,
    /// naming the variable, on a failpoint that is not a whole number of at least 1.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, String> {
        let rules_file = lookup(FAULTS_FILE_ENV)
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        let torn_write_at = failpoint(&lookup, TORN_WRITE_ENV, "the WAL write to tear")?;
        let panic_at_apply = failpoint(&lookup, PANIC_ENV, "the applied entry to panic at")?;
        Ok(Self {
            rules_file,
            torn_write_at,
            panic_at_apply,
        })
    }

    /// Reads fault rules from `path` (see the module docs).
    pub fn with_rules_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.rules_file = Some(path.into());
        self
    }

    /// Tears the `n`-th WAL persist and aborts.
    pub fn with_torn_write_at(mut self, n: u64) -> Self {
        self.torn_write_at = Some(n).filter(|&n| n > 0);
        self
    }

    /// Panics in the node loop at the `n`-th applied entry.
    pub fn with_panic_at_apply(mut self, n: u64) -> Self {
        self.panic_at_apply = Some(n).filter(|&n| n > 0);
        self
    }

    /// The rules file, if fault rules are enabled.
    pub fn rules_file(&self) -> Option<&Path> {
        self.rules_file.as_deref()
    }

    /// The persist the failpoint tears, if armed.
    pub fn torn_write_at(&self) -> Option<u64> {
        self.torn_write_at
    }

    /// The applied entry (counted from 1 since start-up) the node loop panics at, if armed.
    pub fn panic_at_apply(&self) -> Option<u64> {
        self.panic_at_apply
    }
}

/// Reads failpoint variable `name`: unset or empty is `None`, a whole number of at least 1 is
/// `Some`, anything else an error naming `name` and what its number means (`meaning`).
fn failpoint(
    lookup: &impl Fn(&str) -> Option<OsString>,
    name: &str,
    meaning: &str,
) -> Result<Option<u64>, String> {
    let Some(value) = lookup(name) else {
        return Ok(None);
    };
    let Some(text) = value.to_str() else {
        return Err(format!(
            "{name}={value:?}: not UTF-8; expected the number (1 or more) of {meaning}"
        ));
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!(
            "{name}={text:?}: expected the number (1 or more) of {meaning}"
        )),
    }
}

/// Why a rules file was not applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct RulesError {
    line: usize,
    reason: String,
}

impl RulesError {
    fn new(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line,
            reason: reason.into(),
        }
    }

    /// The line (from 1) at fault.
    pub fn line(&self) -> usize {
        self.line
    }
}

/// The contents of a rules file: faults by peer name. Its [`fmt::Display`] is the file format,
/// so the chaos suite writes files with it.
///
/// ```
/// use std::time::Duration;
/// use kvd::faults::RulesFile;
///
/// let rules = RulesFile::new()
///     .block("node-2")
///     .delay("node-3", Duration::from_millis(20), Duration::from_millis(200));
/// assert_eq!(rules.to_string(), "block node-2\ndelay node-3 20-200\n");
/// assert_eq!(RulesFile::parse(&rules.to_string()), Ok(rules));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RulesFile {
    peers: BTreeMap<String, PeerFaults>,
}

impl RulesFile {
    /// No rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds: messages to and from `peer` are lost.
    pub fn block(mut self, peer: impl Into<String>) -> Self {
        let entry = self.peers.entry(peer.into()).or_default();
        *entry = entry.with_block();
        self
    }

    /// Adds: each message to `peer` waits between `min` and `max` (millisecond resolution).
    pub fn delay(mut self, peer: impl Into<String>, min: Duration, max: Duration) -> Self {
        let entry = self.peers.entry(peer.into()).or_default();
        *entry = entry.with_delay(min, max);
        self
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The rules by peer name.
    pub fn peers(&self) -> &BTreeMap<String, PeerFaults> {
        &self.peers
    }

    /// Parses a rules file (see the module docs for the format).
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let mut rules = Self::new();
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            let line = line.split('#').next().unwrap_or_default().trim();
            let words: Vec<&str> = line.split_whitespace().collect();
            rules = match words.as_slice() {
                [] => rules,
                ["block", peer] => rules.block(*peer),
                ["delay", peer, range] => {
                    let (min, max) = parse_range(range).ok_or_else(|| {
                        RulesError::new(
                            number,
                            format!("invalid delay {range:?} (use MIN-MAX in milliseconds)"),
                        )
                    })?;
                    rules.delay(*peer, min, max)
                }
                _ => {
                    return Err(RulesError::new(
                        number,
                        format!("expected `block PEER` or `delay PEER MIN-MAX`, found {line:?}"),
                    ));
                }
            };
        }
        Ok(rules)
    }

    /// The rules by peer id, for [`FaultRules::set`]; fails on a name that is not a peer.
    pub fn resolve(
        &self,
        peers: &BTreeMap<NodeId, Peer>,
    ) -> Result<BTreeMap<NodeId, PeerFaults>, String> {
        self.peers
            .iter()
            .map(|(name, faults)| {
                peers
                    .iter()
                    .find(|(_, peer)| &peer.name == name)
                    .map(|(&id, _)| (id, *faults))
                    .ok_or_else(|| format!("{name:?} is not a peer of this node"))
            })
            .collect()
    }
}

fn parse_range(text: &str) -> Option<(Duration, Duration)> {
    let (min, max) = text.split_once('-')?;
    let min: u64 = min.trim().parse().ok()?;
    let max: u64 = max.trim().parse().ok()?;
    (min <= max).then(|| (Duration::from_millis(min), Duration::from_millis(max)))
}

impl fmt::Display for RulesFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (peer, faults) in &self.peers {
            if faults.is_blocked() {
                writeln!(f, "block {peer}")?;
            }
            if let Some((min, max)) = faults.delay() {
                writeln!(f, "delay {peer} {}-{}", min.as_millis(), max.as_millis())?;
            }
        }
        Ok(())
    }
}

/// Keeps a node's [`FaultRules`] in step with its rules file.
///
/// Call [`RulesWatcher::poll`] once before the transport starts (a node restarted inside a
/// partition starts partitioned), then [`RulesWatcher::run`] in a task of its own.
#[derive(Debug)]
pub struct RulesWatcher {
    path: PathBuf,
    peers: BTreeMap<NodeId, Peer>,
    rules: FaultRules,
    /// The contents last acted on (applied or refused), so each version is logged once.
    last: Option<Result<String, String>>,
}

impl RulesWatcher {
    /// Watches `path` for this node, whose peers are `peers`, updating `rules`.
    pub fn new(path: impl Into<PathBuf>, peers: BTreeMap<NodeId, Peer>, rules: FaultRules) -> Self {
        Self {
            path: path.into(),
            peers,
            rules,
            last: None,
        }
    }

    /// Reads the file once and applies it if it changed. Never fails: a missing file means
    /// no rules; an unreadable or malformed one is logged and the previous rules stay.
    pub fn poll(&mut self) {
        let read = match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e.to_string()),
        };
        if self.last.as_ref() == Some(&read) {
            return;
        }
        match &read {
            Ok(text) => match RulesFile::parse(text)
                .map_err(|e| e.to_string())
                .and_then(|file| Ok((file.resolve(&self.peers)?, file)))
            {
                Ok((by_id, file)) => {
                    self.rules.set(by_id);
                    // A node that starts without rules says nothing.
                    if self.last.is_some() || !file.is_empty() {
                        let shown = file.to_string().trim_end().replace('\n', "; ");
                        info!(rules = %shown, "fault rules changed (test-only fault injection)");
                    }
                }
                Err(reason) => error!(
                    path = %self.path.display(),
                    "ignoring malformed fault rules, keeping the previous ones: {reason}"
                ),
            },
            Err(reason) => warn!(
                path = %self.path.display(),
                "cannot read fault rules, keeping the previous ones: {reason}"
            ),
        }
        self.last = Some(read);
    }

    /// Polls every [`POLL_INTERVAL`], forever (abort the task to stop).
    pub async fn run(mut self) {
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.poll();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn peers() -> BTreeMap<NodeId, Peer> {
        ["node-2", "node-3"]
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let peer = Peer {
                    name: name.to_string(),
                    raft_addr: format!("127.0.0.1:{}", 7000 + i).parse().unwrap(),
                };
                (i as NodeId + 2, peer)
            })
            .collect()
    }

    #[test]
    fn the_format_round_trips_and_allows_comments() {
        let text = "# partition\n\nblock node-2   # cut\ndelay node-3 5-50\ndelay node-2 1-2\n";
        let parsed = RulesFile::parse(text).unwrap();
        let expected = RulesFile::new()
            .block("node-2")
            .delay("node-2", MS, 2 * MS)
            .delay("node-3", 5 * MS, 50 * MS);
        assert_eq!(parsed, expected);
        assert_eq!(RulesFile::parse(&expected.to_string()).unwrap(), expected);
        assert!(RulesFile::parse("").unwrap().is_empty());
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        for (text, line) in [
            ("block", 1),
            ("block node-2\ncut node-3", 2),
            ("delay node-2 50", 1),
            ("delay node-2 50-20", 1),
            ("delay node-2 a-b", 1),
            ("\n\ndelay node-2 1-2 3", 3),
            ("block node-2 node-3", 1),
        ] {
            let error = RulesFile::parse(text).unwrap_err();
            assert_eq!(error.line(), line, "{text:?}: {error}");
        }
    }

    #[test]
    fn names_resolve_to_peer_ids() {
        let file = RulesFile::new().block("node-3");
        let by_id = file.resolve(&peers()).unwrap();
        assert_eq!(by_id, BTreeMap::from([(3, PeerFaults::blocked())]));
        assert!(RulesFile::new().block("node-9").resolve(&peers()).is_err());
    }

    #[test]
    fn the_watcher_applies_changes_and_keeps_rules_over_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules");
        let rules = FaultRules::new(1);
        let mut watcher = RulesWatcher::new(&path, peers(), rules.clone());
        watcher.poll();
        assert!(rules.get().is_empty(), "a missing file means no faults");

        std::fs::write(&path, "block node-2\n").unwrap();
        watcher.poll();
        assert!(rules.blocks(2));

        for bad in [
            "block node-9\n",
            "garbage\n",
            "delay node-3 9-1\n",
            "\u{0}\u{ff}",
        ] {
            std::fs::write(&path, bad).unwrap();
            watcher.poll();
            assert!(rules.blocks(2), "{bad:?} must not change the rules");
        }
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        watcher.poll();
        assert!(
            rules.blocks(2),
            "an unreadable (non-UTF-8) file keeps the rules"
        );

        std::fs::write(&path, "delay node-3 1-2\n").unwrap();
        watcher.poll();
        assert!(!rules.blocks(2));
        assert_eq!(rules.peer(3).delay(), Some((MS, 2 * MS)));

        std::fs::remove_file(&path).unwrap();
        watcher.poll();
        assert!(rules.get().is_empty(), "removing the file heals");
    }

    #[test]
    fn the_failpoint_must_be_a_positive_number() {
        assert_eq!(
            TestFaults::none().with_torn_write_at(0).torn_write_at(),
            None
        );
        assert_eq!(
            TestFaults::none().with_torn_write_at(7).torn_write_at(),
            Some(7)
        );
        assert_eq!(
            TestFaults::none().with_panic_at_apply(0).panic_at_apply(),
            None
        );
        assert_eq!(
            TestFaults::none().with_panic_at_apply(5).panic_at_apply(),
            Some(5)
        );
    }

    /// The faults read from a table of variables instead of the process environment.
    fn from_table(table: &[(&str, OsString)]) -> Result<TestFaults, String> {
        TestFaults::from_lookup(|name| {
            table
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
        })
    }

    #[test]
    fn no_variables_means_no_faults() {
        assert_eq!(from_table(&[]), Ok(TestFaults::none()));
        let blank = [
            (FAULTS_FILE_ENV, OsString::new()),
            (TORN_WRITE_ENV, " ".into()),
            (PANIC_ENV, OsString::new()),
        ];
        assert_eq!(from_table(&blank), Ok(TestFaults::none()));
    }

    #[test]
    fn every_variable_is_read() {
        let table = [
            (FAULTS_FILE_ENV, "/tmp/rules".into()),
            (TORN_WRITE_ENV, "12".into()),
            (PANIC_ENV, " 5 ".into()),
        ];
        let expected = TestFaults::none()
            .with_rules_file("/tmp/rules")
            .with_torn_write_at(12)
            .with_panic_at_apply(5);
        assert_eq!(from_table(&table), Ok(expected));
    }

    #[test]
    fn a_malformed_failpoint_is_an_error_naming_its_variable() {
        let mut malformed: Vec<OsString> = ["0", "-3", "ten", "1.5", "18446744073709551616"]
            .into_iter()
            .map(OsString::from)
            .collect();
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            malformed.push(OsString::from_vec(vec![b'1', 0xff]));
        }
        for name in [TORN_WRITE_ENV, PANIC_ENV] {
            for bad in &malformed {
                let error = from_table(&[(name, bad.clone())]).unwrap_err();
                assert!(
                    error.starts_with(&format!("{name}=")),
                    "{name}={bad:?}: {error}"
                );
                // The other variable well-formed does not hide the error.
                let other = if name == PANIC_ENV {
                    TORN_WRITE_ENV
                } else {
                    PANIC_ENV
                };
                let error = from_table(&[(other, "3".into()), (name, bad.clone())]).unwrap_err();
                assert!(error.contains(name), "{name}={bad:?}: {error}");
            }
        }
    }
}
