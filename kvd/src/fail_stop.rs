//! Fail-stop on panic: a panic anywhere in the `kvd` process ends the process.
//!
//! A panic is a bug, and a node that keeps running after one is worse than a node that is
//! down. The node loop runs in a tokio task and storage on threads of its own: with Rust's
//! default behaviour a panic there ends only that task or thread, and the process stays up
//! half-alive (the gRPC server still answers health checks, every write fails). Raft tolerates
//! a node that stops; it is not built for one that misbehaves.
//!
//! The `kvd` binary calls [`install`] first thing. The hook it installs runs on the panicking
//! thread before any unwinding, writes one line to stderr naming the thread, the location and
//! the message (plus a backtrace if `RUST_BACKTRACE` asks for one), and exits with status
//! [`PANIC_EXIT_STATUS`]. It covers every thread of the process, including the storage threads
//! and tasks that tokio would otherwise catch.
//!
//! Why a hook rather than `panic = "abort"` in the build profile:
//!
//! - A profile setting is workspace-wide (it cannot be set for one package) and `cargo test`
//!   ignores it, so kvd's own test builds would still unwind. The hook behaves the same in
//!   every build of the binary, and leaves the library (used in-process by tests and other
//!   programs) to its caller's panic policy.
//! - It exits with a plain status, 101 (the status Rust gives a panic in `main`), where abort
//!   ends the process with SIGABRT and perhaps a core dump; a supervisor sees an ordinary
//!   failure.
//! - The line is complete on stderr before the exit: stderr is unbuffered, and the line goes
//!   out in one write under stderr's lock (so it is not interleaved with log lines).
//! - The exit happens before unwinding starts: no unwinding ever crosses an FFI frame, and the
//!   panicking thread runs no destructor and releases no lock before the process ends.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::io::Write as _;

/// The exit status of a process that panicked.
pub const PANIC_EXIT_STATUS: i32 = 101;

/// Makes every later panic in this process log one line and exit with
/// [`PANIC_EXIT_STATUS`] (see the module docs). For binaries: a library should not call it.
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let location = info.location().map(ToString::to_string);
        let line = panic_line(thread.name(), location.as_deref(), &message(info.payload()));
        let backtrace = Backtrace::capture();
        let mut text = format!("{line}\n");
        if backtrace.status() == BacktraceStatus::Captured {
            text.push_str(&format!("{backtrace}\n"));
        }
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(text.as_bytes());
        let _ = stderr.flush();
        drop(stderr);
        std::process::exit(PANIC_EXIT_STATUS);
    }));
}

/// The panic's message, if it carries one.
fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_string()
    }
}

/// `kvd: thread 'NAME' panicked at FILE:LINE:COL: MESSAGE; exiting (status 101)`, on one line
/// whatever the message holds.
pub fn panic_line(thread: Option<&str>, location: Option<&str>, message: &str) -> String {
    let one_line = message.replace("\r\n", "\n").replace(['\n', '\r'], " | ");
    format!(
        "kvd: thread '{}' panicked at {}: {one_line}; exiting (status {PANIC_EXIT_STATUS})",
        thread.unwrap_or("<unnamed>"),
        location.unwrap_or("<unknown location>"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_thread_location_and_message() {
        let line = panic_line(
            Some("storage-persister"),
            Some("storage/src/x.rs:10:5"),
            "boom",
        );
        assert_eq!(
            line,
            "kvd: thread 'storage-persister' panicked at storage/src/x.rs:10:5: boom; \
             exiting (status 101)"
        );
    }

    #[test]
    fn a_multi_line_message_stays_on_one_line() {
        let line = panic_line(None, None, "first\nsecond\r\nthird\r");
        assert!(!line.contains(['\n', '\r']), "{line:?}");
        assert!(line.contains("first | second | third"), "{line}");
        assert!(line.contains("'<unnamed>' panicked at <unknown location>"));
    }

    #[test]
    fn messages_come_from_str_and_string_payloads() {
        assert_eq!(message(&"static"), "static");
        assert_eq!(message(&String::from("owned")), "owned");
        assert_eq!(message(&42_u32), "(no message)");
    }
}
