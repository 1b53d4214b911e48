//! The JWKS of RequestAuthentication rules that name a `jwksUri` (or neither keys nor a
//! URI: the `jwks_uri` of the issuer's OpenID discovery document), fetched by the control
//! plane and pushed inline to proxies — istiod's default (`PILOT_JWT_ENABLE_REMOTE_JWKS`
//! off). A source is fetched when the config first names it, before that config is pushed;
//! then refreshed every `refresh` (Istio: 20 min, `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`). A
//! fetch that fails keeps the last good keys and says so in the log, and is retried after
//! a minute (at most the refresh interval), backing off to an hour; a source never fetched
//! has no keys, so its tokens fail. Plain HTTP and HTTPS (the system's roots), no proxy,
//! no redirects, one connection per fetch.

use crate::state::State;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};
use weft_api::Resource;
use weft_model::{FetchedJwks, JwksKey};

/// Istio's default refresh interval.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(20 * 60);
/// First retry after a failure (Istio's `JwtPubKeyRefreshIntervalOnFailure`).
const RETRY: Duration = Duration::from_secs(60);
/// Longest wait between retries of a failing source.
const MAX_RETRY: Duration = Duration::from_secs(60 * 60);
/// Largest document accepted.
const MAX_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
struct Entry {
    doc: Option<String>,
    next: Instant,
    failures: u32,
}

/// The fetched documents and when each is due again.
pub struct Jwks {
    entries: Mutex<HashMap<JwksKey, Entry>>,
    refresh: Duration,
}

impl Jwks {
    pub fn new(refresh: Duration) -> Arc<Jwks> {
        Arc::new(Jwks {
            entries: Mutex::new(HashMap::new()),
            refresh: refresh.max(Duration::from_millis(100)),
        })
    }

    /// What has been fetched so far.
    pub fn fetched(&self) -> FetchedJwks {
        let entries = self.entries.lock().expect("jwks poisoned");
        entries
            .iter()
            .filter_map(|(k, e)| Some((k.clone(), e.doc.clone()?)))
            .collect()
    }

    /// Fetches, all at once, every source `resources` names that was never tried (so the
    /// config that names it is pushed with its keys), and forgets the ones it no longer
    /// names. Returns what is fetched now.
    pub async fn prefetch(&self, resources: &[Resource]) -> FetchedJwks {
        let wanted = weft_model::authn::remote_jwks(resources);
        let new: Vec<(JwksKey, u64)> = {
            let mut entries = self.entries.lock().expect("jwks poisoned");
            entries.retain(|k, _| wanted.contains_key(k));
            wanted
                .iter()
                .filter(|(k, _)| !entries.contains_key(*k))
                .map(|(k, t)| (k.clone(), *t))
                .collect()
        };
        let fetches = new.into_iter().map(|(key, timeout)| async move {
            let result = fetch(&key, Duration::from_millis(timeout)).await;
            (key, result)
        });
        for (key, result) in futures_util::future::join_all(fetches).await {
            self.record(&key, result);
        }
        self.fetched()
    }

    /// Refreshes due sources until dropped, pushing through `state` when keys change.
    pub async fn run(self: Arc<Self>, state: Arc<State>) {
        loop {
            let wanted = weft_model::authn::remote_jwks(&state.resources());
            let now = Instant::now();
            let due: Vec<(JwksKey, u64)> = {
                let entries = self.entries.lock().expect("jwks poisoned");
                wanted
                    .iter()
                    .filter(|(k, _)| entries.get(*k).is_none_or(|e| e.next <= now))
                    .map(|(k, t)| (k.clone(), *t))
                    .collect()
            };
            let mut changed = false;
            for (key, timeout) in due {
                let result = fetch(&key, Duration::from_millis(timeout)).await;
                changed |= self.record(&key, result);
            }
            if changed {
                state.set_jwks(self.fetched());
            }
            let next = {
                let entries = self.entries.lock().expect("jwks poisoned");
                entries.values().map(|e| e.next).min()
            };
            let next = next.unwrap_or_else(|| Instant::now() + self.refresh);
            tokio::time::sleep_until(next.max(Instant::now() + Duration::from_millis(50))).await;
        }
    }

