//! The record payload codecs (gzip, snappy, lz4, zstd), for the two places the broker must look
//! inside a compressed batch: checking keys on a produce to a compacted topic, and compaction
//! rewriting a batch it keeps only part of. The normal produce and fetch paths never come here:
//! they store and serve batches as the producer compressed them.
//!
//! The codecs are kafka-protocol's (Kafka's framing: xerial snappy blocks, the LZ4 frame
//! format); its `anyhow` errors stay in this module.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use super::batch::Compression;

/// Why a payload could not be (de)compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("the {codec:?} payload does not decompress")]
    Decompress { codec: Compression },
    #[error("compressing a payload with {codec:?} failed")]
    Compress { codec: Compression },
}

fn unpack<D: Decompressor<Bytes, Buf = Bytes>>(payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut input = Bytes::copy_from_slice(payload);
    D::decompress(&mut input, |out: &mut Bytes| Ok(out.to_vec()))
}

fn pack<C: Compressor<BytesMut, BufMut = BytesMut>>(payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = BytesMut::new();
    C::compress(&mut out, |tmp: &mut BytesMut| {
        tmp.extend_from_slice(payload);
        Ok(())
    })?;
    Ok(out.to_vec())
}

/// The uncompressed records of a batch payload (the bytes after the header).
pub fn decompress(codec: Compression, payload: &[u8]) -> Result<Cow<'_, [u8]>, CodecError> {
    let result = match codec {
        Compression::None => return Ok(Cow::Borrowed(payload)),
        Compression::Gzip => unpack::<Gzip>(payload),
        Compression::Snappy => unpack::<Snappy>(payload),
        Compression::Lz4 => unpack::<Lz4>(payload),
        Compression::Zstd => unpack::<Zstd>(payload),
    };
    result.map(Cow::Owned).map_err(|error| {
        tracing::debug!(?codec, %error, "decompression failed");
        CodecError::Decompress { codec }
    })
}

/// Compresses uncompressed records into a batch payload.
pub fn compress(codec: Compression, payload: &[u8]) -> Result<Cow<'_, [u8]>, CodecError> {
    let result = match codec {
        Compression::None => return Ok(Cow::Borrowed(payload)),
        Compression::Gzip => pack::<Gzip>(payload),
        Compression::Snappy => pack::<Snappy>(payload),
        Compression::Lz4 => pack::<Lz4>(payload),
        Compression::Zstd => pack::<Zstd>(payload),
    };
    result.map(Cow::Owned).map_err(|error| {
        tracing::warn!(?codec, %error, "compression failed");
        CodecError::Compress { codec }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let payload: Vec<u8> = (0..5000u32).flat_map(|i| (i % 97).to_be_bytes()).collect();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = compress(codec, &payload).unwrap();
            if codec != Compression::None {
                assert!(packed.len() < payload.len(), "{codec:?} compresses");
            }
            assert_eq!(
                decompress(codec, &packed).unwrap(),
                &payload[..],
                "{codec:?}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert_eq!(
                decompress(codec, b"definitely not compressed"),
                Err(CodecError::Decompress { codec })
            );
        }
    }
}
