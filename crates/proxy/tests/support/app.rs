//! [`App`]: a scripted upstream app (HTTP/1.1 and h2c on `127.0.0.1:0`).

use super::within;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Header every app response carries: the app's name (to tell endpoints apart).
pub const APP_HEADER: &str = "x-app";

/// A request as the app received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The request's trailers (HTTP/2, or chunked HTTP/1.1), if any.
    pub trailers: Option<HeaderMap>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `GET /path HTTP/1.1`, then `name: value` lines, a blank line and the body.
    pub fn echo(&self) -> String {
        let mut s = format!("{} {} {:?}\n", self.method, self.path, self.version);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        s.push('\n');
        s.push_str(&String::from_utf8_lossy(&self.body));
        s
    }
}

/// What the app answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Wait this long (tokio time) before answering.
    pub delay: Option<Duration>,
    /// Send the headers and the body so far, then never finish the body.
    pub stall: bool,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: None,
            stall: false,
        }
    }

    /// 200 with the request echoed (see [`Seen::echo`]).
    pub fn echo(seen: &Seen) -> Reply {
        Reply::status(200).body(seen.echo())
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = Some(d);
        self
    }

    pub fn stall(mut self) -> Reply {
        self.stall = true;
        self
    }
}

/// Decides the reply to request number `n` (0-based, in arrival order).
pub type Script = Arc<dyn Fn(usize, &Seen) -> Reply + Send + Sync>;

struct State {
    name: String,
    script: Mutex<Script>,
    seen: watch::Sender<Vec<Seen>>,
}

/// A fake upstream app. Every response has `x-app: <name>`. Stopped on drop (its
/// listener and every connection).
pub struct App {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl App {
    /// An app that answers with `script`.
    pub async fn start(
        name: &str,
        script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static,
    ) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake app");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            name: name.into(),
            script: Mutex::new(Arc::new(script)),
            seen: watch::channel(Vec::new()).0,
        });
        let s = state.clone();
        // The JoinSet owns every connection: aborting the accept task drops them all.
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                while conns.try_join_next().is_some() {}
                let s = s.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(handle(&s, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        App {
            name: name.into(),
            addr,
            state,
            task,
        }
    }

    /// 200, echoing the request.
    pub async fn echo(name: &str) -> App {
        App::start(name, |_, seen| Reply::echo(seen)).await
    }

    /// Always `status`.
    pub async fn status(name: &str, status: u16) -> App {
        App::start(name, move |_, _| Reply::status(status)).await
    }

    /// `status` for the first `n` requests, then 200 (echo).
    pub async fn fail_first(name: &str, n: usize, status: u16) -> App {
        App::start(name, move |i, seen| {
            if i < n {
                Reply::status(status)
            } else {
                Reply::echo(seen)
            }
        })
        .await
    }

    /// Answers 200 (echo) after `delay`.
    pub async fn delayed(name: &str, delay: Duration) -> App {
        App::start(name, move |_, seen| Reply::echo(seen).delay(delay)).await
    }

    /// Replaces the script (requests already answered keep their numbers).
    pub fn set_script(&self, script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) {
        *self.state.script.lock().unwrap() = Arc::new(script);
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.state.seen.borrow().len()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.seen.borrow().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Seen {
        self.state
            .seen
            .borrow()
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("app {} received no request", self.name))
    }

    /// Waits until the app has received `n` requests in all.
    pub async fn wait_for_count(&self, n: usize) {
        let mut rx = self.state.seen.subscribe();
        within(
            &format!("app {} to receive {n} requests", self.name),
            async {
                rx.wait_for(|s| s.len() >= n)
                    .await
                    .expect("app state lives");
            },
        )
        .await
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type AppBody = BoxBody<Bytes, Infallible>;

async fn handle(state: &State, req: Request<Incoming>) -> Response<AppBody> {
    let (parts, body) = req.into_parts();
    let (body, trailers) = match body.collect().await {
        Ok(c) => {
            let trailers = c.trailers().cloned();
            (c.to_bytes(), trailers)
        }
        Err(_) => (Bytes::new(), None),
    };
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into()),
        version: parts.version,
        headers: parts.headers,
        body,
        trailers,
    };
    let mut n = 0;
    state.seen.send_modify(|s| {
        n = s.len();
        s.push(seen.clone());
    });
    let script = state.script.lock().unwrap().clone();
    let reply = script(n, &seen);
    if let Some(d) = reply.delay {
        tokio::time::sleep(d).await;
    }
    let mut resp = Response::builder()
        .status(reply.status)
        .header(APP_HEADER, state.name.as_str());
    for (k, v) in &reply.headers {
        resp = resp.header(k.as_str(), v.as_str());
    }
    let body = if reply.stall {
        Stall(Some(reply.body)).boxed()
    } else {
        Full::new(reply.body).boxed()
    };
    resp.body(body).expect("scripted replies are valid")
}

/// A body that yields its first chunk and then never ends.
struct Stall(Option<Bytes>);

impl hyper::body::Body for Stall {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.0.take() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => Poll::Pending,
        }
    }
}
