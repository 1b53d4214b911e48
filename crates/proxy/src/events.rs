//! Lifecycle events a proxy reports (ready with its addresses, gateway listener bound,
//! connected to the control plane): JSON lines on stdout for supervisors, or a channel for
//! a proxy running inside a test.

use serde::Serialize;

/// Where a proxy reports its lifecycle events.
#[derive(Debug, Clone, Default)]
pub enum EventSink {
    /// One JSON line per event on stdout.
    #[default]
    Stdout,
    /// Sent on a channel (in-process proxies).
    Channel(tokio::sync::mpsc::UnboundedSender<Event>),
}

impl EventSink {
    pub fn send(&self, e: Event) {
        match self {
            EventSink::Stdout => {
                println!("{}", serde_json::to_string(&e).expect("events serialize"))
            }
            EventSink::Channel(tx) => {
                let _ = tx.send(e);
            }
        }
    }
}

/// A lifecycle event, printed to stdout as one JSON line.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Ready {
        role: String,
        workload: String,
        namespace: String,
        identity: String,
        admin: String,
        inbound: Option<String>,
        outbound: Option<String>,
        /// The merged metrics page (proxy + app), when served.
        #[serde(skip_serializing_if = "Option::is_none")]
        merged_metrics: Option<String>,
    },
    Listener {
        name: String,
        port: u32,
        address: String,
        /// The listener terminates TLS (a Gateway HTTPS server).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        https: bool,
    },
    Connected {
        control: String,
    },
    /// A pushed config was accepted (after its gateway listeners were reported).
    ConfigApplied {
        version: String,
    },
    /// A push was not applied (NACK); the last good config stays in force.
    PushRejected {
        version: String,
        error: String,
    },
    /// A Gateway TLS server whose certificate cannot be loaded (a missing credential): it
    /// takes no connections; the listener's other servers keep serving.
    TlsServerUnserved {
        listener: String,
        server: String,
        error: String,
    },
}
