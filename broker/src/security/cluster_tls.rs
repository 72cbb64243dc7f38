//! Mutual TLS between brokers, on the cluster listener (the metadata quorum's messages and replica
//! fetches). With `--cluster-tls-cert`, `--cluster-tls-key` and `--cluster-tls-ca`, a broker
//! accepts only connections whose client presents a certificate the CA signed, and connects to
//! other brokers only if they present one the CA signed for the address it dials (their name or
//! IP in the certificate's subject alternative names). Every broker uses the same three files
//! for both ends, as Kafka's inter-broker SSL listener with `ssl.client.auth=required` does.
//!
//! The files are re-read as the Kafka listener's are: the server side every 2 s (see
//! [`super::tls::ServerTls`]), the client side at each new connection, so a rotated Secret is
//! used without a restart. A rotation caught half-written keeps the last good configuration.
//!
//! A broker runs one cluster listener and dials from one configuration, so the configuration is
//! installed once per process ([`install`]), as the address connections leave from is.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::either::Either;

use super::LogLimit;
use super::tls::{self, HANDSHAKE_TIMEOUT, ServerTls, TlsError, TlsFiles};

/// The PEM files of the cluster listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTlsFiles {
    /// This broker's certificate chain (its own first), presented to brokers on both ends.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signs every broker's certificate.
    pub ca: PathBuf,
}

impl ClusterTlsFiles {
    fn as_tls_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            client_ca: Some(self.ca.clone()),
        }
    }
}

/// The cluster listener's TLS, both ends.
#[derive(Debug)]
pub struct ClusterTls {
    files: ClusterTlsFiles,
    server: Arc<ServerTls>,
    /// The client configuration last built from whole files.
    client: Mutex<Arc<ClientConfig>>,
    refusals: LogLimit,
}

static INSTALLED: OnceLock<Arc<ClusterTls>> = OnceLock::new();

/// Makes `tls` the cluster listener's and every inter-broker connection's TLS, for the life of
/// the process. A second call changes nothing.
pub fn install(tls: Arc<ClusterTls>) {
    let _ = INSTALLED.set(tls);
}

/// The installed cluster TLS, if any.
pub fn installed() -> Option<&'static Arc<ClusterTls>> {
    INSTALLED.get()
}

impl ClusterTls {
    /// Loads `files`; an error names the file and what is wrong with it.
    pub fn load(files: ClusterTlsFiles) -> Result<Self, TlsError> {
        let server = ServerTls::load(files.as_tls_files())?;
        let client = client_config(&files)?;
        Ok(Self {
            files,
            server: Arc::new(server),
            client: Mutex::new(client),
            refusals: LogLimit::new(20),
        })
    }

    /// The server side, to keep in step with its files ([`ServerTls::watch`]).
    pub fn server(&self) -> &Arc<ServerTls> {
        &self.server
    }

    /// The client configuration: built from the files as they are now, or the last good one
    /// while they are not whole.
    fn client_config(&self) -> Arc<ClientConfig> {
        let mut last = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match client_config(&self.files) {
            Ok(config) => *last = config,
            Err(error) => tracing::warn!(
                error = ?error,
                "the cluster TLS files are not usable; connecting with the last good ones"
            ),
        }
        Arc::clone(&last)
    }

    /// Completes the server side of the handshake of a connection accepted on the cluster
    /// listener, within [`HANDSHAKE_TIMEOUT`]; a refusal is logged (rate-limited).
    async fn accept(&self, stream: TcpStream) -> Option<ClusterStream> {
        let peer = stream.peer_addr().ok();
        let accepted =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, self.server.acceptor().accept(stream)).await;
        let error = match accepted {
            Ok(Ok(stream)) => return Some(ClusterStream(Either::Right(Box::new(stream.into())))),
            Ok(Err(error)) => error.to_string(),
            Err(_) => "no TLS handshake within 10 s".to_owned(),
        };
        if let Some(held) = self.refusals.admit() {
            tracing::warn!(
                peer = ?peer,
                %error,
                held_back = held,
                "refused a cluster connection in its TLS handshake"
            );
        }
        None
    }
}

fn client_config(files: &ClusterTlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let tls_files = files.as_tls_files();
    let contents = tls::read(&tls_files)?;
    let (chain, key) = tls::identity(&tls_files, &contents)?;
    let roots = tls::roots(&files.ca, contents.client_ca.as_deref().unwrap_or_default())?;
    let config = ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(TlsError::Config)?;
    Ok(Arc::new(config))
}

/// A connection on the cluster listener: TLS when cluster TLS is installed, plain otherwise. A
/// type of its own for tonic's `Connected`; `Either` reads and writes whichever it holds.
#[derive(Debug)]
pub struct ClusterStream(Either<TcpStream, Box<tokio_rustls::TlsStream<TcpStream>>>);

impl tonic::transport::server::Connected for ClusterStream {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for ClusterStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClusterStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The connections `listener` accepts, Nagle's algorithm off (replica fetches and Raft messages
/// are small and answered at once), each through the TLS handshake when cluster TLS is
/// installed. Handshakes run side by side, so a slow or silent client holds up no other.
pub fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = io::Result<ClusterStream>> {
    let (accepted, stream) = tokio::sync::mpsc::channel::<io::Result<ClusterStream>>(64);
    tokio::spawn(async move {
        loop {
            // The server gone (shut down), the listener goes with this task: its port is free
            // for a broker started again in the same process.
            let accepted_next = tokio::select! {
                () = accepted.closed() => return,
                next = listener.accept() => next,
            };
            let stream = match accepted_next {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: the listener stays, the next accept may work.
                    tracing::warn!(%error, "accepting a cluster connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "cannot disable Nagle's algorithm on a cluster connection");
            }
            let Some(tls) = installed() else {
                if accepted
                    .send(Ok(ClusterStream(Either::Left(stream))))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            };
            let sender = accepted.clone();
            tokio::spawn(async move {
                if let Some(stream) = tls.accept(stream).await {
                    let _ = sender.send(Ok(stream)).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(stream)
}

/// Dials other brokers' cluster listeners for tonic: TCP from `local` (when set) with Nagle's
/// algorithm off, then the TLS handshake, checking the broker's certificate against the
/// cluster CA and the address dialled.
#[derive(Debug, Clone)]
pub struct Connector {
    tls: Arc<ClusterTls>,
    local: Option<IpAddr>,
    timeout: Duration,
}

impl Connector {
    pub fn new(tls: Arc<ClusterTls>, local: Option<IpAddr>, timeout: Duration) -> Self {
        Self {
            tls,
            local,
            timeout,
        }
    }
}

type Dialled = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = Dialled;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Dialled>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
            let host = uri
                .host()
                .ok_or_else(|| invalid("a cluster address without a host"))?
                .trim_matches(['[', ']'])
                .to_owned();
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid("a cluster address without a port"))?;
            let address: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .ok_or_else(|| invalid("a cluster address that resolves to nothing"))?;
            let socket = if address.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if let Some(local) = connector.local.filter(|l| l.is_ipv4() == address.is_ipv4()) {
                socket.bind(SocketAddr::new(local, 0))?;
            }
            socket.set_nodelay(true)?;
            let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connecting timed out");
            let stream = tokio::time::timeout(connector.timeout, socket.connect(address))
                .await
                .map_err(|_| timed_out())??;
            let name = ServerName::try_from(host)
                .map_err(|_| invalid("a cluster host that is no DNS name or IP address"))?;
            let tls = tokio_rustls::TlsConnector::from(connector.tls.client_config());
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connect(name, stream))
                .await
                .map_err(|_| timed_out())??;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}
