//! The gRPC service proxies talk to: the config stream (hello, pushes, ACK/NACK) and the
//! CA (CSR in, SPIFFE certificate out, identity decided from the registry).

use crate::metrics::{ControlMetrics, PushType};
use crate::state::State;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};
use weft_api::Spec;
use weft_identity::SpiffeId;
use weft_protocol::auth::BoundProxy;
use weft_protocol::delta::{Desired, Sent};
use weft_protocol::{pb, Mesh};

/// A per-workload token admits only the proxy it was made for.
fn check_bound(bound: Option<&BoundProxy>, node: &pb::Node) -> Result<(), Status> {
    let Some(b) = bound else { return Ok(()) };
    if b.role == node.role && b.namespace == node.namespace && b.workload == node.workload {
        return Ok(());
    }
    warn!(token_for = %b, claimed = %format!("{} {}/{}", node.role, node.namespace, node.workload), "a proxy presented another workload's token");
    Err(Status::permission_denied(format!(
        "this token was made for the {b}; it cannot act as {} {}/{}",
        node.role, node.namespace, node.workload
    )))
}

/// The pushes of one stream: each newer desired state becomes the delta from what this
/// stream sent before, in messages of at most `limit` bytes.
fn deltas(
    rx: watch::Receiver<Option<Arc<Desired>>>,
    limit: usize,
    proxy: String,
    metrics: Arc<ControlMetrics>,
) -> impl Stream<Item = Result<pb::ConfigPush, Status>> + Send {
    let mut sent = Sent::default();
    let states = WatchStream::new(rx).filter_map(|d| d);
    futures_util::StreamExt::flat_map(states, move |desired| {
        let pushes = sent.pushes(&desired, limit);
        for p in &pushes {
            let kind = if p.full { "full" } else { "delta" };
            metrics
                .pushes
                .get_or_create(&PushType { r#type: kind })
                .inc();
            metrics.size.observe(prost::Message::encoded_len(p) as f64);
        }
        if pushes.len() > 1 {
            info!(%proxy, version = %desired.version, messages = pushes.len(), "push split into several messages (over the message limit)");
        }
        if let [p] = pushes.as_slice() {
            if !p.error.is_empty() {
                warn!(%proxy, reason = %p.error, "cannot serve this proxy its config");
                crate::emit(&crate::Event::ProxyUnserved {
                    proxy: proxy.clone(),
                    reason: p.error.clone(),
                });
            }
        }
        futures_util::stream::iter(pushes.into_iter().map(Ok))
    })
}

/// The Mesh service.
pub struct MeshService {
    pub state: Arc<State>,
    pub ca: Arc<crate::ca_source::CaSource>,
    pub cert_ttl: Duration,
}

type PushStream = Pin<Box<dyn Stream<Item = Result<pb::ConfigPush, Status>> + Send>>;

#[tonic::async_trait]
impl Mesh for MeshService {
    type StreamConfigStream = PushStream;

    async fn stream_config(
        &self,
        req: Request<Streaming<pb::ProxyMessage>>,
    ) -> Result<Response<PushStream>, Status> {
        let bound = req.extensions().get::<BoundProxy>().cloned();
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("stream closed before hello"))?;
        let Some(pb::proxy_message::Msg::Hello(node)) = first.msg else {
            return Err(Status::invalid_argument(
                "the first message on the config stream must be hello",
            ));
        };
        check_bound(bound.as_ref(), &node)?;
        let (tx, rx) = watch::channel(None);
        let state = self.state.clone();
        let proxy = node.id.clone();
        let proxy_name = node.id.clone();
        let id = state.connect(node, tx).map_err(Status::already_exists)?;
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(pb::ProxyMessage {
                        msg: Some(pb::proxy_message::Msg::Ack(ack)),
                    })) => {
                        // A gateway says where its servers are (before the ACK counts
                        // towards convergence: moved endpoints are pushed first).
                        state.set_listeners(id, ack.listeners.into_iter().collect());
                        if ack.accepted {
                            info!(%proxy, version = %ack.version, "ACK");
                            if let Some(proxies) = state.ack(id, &ack.version) {
                                crate::emit(&crate::Event::Converged {
                                    proxies: proxies.into_iter().collect(),
                                });
                            }
                        } else {
                            state.metrics.rejects.inc();
                            warn!(%proxy, version = %ack.version, error = %ack.error, "NACK: proxy rejected config and keeps its last good one");
                        }
                    }
                    Ok(Some(_)) => warn!(%proxy, "unexpected message on config stream"),
                    Ok(None) | Err(_) => break,
                }
            }
            state.disconnect(id);
        });
        Ok(Response::new(Box::pin(deltas(
            rx,
            self.state.max_push_bytes,
            proxy_name,
            self.state.metrics.clone(),
        ))))
    }

    async fn create_certificate(
        &self,
        req: Request<pb::CertificateRequest>,
    ) -> Result<Response<pb::CertificateResponse>, Status> {
        let bound = req.extensions().get::<BoundProxy>().cloned();
        let req = req.into_inner();
        let node = req
            .node
            .ok_or_else(|| Status::invalid_argument("certificate request without node"))?;
        check_bound(bound.as_ref(), &node)?;
        let resources = self.state.resources();
        let sa = resources
            .iter()
            .find_map(|r| match &r.spec {
                Spec::WorkloadEntry(we) if r.name() == node.workload && r.namespace() == node.namespace => {
                    Some(we.service_account.clone().unwrap_or_else(|| "default".into()))
                }
                _ => None,
            })
            .ok_or_else(|| {
                Status::permission_denied(format!(
                    "no WorkloadEntry {}/{} in the mesh config; a proxy gets an identity only for a registered workload",
                    node.namespace, node.workload
                ))
            })?;
        let id = SpiffeId::new(&self.state.trust_domain, &node.namespace, &sa)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let issued = self
            .ca
            .get()
            .sign_csr(&req.csr_pem, &id, self.cert_ttl)
            .map_err(|e| Status::invalid_argument(format!("CSR rejected: {e}")))?;
        info!(proxy = %node.id, identity = %id, "certificate issued");
        Ok(Response::new(pb::CertificateResponse {
            cert_chain_pem: issued.cert_chain_pem,
            root_pem: issued.root_pem,
            spiffe_id: id.to_string(),
            not_after_unix: issued
                .not_after
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        }))
    }
}
