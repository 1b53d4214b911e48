//! The `SpiffeWorkloadAPI` gRPC service: X.509-SVID and X.509 bundle streams built from
//! the proxy's current [`Credentials`], a full message first and again after every
//! rotation (the standard's rule: each message carries everything, never a delta); the
//! JWT-SVID and WIT-SVID RPCs answer UNIMPLEMENTED saying so.

use crate::tls::{Credentials, TlsState};
use futures_util::Stream;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use weft_protocol::workload::spiffe_workload_api_server::SpiffeWorkloadApi;
use weft_protocol::workload::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, WitBundlesRequest, WitBundlesResponse, WitsvidRequest,
    WitsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svid, X509svidRequest,
    X509svidResponse,
};

/// A stream of full responses, one now and one per rotation.
pub type Updates<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Serves one workload's identity (the proxy's own credentials) to whoever reached the
/// socket.
pub struct WorkloadApi {
    tls: Arc<TlsState>,
    closing: watch::Receiver<bool>,
}

impl WorkloadApi {
    pub fn new(tls: Arc<TlsState>, closing: watch::Receiver<bool>) -> WorkloadApi {
        WorkloadApi { tls, closing }
    }

    /// `build(current credentials)` now, and again after each rotation, until the proxy
    /// closes the API (or drops its credentials).
    fn updates<T: Send + 'static>(&self, build: fn(&Credentials) -> T) -> Updates<T> {
        let tls = self.tls.clone();
        let start = (tls.subscribe(), self.closing.clone(), true);
        Box::pin(futures_util::stream::unfold(
            start,
            move |(mut rotations, mut closing, first)| {
                let tls = tls.clone();
                async move {
                    if !first {
                        tokio::select! {
                            changed = rotations.changed() => changed.ok()?,
                            _ = closing.wait_for(|c| *c) => return None,
                        }
                    }
                    // Marked seen before reading: a rotation landing in between is sent
                    // again (at worst a duplicate), never missed.
                    rotations.borrow_and_update();
                    let item = build(&tls.current.load());
                    Some((Ok(item), (rotations, closing, false)))
                }
            },
        ))
    }
}

/// DER certificates concatenated: the standard's encoding of chains and bundles.
fn concat_der<'a>(
    certs: impl IntoIterator<Item = &'a rustls::pki_types::CertificateDer<'a>>,
) -> Vec<u8> {
    certs
        .into_iter()
        .flat_map(|c| c.as_ref().to_vec())
        .collect()
}

/// `spiffe://<trust domain>`: how the standard keys bundles.
fn trust_domain_id(creds: &Credentials) -> String {
    format!("spiffe://{}", creds.identity.spiffe_id().trust_domain)
}

/// The workload's X.509-SVID: chain (leaf first), its private key, the mesh bundle.
pub fn x509_svid_response(creds: &Credentials) -> X509svidResponse {
    let id = &creds.identity;
    X509svidResponse {
        svids: vec![X509svid {
            spiffe_id: creds.uri.clone(),
            x509_svid: concat_der(id.cert_chain()),
            x509_svid_key: id.private_key_pkcs8_der().to_vec(),
            bundle: concat_der(id.roots()),
            hint: String::new(),
        }],
        crl: Vec::new(),
        federated_bundles: HashMap::new(),
    }
}

/// The trust bundles, keyed by trust domain: the mesh's own (no federation yet).
pub fn x509_bundles_response(creds: &Credentials) -> X509BundlesResponse {
    X509BundlesResponse {
        crl: Vec::new(),
        bundles: HashMap::from([(trust_domain_id(creds), concat_der(creds.identity.roots()))]),
    }
}

fn not_built(profile: &str) -> Status {
    Status::unimplemented(format!(
        "weft serves the X.509-SVID profile of the SPIFFE Workload API; the {profile} profile is not built yet"
    ))
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = Updates<X509svidResponse>;
    type FetchX509BundlesStream = Updates<X509BundlesResponse>;
    type FetchJWTBundlesStream = Updates<JwtBundlesResponse>;
    type FetchWITSVIDStream = Updates<WitsvidResponse>;
    type FetchWITBundlesStream = Updates<WitBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        _: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        Ok(Response::new(self.updates(x509_svid_response)))
    }

    async fn fetch_x509_bundles(
        &self,
        _: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        Ok(Response::new(self.updates(x509_bundles_response)))
    }

    async fn fetch_jwtsvid(
        &self,
        _: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        Err(not_built("JWT-SVID"))
    }

    async fn fetch_jwt_bundles(
        &self,
        _: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Err(not_built("JWT-SVID"))
    }

    async fn validate_jwtsvid(
        &self,
        _: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        Err(not_built("JWT-SVID"))
    }

    async fn fetch_witsvid(
        &self,
        _: Request<WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        Err(not_built("WIT-SVID"))
    }

    async fn fetch_wit_bundles(
        &self,
        _: Request<WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        Err(not_built("WIT-SVID"))
    }
}
