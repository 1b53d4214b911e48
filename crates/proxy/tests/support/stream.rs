//! Streaming pieces: request bodies the test feeds frame by frame ([`body_channel`]), a
//! client that keeps its connection for as long as the test reads the response
//! ([`Client`], HTTP/1.1 or h2c with prior knowledge), apps whose handler sees the request
//! body as it arrives ([`StreamApp`]), gRPC message framing ([`grpc_frame`],
//! [`GrpcReader`]) and the process's resident memory ([`vm_rss`]).

use super::within;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::wrappers::ReceiverStream;

/// A request body fed by a [`BodyTx`].
pub type ChannelBody = StreamBody<ReceiverStream<Result<Frame<Bytes>, Infallible>>>;

/// The sending half of a [`ChannelBody`]. Dropping it ends the body.
pub struct BodyTx(mpsc::Sender<Result<Frame<Bytes>, Infallible>>);

/// A body the test writes as it goes; `capacity` frames may wait in the channel.
pub fn body_channel(capacity: usize) -> (BodyTx, ChannelBody) {
    let (tx, rx) = mpsc::channel(capacity);
    (BodyTx(tx), StreamBody::new(ReceiverStream::new(rx)))
}

impl BodyTx {
    /// Sends a data frame, waiting while the connection applies backpressure.
    pub async fn data(&self, b: impl Into<Bytes>) {
        within(
            "the request body to take a frame",
            self.0.send(Ok(Frame::data(b.into()))),
        )
        .await
        .unwrap_or_else(|_| panic!("the request body was dropped (the request failed)"));
    }

    /// Ends the body with trailers.
    pub async fn trailers(self, t: HeaderMap) {
        within(
            "the request body to take trailers",
            self.0.send(Ok(Frame::trailers(t))),
        )
        .await
        .unwrap_or_else(|_| panic!("the request body was dropped (the request failed)"));
    }

    /// Ends the body.
    pub fn end(self) {}
}

enum Sender<B> {
    H1(hyper::client::conn::http1::SendRequest<B>),
    H2(hyper::client::conn::http2::SendRequest<B>),
}

/// One client connection; the connection task lives until the client is dropped, so a
/// response body can be read (and the request body written) at the test's pace.
pub struct Client<B> {
    sender: Sender<B>,
    conn: JoinHandle<()>,
}

impl<B> Client<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// An HTTP/1.1 connection to `addr`.
    pub async fn h1(addr: SocketAddr) -> Client<B> {
        let io = TokioIo::new(connect(addr).await);
        let (sender, conn) = within(
            "HTTP/1.1 handshake",
            hyper::client::conn::http1::handshake(io),
        )
        .await
        .expect("HTTP/1.1 handshake");
        Client {
            sender: Sender::H1(sender),
            conn: tokio::spawn(async move {
                let _ = conn.await;
            }),
        }
    }

    /// An HTTP/2 connection with prior knowledge (h2c) to `addr`.
    pub async fn h2(addr: SocketAddr) -> Client<B> {
        let io = TokioIo::new(connect(addr).await);
        let (sender, conn) = within(
            "h2c handshake",
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io),
        )
        .await
        .expect("h2c handshake");
        Client {
            sender: Sender::H2(sender),
            conn: tokio::spawn(async move {
                let _ = conn.await;
            }),
        }
    }

    /// Sends `req`; resolves with the response head (the request body may still be
    /// streaming). The request's version is set to the connection's.
    pub fn send(
        &mut self,
        mut req: Request<B>,
    ) -> impl Future<Output = Result<Response<Incoming>, hyper::Error>> + Send + 'static {
        match &mut self.sender {
            Sender::H1(s) => {
                *req.version_mut() = http::Version::HTTP_11;
                let f = s.send_request(req);
                futures_util::future::Either::Left(f)
            }
            Sender::H2(s) => {
                *req.version_mut() = http::Version::HTTP_2;
                let f = s.send_request(req);
                futures_util::future::Either::Right(f)
            }
        }
    }
}

impl<B> Drop for Client<B> {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

async fn connect(addr: SocketAddr) -> tokio::net::TcpStream {
    let tcp = within(
        &format!("connect to {addr}"),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let _ = tcp.set_nodelay(true);
    tcp
}

/// A response read to its end.
#[derive(Debug)]
pub struct Read {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Read {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Reads a response's body and trailers.
pub async fn read(resp: Response<Incoming>) -> Result<Read, String> {
    let (parts, body) = resp.into_parts();
    let c = within("the response body", body.collect())
        .await
        .map_err(|e| format!("response body: {e}"))?;
    Ok(Read {
        status: parts.status,
        headers: parts.headers,
        trailers: c.trailers().cloned(),
        body: c.to_bytes(),
    })
}

/// Response bodies of a [`StreamApp`].
pub type AppBody = BoxBody<Bytes, Infallible>;

/// An app (HTTP/1.1 and h2c on `127.0.0.1:0`) whose handler gets the request with its
/// body unread, so it can answer while the body streams. Stopped on drop (listener and
/// every connection, with whatever the handlers are doing).
pub struct StreamApp {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl StreamApp {
    pub async fn start<F, Fut>(handler: F) -> StreamApp
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<AppBody>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a streaming app");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                while conns.try_join_next().is_some() {}
                let handler = handler.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let f = handler(req);
                        async move { Ok::<_, Infallible>(f.await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        StreamApp { addr, task }
    }
}

impl Drop for StreamApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gRPC message: compressed flag 0, 4-byte big-endian length, the message.
pub fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.extend_from_slice(&[0]);
    b.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
    b.extend_from_slice(msg);
    b.freeze()
}

/// Splits a body into gRPC messages as its frames arrive.
pub struct GrpcReader<B> {
    body: B,
    buf: BytesMut,
    pub trailers: Option<HeaderMap>,
}

impl<B> GrpcReader<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    pub fn new(body: B) -> GrpcReader<B> {
        GrpcReader {
            body,
            buf: BytesMut::new(),
            trailers: None,
        }
    }

    /// The next whole message; `None` once the body has ended (trailers, if any, are then
    /// in [`GrpcReader::trailers`]).
    pub async fn next(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() >= 5 + len {
                    self.buf.advance(5);
                    return Ok(Some(self.buf.split_to(len).freeze()));
                }
            }
            match self.body.frame().await {
                None if self.buf.is_empty() => return Ok(None),
                None => return Err(format!("{} bytes of a cut-off message", self.buf.len())),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => self.buf.extend_from_slice(&d),
                    Err(f) => {
                        if let Ok(t) = f.into_trailers() {
                            self.trailers = Some(t);
                        }
                    }
                },
            }
        }
    }
}

/// The process's resident set size in bytes (`VmRSS` in `/proc/self/status`).
pub fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}
