//! Every end of a node's process, and whether the harness caused it.
//!
//! A chaos run may end a node's process only in ways it chose: its own `kill -9`, its own
//! SIGTERM (the node must then exit 0), or the torn-write failpoint it armed, which aborts the
//! process and must say so in the node's log first. Anything else (a panic, a failed
//! assertion, a crash, an exit after an error) is a bug in the node, and fails the run even
//! if the history stays linearizable: a restart must not hide it. [`classify`] decides; the
//! [`Cluster`](crate::cluster::Cluster) records an [`Exit`] for every process that ends.

use std::fmt;
use std::process::ExitStatus;

/// The line storage logs when the torn-write failpoint fires, just before it aborts the process
/// (`Storage::tear` in `storage/src/storage.rs`; a test here checks the two agree).
pub const TORN_WRITE_LOG_LINE: &str = "torn-write failpoint: wrote part of a persist; aborting";

/// What a panic leaves in a node's log (kvd's one-line fail-stop message and Rust's default
/// panic message both contain it).
pub const PANIC_MARK: &str = "panicked at";

/// Lines of the node's log kept with an exit.
const TAIL_LINES: usize = 20;

const SIGABRT: i32 = 6;
const SIGKILL: i32 = 9;

/// What the harness did to a process just before it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    /// Nothing: the process ended on its own.
    Nothing,
    /// `kill -9`.
    Kill,
    /// SIGTERM, asking for a graceful stop.
    Stop,
}

/// How a process ended: an exit status or a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl Ended {
    /// How `status` says the process ended.
    pub fn of(status: ExitStatus) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(signal) = status.signal() {
                return Self::Signal(signal);
            }
        }
        Self::Code(status.code().unwrap_or(-1))
    }
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit status {code}"),
            Self::Signal(SIGKILL) => write!(f, "signal 9 (SIGKILL)"),
            Self::Signal(SIGABRT) => write!(f, "signal 6 (SIGABRT)"),
            Self::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// Who ended a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCause {
    /// The harness's `kill -9`.
    Killed,
    /// The harness's SIGTERM, and the node stopped cleanly (status 0).
    Stopped,
    /// The torn-write failpoint the harness armed: an abort, after the failpoint's log line.
    TornWrite,
    /// Not the harness: a bug in the node. Fails the run.
    Unexpected,
}

/// Decides who ended a process that ended as `ended`, after the harness did `requested`,
/// with the torn-write failpoint `torn_write_armed` or not, having written `log` (its stderr
/// since it started).
pub fn classify(
    ended: Ended,
    requested: Requested,
    torn_write_armed: bool,
    log: &str,
) -> ExitCause {
    // First: an armed node may have torn its write just before the harness's own signal.
    if torn_write_armed && ended == Ended::Signal(SIGABRT) && log.contains(TORN_WRITE_LOG_LINE) {
        return ExitCause::TornWrite;
    }
    match (requested, ended) {
        (Requested::Kill, Ended::Signal(SIGKILL)) => ExitCause::Killed,
        (Requested::Stop, Ended::Code(0)) => ExitCause::Stopped,
        _ => ExitCause::Unexpected,
    }
}

/// The lines of `log` that report a panic.
pub fn panic_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(PANIC_MARK))
        .collect()
}

/// One end of one node's process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    node: String,
    ended: Ended,
    cause: ExitCause,
    requested: Requested,
    log_tail: Vec<String>,
}

