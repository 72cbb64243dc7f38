//! One connection's request pipeline, apart from what the requests are: size-prefixed frames in,
//! response frames out in request order, several requests in flight.
//!
//! A request runs in two parts. Its *start* is the part whose order matters (a produce's checks
//! and its place in each partition's append queue; the whole of most other requests): starts
//! run one at a time, in request order, so a connection's requests take effect as if served one
//! by one, as Kafka serves them. What follows a start (waiting for an append to become durable,
//! and with replication for followers) overlaps with later requests, up to `depth` requests and
//! `max_in_flight_bytes` of request frames at once; librdkafka keeps five requests in flight on
//! a connection, and serving them one at a time would make each wait for the fsync of the one
//! before it.

use std::future::Future;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

/// The rest of a request after its start: resolves to its [`Answer`].
pub type Reply = Pin<Box<dyn Future<Output = Answer> + Send + 'static>>;

/// How a request is answered.
#[derive(Debug)]
pub enum Answer {
    /// This response frame (size prefix included).
    Frame(Bytes),
    /// No response (a produce with `acks=0`).
    Nothing,
    /// This response frame, then close the connection (a failed login: the client reads why,
    /// then the connection ends).
    Last(Bytes),
    /// Close the connection once the requests before this one are answered (the service has
    /// logged why).
    Close,
}

/// A request's start: resolves, once its order-dependent part has run, to its [`Reply`].
pub type Start = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

/// What a connection serves.
pub trait Requests {
    /// Starts the request in `frame` (the bytes after its size). `None` closes the connection
    /// once the requests before it are answered (the service has logged why).
    fn start(&self, frame: Bytes) -> Option<Start>;

    /// A smaller frame limit than [`Limits::max_request_bytes`] for now (a connection that has
    /// not logged in yet), consulted before each frame is read.
    fn frame_limit(&self) -> Option<usize> {
        None
    }
}

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request frame; a larger one closes the connection.
    pub max_request_bytes: usize,
    /// Requests in flight (started or waiting for their start).
    pub depth: usize,
    /// Request bytes in flight; one request is always let in, however large.
    pub max_in_flight_bytes: usize,
}

