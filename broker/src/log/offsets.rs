//! The log's offset bounds as one value whose invariant (`log_start_offset <= log_end_offset`)
//! is checked where it is made.

/// `[log_start_offset, log_end_offset)`: the offsets a reader may ask for. `log_end_offset` is
/// the offset the next appended record gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    log_start_offset: i64,
    log_end_offset: i64,
}

impl LogOffsets {
    /// `None` unless `0 <= log_start_offset <= log_end_offset`.
    pub fn new(log_start_offset: i64, log_end_offset: i64) -> Option<Self> {
        (0 <= log_start_offset && log_start_offset <= log_end_offset).then_some(Self {
            log_start_offset,
            log_end_offset,
        })
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }

    /// Whether a read may start at `offset` (the log end itself is a valid, empty read).
    pub fn is_readable(&self, offset: i64) -> bool {
        self.log_start_offset <= offset && offset <= self.log_end_offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariant_is_enforced() {
        assert!(LogOffsets::new(0, 0).is_some());
        assert!(LogOffsets::new(5, 9).is_some());
        assert!(LogOffsets::new(10, 9).is_none());
        assert!(LogOffsets::new(-1, 9).is_none());
    }

    #[test]
    fn readable_range_includes_the_end() {
        let offsets = LogOffsets::new(5, 9).unwrap();
        assert!(!offsets.is_readable(4));
        assert!(offsets.is_readable(5));
        assert!(offsets.is_readable(9));
        assert!(!offsets.is_readable(10));
    }
}