impl Exit {
    /// Records that `node`'s process ended as `ended` after the harness did `requested`;
    /// `log` is what the process wrote to its log, `torn_write_armed` whether it ran with the
    /// torn-write failpoint.
    pub fn new(
        node: impl Into<String>,
        ended: Ended,
        requested: Requested,
        torn_write_armed: bool,
        log: &str,
    ) -> Self {
        let lines: Vec<&str> = log.lines().collect();
        // Up to a panic's line, if any: a backtrace after it would fill the tail.
        let end = lines
            .iter()
            .rposition(|line| line.contains(PANIC_MARK))
            .map_or(lines.len(), |at| at + 1);
        let log_tail = lines[end.saturating_sub(TAIL_LINES)..end]
            .iter()
            .map(ToString::to_string)
            .collect();
        Self {
            node: node.into(),
            ended,
            cause: classify(ended, requested, torn_write_armed, log),
            requested,
            log_tail,
        }
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How the process ended.
    pub fn ended(&self) -> Ended {
        self.ended
    }

    /// Who ended it.
    pub fn cause(&self) -> ExitCause {
        self.cause
    }

    /// Whether the harness caused it.
    pub fn expected(&self) -> bool {
        self.cause != ExitCause::Unexpected
    }

    /// The last lines the process wrote to its log (up to its panic, if it panicked).
    pub fn log_tail(&self) -> &[String] {
        &self.log_tail
    }
}

impl fmt::Display for Exit {
    /// One line for an expected exit; for an unexpected one, also the last lines of the log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match (self.cause, self.requested) {
            (ExitCause::Killed, _) => "was killed by the harness",
            (ExitCause::Stopped, _) => "stopped on the harness's SIGTERM",
            (ExitCause::TornWrite, _) => "aborted on its torn-write failpoint",
            (ExitCause::Unexpected, Requested::Nothing) => "exited by itself",
            (ExitCause::Unexpected, Requested::Kill) => "had already ended when killed",
            (ExitCause::Unexpected, Requested::Stop) => "did not stop cleanly on SIGTERM",
        };
        write!(f, "{} {how} ({})", self.node, self.ended)?;
        if self.cause == ExitCause::Unexpected {
            write!(
                f,
                ": a crash the harness did not cause; the last lines of its log:"
            )?;
            for line in &self.log_tail {
                write!(f, "\n    | {line}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRED: &str =
        "2026 ERROR storage: torn-write failpoint: wrote part of a persist; aborting persist=3";

    #[test]
    fn the_harness_causes_only_its_kills_stops_and_fired_failpoints() {
        use ExitCause::*;
        use Requested::*;
        let kill = Ended::Signal(SIGKILL);
        let abort = Ended::Signal(SIGABRT);
        let cases = [
            (kill, Kill, false, "", Killed),
            (Ended::Code(0), Stop, false, "", Stopped),
            (abort, Nothing, true, FIRED, TornWrite),
            // Fired just before the harness's own kill.
            (abort, Kill, true, FIRED, TornWrite),
            // A panic, or any exit the harness did not ask for.
            (Ended::Code(101), Nothing, false, "", Unexpected),
            (Ended::Code(0), Nothing, false, "", Unexpected),
            (kill, Nothing, false, "", Unexpected),
            // Already dead when the harness came to kill it.
            (Ended::Code(101), Kill, false, "", Unexpected),
            (Ended::Code(1), Stop, false, "", Unexpected),
            // A stop that needed SIGKILL after the grace period.
            (kill, Stop, false, "", Unexpected),
            // An abort is a torn write only if armed and the failpoint said so.
            (abort, Nothing, false, FIRED, Unexpected),
            (abort, Nothing, true, "some other abort", Unexpected),
            (Ended::Code(101), Nothing, true, FIRED, Unexpected),
        ];
        for (ended, requested, armed, log, cause) in cases {
            assert_eq!(
                classify(ended, requested, armed, log),
                cause,
                "{ended} after {requested:?}, armed {armed}, log {log:?}"
            );
        }
    }

    #[test]
    fn the_failpoint_line_is_the_one_storage_writes() {
        let storage = include_str!("../../storage/src/storage.rs");
        assert!(
            storage.contains(&format!("\"{TORN_WRITE_LOG_LINE}\"")),
            "storage no longer logs {TORN_WRITE_LOG_LINE:?} when the failpoint fires: update \
             TORN_WRITE_LOG_LINE, or every torn write will count as a crash"
        );
    }

    #[test]
    fn an_unexpected_exit_names_node_status_and_log_tail() {
        let log: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let exit = Exit::new("node-2", Ended::Code(101), Requested::Nothing, false, &log);
        assert!(!exit.expected());
        assert_eq!(exit.log_tail().len(), TAIL_LINES);
        assert_eq!(exit.log_tail().last().map(String::as_str), Some("line 30"));
        let text = exit.to_string();
        assert!(
            text.starts_with("node-2 exited by itself (exit status 101)"),
            "{text}"
        );
        assert!(
            text.contains("| line 11") && !text.contains("| line 10\n"),
            "{text}"
        );
        let panicked = format!("{log}kvd: thread 'main' panicked at x.rs:1:2: boom\nbacktrace\n");
        let exit = Exit::new(
            "node-3",
            Ended::Code(101),
            Requested::Nothing,
            false,
            &panicked,
        );
        assert_eq!(
            exit.log_tail().last().map(String::as_str),
            Some("kvd: thread 'main' panicked at x.rs:1:2: boom"),
            "the tail ends at the panic, before its backtrace"
        );
        let killed = Exit::new(
            "node-1",
            Ended::Signal(SIGKILL),
            Requested::Kill,
            false,
            &log,
        );
        assert_eq!(
            killed.to_string(),
            "node-1 was killed by the harness (signal 9 (SIGKILL))"
        );
    }

    #[test]
    fn panics_are_found_in_logs() {
        let log = "INFO started\nkvd: thread 'main' panicked at kvd/src/x.rs:1:2: boom; exiting\n";
        assert_eq!(panic_lines(log).len(), 1);
        assert!(panic_lines("INFO started\n").is_empty());
    }
}
