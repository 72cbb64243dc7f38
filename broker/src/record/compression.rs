//! The record payload codecs (gzip, snappy, lz4, zstd), for the places the broker must look
//! inside a compressed batch: checking keys on a produce to a compacted topic, compaction
//! rewriting a batch it keeps only part of, and produce re-encoding batches for a topic whose
//! `compression.type` names a codec. Otherwise produce and fetch never come here: they store and
//! serve batches as the producer compressed them.
//!
//! Compression uses kafka-protocol's codecs (Kafka's framing: xerial snappy blocks, the LZ4
//! frame format); its `anyhow` errors stay in this module. Decompression reads the same formats
//! through the codec crates directly, because it must stop at a bound: a few kilobytes of
//! gzip or zstd can claim gigabytes, and these bytes come from clients.

use std::borrow::Cow;

use bytes::BytesMut;
use std::io::Read;

use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use super::batch::Compression;

/// Why a payload could not be (de)compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("the {codec:?} payload does not decompress")]
    Decompress { codec: Compression },
    #[error("the {codec:?} payload decompresses to more than {limit} bytes")]
    TooLarge { codec: Compression, limit: usize },
    #[error("compressing a payload with {codec:?} failed")]
    Compress { codec: Compression },
}

fn pack<C: Compressor<BytesMut, BufMut = BytesMut>>(payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = BytesMut::new();
    C::compress(&mut out, |tmp: &mut BytesMut| {
        tmp.extend_from_slice(payload);
        Ok(())
    })?;
    Ok(out.to_vec())
}

/// Most bytes one batch's records may decompress to. Far above what producers send (their
/// batches are at most `max.message.bytes` compressed, 1 MiB by default), and a bound on what a
/// hostile one can make the broker allocate.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// The uncompressed records of a batch payload (the bytes after the header), at most
/// [`MAX_DECOMPRESSED_BYTES`].
pub fn decompress(codec: Compression, payload: &[u8]) -> Result<Cow<'_, [u8]>, CodecError> {
    decompress_at_most(codec, payload, MAX_DECOMPRESSED_BYTES)
}

fn decompress_at_most(
    codec: Compression,
    payload: &[u8],
    limit: usize,
) -> Result<Cow<'_, [u8]>, CodecError> {
    let failed = |error: &dyn std::fmt::Display| {
        tracing::debug!(?codec, %error, "decompression failed");
        CodecError::Decompress { codec }
    };
    let out = match codec {
        Compression::None => return Ok(Cow::Borrowed(payload)),
        Compression::Gzip => read_at_most(flate2::read::GzDecoder::new(payload), limit, codec),
        Compression::Zstd => zstd::stream::read::Decoder::new(payload)
            .map_err(|e| failed(&e))
            .and_then(|d| read_at_most(d, limit, codec)),
        Compression::Lz4 => lz4::Decoder::new(payload)
            .map_err(|e| failed(&e))
            .and_then(|d| read_at_most(d, limit, codec)),
        Compression::Snappy => return unsnappy(payload, limit).map(Cow::Owned),
    };
    match out {
        Ok(Some(bytes)) => Ok(Cow::Owned(bytes)),
        Ok(None) => Err(CodecError::TooLarge { codec, limit }),
        Err(error) => Err(error),
    }
}

/// Reads a decoder to its end; `None` if it yields more than `limit` bytes.
fn read_at_most(
    decoder: impl Read,
    limit: usize,
    codec: Compression,
) -> Result<Option<Vec<u8>>, CodecError> {
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|error| {
            tracing::debug!(?codec, %error, "decompression failed");
            CodecError::Decompress { codec }
        })?;
    Ok((out.len() <= limit).then_some(out))
}

/// Kafka's snappy: xerial framing (a magic header, then length-prefixed raw blocks) or one raw
/// block. Raw blocks state their uncompressed length up front, checked before allocating.
fn unsnappy(payload: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    const MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const HEADER_LEN: usize = 16;
    let codec = Compression::Snappy;
    let bad = CodecError::Decompress { codec };
    let mut out = Vec::new();
    let block = |compressed: &[u8], out: &mut Vec<u8>| {
        let len = snap::raw::decompress_len(compressed).map_err(|_| bad)?;
        if out.len() + len > limit {
            return Err(CodecError::TooLarge { codec, limit });
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut out[start..])
            .map_err(|_| bad)?;
        Ok(())
    };
    if !payload.starts_with(MAGIC) {
        block(payload, &mut out)?;
        return Ok(out);
    }
    let mut rest = payload.get(HEADER_LEN..).ok_or(bad)?;
    while !rest.is_empty() {
        let len = rest.get(..4).ok_or(bad)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let compressed = rest.get(4..4 + len).ok_or(bad)?;
        block(compressed, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
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
    fn a_payload_that_decompresses_beyond_the_limit_is_refused() {
        let zeros = vec![0u8; 1 << 20];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = compress(codec, &zeros).unwrap();
            assert!(packed.len() < 64 * 1024, "{codec:?} packs zeros tightly");
            assert_eq!(
                decompress_at_most(codec, &packed, 1 << 19),
                Err(CodecError::TooLarge {
                    codec,
                    limit: 1 << 19
                }),
                "{codec:?}"
            );
            assert_eq!(
                decompress_at_most(codec, &packed, 1 << 20).unwrap().len(),
                1 << 20,
                "{codec:?} at exactly the limit"
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