    /// Records a fetch; true when the keys changed.
    fn record(&self, key: &JwksKey, result: Result<String, String>) -> bool {
        let mut entries = self.entries.lock().expect("jwks poisoned");
        let entry = entries.entry(key.clone()).or_insert(Entry {
            doc: None,
            next: Instant::now(),
            failures: 0,
        });
        match result {
            Ok(doc) => {
                let changed = entry.doc.as_ref() != Some(&doc);
                if changed {
                    info!(issuer = %key.issuer, url = %key.url(), "fetched the JWKS");
                }
                entry.doc = Some(doc);
                entry.failures = 0;
                entry.next = Instant::now() + self.refresh;
                changed
            }
            Err(error) => {
                let wait = RETRY.min(self.refresh) * 2u32.saturating_pow(entry.failures.min(8));
                entry.failures += 1;
                entry.next = Instant::now() + wait.min(MAX_RETRY);
                if entry.doc.is_some() {
                    warn!(issuer = %key.issuer, url = %key.url(), %error, retry_in_ms = wait.as_millis() as u64, "cannot refresh the JWKS; keeping the last good keys");
                } else {
                    warn!(issuer = %key.issuer, url = %key.url(), %error, retry_in_ms = wait.as_millis() as u64, "cannot fetch the JWKS; tokens of this issuer fail until it is fetched");
                }
                false
            }
        }
    }
}

/// Fetches the JWKS document of `key` (through the discovery document when it names no
/// URI) and checks it is one.
pub async fn fetch(key: &JwksKey, timeout: Duration) -> Result<String, String> {
    let uri = match &key.uri {
        Some(u) => u.clone(),
        None => {
            let doc = get(&key.url(), timeout).await?;
            let v: serde_json::Value = serde_json::from_str(&doc)
                .map_err(|e| format!("the discovery document is not JSON: {e}"))?;
            v.get("jwks_uri")
                .and_then(|u| u.as_str())
                .ok_or("the discovery document has no jwks_uri")?
                .to_string()
        }
    };
    let doc = get(&uri, timeout).await?;
    let v: serde_json::Value =
        serde_json::from_str(&doc).map_err(|e| format!("{uri} is not JSON: {e}"))?;
    if !v.get("keys").is_some_and(|k| k.is_array()) {
        return Err(format!("{uri} is not a JWKS document (no \"keys\" list)"));
    }
    Ok(doc)
}

/// `GET url`, within `timeout`: the body of a 2xx answer.
async fn get(url: &str, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, get_once(url)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "GET {url}: no answer within {} ms",
            timeout.as_millis()
        )),
    }
}

async fn get_once(url: &str) -> Result<String, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url} is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{url}: only http and https are fetched")),
    };
    let authority = uri.authority().ok_or(format!("{url} has no host"))?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("GET {url}: cannot connect: {e}"))?;
    let req = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority.as_str())
        .header(http::header::USER_AGENT, "weft-control")
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {url}: {e}"))?;
    let resp = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("GET {url}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("GET {url}: TLS: {e}"))?;
        send(TokioIo::new(stream), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
    .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BYTES)
        .collect()
        .await
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        let head: String = text.chars().take(100).collect();
        return Err(format!("GET {url}: status {}: {head}", status.as_u16()));
    }
    Ok(text)
}

async fn send<T>(
    io: TokioIo<T>,
    req: http::Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string());
    if resp.is_err() {
        conn.abort();
    }
    resp
}

/// The system's roots (`SSL_CERT_FILE`, else Debian's bundle), as istiod uses them.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let file = std::env::var("SSL_CERT_FILE")
        .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".to_string());
    let mut roots = rustls::RootCertStore::empty();
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(&file)
        .map_err(|e| format!("reading the system's root certificates {file}: {e}"))?;
    for c in certs.flatten() {
        let _ = roots.add(c);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
