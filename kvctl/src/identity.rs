//! Default identities: a stable client id per user and host, and request ids that keep
//! increasing across invocations of the same client.

use std::time::{SystemTime, UNIX_EPOCH};

/// `kvctl-<user>@<hostname>`, from `$USER` (or `$LOGNAME`) and the kernel's host name.
///
/// Stable across invocations, so the cluster's per-client window of remembered request ids
/// applies to one person's retries; distinct between users and machines.
pub fn default_client_id() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_string());
    format!("kvctl-{user}@{}", hostname())
}

/// Nanoseconds since the Unix epoch: later invocations of a client start higher, so a new
/// invocation is never mistaken for a retry of an earlier one.
pub fn initial_request_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(1);
    u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_client_id_names_user_and_host() {
        let id = default_client_id();
        assert!(id.starts_with("kvctl-") && id.contains('@'), "{id}");
        assert_eq!(id, default_client_id());
    }

    #[test]
    fn request_ids_increase_between_invocations() {
        let first = initial_request_id();
        assert!(initial_request_id() >= first);
        assert!(first > 1_600_000_000_000_000_000);
    }
}
