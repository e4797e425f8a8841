//! The core's view of the replicated log.
//!
//! Terms are known for every index after the last snapshot (a compact run-length list), but
//! entry bodies are cached only for a recent tail: everything not yet applied or not yet handed
//! to storage, plus a bounded window of applied entries for followers that lag a little. Older
//! bodies live only in the driver's storage and are fetched on demand.

use std::collections::VecDeque;

use crate::entry::Entry;
use crate::types::{Index, Term};

#[derive(Debug)]
pub(crate) struct RaftLog {
    snapshot_index: Index,
    snapshot_term: Term,
    /// `(first index, term)` for each run of equal terms in `(snapshot_index, last_index]`.
    spans: Vec<(Index, Term)>,
    last_index: Index,
    /// Index of `cache[0]`; the cache always ends at `last_index`.
    cache_first: Index,
    cache: VecDeque<Entry>,
    /// Lowest index written since the last [`RaftLog::take_unflushed`].
    unflushed_from: Option<Index>,
}

impl RaftLog {
    /// A log that starts after a snapshot at `(snapshot_index, snapshot_term)`, holding
    /// `entries` (which must follow it contiguously; checked by the caller).
    pub(crate) fn new(snapshot_index: Index, snapshot_term: Term, entries: Vec<Entry>) -> Self {
        let mut log = Self {
            snapshot_index,
            snapshot_term,
            spans: Vec::new(),
            last_index: snapshot_index,
            cache_first: snapshot_index + 1,
            cache: VecDeque::with_capacity(entries.len()),
            unflushed_from: None,
        };
        for entry in entries {
            log.push(entry);
        }
        log.unflushed_from = None;
        log
    }

    pub(crate) fn snapshot_index(&self) -> Index {
        self.snapshot_index
    }

    pub(crate) fn last_index(&self) -> Index {
        self.last_index
    }

    pub(crate) fn last_term(&self) -> Term {
        self.spans.last().map_or(self.snapshot_term, |&(_, t)| t)
    }

    /// First index whose body is in memory.
    #[cfg(test)]
    pub(crate) fn cache_first(&self) -> Index {
        self.cache_first
    }

