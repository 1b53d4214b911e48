//! Shared test helpers: start a demo app on an ephemeral port and stop it.
#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weft_demo::{bind_demo_app_until, DemoAppConfig};

/// A demo app running on `127.0.0.1:0`, stopped via [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<anyhow::Result<()>>,
}

pub async fn start(cfg: DemoAppConfig) -> Running {
    let (stop, rx) = oneshot::channel::<()>();
    let (addr, serve) = bind_demo_app_until(cfg, async {
        let _ = rx.await;
    })
    .await
    .expect("bind demo app");
    Running {
        addr,
        stop,
        handle: tokio::spawn(serve),
    }
}

impl Running {
    /// Triggers graceful shutdown and waits for the server to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.handle
            .await
            .expect("demo app task")
            .expect("demo app result");
    }
}
