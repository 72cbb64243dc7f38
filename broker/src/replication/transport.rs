//! The replica fetch stream over gRPC, on the inter-broker listener: one bidirectional stream per
//! follower and leader, each request answered in order on it. The messages are
//! [`super::wire`]'s bytes in gRPC frames (no protobuf). Every stream names the cluster it
//! belongs to (the `fjord-cluster-id` header): a broker of another cluster is refused.
//!
//! The service is served from before the broker is open (the listener carries the metadata
//! quorum, which the broker needs to open): until then every stream is refused as unavailable.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures_util::Stream;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use super::wire::{DecodeError, FetchRequest, FetchResponse};
use crate::broker::Broker;
use crate::handler::Context;

const SERVICE_NAME: &str = "fjord.replication.v1.Replication";
const FETCH_PATH: &str = "/fjord.replication.v1.Replication/Fetch";
/// The header naming the sender's cluster.
const CLUSTER_HEADER: &str = "fjord-cluster-id";
/// Largest message either side takes: a fetch's records are bounded by its `max_bytes`.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Requests a follower may queue on a stream ahead of the answers.
const STREAM_QUEUE: usize = 4;

/// A message of the stream, as [`super::wire`] encodes it.
pub trait Message: Sized + Send + 'static {
    fn encode_to(&self, dst: &mut impl BufMut);
    fn decode_from(bytes: Bytes) -> Result<Self, DecodeError>;
}

impl Message for FetchRequest {
    fn encode_to(&self, dst: &mut impl BufMut) {
        self.encode(dst);
    }
    fn decode_from(bytes: Bytes) -> Result<Self, DecodeError> {
        Self::decode(bytes)
    }
}

impl Message for FetchResponse {
    fn encode_to(&self, dst: &mut impl BufMut) {
        self.encode(dst);
    }
    fn decode_from(bytes: Bytes) -> Result<Self, DecodeError> {
        Self::decode(bytes)
    }
}

/// Wire bytes in gRPC frames: encodes `E`, decodes `D`.
#[derive(Debug)]
pub struct WireCodec<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for WireCodec<E, D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

#[derive(Debug)]
pub struct WireEncoder<E>(PhantomData<fn(E)>);

#[derive(Debug)]
pub struct WireDecoder<D>(PhantomData<fn() -> D>);

impl<E: Message, D: Message> Codec for WireCodec<E, D> {
    type Encode = E;
    type Decode = D;
    type Encoder = WireEncoder<E>;
    type Decoder = WireDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        WireEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder(PhantomData)
    }
}

impl<E: Message> Encoder for WireEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode_to(dst);
        Ok(())
    }
}

impl<D: Message> Decoder for WireDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        D::decode_from(bytes)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed replica fetch message: {e}")))
    }
}

/// Where the service finds the broker once it is open.
pub type BrokerSlot = Arc<OnceLock<Weak<Broker>>>;

/// The replication service of the inter-broker listener.
#[derive(Debug, Clone)]
pub struct ReplicationService {
    broker: BrokerSlot,
}

impl ReplicationService {
    /// The service, and the slot to put the broker in once it is open.
    pub fn new() -> (Self, BrokerSlot) {
        let broker = BrokerSlot::default();
        (
            Self {
                broker: Arc::clone(&broker),
            },
            broker,
        )
    }
}

