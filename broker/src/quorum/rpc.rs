//! The inter-broker listener (`--cluster-listen`): one gRPC service over tonic, whose messages
//! are JSON (the metadata log is small; the codec needs no generated code). Every request names
//! the cluster and node it comes from, and a broker of another cluster is refused.
//!
//! Carried here: Raft's own calls (append entries, vote, install snapshot), metadata changes
//! forwarded to the leader, and brokers outside the voters asking to follow the metadata log.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut};
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use super::{Command, CommandResult, NodeId, TypeConfig};

/// The one method of the service.
const CALL_PATH: &str = "/fjord.cluster.v1.Cluster/Call";
const SERVICE_NAME: &str = "fjord.cluster.v1.Cluster";
/// Largest message either side decodes (snapshots are sent in chunks well below it).
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings on idle links: a link dropped without a reset is noticed within about 10 s.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Every call: who sends it, in which cluster (empty while the sender has not learnt it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub cluster_id: String,
    pub from: NodeId,
    pub body: T,
}

/// What one broker asks another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A metadata change, forwarded to the leader.
    Propose(Command),
    /// A broker outside the voters asks to follow the metadata log at `address`.
    Join {
        node_id: NodeId,
        address: String,
    },
    /// A broker tells the controller it is alive: the process of registration `incarnation`.
    Heartbeat {
        node_id: NodeId,
        incarnation: uuid::Uuid,
    },
}

/// Why a forwarded change or a join did not happen.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    #[error("node {node_id} is not the metadata leader")]
    NotLeader {
        node_id: NodeId,
        leader: Option<(NodeId, String)>,
    },
    #[error("the metadata quorum is unavailable: {0}")]
    Unavailable(String),
    /// The controller will not take it (not retried).
    #[error(transparent)]
    Refused(crate::cluster::ApplyError),
}

/// The controller's answer to a heartbeat: how far it has applied the metadata log, which the
/// broker measures its own lag against.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    pub applied: u64,
}

/// A change committed at `index` of the metadata log, with what applying it gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proposed {
    pub index: u64,
    pub result: CommandResult,
}

/// The answers, one per [`Request`] kind.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Propose(Result<Proposed, ProposeError>),
    Join(Result<(), ProposeError>),
    Heartbeat(Result<HeartbeatAnswer, ProposeError>),
}

/// Decodes a request as the listener does (the fuzz target's entry point).
pub fn decode_request(bytes: &[u8]) -> Result<Envelope<Request>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Decodes a response as a caller does (the fuzz target's entry point).
pub fn decode_response(bytes: &[u8]) -> Result<Response, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// JSON in gRPC frames.
#[derive(Debug)]
pub(crate) struct JsonCodec<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for JsonCodec<E, D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

#[derive(Debug)]
pub(crate) struct JsonEncoder<E>(PhantomData<fn(E)>);

#[derive(Debug)]
pub(crate) struct JsonDecoder<D>(PhantomData<fn() -> D>);

impl<E, D> Codec for JsonCodec<E, D>
where
    E: Serialize + Send + 'static,
    D: DeserializeOwned + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = JsonEncoder<E>;
    type Decoder = JsonDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        JsonEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        JsonDecoder(PhantomData)
    }
}

impl<E: Serialize> Encoder for JsonEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        serde_json::to_writer(dst.writer(), &item)
            .map_err(|e| Status::internal(format!("encoding a cluster message: {e}")))
    }
}

impl<D: DeserializeOwned> Decoder for JsonDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed cluster message: {e}")))
    }
}

/// What serves the calls: the quorum of this broker.
pub(crate) trait Serve: Send + Sync + 'static {
    fn cluster_id(&self) -> String;
    fn serve(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// The tonic service (what generated code would be, for one method).
#[derive(Debug)]
pub(crate) struct ClusterService<S> {
    inner: Arc<S>,
}

impl<S> Clone for ClusterService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> ClusterService<S> {
    pub(crate) fn new(inner: Arc<S>) -> Self {
        Self { inner }
    }
}

impl<S> tonic::server::NamedService for ClusterService<S> {
    const NAME: &'static str = SERVICE_NAME;
}

struct Call<S>(Arc<S>);

impl<S: Serve> tonic::server::UnaryService<Envelope<Request>> for Call<S> {
    type Response = Response;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Response>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Envelope<Request>>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move {
            let envelope = request.into_inner();
            let ours = inner.cluster_id();
            if !ours.is_empty() && !envelope.cluster_id.is_empty() && ours != envelope.cluster_id {
                tracing::warn!(
                    from = envelope.from,
                    theirs = envelope.cluster_id,
                    ours,
                    "refused a call from a broker of another cluster"
                );
                return Err(Status::failed_precondition(format!(
                    "this broker belongs to cluster {ours}, not {}",
                    envelope.cluster_id
                )));
            }
            Ok(tonic::Response::new(inner.serve(envelope.body).await))
        })
    }
}

impl<S, B> tower_service::Service<http::Request<B>> for ClusterService<S>
where
    S: Serve,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        if request.uri().path() != CALL_PATH {
            return Box::pin(async move {
                Ok(Status::unimplemented("no such cluster method").into_http())
            });
        }
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(JsonCodec::<Response, Envelope<Request>>::default())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES);
            Ok(grpc.unary(Call(inner), request).await)
        })
    }
}

