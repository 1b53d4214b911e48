//! The proxy's certificate from the control plane's CA: a fresh key and CSR (the key never
//! leaves this process), and renewal at half the certificate's lifetime.

use super::connect;
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

/// Renews the certificate at half its lifetime; on failure keeps the current one and retries.
pub async fn renew(state: Arc<ProxyState>, control: ControlTarget) {
    loop {
        let not_after = state.tls.current.load().identity.not_after();
        tokio::time::sleep(renew_after(not_after)).await;
        let mut client = connect(&control).await;
        match fetch(&mut client, &state.node).await {
            Ok(creds) => {
                info!(identity = %creds.identity.spiffe_id(), "certificate renewed");
                state.tls.current.store(Arc::new(creds));
            }
            Err(e) => {
                warn!(error = %e, "certificate renewal failed; keeping the current certificate")
            }
        }
    }
}
