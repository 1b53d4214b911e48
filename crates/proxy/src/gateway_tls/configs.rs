//! The rustls server configs of gateway TLS chains, built from files and kept while the
//! files stay the same: a chain's certificate, key and client CA are looked at again at
//! most once a second on handshakes, and a change (a rotated certificate) builds a new
//! config for new connections while open ones keep theirs — the role of Envoy's SDS.
//! `credentialName`s are folders of the credentials directory (`--credentials-dir`),
//! holding Istio's Secret keys as files: `tls.crt`/`tls.key`/`ca.crt`, or the generic
//! `cert`/`key`/`cacert`; a client CA may also sit in `<name>-cacert/`.

use crate::tls::Credentials;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use weft_model::gateway_tls::{CertSource, ClientValidation, TlsChain, TlsMode, TlsVersion};

/// How often a chain's files are looked at again (on a handshake).
const RECHECK: Duration = Duration::from_secs(1);

/// ALPN offered by gateway HTTPS servers (Istio's gateway: h2, then http/1.1).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Built configs by chain name.
#[derive(Default)]
pub struct TlsConfigs {
    dir: Option<PathBuf>,
    built: Mutex<HashMap<String, Built>>,
    /// The last error reported per chain, so a push reports only what changed.
    reported: Mutex<HashMap<String, String>>,
}

struct Built {
    spec: TlsChain,
    /// The mesh credentials an ISTIO_MUTUAL config was built from.
    mesh: usize,
    stamps: Vec<Stamp>,
    checked: Instant,
    result: Result<Arc<ServerConfig>, String>,
}

/// What a file looked like: missing, or its modification time and length.
type Stamp = Option<(SystemTime, u64)>;

impl TlsConfigs {
    /// Configs whose `credentialName`s are folders of `dir`.
    pub fn new(dir: Option<PathBuf>) -> TlsConfigs {
        TlsConfigs {
            dir,
            built: Mutex::default(),
            reported: Mutex::default(),
        }
    }

    /// Whether `error` (the chain's current one, `None` when it is served) is news.
    pub fn newly_unserved(&self, chain: &str, error: Option<&str>) -> bool {
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            None => {
                reported.remove(chain);
                false
            }
            Some(e) if reported.get(chain).map(String::as_str) == Some(e) => false,
            Some(e) => {
                reported.insert(chain.to_string(), e.to_string());
                true
            }
        }
    }

    /// The config for `chain`, rebuilt if its files changed; an error names the missing
    /// or broken file (that server then takes no connections; the others keep serving).
    pub fn get(
        &self,
        chain: &TlsChain,
        mesh: &Arc<Credentials>,
    ) -> Result<Arc<ServerConfig>, String> {
        let mesh_id = Arc::as_ptr(mesh) as usize;
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = built.get_mut(&chain.name) {
            if b.spec == *chain && b.mesh == mesh_id {
                if b.checked.elapsed() < RECHECK {
                    return b.result.clone();
                }
                b.checked = Instant::now();
                if self.files(chain).map(|f| stamps(&f)).ok() == Some(b.stamps.clone()) {
                    return b.result.clone();
                }
            }
        }
        let (stamps, mut result) = match self.files(chain) {
            Ok(files) => (stamps(&files), build(chain, &files, mesh)),
            Err(e) => (Vec::new(), Err(e)),
        };
        // A broken update (say, a certificate written before its key) keeps the last good
        // config, as Envoy rejects a bad SDS update; the next change is tried again.
        let previous = built
            .get(&chain.name)
            .filter(|b| b.spec == *chain && b.mesh == mesh_id)
            .and_then(|b| b.result.clone().ok());
        match (&result, previous) {
            (Ok(_), _) => tracing::info!(chain = %chain.name, "gateway TLS certificate loaded"),
            (Err(e), Some(good)) => {
                tracing::warn!(chain = %chain.name, error = %e, "gateway TLS certificate update refused; keeping the previous one");
                result = Ok(good);
            }
            (Err(e), None) => {
                tracing::warn!(chain = %chain.name, error = %e, "gateway TLS server not served")
            }
        }
        built.insert(
            chain.name.clone(),
            Built {
                spec: chain.clone(),
                mesh: mesh_id,
                stamps,
                checked: Instant::now(),
                result: result.clone(),
            },
        );
        result
    }

    /// The chain's certificate, key and client CA files (none for ISTIO_MUTUAL).
    fn files(&self, chain: &TlsChain) -> Result<Files, String> {
        let (cert, key) = match &chain.certificate {
            CertSource::Mesh => return Ok(Files::default()),
            CertSource::Files { cert, key } => (PathBuf::from(cert), PathBuf::from(key)),
            CertSource::Credential { name } => {
                let dir = self.credential(name)?;
                let pick = |a: &str, b: &str| {
                    let p = dir.join(a);
                    if p.exists() {
                        p
                    } else {
                        dir.join(b)
                    }
                };
                (pick("tls.crt", "cert"), pick("tls.key", "key"))
            }
        };
        let ca = match &chain.client {
            Some(v) => Some(self.client_ca(v)?),
            None => None,
        };
        Ok(Files {
            cert: Some(cert),
            key: Some(key),
            ca,
        })
    }

    fn credential(&self, name: &str) -> Result<PathBuf, String> {
        let Some(dir) = &self.dir else {
            return Err(format!(
                "credentialName {name}: this proxy has no credentials directory (start it with --credentials-dir DIR holding {name}/tls.crt and {name}/tls.key)"
            ));
        };
        let d = dir.join(name);
        if !d.is_dir() {
            return Err(format!(
                "credentialName {name}: no folder {} (put tls.crt and tls.key, or cert and key, there)",
                d.display()
            ));
        }
        Ok(d)
    }

    fn client_ca(&self, v: &ClientValidation) -> Result<PathBuf, String> {
        if let Some(f) = &v.ca_file {
            return Ok(PathBuf::from(f));
        }
        let Some(name) = &v.ca_credential else {
            return Err("MUTUAL without caCertificates or a credentialName: no client CA".into());
        };
        let dir = self.credential(name)?;
        let sibling = dir.with_file_name(format!("{name}-cacert"));
        [
            dir.join("ca.crt"),
            dir.join("cacert"),
            sibling.join("ca.crt"),
            sibling.join("cacert"),
        ]
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| {
            format!(
                "credentialName {name}: no client CA (ca.crt or cacert in {} or {})",
                dir.display(),
                sibling.display()
            )
        })
    }
}