impl tonic::server::NamedService for ReplicationService {
    const NAME: &'static str = SERVICE_NAME;
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<FetchResponse, Status>> + Send>>;

/// One stream: each request answered in turn, as the broker sees the cluster when it arrives.
struct FetchStream(BrokerSlot);

impl tonic::server::StreamingService<FetchRequest> for FetchStream {
    type Response = FetchResponse;
    type ResponseStream = ResponseStream;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<ResponseStream>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<FetchRequest>>) -> Self::Future {
        let slot = Arc::clone(&self.0);
        Box::pin(async move {
            let Some(broker) = slot.get().and_then(Weak::upgrade) else {
                return Err(Status::unavailable("the broker is not open yet"));
            };
            let theirs = request
                .metadata()
                .get(CLUSTER_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let ours = broker.cluster_id();
            if theirs != ours {
                tracing::warn!(
                    theirs,
                    ours,
                    "refused a replica fetch stream from another cluster"
                );
                return Err(Status::failed_precondition(format!(
                    "this broker belongs to cluster {ours}, not {theirs:?}"
                )));
            }
            let incoming = request.into_inner();
            let weak = Arc::downgrade(&broker);
            drop(broker);
            let answers = futures_util::stream::unfold(
                Some((incoming, weak)),
                |state| async move {
                    let (mut incoming, weak) = state?;
                    let request = match incoming.message().await {
                        Ok(Some(request)) => request,
                        Ok(None) => return None,
                        Err(status) => {
                            tracing::warn!(%status, "a replica fetch stream sent a malformed message; closing it");
                            return Some((Err(status), None));
                        }
                    };
                    let Some(broker) = weak.upgrade() else {
                        return Some((Err(Status::unavailable("the broker is closing")), None));
                    };
                    let answer = super::leader::serve(&Context::new(&broker), &request).await;
                    drop(broker);
                    Some((Ok(answer), Some((incoming, weak))))
                },
            );
            Ok(tonic::Response::new(Box::pin(answers) as ResponseStream))
        })
    }
}

impl<B> tower_service::Service<http::Request<B>> for ReplicationService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let slot = Arc::clone(&self.broker);
        if request.uri().path() != FETCH_PATH {
            return Box::pin(async move {
                Ok(Status::unimplemented("no such replication method").into_http())
            });
        }
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(WireCodec::<FetchResponse, FetchRequest>::default())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES);
            Ok(grpc.streaming(FetchStream(slot), request).await)
        })
    }
}

/// Why a stream could not be opened or broke.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0} is not a valid cluster address")]
    Address(String),
    #[error("replica fetch stream to {address}: {status}")]
    Status { address: String, status: Status },
    #[error("the replica fetch stream to {0} ended")]
    Ended(String),
}

/// A follower's stream to one leader: send a request, read its answer.
#[derive(Debug)]
pub struct FetchClient {
    address: String,
    requests: mpsc::Sender<FetchRequest>,
    answers: tonic::Streaming<FetchResponse>,
}

