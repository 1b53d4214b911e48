//! Serving certificates for the control plane's own HTTPS endpoints (the sidecar
//! injection webhook the Kubernetes API server calls): a fresh key and a leaf for DNS
//! names, signed by the mesh CA, so the webhook's `caBundle` is the mesh root.

use super::*;

impl Ca {
    /// A new P-256 key and a leaf for `dns_names` (serverAuth, CA:FALSE, `ttl` capped at
    /// the CA's expiry): `(certificate chain PEM, PKCS#8 key PEM)`.
    pub fn issue_server_cert(
        &self,
        dns_names: &[String],
        ttl: Duration,
    ) -> Result<(String, String)> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let now = OffsetDateTime::now_utc();
        let mut not_after = now.saturating_add(ttl.try_into().unwrap_or(time::Duration::MAX));
        if not_after > self.signing_not_after {
            not_after = self.signing_not_after;
        }
        let mut params = CertificateParams::new(dns_names.to_vec())?;
        params.not_before = now - CLOCK_SKEW;
        params.not_after = not_after;
        params.serial_number = Some(random_serial(&self.provider)?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let leaf = params.signed_by(&key, &self.issuer)?;
        let chain = pem::encode_certs(std::iter::once(leaf.der()).chain(self.chain.iter()));
        Ok((chain, key.serialize_pem()))
    }
}
