//! [`Options`]: how the storage lays out its files.

/// Tuning for [`crate::Storage::open`]. The defaults suit production; tests shrink segments.
#[derive(Clone, Debug)]
pub struct Options {
    segment_size: u64,
    write_buffer: usize,
    preallocate: bool,
    spares_inline: bool,
    torn_write_at: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            write_buffer: 4 << 20,
            preallocate: true,
            spares_inline: false,
            torn_write_at: None,
        }
    }
}

impl Options {
    /// The defaults: 64 MiB segments, 4 MiB write buffer, preallocated segments.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new segment is started once the current one has reached this many bytes (checked
    /// before each persist, so a segment may exceed it by one persist). Minimum 4 KiB.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes.max(4096);
        self
    }

    /// Bytes buffered in memory before they are handed to the OS (still without fsync).
    pub fn write_buffer(mut self, bytes: usize) -> Self {
        self.write_buffer = bytes;
        self
    }

    /// Whether new segments are made from zero-filled spares prepared in the background (see
    /// `prealloc.rs`: fsyncs of overwritten blocks are cheaper than of appended ones). Files
    /// then have their full size from the start; zeros past the last record end the log.
    pub fn preallocate(mut self, on: bool) -> Self {
        self.preallocate = on;
        self
    }

    /// Prepares spare segments on the writing thread (when the store opens and whenever one is
    /// taken) instead of on a thread of their own, so that a test sees the same file
    /// operations in the same order on every run and can replay a failure from its seed.
    /// Test-only: rolls then wait for a whole segment of zeros to be written and synced.
    #[cfg(feature = "test-util")]
    pub fn prepare_spares_inline(mut self, on: bool) -> Self {
        self.spares_inline = on;
        self
    }

    pub(crate) fn get_spares_inline(&self) -> bool {
        self.spares_inline
    }

    /// A failpoint for crash tests, off by default: the `n`-th persist after
    /// [`crate::Storage::open`] (counting from 1, and only persists that write something)
    /// writes the bytes buffered before it, then only the first half of its own record group,
    /// hands them to the OS and **aborts the process** (`std::process::abort`) before any
    /// fsync or acknowledgement. The file then ends like one cut by a crash in the middle of
    /// a write; the next [`crate::Storage::open`] must cut that tail and recover every persist
    /// before it. kvd arms it from `KVD_FAILPOINT_TORN_WRITE`.
    pub fn torn_write_at(mut self, n: Option<u64>) -> Self {
        self.torn_write_at = n.filter(|&n| n > 0);
        self
    }

    pub(crate) fn get_torn_write_at(&self) -> Option<u64> {
        self.torn_write_at
    }

    pub(crate) fn get_preallocate(&self) -> bool {
        self.preallocate
    }

    pub(crate) fn get_segment_size(&self) -> u64 {
        self.segment_size
    }

    pub(crate) fn get_write_buffer(&self) -> usize {
        self.write_buffer
    }
}
