//! The Kafka protocol codec, sans I/O: request frames (without their length prefix) to typed
//! requests, typed responses to frames. Built on the `kafka-protocol` crate, whose error type
//! stays inside this module.

pub mod versions;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

pub use versions::{SUPPORTED_APIS, SupportedApi, is_supported};

/// Why a request frame could not be turned into a request.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes is too short for a request header")]
    TooShort { len: usize },
    #[error("unknown API key {api_key}")]
    UnknownApi { api_key: i16 },
    #[error("{api:?} version {version} is not supported")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Decodes one request frame (the bytes after the 4-byte size).
pub fn decode_request(mut frame: Bytes) -> Result<Request, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort { len: frame.len() });
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(api_key).map_err(|_| DecodeError::UnknownApi { api_key })?;
    if !is_supported(api, version) {
        return Err(DecodeError::UnsupportedVersion {
            api,
            version,
            correlation_id,
        });
    }
    let malformed = |error: anyhow::Error| DecodeError::Malformed {
        api,
        version,
        correlation_id,
        reason: format!("{error:#}"),
    };
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(malformed)?;
    let body = RequestKind::decode(api, &mut frame, version).map_err(malformed)?;
    if frame.has_remaining() {
        // Kafka ignores bytes after a request body, and at least one old librdkafka (Debian's
        // 2.0.2, through kcat) sends some: serve the request, as Kafka does.
        tracing::debug!(
            ?api,
            version,
            remaining = frame.remaining(),
            "ignoring bytes after the request body"
        );
    }
    Ok(Request {
        api,
        version,
        header,
        body,
    })
}

/// Why a response could not be encoded (a bug: the handler built a response the version
/// cannot carry).
#[derive(Debug, thiserror::Error)]
#[error("encoding the {api:?} v{version} response: {reason}")]
pub struct EncodeError {
    pub api: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// Encodes a response frame, with its 4-byte size prefix.
pub fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let error = |e: anyhow::Error| EncodeError {
        api,
        version,
        reason: format!("{e:#}"),
    };
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, body.header_version(version))
        .map_err(error)?;
    body.encode(&mut buf, version).map_err(error)?;
    let len = i32::try_from(buf.len() - 4).map_err(|e| error(e.into()))?;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Entry point for the fuzz target and property tests: any bytes decode to a request or an
/// error, never a panic.
pub fn fuzz_decode(data: &[u8]) {
    let _ = decode_request(Bytes::copy_from_slice(data));
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    fn frame(api: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_a_request_with_its_header() {
        let request =
            decode_request(frame(ApiKey::Metadata, 9, &MetadataRequest::default())).unwrap();
        assert_eq!(request.api, ApiKey::Metadata);
        assert_eq!(request.version, 9);
        assert_eq!(request.header.correlation_id, 42);
        assert_eq!(request.header.client_id.as_deref(), Some("test"));
        assert!(matches!(request.body, RequestKind::Metadata(_)));

        // Bytes after the body are ignored, as Kafka does (an old librdkafka sends some).
        let mut padded =
            BytesMut::from(&frame(ApiKey::Metadata, 12, &MetadataRequest::default())[..]);
        padded.extend_from_slice(&[0, 0, 0]);
        assert_eq!(decode_request(padded.freeze()).unwrap().version, 12);
    }

    #[test]
    fn rejects_unknown_apis_unsupported_versions_and_garbage() {
        let mut unknown =
            BytesMut::from(&frame(ApiKey::Metadata, 1, &MetadataRequest::default())[..]);
        unknown[0..2].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(
            decode_request(unknown.freeze()),
            Err(DecodeError::UnknownApi { api_key: 999 })
        ));
        assert!(matches!(
            decode_request(frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).slice(..))
                .map(|r| r.version),
            Ok(3)
        ));
        let mut newer =
            BytesMut::from(&frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())[..]);
        newer[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(newer.freeze()),
            Err(DecodeError::UnsupportedVersion {
                api: ApiKey::ApiVersions,
                version: 99,
                correlation_id: 42
            })
        ));
        let truncated = frame(ApiKey::Metadata, 9, &MetadataRequest::default()).slice(..10);
        assert!(matches!(
            decode_request(truncated),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3])),
            Err(DecodeError::TooShort { len: 2 })
        ));
    }

    #[test]
    fn a_hostile_array_length_is_an_error_not_an_abort() {
        // Found by the request_decode fuzz target: Metadata v0 whose topic array claims 170
        // million entries in a 14-byte frame. Without the broker's allocator the library's
        // up-front reservation aborts the process.
        let frame = Bytes::from_static(&[0, 3, 0, 0, 0, 0, 3, 0, 0, 0, 0x0a, 0x2f, 0x0a, 0]);
        assert!(matches!(
            decode_request(frame),
            Err(DecodeError::Malformed {
                api: ApiKey::Metadata,
                ..
            })
        ));
        let compact = Bytes::from_static(&[
            0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ]);
        assert!(decode_request(compact).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_decode(&data);
        }

        #[test]
        fn decoding_damaged_requests_never_panics(
            version in 0i16..=12,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let request = MetadataRequest::default().with_topics(None);
            let mut bytes = BytesMut::from(&frame(ApiKey::Metadata, version, &request)[..]).to_vec();
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            fuzz_decode(&bytes);
        }
    }
}
