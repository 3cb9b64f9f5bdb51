//! One request on a fresh loopback connection, with a timeout: for checks and admin calls,
//! never for the measured load.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Longest a one-off exchange may take, connection included. Generous: an install that
/// compiles a component answers only when the component serves.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `content-type` header, empty when absent.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// `GET path` on `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Reply> {
    send(addr, Method::GET, path, None).await
}

/// `POST path` on `addr` with a JSON body.
pub async fn post_json(addr: SocketAddr, path: &str, json: String) -> anyhow::Result<Reply> {
    send(addr, Method::POST, path, Some(json)).await
}

async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    json: Option<String>,
) -> anyhow::Result<Reply> {
    let exchange = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, addr.to_string());
        if json.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let body = Full::new(Bytes::from(json.unwrap_or_default()));
        let response = sender.send_request(request.body(body)?).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        drop(sender);
        driver.abort();
        Ok::<_, anyhow::Error>(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{method} http://{addr}{path} timed out"))?
        .with_context(|| format!("{method} http://{addr}{path}"))
}