impl FetchClient {
    /// Opens a stream to the broker whose cluster listener is at `address`, as a member of
    /// `cluster_id`.
    pub async fn open(address: &str, cluster_id: &str) -> Result<Self, StreamError> {
        let status = |status| StreamError::Status {
            address: address.to_owned(),
            status,
        };
        let endpoint = crate::quorum::rpc::endpoint(address)
            .ok_or_else(|| StreamError::Address(address.to_owned()))?;
        let channel = crate::quorum::rpc::connect(endpoint)
            .await
            .map_err(|e| status(Status::unavailable(e.to_string())))?;
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (requests, queued) = mpsc::channel(STREAM_QUEUE);
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(queued));
        let cluster = cluster_id
            .parse()
            .map_err(|_| status(Status::invalid_argument("a cluster id that is not ASCII")))?;
        request.metadata_mut().insert(CLUSTER_HEADER, cluster);
        grpc.ready()
            .await
            .map_err(|e| status(Status::unavailable(e.to_string())))?;
        let answers = grpc
            .streaming(
                request,
                http::uri::PathAndQuery::from_static(FETCH_PATH),
                WireCodec::<FetchRequest, FetchResponse>::default(),
            )
            .await
            .map_err(status)?
            .into_inner();
        Ok(Self {
            address: address.to_owned(),
            requests,
            answers,
        })
    }

    /// Sends one request and waits, up to `timeout`, for its answer.
    pub async fn fetch(
        &mut self,
        request: FetchRequest,
        timeout: Duration,
    ) -> Result<FetchResponse, StreamError> {
        let ended = || StreamError::Ended(self.address.clone());
        self.requests.send(request).await.map_err(|_| ended())?;
        match tokio::time::timeout(timeout, self.answers.message()).await {
            Err(_) => Err(StreamError::Status {
                address: self.address.clone(),
                status: Status::deadline_exceeded("no answer in time"),
            }),
            Ok(Ok(Some(answer))) => Ok(answer),
            Ok(Ok(None)) => Err(ended()),
            Ok(Err(status)) => Err(StreamError::Status {
                address: self.address.clone(),
                status,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::error::ResponseError;

    use super::*;
    use crate::replication::wire::FetchPartition;

    const WAIT: Duration = Duration::from_secs(10);

    /// Bytes sent as they are, whatever they hold.
    struct Raw(Bytes);

    impl Message for Raw {
        fn encode_to(&self, dst: &mut impl BufMut) {
            dst.put_slice(&self.0);
        }
        fn decode_from(bytes: Bytes) -> Result<Self, DecodeError> {
            Ok(Self(bytes))
        }
    }

    fn request(broker: &Broker, follower: i32, broker_epoch: i64) -> FetchRequest {
        FetchRequest {
            follower,
            broker_epoch,
            max_wait_ms: 0,
            max_bytes: 1 << 20,
            partitions: vec![FetchPartition {
                topic_id: broker.topic("t").unwrap().id,
                partition: 0,
                current_leader_epoch: 0,
                fetch_offset: 0,
                last_fetched_epoch: -1,
                durable_offset: 0,
                max_bytes: 1 << 20,
            }],
        }
    }

    /// Requests on one stream are answered in order over a real socket; a broker of another
    /// cluster is refused; a malformed message ends its stream (the broker goes on serving).
    #[tokio::test]
    async fn a_stream_answers_in_order_and_refuses_strangers_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let broker = crate::broker::test_broker(dir.path(), 1).await;
        let address = broker.quorum().local_addr().to_string();
        let epoch = i64::try_from(broker.image().brokers[&1].epoch).unwrap();

        let mut client = FetchClient::open(&address, &broker.cluster_id())
            .await
            .unwrap();
        let answer = client
            .fetch(request(&broker, 1, epoch + 1), WAIT)
            .await
            .unwrap();
        assert_eq!(answer.error, ResponseError::StaleBrokerEpoch.code());
        // Broker 1 leads t-0: it is no follower of itself.
        let answer = client
            .fetch(request(&broker, 1, epoch), WAIT)
            .await
            .unwrap();
        assert_eq!(answer.error, 0);
        assert_eq!(
            answer.partitions[0].error,
            ResponseError::NotLeaderOrFollower.code()
        );
        assert_eq!(answer.partitions[0].leader_epoch, 0);

        let refused = FetchClient::open(&address, "another-cluster")
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, StreamError::Status { status, .. } if status.code() == tonic::Code::FailedPrecondition),
            "{refused}"
        );

        // Garbage on a stream of its own: an error for it, then the stream ends.
        let channel = crate::quorum::rpc::endpoint(&address)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let mut raw = tonic::Request::new(futures_util::stream::iter([Raw(Bytes::from_static(
            b"\x00\x01garbage",
        ))]));
        raw.metadata_mut()
            .insert(CLUSTER_HEADER, broker.cluster_id().parse().unwrap());
        let mut answers = grpc
            .streaming(
                raw,
                http::uri::PathAndQuery::from_static(FETCH_PATH),
                WireCodec::<Raw, FetchResponse>::default(),
            )
            .await
            .unwrap()
            .into_inner();
        let status = answers.message().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");

        // The first stream still works.
        let answer = client
            .fetch(request(&broker, 1, epoch), WAIT)
            .await
            .unwrap();
        assert_eq!(answer.error, 0);
    }
}
