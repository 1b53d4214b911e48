//! The proxy's certificate from the control plane's CA: a fresh key and CSR (the key never
//! leaves this process), and renewal at half the certificate's lifetime.

use super::ControlTarget;
use crate::state::ProxyState;
use crate::tls::{renew_after, Credentials};
use anyhow::Context;
use std::sync::Arc;
use tracing::{info, warn};
use weft_identity::{Identity, SpiffeId, WorkloadKey};
use weft_protocol::{pb, ControlClient};

/// Asks the control plane's CA for a certificate for `node`.
pub async fn fetch(client: &mut ControlClient, node: &pb::Node) -> anyhow::Result<Credentials> {
    let key = WorkloadKey::generate();
    // The CA decides the identity from its registry; the CSR's own name is only a hint.
    let hint = SpiffeId::new("cluster.local", &node.namespace, &node.workload)
        .context("workload name is not a valid SPIFFE path segment")?;
    let csr_pem = key.csr_pem(&hint)?;
    let resp = client
        .create_certificate(pb::CertificateRequest {
            node: Some(node.clone()),
            csr_pem,
        })
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "control plane refused the certificate request: {}",
                s.message()
            )
        })?
        .into_inner();
    let identity = Identity::new(key, &resp.cert_chain_pem, &resp.root_pem)?;
    Credentials::new(identity)
}

fn secs_left(not_after: std::time::SystemTime) -> u64 {
    not_after
        .duration_since(std::time::SystemTime::now())
        .map_or(0, |d| d.as_secs())
}

/// Renews the certificate at half its lifetime; on failure keeps the current one and retries
/// (at half of what is left each time, at least every second), saying how long it has.
pub async fn renew(state: Arc<ProxyState>, control: ControlTarget) {
    loop {
        let not_after = state.tls.current.load().identity.not_after();
        tokio::time::sleep(renew_after(not_after)).await;
        // One attempt: an unreachable control plane is a failed renewal, counted and
        // logged with the time left, then retried.
        let renewed = async {
            let mut client = weft_protocol::auth::connect(&control.addr, control.token.as_deref())
                .await
                .map_err(anyhow::Error::msg)?;
            fetch(&mut client, &state.node).await
        };
        match renewed.await {
            Ok(creds) => {
                let not_after = creds.identity.not_after();
                info!(identity = %creds.identity.spiffe_id(), expires_in_s = secs_left(not_after), "certificate renewed");
                state.tls.rotate(creds);
                state.metrics.certificate(not_after, true);
            }
            Err(e) => {
                state.metrics.renewal_failed();
                warn!(error = %e, expires_in_s = secs_left(not_after), "certificate renewal failed; keeping the current certificate until it expires, retrying")
            }
        }
    }
}
