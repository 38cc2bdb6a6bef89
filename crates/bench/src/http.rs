//! A minimal HTTP/1.1 client: one keep-alive connection per [`Client`], on
//! hyper's connection API. A benchmark worker owns one, so "64 connections"
//! means exactly 64 sockets, with no pool deciding otherwise.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One connection to one server.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    host: String,
    sender: SendRequest<Full<Bytes>>,
}

/// What the benchmark needs of a response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// `Location`, e.g. `/tickets/{id}` after a create.
    pub location: Option<String>,
    /// `X-Event-Position` of a write.
    pub event_position: Option<u64>,
    pub body: Bytes,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        // Small requests and answers: do not let Nagle hold them back.
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1 handshake")?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; a broken
            // connection shows up as an error of the next request.
            let _ = connection.await;
        });
        Ok(Client {
            addr,
            host: addr.to_string(),
            sender,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET path`, with an `X-Request-Id` when given (the server logs it with
    /// the request's own latency).
    pub async fn get(&mut self, path: &str, request_id: Option<&str>) -> anyhow::Result<Reply> {
        let mut request = Request::get(path).header("host", &self.host);
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .context("building a GET")?;
        self.send(request).await
    }

    /// `METHOD path` with a JSON body.
    pub async fn send_json(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: String,
    ) -> anyhow::Result<Reply> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .context("building a request")?;
        self.send(request).await
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        self.sender.ready().await.context("the connection closed")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .context("sending a request")?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .context("reading a response body")?
            .to_bytes();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Reply {
            status: parts.status.as_u16(),
            location: header("location"),
            event_position: header("x-event-position").and_then(|p| p.parse().ok()),
            body,
        })
    }
}
