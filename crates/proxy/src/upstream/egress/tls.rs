//! TLS origination to a service outside the mesh (DestinationRule `tls.mode` SIMPLE or
//! MUTUAL): the server's certificate is verified against `caCertificates` (else the
//! system's roots) and — as Istio's default `VERIFY_CERTIFICATE_AT_CLIENT` does — against
//! the SNI, or against one of `subjectAltNames` when they are given; MUTUAL presents
//! `clientCertificate`/`privateKey`. Files are read when a config is applied: a missing
//! or bad file NACKs the push with the file's name.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use weft_model::OriginTls;

/// The rustls client config of a cluster's origination (offering ALPN `h2` for HTTP/2).
pub fn client_config(o: &OriginTls, http2: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if o.insecure_skip_verify {
        Arc::new(Insecure(provider))
    } else {
        let roots = Arc::new(roots(o.ca_certificates.as_deref())?);
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| format!("caCertificates: {e}"))?;
        if o.subject_alt_names.is_empty() {
            inner
        } else {
            Arc::new(AnySan {
                inner,
                sans: o.subject_alt_names.clone(),
            })
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&o.client_certificate, &o.private_key) {
        (Some(cert), Some(key)) => {
            let chain = crate::tls::pem_certs(cert.as_ref())?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("privateKey {key}: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("clientCertificate {cert} with privateKey: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err("tls.mode MUTUAL needs both clientCertificate and privateKey files".into())
        }
    };
    if http2 {
        config.alpn_protocols = vec![b"h2".to_vec()];
    }
    Ok(Arc::new(config))
}

/// `caCertificates`, or the system's root certificates.
fn roots(ca: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in crate::tls::pem_certs(path.as_ref())? {
                roots
                    .add(c)
                    .map_err(|e| format!("caCertificates {path}: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no caCertificates given and no system root certificates found: name a CA file in the DestinationRule's tls.caCertificates"
                        .into(),
                );
            }
        }
    }
    Ok(roots)
}

/// The chain must be valid and the certificate must carry one of the SANs (the name the
/// connection was made for is not checked then, as Envoy's `match_subject_alt_names`).
#[derive(Debug)]
struct AnySan {
    inner: Arc<WebPkiServerVerifier>,
    sans: Vec<String>,
}

impl ServerCertVerifier for AnySan {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut last = rustls::Error::General("no subjectAltNames to check".into());
        for san in &self.sans {
            let Ok(name) = ServerName::try_from(san.as_str()) else {
                continue;
            };
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, &name, ocsp, now)
            {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecureSkipVerify: true`: any certificate is accepted (the handshake's signatures
/// are still checked).
#[derive(Debug)]
struct Insecure(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Insecure {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
