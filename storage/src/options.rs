//! [`Options`]: how the storage lays out its files.

/// Tuning for [`crate::Storage::open`]. The defaults suit production; tests shrink segments.
#[derive(Clone, Debug)]
pub struct Options {
    segment_size: u64,
    write_buffer: usize,
    preallocate: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            write_buffer: 4 << 20,
            preallocate: true,
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
