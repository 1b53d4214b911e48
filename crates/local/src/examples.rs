//! The built-in NECPGAME example (the files of `examples/necpgame/`, compiled in), written
//! out for `weft demo`, and the certificate its gateway's HTTPS server names.

use anyhow::Context;
use std::path::Path;

/// (file name, contents) of the example.
pub const NECPGAME: &[(&str, &str)] = &[
    (
        "registry.yaml",
        include_str!("../../../examples/necpgame/registry.yaml"),
    ),
    (
        "istio-gateway.yaml",
        include_str!("../../../examples/necpgame/istio-gateway.yaml"),
    ),
    (
        "destination-rule.yaml",
        include_str!("../../../examples/necpgame/destination-rule.yaml"),
    ),
    (
        "peer-authentication.yaml",
        include_str!("../../../examples/necpgame/peer-authentication.yaml"),
    ),
    (
        "authorization-policy.yaml",
        include_str!("../../../examples/necpgame/authorization-policy.yaml"),
    ),
    (
        "service-entry.yaml",
        include_str!("../../../examples/necpgame/service-entry.yaml"),
    ),
];

/// Writes the example into `dir` (replacing files of the same name).
pub fn write_necpgame(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in NECPGAME {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("writing {}", dir.join(name).display()))?;
    }
    Ok(())
}

/// How to reach an HTTPS gateway port with curl: the host its certificate names and the
/// CA that signed it.
#[derive(Debug, Clone)]
pub struct HttpsHint {
    pub host: String,
    pub ca: std::path::PathBuf,
    pub path: String,
}

impl HttpsHint {
    /// `curl --cacert CA --resolve HOST:PORT:IP https://HOST:PORT/PATH` for a listener at
    /// `addr` (`ip:port`).
    pub fn curl(&self, addr: &str) -> String {
        let (ip, port) = addr.rsplit_once(':').unwrap_or((addr, "443"));
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        format!(
            "curl --cacert {} --resolve {host}:{port}:{ip} https://{host}:{port}{}",
            self.ca.display(),
            self.path,
            host = self.host
        )
    }
}

/// The credential the NECPGAME gateway's HTTPS server names (`credentialName`).
pub const NECPGAME_CREDENTIAL: &str = "necpgame-cert";
/// The host of the NECPGAME gateway.
pub const NECPGAME_HOST: &str = "game.necpgame.local";

/// Makes the NECPGAME gateway's certificate unless it is there: a demo root CA
/// (`<state>/tls/necpgame-root.crt`, for `curl --cacert`) and a certificate for
/// `game.necpgame.local` it signs, written as the credential's files
/// (`<config>/credentials/necpgame-cert/tls.crt`, `tls.key`), as the secure-gateways task
/// makes them with openssl.
pub fn necpgame_tls(config_dir: &Path, state_dir: &Path) -> anyhow::Result<HttpsHint> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let cred = config_dir.join("credentials").join(NECPGAME_CREDENTIAL);
    let root = state_dir.join("tls").join("necpgame-root.crt");
    let hint = HttpsHint {
        host: NECPGAME_HOST.into(),
        ca: std::path::absolute(&root).unwrap_or(root.clone()),
        path: "/api/v1/player".into(),
    };
    if root.exists() && cred.join("tls.crt").exists() && cred.join("tls.key").exists() {
        return Ok(hint);
    }
    let fail = |what: &str| format!("making the demo's HTTPS certificate: {what}");
    let ca_key = KeyPair::generate().with_context(|| fail("CA key"))?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "weft demo root (necpgame)");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).with_context(|| fail("CA"))?;
    let key = KeyPair::generate().with_context(|| fail("key"))?;
    let mut leaf = CertificateParams::new(vec![NECPGAME_HOST.to_string()])
        .with_context(|| fail("certificate"))?;
    leaf.distinguished_name
        .push(DnType::CommonName, NECPGAME_HOST);
    let cert = leaf
        .signed_by(&key, &Issuer::new(ca, ca_key))
        .with_context(|| fail("signing"))?;
    for (dir, files) in [
        (
            &cred,
            vec![("tls.crt", cert.pem()), ("tls.key", key.serialize_pem())],
        ),
        (
            &root.parent().map(Path::to_path_buf).unwrap_or_default(),
            vec![("necpgame-root.crt", ca_cert.pem())],
        ),
    ] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, text) in files {
            std::fs::write(dir.join(name), text)
                .with_context(|| format!("writing {}", dir.join(name).display()))?;
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let key = cred.join("tls.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", key.display()))?;
    Ok(hint)
}
