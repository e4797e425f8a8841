//! The leader's view of each follower's replication progress.
//!
//! A follower is in one of three states, as in etcd's `tracker/progress`:
//! - **Probe**: the leader does not know where the logs diverge; it sends one append at a time
//!   and waits for the answer (or a heartbeat response) before sending another.
//! - **Replicate**: the logs match up to `match_index`; the leader streams appends
//!   optimistically, up to a window of appends in flight.
//! - **Snapshot**: the entries the follower needs were compacted; a snapshot is on its way.
//!
//! A follower whose disk stalls still answers heartbeats (they wait only for its term to be
//! durable) but acknowledges no append. A probe that such a follower leaves unanswered is
//! retried after a heartbeat answer, but with a backoff: 1, 2, 4, ... up to
//! [`MAX_PROBE_BACKOFF`] heartbeat rounds, each retry carrying a single entry. What a leader
//! resends to a follower that acknowledges nothing is thus bounded, while a probe lost in the
//! network is still retried at the next heartbeat.

use std::collections::VecDeque;

use crate::types::{Index, Instant};

/// The longest wait, in heartbeat rounds, before an unanswered probe is sent again.
pub(crate) const MAX_PROBE_BACKOFF: u32 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgressState {
    Probe,
    Replicate,
    Snapshot { index: Index, since: Instant },
}

#[derive(Debug)]
pub(crate) struct Progress {
    pub(crate) match_index: Index,
    pub(crate) next_index: Index,
    pub(crate) state: ProgressState,
    /// In Probe: an append is out and unanswered.
    probe_sent: bool,
    /// Probes sent since the follower last answered an append.
    unanswered_probes: u32,
    /// Heartbeat rounds since the last probe was sent.
    rounds_since_probe: u32,
    /// In Replicate: the last index of each append in flight, oldest first.
    inflight: VecDeque<Index>,
    /// Heard from since the last CheckQuorum round.
    pub(crate) recent_active: bool,
    /// Highest ReadIndex round this follower acknowledged.
    pub(crate) read_round: u64,
    /// Heartbeat rounds in a row with appends in flight and no acknowledgement.
    stalled_rounds: u32,
    /// Waiting for entries fetched from storage.
    pub(crate) awaiting_fetch: bool,
}

impl Progress {
    pub(crate) fn new(next_index: Index) -> Self {
        Self {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            unanswered_probes: 0,
            rounds_since_probe: 0,
            inflight: VecDeque::new(),
            recent_active: false,
            read_round: 0,
            stalled_rounds: 0,
            awaiting_fetch: false,
        }
    }

    /// Whether the leader should hold further appends back.
    pub(crate) fn is_paused(&self, max_inflight: usize) -> bool {
        self.awaiting_fetch
            || match self.state {
                ProgressState::Probe => self.probe_sent,
                ProgressState::Replicate => self.inflight.len() >= max_inflight,
                ProgressState::Snapshot { .. } => true,
            }
    }

