//! Connection-level observers: [`ConnApp`], an HTTP/1.1 app that counts the connections
//! opened to it and closed by the peer, and [`Relay`], a TCP relay that counts the
//! connections made through it (to see whether a proxy reuses its connection to a peer).

use super::within;
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Connections opened and closed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub opened: usize,
    pub closed: usize,
}

impl Counts {
    pub fn open(&self) -> usize {
        self.opened - self.closed
    }
}

/// An app answering every request `200 ok` over HTTP/1.1 (keep-alive), counting
/// connections. Stopped on drop, with every connection.
pub struct ConnApp {
    pub addr: SocketAddr,
    counts: watch::Sender<Counts>,
    task: JoinHandle<()>,
}

impl ConnApp {
    pub async fn start() -> ConnApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind an app");
        let addr = listener.local_addr().unwrap();
        let counts = watch::channel(Counts::default()).0;
        let c = counts.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                c.send_modify(|c| c.opened += 1);
                let c = c.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    // Ends when the peer closes (or on an error).
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                    c.send_modify(|c| c.closed += 1);
                });
            }
        });
        ConnApp { addr, counts, task }
    }

    pub fn counts(&self) -> Counts {
        *self.counts.borrow()
    }

    /// Waits until `pred` holds for the counts.
    pub async fn wait(&self, what: &str, pred: impl Fn(&Counts) -> bool) -> Counts {
        let mut rx = self.counts.subscribe();
        within(what, async {
            *rx.wait_for(|c| pred(c)).await.expect("app state lives")
        })
        .await
    }
}

impl Drop for ConnApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP relay to `target` counting the connections made through it. Stopped on drop,
/// with every relayed connection.
pub struct Relay {
    pub addr: SocketAddr,
    accepted: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a relay");
        let addr = listener.local_addr().unwrap();
        let (tx, accepted) = watch::channel(0usize);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                tx.send_modify(|n| *n += 1);
                conns.spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        });
        Relay {
            addr,
            accepted,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