/// Why a connection ended other than by the client closing it or shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("reading a request frame")]
    Read(#[source] std::io::Error),
    #[error("writing a response")]
    Write(#[source] std::io::Error),
}

// The start being awaited resolves to the rest of its request, itself a future.
#[allow(clippy::async_yields_async)]
/// Serves requests from `read` and writes responses to `write` until the client closes the
/// connection, a request cannot be served, reading or writing fails, or `shutdown`. In every case
/// the requests already read run to their end first: answered while responses can still go out,
/// their answers dropped after a failed write or an answer that closes the connection.
pub async fn serve<R, W>(
    read: R,
    write: W,
    limits: Limits,
    shutdown: &CancellationToken,
    requests: &impl Requests,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(limits.max_request_bytes)
        .new_codec();
    let mut frames = FramedRead::with_capacity(read, codec, 64 * 1024);
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    let mut starting: Option<(Start, usize)> = None;
    let mut in_flight: FuturesOrdered<SizedReply> = FuturesOrdered::new();
    let mut in_flight_bytes = 0;
    let mut reading = true;
    // Cleared once responses can no longer go out (the connection failed or is to close): the
    // requests already read still run to their end, their answers dropped, so none is cut off
    // halfway (a topic deletion between its metadata commit and its partitions' removal).
    let mut writable = true;
    let mut failure = None;
    loop {
        let limit = requests
            .frame_limit()
            .map_or(limits.max_request_bytes, |l| {
                l.min(limits.max_request_bytes)
            });
        if frames.decoder().max_frame_length() != limit {
            frames.decoder_mut().set_max_frame_length(limit);
        }
        let room = in_flight.len() + usize::from(starting.is_some()) < limits.depth.max(1)
            && (in_flight_bytes < limits.max_in_flight_bytes
                || (in_flight.is_empty() && starting.is_none()));
        tokio::select! {
            biased;
            () = shutdown.cancelled(), if reading => reading = false,
            Some((size, answer)) = in_flight.next(), if !in_flight.is_empty() => {
                in_flight_bytes -= size;
                let last = matches!(answer, Answer::Last(_));
                match answer {
                    Answer::Frame(response) | Answer::Last(response) if writable => {
                        let written = async {
                            writer.write_all(&response).await?;
                            writer.flush().await
                        };
                        if let Err(error) = written.await {
                            failure = Some(ConnectionError::Write(error));
                            (reading, writable) = (false, false);
                        }
                    }
                    Answer::Frame(_) | Answer::Last(_) | Answer::Nothing => {}
                    Answer::Close => (reading, writable) = (false, false),
                }
                if last {
                    (reading, writable) = (false, false);
                }
            }
            reply = async {
                match starting.as_mut() {
                    Some((start, _)) => start.await,
                    None => std::future::pending().await,
                }
            }, if starting.is_some() =>
            {
                let size = starting.take().map_or(0, |(_, size)| size);
                in_flight.push_back(SizedReply { size, reply });
            }
            frame = frames.next(), if reading && starting.is_none() && room => match frame {
                None => reading = false,
                Some(Err(error)) if error.kind() == std::io::ErrorKind::InvalidData => {
                    // Larger than the limit (negative sizes read as huge ones).
                    tracing::warn!(%error, max = frames.decoder().max_frame_length(),
                        "request frame size out of bounds; closing the connection");
                    reading = false;
                }
                Some(Err(error)) => {
                    failure = Some(ConnectionError::Read(error));
                    reading = false;
                }
                Some(Ok(frame)) => {
                    let size = frame.len();
                    match requests.start(BytesMut::freeze(frame)) {
                        Some(start) => {
                            in_flight_bytes += size;
                            starting = Some((start, size));
                        }
                        None => reading = false,
                    }
                }
            },
        }
        if !reading && starting.is_none() && in_flight.is_empty() {
            return failure.map_or(Ok(()), Err);
        }
    }
}

/// A reply with the size of its request, counted against the in-flight byte limit until the
/// reply is done.
struct SizedReply {
    size: usize,
    reply: Reply,
}

impl Future for SizedReply {
    type Output = (usize, Answer);

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let size = self.size;
        self.reply
            .as_mut()
            .poll(cx)
            .map(|response| (size, response))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, DuplexStream};
    use tokio::sync::oneshot;

    use super::*;

    /// A service whose requests are one byte (their id); a test decides when each start and
    /// each reply finishes, and sees the order of events.
    #[derive(Default, Clone)]
    struct Scripted {
        events: Arc<Mutex<Vec<String>>>,
        starts: Arc<Mutex<HashMap<u8, oneshot::Receiver<()>>>>,
        replies: Arc<Mutex<HashMap<u8, oneshot::Receiver<()>>>>,
        /// Frames above this close the connection until request 0xfc lifts it.
        limit: Arc<Mutex<Option<usize>>>,
    }

    impl Scripted {
        /// Gates request `id`: its start and its reply each wait for their sender.
        fn gate(&self, id: u8) -> (oneshot::Sender<()>, oneshot::Sender<()>) {
            let (start, start_rx) = oneshot::channel();
            let (reply, reply_rx) = oneshot::channel();
            self.starts.lock().unwrap().insert(id, start_rx);
            self.replies.lock().unwrap().insert(id, reply_rx);
            (start, reply)
        }

        fn events(&self) -> Vec<String> {
            self.events.lock().unwrap().clone()
        }
    }

    impl Requests for Scripted {
        fn frame_limit(&self) -> Option<usize> {
            *self.limit.lock().unwrap()
        }

        // A start resolves to the rest of its request, itself a future.
        #[allow(clippy::async_yields_async)]
        fn start(&self, frame: Bytes) -> Option<Start> {
            let id = frame[0];
            if id == 0xff {
                return None;
            }
            if id == 0xfc {
                *self.limit.lock().unwrap() = None;
            }
            let events = Arc::clone(&self.events);
            let start = self.starts.lock().unwrap().remove(&id);
            let reply = self.replies.lock().unwrap().remove(&id);
            events.lock().unwrap().push(format!("read {id}"));
            Some(Box::pin(async move {
                if let Some(start) = start {
                    let _ = start.await;
                }
                events.lock().unwrap().push(format!("started {id}"));
                Box::pin(async move {
                    if let Some(reply) = reply {
                        let _ = reply.await;
                    }
                    events.lock().unwrap().push(format!("replied {id}"));
                    match id {
                        0 => Answer::Nothing,
                        0xfe => Answer::Close,
                        0xfd => Answer::Last(Bytes::from(vec![0, 0, 0, 1, id])),
                        _ => Answer::Frame(Bytes::from(vec![0, 0, 0, 1, id])),
                    }
                }) as Reply
            }))
        }
    }

    const LIMITS: Limits = Limits {
        max_request_bytes: 16,
        depth: 3,
        max_in_flight_bytes: 1 << 20,
    };

    fn connection(
        service: &Scripted,
        limits: Limits,
    ) -> (
        DuplexStream,
        tokio::task::JoinHandle<Result<(), ConnectionError>>,
        CancellationToken,
    ) {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (read, write) = tokio::io::split(server);
        let service = service.clone();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move { serve(read, write, limits, &token, &service).await });
        (client, task, shutdown)
    }

    async fn send(client: &mut DuplexStream, ids: &[u8]) {
        for &id in ids {
            client.write_all(&[0, 0, 0, 1, id]).await.unwrap();
        }
    }

    async fn responses(client: &mut DuplexStream, count: usize) -> Vec<u8> {
        let mut out = vec![0; count * 5];
        client.read_exact(&mut out).await.unwrap();
        out.chunks(5).map(|frame| frame[4]).collect()
    }

    /// Lets every spawned task run until all wait on something the test holds.
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn replies_overlap_but_responses_keep_request_order() {
        let service = Scripted::default();
        let (_, reply1) = service.gate(1);
        let (_, reply2) = service.gate(2);
        let (_, reply3) = service.gate(3);
        let (mut client, _task, _shutdown) = connection(&service, LIMITS);
        send(&mut client, &[1, 2, 3]).await;
        settle().await;
        // All three started while none had replied: their replies overlap.
        assert_eq!(
            service.events(),
            [
                "read 1",
                "started 1",
                "read 2",
                "started 2",
                "read 3",
                "started 3"
            ]
        );
        reply3.send(()).unwrap();
        reply2.send(()).unwrap();
        settle().await;
        reply1.send(()).unwrap();
        assert_eq!(responses(&mut client, 3).await, [1, 2, 3]);
        assert_eq!(
            &service.events()[6..],
            ["replied 3", "replied 2", "replied 1"]
        );
    }

    #[tokio::test]
    async fn a_request_starts_only_after_the_one_before_it_has_started() {
        let service = Scripted::default();
        let (start1, _) = service.gate(1);
        let (mut client, _task, _shutdown) = connection(&service, LIMITS);
        send(&mut client, &[1, 2]).await;
        settle().await;
        assert_eq!(service.events(), ["read 1"], "2 waits for 1's start");
        start1.send(()).unwrap();
        assert_eq!(responses(&mut client, 2).await, [1, 2]);
        let events = service.events();
        let at = |event: &str| events.iter().position(|e| e == event).unwrap();
        assert!(at("started 1") < at("read 2"), "{events:?}");
    }

    #[tokio::test]
    async fn no_more_than_depth_requests_are_in_flight() {
        let service = Scripted::default();
        let (_, reply1) = service.gate(1);
        let (_, reply2) = service.gate(2);
        let (_, reply3) = service.gate(3);
        let (mut client, _task, _shutdown) = connection(&service, LIMITS);
        send(&mut client, &[1, 2, 3, 4]).await;
        settle().await;
        assert!(
            !service.events().contains(&"read 4".to_owned()),
            "{:?}",
            service.events()
        );
        reply1.send(()).unwrap();
        assert_eq!(responses(&mut client, 1).await, [1]);
        settle().await;
        assert!(service.events().contains(&"read 4".to_owned()));
        reply2.send(()).unwrap();
        reply3.send(()).unwrap();
        assert_eq!(responses(&mut client, 3).await, [2, 3, 4]);
    }

    #[tokio::test]
    async fn the_byte_limit_lets_one_request_in_however_large() {
        let service = Scripted::default();
        let (_, reply1) = service.gate(1);
        let limits = Limits {
            max_in_flight_bytes: 1,
            ..LIMITS
        };
        let (mut client, _task, _shutdown) = connection(&service, limits);
        send(&mut client, &[1, 2]).await;
        settle().await;
        assert_eq!(service.events(), ["read 1", "started 1"]);
        reply1.send(()).unwrap();
        assert_eq!(responses(&mut client, 2).await, [1, 2]);
    }

    #[tokio::test]
    async fn requests_before_a_refused_one_or_shutdown_are_answered_then_the_connection_closes() {
        let service = Scripted::default();
        let (_, reply1) = service.gate(1);
        let (mut client, task, _shutdown) = connection(&service, LIMITS);
        // Request 0 gets no response (acks=0); 0xff is refused; 2 is never read.
        send(&mut client, &[0, 1, 0xff, 2]).await;
        settle().await;
        reply1.send(()).unwrap();
        assert_eq!(responses(&mut client, 1).await, [1]);
        task.await.unwrap().unwrap();
        assert!(!service.events().contains(&"read 2".to_owned()));
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "closed after the answered requests");

        // A request whose answer is to close: the ones before it are answered, none after it.
        let service = Scripted::default();
        let (mut client, task, _shutdown) = connection(&service, LIMITS);
        send(&mut client, &[1, 0xfe, 2]).await;
        task.await.unwrap().unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, [0, 0, 0, 1, 1]);

        // A last answer (a failed login): written, then nothing more.
        let service = Scripted::default();
        let (mut client, task, _shutdown) = connection(&service, LIMITS);
        send(&mut client, &[1, 0xfd, 2]).await;
        task.await.unwrap().unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, [0, 0, 0, 1, 1, 0, 0, 0, 1, 0xfd]);

        let service = Scripted::default();
        let (_, reply1) = service.gate(1);
        let (mut client, task, shutdown) = connection(&service, LIMITS);
        send(&mut client, &[1]).await;
        settle().await;
        shutdown.cancel();
        settle().await;
        assert!(!task.is_finished(), "request 1 is still being served");
        reply1.send(()).unwrap();
        assert_eq!(responses(&mut client, 1).await, [1]);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn requests_read_before_the_connection_fails_still_run_to_their_end() {
        let service = Scripted::default();
        let (_, reply1) = service.gate(1);
        let (start2, _) = service.gate(2);
        let (mut client, task, _shutdown) = connection(&service, LIMITS);
        send(&mut client, &[1, 2]).await;
        settle().await;
        // The client goes away while 1 waits for its reply and 2 for its start.
        drop(client);
        settle().await;
        reply1.send(()).unwrap();
        start2.send(()).unwrap();
        let ended = task.await.unwrap();
        assert!(
            matches!(ended, Err(ConnectionError::Write(_)) | Ok(())),
            "{ended:?}"
        );
        let events = service.events();
        for event in ["replied 1", "started 2", "replied 2"] {
            assert!(events.iter().any(|e| e == event), "{event}: {events:?}");
        }
    }

    /// A smaller limit for now (a connection not logged in): a frame over it closes the
    /// connection; once lifted (request 0xfc, a login), larger frames are read.
    #[tokio::test]
    async fn a_frame_over_the_limit_for_now_closes_the_connection() {
        let service = Scripted::default();
        *service.limit.lock().unwrap() = Some(2);
        let (mut client, _task, _shutdown) = connection(&service, LIMITS);
        client.write_all(&[0, 0, 0, 1, 0xfc]).await.unwrap();
        assert_eq!(responses(&mut client, 1).await, [0xfc]);
        client.write_all(&[0, 0, 0, 3, 7, 0, 0]).await.unwrap();
        assert_eq!(responses(&mut client, 1).await, [7]);

        let service = Scripted::default();
        *service.limit.lock().unwrap() = Some(2);
        let (mut client, task_limited, _shutdown) = connection(&service, LIMITS);
        client.write_all(&[0, 0, 0, 3, 7, 0, 0]).await.unwrap();
        task_limited.await.unwrap().unwrap();
        assert!(service.events().is_empty(), "nothing read past the limit");
    }

    #[tokio::test]
    async fn an_oversized_frame_closes_the_connection() {
        let service = Scripted::default();
        let (mut client, task, _shutdown) = connection(&service, LIMITS);
        client.write_all(&[0, 0, 0, 17]).await.unwrap();
        task.await.unwrap().unwrap();
        client.write_all(&[0xff, 0xff, 0xff, 0xff]).await.ok();
        assert!(service.events().is_empty());
    }
}