/// A connection to one broker's cluster listener (lazy: connects on first use, reconnects after
/// a failure).
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    channel: tonic::transport::Channel,
}

/// The address connections to other brokers leave from, when the cluster listener is bound to
/// one (not the unspecified address): set once, at start-up.
static OUTGOING: std::sync::OnceLock<std::net::IpAddr> = std::sync::OnceLock::new();

/// Inter-broker connections leave from `listen`'s address when it names one, so that a broker's
/// traffic to the others comes from the address they know it by (firewall rules and network
/// tests see one address per broker).
pub(crate) fn leave_from(listen: std::net::SocketAddr) {
    if !listen.ip().is_unspecified() {
        let _ = OUTGOING.set(listen.ip());
    }
}

/// How every inter-broker connection is made: a bounded connect, and HTTP/2 pings so a link
/// dropped without a reset is noticed. `None` for an address that is not `host:port`.
pub(crate) fn endpoint(address: &str) -> Option<tonic::transport::Endpoint> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}")).ok()?;
    Some(
        endpoint
            .local_address(OUTGOING.get().copied())
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true),
    )
}

/// Dials with the cluster's TLS, from the address connections leave from.
fn connector(
    tls: &Arc<crate::security::cluster_tls::ClusterTls>,
) -> crate::security::cluster_tls::Connector {
    crate::security::cluster_tls::Connector::new(
        Arc::clone(tls),
        OUTGOING.get().copied(),
        CONNECT_TIMEOUT,
    )
}

/// Connects to the broker at `endpoint` (from [`endpoint`]), with the cluster's TLS when it is
/// installed.
pub(crate) async fn connect(
    endpoint: tonic::transport::Endpoint,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    match crate::security::cluster_tls::installed() {
        Some(tls) => endpoint.connect_with_connector(connector(tls)).await,
        None => endpoint.connect().await,
    }
}

/// Why a call to another broker failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("cannot reach {address}: {status}")]
    Unreachable { address: String, status: Status },
    #[error("call to {address} failed: {status}")]
    Failed { address: String, status: Status },
    #[error("{0} is not a valid cluster address")]
    Address(String),
}

impl Peer {
    pub(crate) fn new(address: &str) -> Result<Self, CallError> {
        let endpoint = endpoint(address).ok_or_else(|| CallError::Address(address.to_owned()))?;
        Ok(Self {
            channel: match crate::security::cluster_tls::installed() {
                Some(tls) => endpoint.connect_with_connector_lazy(connector(tls)),
                None => endpoint.connect_lazy(),
            },
        })
    }

    /// One call, bounded by `timeout`.
    pub(crate) async fn call(
        &self,
        address: &str,
        envelope: Envelope<Request>,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let unreachable = |status| CallError::Unreachable {
            address: address.to_owned(),
            status,
        };
        let mut request = tonic::Request::new(envelope);
        request.set_timeout(timeout);
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            grpc.unary(
                request,
                http::uri::PathAndQuery::from_static(CALL_PATH),
                JsonCodec::<Envelope<Request>, Response>::default(),
            )
            .await
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(unreachable(Status::deadline_exceeded("no answer in time"))),
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                Err(unreachable(status))
            }
            Ok(Err(status)) => Err(CallError::Failed {
                address: address.to_owned(),
                status,
            }),
        }
    }
}

/// Where the Raft core's calls to other voters and learners go.
#[derive(Clone)]
pub(crate) struct Network {
    pub(crate) from: NodeId,
    pub(crate) cluster_id: Arc<dyn Fn() -> String + Send + Sync>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("from", &self.from).finish()
    }
}

/// The Raft core's link to one node.
pub(crate) struct Link {
    network: Network,
    target: NodeId,
    address: String,
    peer: Result<Peer, String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Link;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Link {
        Link {
            network: self.clone(),
            target,
            address: node.addr.clone(),
            peer: Peer::new(&node.addr).map_err(|e| e.to_string()),
        }
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl Link {
    async fn send<E: std::error::Error>(
        &mut self,
        request: Request,
        option: &RPCOption,
    ) -> RpcResult<Response, E> {
        let peer = self.peer.as_ref().map_err(|e| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.clone())))
        })?;
        let envelope = Envelope {
            cluster_id: (self.network.cluster_id)(),
            from: self.network.from,
            body: request,
        };
        let result = peer.call(&self.address, envelope, option.hard_ttl()).await;
        result.map_err(|error| {
            // A channel whose connection failed stays failed (its buffer keeps the first
            // error): the next call goes over a new one.
            self.peer = Peer::new(&self.address).map_err(|e| e.to_string());
            match error {
                CallError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&error)),
                _ => RPCError::Network(NetworkError::new(&error)),
            }
        })
    }

    fn unexpected<E: std::error::Error>(
        &self,
        response: &Response,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
            "node {} answered with {response:?}",
            self.target
        ))))
    }

    fn remote<E: std::error::Error>(
        &self,
        error: RaftError<NodeId, E>,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        RPCError::RemoteError(RemoteError::new(self.target, error))
    }
}

impl RaftNetwork<TypeConfig> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.send(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(result) => result.map_err(|e| self.remote(e)),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.send(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(result) => result.map_err(|e| self.remote(e)),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.send(Request::Vote(rpc), &option).await? {
            Response::Vote(result) => result.map_err(|e| self.remote(e)),
            other => Err(self.unexpected(&other)),
        }
    }
}
