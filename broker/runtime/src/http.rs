//! A small HTTP/1 server for the processes' admin and metrics endpoints: one task per
//! connection, every request answered by a function, until a cancellation token fires.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves HTTP/1 on `listener` until `shutdown`, every request answered by `respond` (the
/// operator's `/metrics`, `/healthz` and `/readyz`).
pub async fn serve_http<F>(listener: TcpListener, shutdown: CancellationToken, respond: F)
where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    serve_http_async(listener, shutdown, move |request| {
        std::future::ready(respond(&request))
    })
    .await;
}

/// [`serve_http`] with answers that take a while (the broker's admin operations wait for the
/// metadata quorum).
pub async fn serve_http_async<F, Fut>(
    listener: TcpListener,
    shutdown: CancellationToken,
    respond: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let respond = Arc::new(respond);
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "HTTP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let respond = Arc::clone(&respond);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(request);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {}
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "HTTP connection ended");
                    }
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}
