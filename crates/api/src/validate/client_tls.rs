//! DestinationRule client TLS rules, as istio/istio's `ValidateTLS`
//! (`pkg/config/validation/agent/validation.go`): credentialName excludes file
//! certificates in SIMPLE/MUTUAL, MUTUAL needs a client certificate and key,
//! insecureSkipVerify excludes CA material, `configmap://` credentials stay in the
//! rule's namespace. Certificate fields under ISTIO_MUTUAL are accepted and ignored, as
//! Istio does (a warning).

use super::{Errs, WarningKind};
use crate::{ClientTlsMode, ClientTlsSettings};

pub(super) fn client_tls(errs: &mut Errs, at: &str, t: &ClientTlsSettings, namespace: &str) {
    let mode = t.mode.unwrap_or(ClientTlsMode::Disable);
    if let Some(name) = t.credential_name.as_deref() {
        configmap_credential(errs, &format!("{at}.credentialName"), name, namespace);
    }
    let ca_or_sans = t.ca_certificates.is_some() || !t.subject_alt_names.is_empty();
    if t.insecure_skip_verify == Some(true) {
        if mode == ClientTlsMode::Simple && (ca_or_sans || t.credential_name.is_some()) {
            errs.key(format!("{at}.insecureSkipVerify"), "insecureSkipVerify=true cannot be combined with CA material (caCertificates, credentialName) or subjectAltNames in SIMPLE mode: remove them or the flag");
        }
        if mode == ClientTlsMode::Mutual && ca_or_sans {
            errs.key(format!("{at}.insecureSkipVerify"), "insecureSkipVerify=true cannot be combined with CA material (caCertificates) or subjectAltNames in MUTUAL mode: remove them or the flag");
        }
    }
    let simple_or_mutual = matches!(mode, ClientTlsMode::Simple | ClientTlsMode::Mutual);
    let files = t.client_certificate.is_some()
        || t.private_key.is_some()
        || t.ca_certificates.is_some()
        || t.ca_crl.is_some();
    if simple_or_mutual && t.credential_name.is_some() {
        if files {
            errs.key(format!("{at}.credentialName"), "credentialName cannot be combined with clientCertificate, privateKey, caCertificates or caCrl: the credential carries them");
        }
        return;
    }
    if mode == ClientTlsMode::Mutual {
        if t.client_certificate.is_none() {
            errs.key(
                at,
                "MUTUAL TLS without credentialName requires clientCertificate",
            );
        }
        if t.private_key.is_none() {
            errs.key(at, "MUTUAL TLS without credentialName requires privateKey");
        }
    }
    if mode == ClientTlsMode::IstioMutual && (files || t.credential_name.is_some()) {
        errs.warn(WarningKind::Ignored, at, "ISTIO_MUTUAL uses the mesh's own workload certificates, so clientCertificate, privateKey, caCertificates, caCrl and credentialName are ignored (the DestinationRule reference, ClientTLSSettings.ISTIO_MUTUAL: all other fields should be empty); remove them, or use mode MUTUAL to present your own");
    }
}

/// `configmap://[namespace/]name` must name a ConfigMap of the rule's own namespace.
fn configmap_credential(errs: &mut Errs, at: &str, name: &str, namespace: &str) {
    let Some(rest) = name.strip_prefix("configmap://") else {
        return;
    };
    let (ns, cm) = rest.split_once('/').unwrap_or((namespace, rest));
    if cm.is_empty() || cm.contains('/') {
        errs.at(at, format!("invalid configmap:// credentialName {name:?}: use configmap://<name> or configmap://<namespace>/<name>"));
    } else if ns != namespace {
        errs.at(at, format!("invalid configmap:// credentialName {name:?}: namespace must match the configuration namespace {namespace:?}"));
    }
}
