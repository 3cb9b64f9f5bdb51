//! Serving one listener: HTTP/1 connections with a header deadline (which also closes idle
//! kept-alive connections), a pause limit within request bodies, a cap on connections served
//! at once, and a graceful stop.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{body::Body, extract::Request, response::Response};
use hyper::body::Incoming;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

use koupleless_config::ConnectionLimits;

/// The header the in-process client names the calling module in.
const CALLER: &str = "x-koupleless-caller";

/// Serves `service` on `listener` until `stop` is cancelled, then lets the open connections
/// finish their current request.
pub(crate) fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    name: &'static str,
    stop: CancellationToken,
) -> JoinHandle<()>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    tokio::spawn(async move {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(crate::coarse_timer::CoarseTimer)
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(100);
        let body_timeout = limits.body_read_timeout;
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let connections = TaskTracker::new();
        loop {
            // A connection is accepted only when it can be served; the rest wait in the
            // kernel's queue.
            let slot = tokio::select! {
                () = stop.cancelled() => break,
                slot = Arc::clone(&slots).acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(err) => {
                        accept_failed(name, &err).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let service =
                service
                    .clone()
                    .map_request(move |mut request: hyper::Request<Incoming>| {
                        // Only the base's in-process client says which module is calling; a
                        // client on the network cannot pass for one.
                        request.headers_mut().remove(CALLER);
                        request.map(|body| Body::new(TimeoutBody::new(body_timeout, body)))
                    });
            let connection = http
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            let stop = stop.clone();
            connections.spawn(async move {
                let _slot = slot;
                tokio::pin!(connection);
                let closed = tokio::select! {
                    closed = connection.as_mut() => closed,
                    () = stop.cancelled() => {
                        // The request in progress finishes; no other starts.
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(err) = closed {
                    tracing::debug!(listener = name, error = %err, "connection closed with an error");
                }
            });
        }
        drop(listener);
        connections.close();
        connections.wait().await;
    })
}

/// Errors of one connection (reset before it was accepted) are the client's; others (out of
/// file descriptors) would repeat at once, so the loop pauses before it accepts again.
async fn accept_failed(name: &'static str, err: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(listener = name, error = %err, "accepting a connection failed; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
