//! One simulated proxy's session on the wire: connect, hello, record and ACK each push,
//! close on request; retry with backoff (100 ms → 2 s) as a real proxy does.

use super::{Identity, Received, Shared};
use crate::push;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use weft_protocol::pb;

impl Shared {
    fn set_live(&self, proxy: usize, session: u64, live: bool) {
        let mut log = self.lock();
        let current = &mut log.current[proxy];
        if current.session == session {
            current.live = live;
            current.version = None;
        }
    }

    fn fail(&self, proxy: usize, why: String) {
        self.lock()
            .failures
            .push(format!("{}: {why}", self.who[proxy].id));
    }

    /// Records a push message and returns the ACK (a NACK when the push carries no
    /// config), or nothing when more messages of its version follow.
    fn record(&self, proxy: usize, session: u64, msg: &pb::ConfigPush) -> Option<pb::ProxyMessage> {
        let at = Instant::now();
        let push = push::of(msg);
        let watches = self.watches.read().expect("watches poisoned").clone();
        let mentions = watches
            .iter()
            .filter(|w| push.mentions(&w.needle))
            .map(|w| w.change)
            .collect();
        let mut log = self.lock();
        log.pushes.push(Received {
            proxy,
            at,
            bytes: push.bytes,
            mentions,
        });
        match push.error {
            Some(e) => log.failures.push(format!(
                "{}: push {} unserved: {e}",
                self.who[proxy].id, push.version
            )),
            None if push.more => return None,
            None => {
                let current = &mut log.current[proxy];
                if current.session == session && current.live {
                    current.version = Some(push.version.to_string());
                    current.first_push.get_or_insert(at);
                }
            }
        }
        Some(ack(&push))
    }
}

fn ack(push: &push::Push<'_>) -> pb::ProxyMessage {
    pb::ProxyMessage {
        msg: Some(pb::proxy_message::Msg::Ack(pb::Ack {
            version: push.version.to_string(),
            accepted: push.error.is_none(),
            error: push.error.unwrap_or_default().to_string(),
            listeners: Default::default(),
        })),
    }
}

fn hello(who: &Identity, inbound: &str) -> pb::ProxyMessage {
    pb::ProxyMessage {
        msg: Some(pb::proxy_message::Msg::Hello(pb::Node {
            id: who.id.clone(),
            role: "sidecar".into(),
            workload: who.workload.clone(),
            namespace: who.namespace.clone(),
            inbound_addr: inbound.to_string(),
            build_version: "weft-scale-bench".into(),
            config_version: String::new(),
        })),
    }
}

/// One session: attempts until stopped, backing off between failed ones.
pub(super) async fn run(
    shared: Arc<Shared>,
    proxy: usize,
    session: u64,
    inbound: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match attempt(&shared, proxy, session, &inbound, &mut stop).await {
            Ok(()) => return,
            Err(why) => shared.fail(proxy, why),
        }
        shared.set_live(proxy, session, false);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Resolves once the proxy is told to stop (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _ = stop.wait_for(|s| *s).await.is_ok();
}

/// One stream: `Ok` when it ended because the proxy was stopped.
async fn attempt(
    shared: &Shared,
    proxy: usize,
    session: u64,
    inbound: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let mut client = tokio::select! {
        c = weft_protocol::auth::connect(&shared.control, None) => c?,
        _ = stopped(stop) => return Ok(()),
    };
    let (tx, rx) = mpsc::channel(8);
    tx.try_send(hello(&shared.who[proxy], inbound))
        .map_err(|e| e.to_string())?;
    let mut pushes = tokio::select! {
        r = client.stream_config(ReceiverStream::new(rx)) => r.map_err(|s| s.message().to_string())?.into_inner(),
        _ = stopped(stop) => return Ok(()),
    };
    shared.set_live(proxy, session, true);
    let mut tx = Some(tx);
    loop {
        tokio::select! {
            _ = stopped(stop), if tx.is_some() => {
                // Closing our half; the control plane ends its half once it forgot us.
                tx = None;
                shared.set_live(proxy, session, false);
            }
            msg = pushes.message() => match (msg, &tx) {
                (Ok(Some(push)), tx) => {
                    let ack = shared.record(proxy, session, &push);
                    if let (Some(ack), Some(tx)) = (ack, tx) {
                        tx.send(ack).await.map_err(|e| e.to_string())?;
                    }
                }
                (_, None) => return Ok(()),
                (Ok(None), Some(_)) => return Err("the control plane ended the stream".into()),
                (Err(status), Some(_)) => return Err(status.message().to_string()),
            },
        }
    }
}
