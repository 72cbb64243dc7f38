//! Input shaping shared by the fuzz targets.

use std::sync::OnceLock;

use fjord_broker::record::batch::{HEADER_LEN, compute_crc};

/// A temp directory for the run's logs, made once.
#[allow(dead_code)] // not every target opens a log
pub fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

/// When the first byte is odd, the rest is taken as one batch whose `batchLength`, magic and CRC
/// are fixed up, so the fuzzer gets past the checksum into the record parser and the log; when
/// even, the rest is used as it is.
pub fn shape(data: &[u8]) -> Vec<u8> {
    match data.split_first() {
        Some((flag, rest)) if flag & 1 == 1 && rest.len() >= HEADER_LEN => {
            let mut batch = rest.to_vec();
            let length = (batch.len() - 12) as i32;
            batch[8..12].copy_from_slice(&length.to_be_bytes());
            batch[16] = 2;
            let crc = compute_crc(&batch);
            batch[17..21].copy_from_slice(&crc.to_be_bytes());
            batch
        }
        Some((_, rest)) => rest.to_vec(),
        None => Vec::new(),
    }
}