    pub(crate) fn become_probe(&mut self) {
        // After a snapshot, resume right after it even if the acknowledgement was lost.
        if let ProgressState::Snapshot { index, .. } = self.state {
            self.next_index = self.next_index.max(index + 1).max(self.match_index + 1);
        } else {
            self.next_index = self.match_index + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        self.stalled_rounds = 0;
    }

    pub(crate) fn become_replicate(&mut self) {
        self.unanswered_probes = 0;
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.inflight.clear();
        self.stalled_rounds = 0;
    }

    pub(crate) fn become_snapshot(&mut self, index: Index, now: Instant) {
        self.state = ProgressState::Snapshot { index, since: now };
        self.unanswered_probes = 0;
        self.inflight.clear();
        self.probe_sent = false;
    }

    /// Records an append carrying entries up to `last` (`count` of them) as sent.
    pub(crate) fn on_append_sent(&mut self, last: Index, count: usize) {
        match self.state {
            ProgressState::Replicate if count > 0 => {
                self.next_index = last + 1;
                self.inflight.push_back(last);
            }
            ProgressState::Probe => {
                self.probe_sent = true;
                self.unanswered_probes = self.unanswered_probes.saturating_add(1);
                self.rounds_since_probe = 0;
            }
            _ => {}
        }
    }

    /// Whether the next probe repeats one the follower left unanswered (it then carries a
    /// single entry).
    pub(crate) fn is_reprobe(&self) -> bool {
        self.state == ProgressState::Probe && self.unanswered_probes > 0
    }

    /// The follower answered an append (accepted or rejected it).
    pub(crate) fn on_answered(&mut self) {
        self.probe_sent = false;
        self.unanswered_probes = 0;
    }

    /// The follower matched up to `index`. Returns whether that is news.
    pub(crate) fn on_accepted(&mut self, index: Index) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
            self.stalled_rounds = 0;
        }
        self.next_index = self.next_index.max(index + 1);
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        self.on_answered();
        advanced
    }

    /// A heartbeat response arrived: in Probe, allow the next probe once the backoff for the
    /// probes left unanswered has passed (the last one may have been lost).
    pub(crate) fn on_heartbeat_response(&mut self) {
        let exponent = self.unanswered_probes.saturating_sub(1).min(31);
        let wait = (1u32 << exponent).min(MAX_PROBE_BACKOFF);
        if self.rounds_since_probe >= wait {
            self.probe_sent = false;
        }
    }

    /// Called every heartbeat round; returns true if appends seem lost (the follower is
    /// alive but has acknowledged nothing for several rounds), so replication should re-probe.
    pub(crate) fn on_heartbeat_round(&mut self) -> bool {
        self.rounds_since_probe = self.rounds_since_probe.saturating_add(1);
        if self.state == ProgressState::Replicate && !self.inflight.is_empty() {
            self.stalled_rounds += 1;
            return self.stalled_rounds >= 3;
        }
        self.stalled_rounds = 0;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sends_one_at_a_time() {
        let mut p = Progress::new(5);
        assert!(!p.is_paused(4));
        p.on_append_sent(7, 3);
        assert!(p.is_paused(4));
        assert!(!p.on_heartbeat_round());
        p.on_heartbeat_response();
        assert!(!p.is_paused(4));
    }

    #[test]
    fn unanswered_probes_back_off_up_to_a_bound() {
        let mut p = Progress::new(5);
        let mut sent_at = Vec::new();
        for round in 1..=100 {
            if !p.is_paused(4) {
                assert_eq!(p.is_reprobe(), !sent_at.is_empty());
                p.on_append_sent(7, 1);
                sent_at.push(round);
            }
            p.on_heartbeat_round();
            p.on_heartbeat_response();
        }
        assert_eq!(&sent_at[..6], &[1, 2, 4, 8, 16, 32]);
        assert!(sent_at.windows(2).all(|w| w[1] - w[0] <= MAX_PROBE_BACKOFF));
        assert!(sent_at.len() <= 10, "{sent_at:?}");
        // An answer ends the backoff.
        p.on_accepted(6);
        assert!(!p.is_paused(4) && !p.is_reprobe());
    }

    #[test]
    fn replicate_window_fills_and_drains() {
        let mut p = Progress::new(1);
        p.become_replicate();
        p.on_append_sent(3, 3);
        p.on_append_sent(6, 3);
        assert_eq!(p.next_index, 7);
        assert!(p.is_paused(2));
        assert!(p.on_accepted(3));
        assert!(!p.is_paused(2));
        assert!(!p.on_accepted(2), "stale acknowledgement is no news");
        assert_eq!(p.match_index, 3);
    }

    #[test]
    fn snapshot_then_probe_resumes_after_it() {
        let mut p = Progress::new(1);
        p.become_snapshot(100, Instant::ZERO);
        assert!(p.is_paused(10));
        p.become_probe();
        assert_eq!(p.next_index, 101);
    }

    #[test]
    fn stalled_replication_is_detected() {
        let mut p = Progress::new(1);
        p.become_replicate();
        p.on_append_sent(3, 3);
        assert!(!p.on_heartbeat_round());
        assert!(!p.on_heartbeat_round());
        assert!(p.on_heartbeat_round());
    }

    #[test]
    fn probing_restarts_after_what_is_known_to_match() {
        // From Replicate: right after the match index.
        let mut p = Progress::new(1);
        p.become_replicate();
        p.on_append_sent(9, 9);
        assert!(p.on_accepted(5));
        p.become_probe();
        assert_eq!(p.next_index, 6);
        // From Snapshot: after the snapshot, or after the match index if that is further.
        let mut p = Progress::new(1);
        p.become_snapshot(100, Instant::ZERO);
        p.on_accepted(150);
        p.become_probe();
        assert_eq!(p.next_index, 151);
    }

    #[test]
    fn empty_appends_take_no_room_in_the_window() {
        let mut p = Progress::new(1);
        p.become_replicate();
        p.on_append_sent(0, 0);
        assert_eq!(p.next_index, 1);
        assert!(!p.is_paused(1));
        p.on_append_sent(1, 1);
        assert!(p.is_paused(1));
    }

    #[test]
    fn acknowledgements_advance_only_on_news() {
        let mut p = Progress::new(1);
        p.become_replicate();
        p.on_append_sent(4, 4);
        assert!(p.on_accepted(4));
        assert!(!p.on_accepted(4), "the same index again is no news");
        assert_eq!(p.next_index, 5);
        // An acknowledgement past what was sent moves the next index past it too.
        let mut p = Progress::new(1);
        assert!(p.on_accepted(7));
        assert_eq!(p.next_index, 8);
    }

    #[test]
    fn only_replication_with_appends_in_flight_can_stall() {
        let mut p = Progress::new(1);
        p.on_append_sent(3, 3); // a probe
        for _ in 0..10 {
            assert!(!p.on_heartbeat_round(), "a probe is not a stalled stream");
        }
        p.become_replicate();
        for _ in 0..10 {
            assert!(
                !p.on_heartbeat_round(),
                "nothing in flight, nothing stalled"
            );
        }
    }
}