    /// The term of the entry at `index`, if known (the snapshot's last entry counts).
    pub(crate) fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if index < self.snapshot_index || index > self.last_index {
            return None;
        }
        let pos = self.spans.partition_point(|&(start, _)| start <= index);
        Some(self.spans[pos - 1].1)
    }

    /// The first index of the run of entries sharing the term of the entry at `index`.
    pub(crate) fn first_index_of_run(&self, index: Index) -> Index {
        let pos = self.spans.partition_point(|&(start, _)| start <= index);
        if pos == 0 {
            self.snapshot_index + 1
        } else {
            self.spans[pos - 1].0
        }
    }

    /// The last index holding an entry of term `term`, if the log has one after the snapshot.
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<Index> {
        let pos = self.spans.partition_point(|&(_, t)| t <= term);
        if pos == 0 || self.spans[pos - 1].1 != term {
            return None;
        }
        Some(
            self.spans
                .get(pos)
                .map_or(self.last_index, |&(start, _)| start - 1),
        )
    }

    /// The last index whose entry has a term of at most `term` (the snapshot point if none
    /// after it has).
    pub(crate) fn last_index_with_term_at_most(&self, term: Term) -> Index {
        let pos = self.spans.partition_point(|&(_, t)| t <= term);
        self.spans
            .get(pos)
            .map_or(self.last_index, |&(start, _)| start - 1)
    }

    /// Raft's "at least as up to date" comparison (§5.4.1).
    pub(crate) fn is_up_to_date(&self, last_term: Term, last_index: Index) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index)
    }

    pub(crate) fn entry(&self, index: Index) -> Option<&Entry> {
        if index < self.cache_first || index > self.last_index {
            return None;
        }
        self.cache.get((index - self.cache_first) as usize)
    }

    /// Cached entries from `first` through at most `last`, stopping once `max_bytes` is
    /// exceeded (at least one entry is returned). `None` if `first` is not cached.
    pub(crate) fn slice(&self, first: Index, last: Index, max_bytes: usize) -> Option<Vec<Entry>> {
        if first < self.cache_first || first > self.last_index {
            return None;
        }
        let last = last.min(self.last_index);
        let start = (first - self.cache_first) as usize;
        let end = (last - self.cache_first) as usize;
        if max_bytes == usize::MAX {
            return Some(self.cache.range(start..=end).cloned().collect());
        }
        let mut out = Vec::with_capacity(end + 1 - start);
        let mut bytes = 0;
        for entry in self.cache.range(start..=end) {
            bytes += entry.size();
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(entry.clone());
        }
        Some(out)
    }

    /// Appends one entry at `last_index + 1`.
    pub(crate) fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index(), self.last_index + 1);
        if self.spans.last().is_none_or(|&(_, t)| t != entry.term()) {
            self.spans.push((entry.index(), entry.term()));
        }
        self.last_index = entry.index();
        if self.cache.is_empty() {
            self.cache_first = entry.index();
        }
        self.cache.push_back(entry);
        self.unflushed_from.get_or_insert(self.last_index);
    }

    /// The position of the first entry that is not already in the log with the same term
    /// (a conflict or a new entry), or `None` if the log holds them all.
    pub(crate) fn find_conflict(&self, entries: &[Entry]) -> Option<usize> {
        entries
            .iter()
            .position(|e| self.term_at(e.index()) != Some(e.term()))
    }

    /// Removes every entry with index ≥ `index` (which must be after the snapshot).
    pub(crate) fn truncate_from(&mut self, index: Index) {
        debug_assert!(index > self.snapshot_index);
        if index > self.last_index {
            return;
        }
        let keep = self.spans.partition_point(|&(start, _)| start < index);
        self.spans.truncate(keep);
        let keep_cached = index.saturating_sub(self.cache_first) as usize;
        self.cache.truncate(keep_cached);
        self.last_index = index - 1;
        if self.cache.is_empty() {
            self.cache_first = self.last_index + 1;
        }
        self.unflushed_from = Some(self.unflushed_from.map_or(index, |u| u.min(index)));
    }

    /// Entries written since the last call, to be persisted; `(entries, first_index)`.
    pub(crate) fn take_unflushed(&mut self) -> Option<Vec<Entry>> {
        let from = self.unflushed_from.take()?;
        if from > self.last_index {
            // Truncated without anything new: storage learns of it with the next write, and
            // nothing durable is claimed beyond `last_index` meanwhile.
            return None;
        }
        let start = (from - self.cache_first) as usize;
        Some(self.cache.range(start..).cloned().collect())
    }

    /// Drops cached bodies with index ≤ `upto` (never unflushed ones).
    pub(crate) fn trim_cache(&mut self, upto: Index) {
        let limit = self.unflushed_from.map_or(upto, |u| upto.min(u - 1));
        while self.cache_first <= limit && !self.cache.is_empty() {
            self.cache.pop_front();
            self.cache_first += 1;
        }
    }

    /// Moves the snapshot point forward to `index` (which must be in the log), dropping the
    /// terms and bodies it covers.
    pub(crate) fn compact(&mut self, index: Index) {
        if index <= self.snapshot_index {
            return;
        }
        let Some(term) = self.term_at(index) else {
            return;
        };
        let mut spans = Vec::new();
        if let Some(next_term) = self.term_at(index + 1) {
            spans.push((index + 1, next_term));
            let later = self.spans.partition_point(|&(start, _)| start <= index + 1);
            spans.extend_from_slice(&self.spans[later..]);
        }
        self.spans = spans;
        self.snapshot_index = index;
        self.snapshot_term = term;
        // Bodies covered by the snapshot go, even unflushed ones: the snapshot stands for them.
        while self.cache_first <= index && !self.cache.is_empty() {
            self.cache.pop_front();
            self.cache_first += 1;
        }
        if self.cache.is_empty() {
            self.cache_first = self.last_index + 1;
        }
        if self.unflushed_from.is_some_and(|u| u <= index) {
            self.unflushed_from = (index < self.last_index).then_some(index + 1);
        }
    }

    /// Replaces the whole log with a snapshot at `(index, term)`.
    pub(crate) fn reset_to_snapshot(&mut self, index: Index, term: Term) {
        *self = Self::new(index, term, Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryPayload;

    fn entries(terms: &[(Index, Term)]) -> Vec<Entry> {
        terms
            .iter()
            .map(|&(i, t)| Entry::new(t, i, EntryPayload::Noop))
            .collect()
    }

    fn log_of(terms: &[Term]) -> RaftLog {
        let e: Vec<(Index, Term)> = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| (i as Index + 1, t))
            .collect();
        RaftLog::new(0, 0, entries(&e))
    }

    #[test]
    fn terms_are_known_everywhere_after_the_snapshot() {
        let log = log_of(&[1, 1, 2, 2, 2, 5]);
        assert_eq!(log.term_at(0), Some(0));
        assert_eq!(log.term_at(1), Some(1));
        assert_eq!(log.term_at(3), Some(2));
        assert_eq!(log.term_at(6), Some(5));
        assert_eq!(log.term_at(7), None);
        assert_eq!(log.last_index_of_term(2), Some(5));
        assert_eq!(log.last_index_of_term(3), None);
        assert_eq!(log.last_index_of_term(5), Some(6));
        assert_eq!(log.first_index_of_run(4), 3);
        assert_eq!(log.last_index_with_term_at_most(0), 0);
        assert_eq!(log.last_index_with_term_at_most(1), 2);
        assert_eq!(log.last_index_with_term_at_most(4), 5);
        assert_eq!(log.last_index_with_term_at_most(5), 6);
    }

    #[test]
    fn truncate_then_append_replaces_the_suffix() {
        let mut log = log_of(&[1, 1, 2, 2]);
        log.take_unflushed();
        assert_eq!(
            log.find_conflict(&entries(&[(2, 1), (3, 3), (4, 3)])),
            Some(1)
        );
        log.truncate_from(3);
        log.push(Entry::new(3, 3, EntryPayload::Noop));
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.term_at(3), Some(3));
        assert_eq!(log.last_index_of_term(2), None);
        let unflushed = log.take_unflushed().unwrap();
        assert_eq!(unflushed.len(), 1);
        assert_eq!(unflushed[0].index(), 3);
    }

    #[test]
    fn compaction_keeps_terms_after_the_point() {
        let mut log = log_of(&[1, 1, 2, 2, 3]);
        log.take_unflushed();
        log.compact(3);
        assert_eq!(log.snapshot_index(), 3);
        assert_eq!(log.term_at(3), Some(2));
        assert_eq!(log.term_at(4), Some(2));
        assert_eq!(log.term_at(5), Some(3));
        assert_eq!(log.term_at(2), None);
        assert!(log.entry(3).is_none());
        assert_eq!(log.entry(4).map(Entry::index), Some(4));
        log.compact(5);
        assert_eq!(log.last_term(), 3);
        assert_eq!(log.last_index(), 5);
        assert_eq!(log.cache_first(), 6);
        log.push(Entry::new(4, 6, EntryPayload::Noop));
        assert_eq!(log.term_at(6), Some(4));
    }

    #[test]
    fn trimming_never_drops_unflushed_entries() {
        let mut log = log_of(&[1, 1, 1]);
        log.take_unflushed();
        log.push(Entry::new(1, 4, EntryPayload::Noop));
        log.trim_cache(10);
        assert_eq!(log.cache_first(), 4);
        assert!(log.slice(3, 4, usize::MAX).is_none());
        assert_eq!(log.slice(4, 4, usize::MAX).unwrap().len(), 1);
    }

    #[test]
    fn slice_respects_byte_budget() {
        let log = log_of(&[1, 1, 1, 1]);
        assert_eq!(log.slice(1, 4, 0).unwrap().len(), 1);
        assert_eq!(log.slice(1, 4, usize::MAX).unwrap().len(), 4);
        assert_eq!(log.slice(2, 3, usize::MAX).unwrap().len(), 2);
    }

    /// A plain model of the log: every entry's term after the snapshot point, and which
    /// entries were written since the last flush.
    #[derive(Debug, Clone)]
    struct Model {
        snapshot: (Index, Term),
        terms: Vec<Term>,
        unflushed_from: Option<Index>,
    }

    impl Model {
        fn last_index(&self) -> Index {
            self.snapshot.0 + self.terms.len() as Index
        }

        fn term_at(&self, index: Index) -> Option<Term> {
            if index == self.snapshot.0 {
                return Some(self.snapshot.1);
            }
            if index < self.snapshot.0 {
                return None;
            }
            self.terms
                .get((index - self.snapshot.0 - 1) as usize)
                .copied()
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(bool),
        Truncate(u8),
        Compact(u8),
        Trim(u8),
        Flush,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => any::<bool>().prop_map(Op::Push),
            1 => any::<u8>().prop_map(Op::Truncate),
            1 => any::<u8>().prop_map(Op::Compact),
            1 => any::<u8>().prop_map(Op::Trim),
            1 => Just(Op::Flush),
        ]
    }

    proptest::proptest! {
        /// Every query of the log agrees with the plain model after any sequence of writes,
        /// truncations, compactions, cache trims and flushes.
        #[test]
        fn the_log_matches_a_plain_model(ops in proptest::collection::vec(op(), 1..60)) {
            let mut log = RaftLog::new(0, 0, Vec::new());
            let mut model = Model { snapshot: (0, 0), terms: Vec::new(), unflushed_from: None };
            for op in ops {
                let last = model.last_index();
                match op {
                    Op::Push(new_term) => {
                        let term = model.term_at(last).unwrap() + u64::from(new_term);
                        log.push(Entry::new(term, last + 1, EntryPayload::Noop));
                        model.terms.push(term);
                        model.unflushed_from.get_or_insert(last + 1);
                    }
                    Op::Truncate(k) => {
                        let from = model.snapshot.0 + 1 + u64::from(k) % (last - model.snapshot.0 + 1);
                        log.truncate_from(from);
                        model.terms.truncate((from - model.snapshot.0 - 1) as usize);
                        if from <= last {
                            model.unflushed_from = Some(model.unflushed_from.map_or(from, |u| u.min(from)));
                        }
                    }
                    Op::Compact(k) => {
                        let to = u64::from(k) % (last + 2);
                        log.compact(to);
                        if to > model.snapshot.0 && to <= last {
                            let term = model.term_at(to).unwrap();
                            model.terms.drain(..(to - model.snapshot.0) as usize);
                            model.snapshot = (to, term);
                            if model.unflushed_from.is_some_and(|u| u <= to) {
                                model.unflushed_from = (to < last).then_some(to + 1);
                            }
                        }
                    }
                    Op::Trim(k) => log.trim_cache(u64::from(k) % (last + 2)),
                    Op::Flush => {
                        let got = log.take_unflushed();
                        let want = model.unflushed_from.take().filter(|&u| u <= last);
                        match (got, want) {
                            (None, None) => {}
                            (Some(entries), Some(from)) => {
                                let indexes: Vec<Index> = entries.iter().map(Entry::index).collect();
                                proptest::prop_assert_eq!(indexes, (from..=last).collect::<Vec<_>>());
                                for e in &entries {
                                    proptest::prop_assert_eq!(Some(e.term()), model.term_at(e.index()));
                                }
                            }
                            (got, want) => proptest::prop_assert!(false, "flushed {got:?}, model {want:?}"),
                        }
                    }
                }
                let last = model.last_index();
                proptest::prop_assert_eq!(log.last_index(), last);
                proptest::prop_assert_eq!(log.snapshot_index(), model.snapshot.0);
                proptest::prop_assert_eq!(log.last_term(), model.term_at(last).unwrap());
                let max_term = model.term_at(last).unwrap();
                for index in model.snapshot.0.saturating_sub(1)..=last + 1 {
                    proptest::prop_assert_eq!(log.term_at(index), model.term_at(index), "term at {}", index);
                    if let Some(e) = log.entry(index) {
                        proptest::prop_assert_eq!((e.index(), Some(e.term())), (index, model.term_at(index)));
                    }
                    if index <= model.snapshot.0 {
                        proptest::prop_assert_eq!(log.first_index_of_run(index), model.snapshot.0 + 1);
                    } else if index <= last {
                        let term = model.term_at(index).unwrap();
                        let mut first = index;
                        while first - 1 > model.snapshot.0 && model.term_at(first - 1) == Some(term) {
                            first -= 1;
                        }
                        proptest::prop_assert_eq!(log.first_index_of_run(index), first, "run of {}", index);
                    }
                }
                // Entries not yet flushed are always in memory.
                if let Some(from) = model.unflushed_from {
                    for index in from..=last {
                        proptest::prop_assert!(log.entry(index).is_some(), "unflushed {} not cached", index);
                    }
                }
                for term in 0..=max_term + 1 {
                    let of_term = (model.snapshot.0 + 1..=last).rev().find(|&i| model.term_at(i) == Some(term));
                    proptest::prop_assert_eq!(log.last_index_of_term(term), of_term, "last of term {}", term);
                    let at_most = (model.snapshot.0..=last).rev().find(|&i| model.term_at(i).unwrap() <= term).unwrap_or(model.snapshot.0);
                    proptest::prop_assert_eq!(log.last_index_with_term_at_most(term), at_most, "at most {}", term);
                    for index in [last.saturating_sub(1), last, last + 1] {
                        let up_to_date = (term, index) >= (max_term, last);
                        proptest::prop_assert_eq!(log.is_up_to_date(term, index), up_to_date);
                    }
                }
                // A slice of cached entries is contiguous, capped, and never empty.
                if let Some(first) = (model.snapshot.0 + 1..=last).find(|&i| log.entry(i).is_some()) {
                    for (cap, max_bytes) in [(last, usize::MAX), (last, 0), (first + 1, 60)] {
                        let got = log.slice(first, cap, max_bytes).expect("cached");
                        proptest::prop_assert!(!got.is_empty());
                        let want_last = if max_bytes == usize::MAX { cap.min(last) } else {
                            (first + (max_bytes / Entry::new(0, 0, EntryPayload::Noop).size()).max(1) as Index - 1).min(cap).min(last)
                        };
                        proptest::prop_assert_eq!(got.first().map(Entry::index), Some(first));
                        proptest::prop_assert_eq!(got.last().map(Entry::index), Some(want_last));
                    }
                }
                proptest::prop_assert!(log.slice(last + 1, last + 1, usize::MAX).is_none());
            }
        }
    }
}
