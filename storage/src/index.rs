//! [`EntryIndex`]: where each live log entry sits on disk, in a few bytes per entry.
//!
//! Entries are written in records of consecutive entries, so the index keeps one 16-byte
//! [`RecordLoc`] per entries record (not per entry) and one `(first index, term)` pair per run
//! of equal terms. With one entry per record and a vector at worst half full that is at most
//! 32 bytes per entry, and far less with batching; [`EntryIndex::heap_bytes`] reports it.

use raft::{Index, Term};

/// Where one entries record is: it holds the live entries `first..next.first` (or up to the
/// last index for the final record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordLoc {
    pub(crate) first: Index,
    /// The segment's sequence number.
    pub(crate) seq: u32,
    /// Byte offset of the record in the segment.
    pub(crate) offset: u32,
}

/// The live log: the position it starts after, and the locations and terms of its entries.
#[derive(Clone, Debug)]
pub(crate) struct EntryIndex {
    base_index: Index,
    base_term: Term,
    last_index: Index,
    locs: Vec<RecordLoc>,
    /// `(first index, term)` of each run of entries with the same term.
    terms: Vec<(Index, Term)>,
}

impl EntryIndex {
    /// An empty log after (`base_index`, `base_term`).
    pub(crate) fn new(base_index: Index, base_term: Term) -> Self {
        Self {
            base_index,
            base_term,
            last_index: base_index,
            locs: Vec::new(),
            terms: Vec::new(),
        }
    }

    pub(crate) fn base_index(&self) -> Index {
        self.base_index
    }

    pub(crate) fn last_index(&self) -> Index {
        self.last_index
    }

    pub(crate) fn last_term(&self) -> Term {
        self.terms.last().map_or(self.base_term, |run| run.1)
    }

    /// The term of the entry at `index`, or of the base position; `None` outside the log.
    pub(crate) fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        if index < self.base_index || index > self.last_index {
            return None;
        }
        let run = self.terms.partition_point(|run| run.0 <= index);
        Some(self.terms[run - 1].1)
    }

    /// Records that `loc` holds entries `loc.first..` with these terms (in index order).
    pub(crate) fn append(&mut self, loc: RecordLoc, terms: impl IntoIterator<Item = Term>) {
        debug_assert_eq!(loc.first, self.last_index + 1);
        let mut index = loc.first;
        for term in terms {
            if self.terms.last().is_none_or(|run| run.1 != term) {
                self.terms.push((index, term));
            }
            index += 1;
        }
        self.last_index = index - 1;
        self.locs.push(loc);
    }

    /// Voids entries from `from` on (`base_index < from <= last_index + 1`).
    pub(crate) fn truncate(&mut self, from: Index) {
        debug_assert!(from > self.base_index && from <= self.last_index + 1);
        self.last_index = from - 1;
        let keep = self.locs.partition_point(|loc| loc.first < from);
        self.locs.truncate(keep);
        let keep = self.terms.partition_point(|run| run.0 < from);
        self.terms.truncate(keep);
        self.shrink();
    }

    /// Gives memory back once the vectors are less than half full, so the index stays within
    /// twice its live size (32 bytes per entry at one entry per record).
    pub(crate) fn shrink(&mut self) {
        if self.locs.capacity() > 2 * self.locs.len() + 16 {
            self.locs.shrink_to(self.locs.len() + self.locs.len() / 2);
        }
        if self.terms.capacity() > 2 * self.terms.len() + 16 {
            self.terms
                .shrink_to(self.terms.len() + self.terms.len() / 2);
        }
    }

    /// Replaces the whole log by an empty one after (`index`, `term`).
    pub(crate) fn reset(&mut self, index: Index, term: Term) {
        *self = Self::new(index, term);
    }

    /// Forgets entries up to `index` (inside the log), which a snapshot now covers.
    pub(crate) fn compact(&mut self, index: Index) {
        let Some(term) = self.term_at(index) else {
            return;
        };
        if index >= self.last_index {
            self.reset(index, term);
            return;
        }
        // Keep the record holding `index + 1` and everything after it.
        let first_needed = self.locs.partition_point(|loc| loc.first <= index + 1) - 1;
        self.locs.drain(..first_needed);
        let first_run = self.terms.partition_point(|run| run.0 <= index + 1) - 1;
        self.terms.drain(..first_run);
        self.terms[0].0 = index + 1;
        self.base_index = index;
        self.base_term = term;
        self.shrink();
    }

    /// The records holding `first..=last` (which must lie inside the log), each with the range
    /// of live entries it holds.
    pub(crate) fn locate(
        &self,
        first: Index,
        last: Index,
    ) -> impl Iterator<Item = (RecordLoc, Index, Index)> + '_ {
        let start = self.locs.partition_point(|loc| loc.first <= first).max(1) - 1;
        self.locs[start..]
            .iter()
            .enumerate()
            .map(move |(i, loc)| {
                let end = self
                    .locs
                    .get(start + i + 1)
                    .map_or(self.last_index, |next| next.first - 1);
                (*loc, loc.first.max(self.base_index + 1), end)
            })
            .take_while(move |(loc, _, _)| loc.first <= last)
    }

    /// The oldest segment that still holds live entries.
    pub(crate) fn oldest_seq(&self) -> Option<u64> {
        self.locs.first().map(|loc| u64::from(loc.seq))
    }

    /// Heap bytes held by the index.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.locs.capacity() * size_of::<RecordLoc>()
            + self.terms.capacity() * size_of::<(Index, Term)>()
    }

    /// Number of live entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.last_index - self.base_index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(first: Index, offset: u32) -> RecordLoc {
        RecordLoc {
            first,
            seq: 1,
            offset,
        }
    }

    fn ranges(index: &EntryIndex, first: Index, last: Index) -> Vec<(u32, Index, Index)> {
        index
            .locate(first, last)
            .map(|(loc, from, to)| (loc.offset, from, to))
            .collect()
    }

    #[test]
    fn record_loc_is_16_bytes() {
        assert_eq!(size_of::<RecordLoc>(), 16);
    }

    #[test]
    fn append_truncate_compact() {
        let mut index = EntryIndex::new(0, 0);
        index.append(loc(1, 0), [1, 1, 1]); // 1..=3
        index.append(loc(4, 100), [1, 2]); // 4..=5
        index.append(loc(6, 200), [2, 2, 2]); // 6..=8
        assert_eq!(index.last_index(), 8);
        assert_eq!(index.term_at(4), Some(1));
        assert_eq!(index.term_at(5), Some(2));
        assert_eq!(index.term_at(9), None);
        assert_eq!(ranges(&index, 2, 5), vec![(0, 1, 3), (100, 4, 5)]);

        index.truncate(5);
        assert_eq!(index.last_index(), 4);
        assert_eq!(index.last_term(), 1);
        index.append(loc(5, 300), [3]);
        assert_eq!(ranges(&index, 4, 5), vec![(100, 4, 4), (300, 5, 5)]);

        index.compact(3);
        assert_eq!(index.term_at(3), Some(1));
        assert_eq!(index.term_at(2), None);
        assert_eq!(ranges(&index, 4, 5), vec![(100, 4, 4), (300, 5, 5)]);
        index.compact(4);
        assert_eq!(ranges(&index, 5, 5), vec![(300, 5, 5)]);
        assert_eq!(index.oldest_seq(), Some(1));
        index.compact(5);
        assert_eq!(index.len(), 0);
        assert_eq!(index.last_term(), 3);
    }
}
