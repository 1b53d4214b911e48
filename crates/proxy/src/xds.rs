//! The config stream: say hello, apply each push (build the runtime form, bind new gateway
//! ports, swap atomically), answer ACK or NACK. On any stream failure the proxy keeps
//! serving its last good config and reconnects with backoff.

use crate::runtime::Runtime;
use crate::ControlTarget;
use crate::{Event, Shared};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};
use weft_protocol::{decode_config, pb};

/// Runs forever: (re)connects to the control plane and applies pushes.
pub async fn run(shared: Arc<Shared>, control: ControlTarget) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(&shared, &control, &mut backoff).await {
            Ok(()) => {
                info!(control = %control.addr, "config stream closed by the control plane; reconnecting")
            }
            Err(e) => {
                warn!(control = %control.addr, error = %e, "config stream failed; serving last good config and reconnecting")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
        if shared.runtime.load().version.is_empty() {
            backoff = backoff.min(Duration::from_millis(500));
        }
    }
}

async fn session(
    shared: &Arc<Shared>,
    control: &ControlTarget,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let mut client = weft_protocol::auth::connect(&control.addr, control.token.as_deref())
        .await
        .map_err(anyhow::Error::msg)?;
    let (tx, rx) = mpsc::channel(8);
    tx.send(pb::ProxyMessage {
        msg: Some(pb::proxy_message::Msg::Hello(pb::Node {
            config_version: shared.runtime.load().version.clone(),
            ..shared.node.clone()
        })),
    })
    .await?;
    let mut pushes = client
        .stream_config(ReceiverStream::new(rx))
        .await?
        .into_inner();
    info!(control = %control.addr, "connected to control plane");
    // A working session resets the backoff: the next outage starts with quick retries.
    *backoff = Duration::from_millis(100);
    shared.emit(Event::Connected {
        control: control.addr.clone(),
    });
    while let Some(push) = pushes.message().await? {
        let ack = match apply(shared, &push).await {
            Ok(()) => {
                info!(version = %push.version, "config applied");
                pb::Ack {
                    version: push.version.clone(),
                    accepted: true,
                    error: String::new(),
                }
            }
            Err(error) => {
                warn!(version = %push.version, %error, "config rejected (NACK); keeping the last good config");
                pb::Ack {
                    version: push.version.clone(),
                    accepted: false,
                    error,
                }
            }
        };
        tx.send(pb::ProxyMessage {
            msg: Some(pb::proxy_message::Msg::Ack(ack)),
        })
        .await?;
    }
    Ok(())
}

async fn apply(shared: &Arc<Shared>, push: &pb::ConfigPush) -> Result<(), String> {
    let config = decode_config(push)?;
    let previous = shared.runtime.load_full();
    let runtime = Runtime::build(&push.version, config, &previous)?;
    // Bind new gateway ports first (a failure rejects the push and changes nothing) ...
    let listeners = crate::listeners::prepare(shared, &runtime.config).await?;
    for n in &runtime.config.not_enforced {
        if !previous.config.not_enforced.contains(n) {
            warn!(resource = %n.resource, location = %n.location, what = %n.what, "configured but not enforced yet");
        }
    }
    let live: HashSet<(String, String)> = runtime
        .config
        .clusters
        .values()
        .flat_map(|c| {
            c.endpoints
                .iter()
                .map(|e| (e.address.clone(), e.identity.clone()))
        })
        .collect();
    shared.runtime.store(Arc::new(runtime));
    // ... and serve them only once their routes are live.
    crate::listeners::commit(shared, listeners).await;
    shared.pool.retain(&live);
    Ok(())
}