#[derive(Default)]
struct Files {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
}

fn stamps(f: &Files) -> Vec<Stamp> {
    [&f.cert, &f.key, &f.ca]
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(p.as_ref()?).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

fn build(chain: &TlsChain, f: &Files, mesh: &Credentials) -> Result<Arc<ServerConfig>, String> {
    if chain.mode == TlsMode::IstioMutual {
        return weft_identity::server_config(&mesh.identity, &ALPN)
            .map_err(|e| format!("the gateway's mesh certificate: {e}"));
    }
    let (Some(cert), Some(key)) = (&f.cert, &f.key) else {
        return Err("no certificate".into());
    };
    let chain_der = crate::tls::pem_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("private key {}: {e}", key.display()))?;
    let provider = Arc::new(provider(&chain.tls12_suites));
    let key_provider = provider.key_provider;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = chain
        .versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match (&chain.client, &f.ca) {
        (Some(v), Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for c in crate::tls::pem_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            }
            let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let inner = if chain.mode == TlsMode::OptionalMutual {
                inner.allow_unauthenticated()
            } else {
                inner
            };
            let inner = inner
                .build()
                .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(Arc::new(super::verify::Checks::new(inner, v)))
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certified(cert, chain_der, key, key_provider)?);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The certificate and its key, checked to belong together. Not through rustls's
/// `with_single_cert`: webpki refuses X.509 v1 certificates, which `openssl x509 -req`
/// makes (Istio's secure-gateways task) and Envoy serves; a server's own certificate is
/// only sent, never verified here.
fn certified(
    path: &Path,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    keys: &dyn rustls::crypto::KeyProvider,
) -> Result<Arc<dyn rustls::server::ResolvesServerCert>, String> {
    let signer = keys
        .load_private_key(key)
        .map_err(|e| format!("private key for {}: {e}", path.display()))?;
    let leaf_spki = x509_parser::parse_x509_certificate(chain[0].as_ref())
        .map(|(_, c)| c.public_key().raw.to_vec())
        .map_err(|e| format!("certificate {}: {e}", path.display()))?;
    if let Some(spki) = signer.public_key() {
        if spki.as_ref() != leaf_spki.as_slice() {
            return Err(format!(
                "certificate {}: the private key is not the certificate's key",
                path.display()
            ));
        }
    }
    Ok(Arc::new(One(Arc::new(rustls::sign::CertifiedKey::new(
        chain, signer,
    )))))
}

/// The one certificate of a chain (the chain itself was chosen by SNI).
#[derive(Debug)]
struct One(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for One {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// ring with every TLS 1.3 suite and, if `tls12` names any, only those TLS 1.2 suites.
fn provider(tls12: &[String]) -> rustls::crypto::CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    if !tls12.is_empty() {
        p.cipher_suites.retain(|s| {
            s.version() == &rustls::version::TLS13
                || tls12.iter().any(|n| *n == format!("{:?}", s.suite()))
        });
    }
    p
}
