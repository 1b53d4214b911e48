//! Bootstrap authentication of proxies to the control plane: a token sent as
//! `authorization: Bearer <token>` on every call. Either one secret for the whole mesh
//! (`weft control --token-file`), which keeps other local users' processes out, or one
//! token per workload (`--workload-tokens`, what `weft up` creates), bound to the proxy it
//! was made for: a process holding one workload's token cannot get another workload's
//! identity or claim its endpoint. (Kubernetes service-account tokens take this role on
//! Kubernetes.)

use std::path::Path;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The client every proxy uses.
pub type ControlClient = crate::MeshClient<InterceptedService<Channel, AddToken>>;

/// Reads a token file (surrounding whitespace ignored); errors say which file and why.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    let token = text.trim().to_string();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "token file {} must hold one printable ASCII token",
            path.display()
        ));
    }
    Ok(token)
}

/// Writes a fresh random token (32 bytes from /dev/urandom, hex) to `path`, mode 0600.
pub fn create_token(path: &Path) -> std::io::Result<String> {
    let token = random_token()?;
    write_private(path, &token)?;
    Ok(token)
}

/// Writes `text` to `path` (mode 0600, replaced atomically).
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

/// Client side: adds the bearer token (if any) to every call.
#[derive(Clone)]
pub struct AddToken(Option<MetadataValue<Ascii>>);

impl AddToken {
    pub fn new(token: Option<&str>) -> Result<AddToken, String> {
        let value = token
            .map(|t| {
                format!("Bearer {t}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|e| format!("token is not a valid header value: {e}"))
            })
            .transpose()?;
        Ok(AddToken(value))
    }
}

impl Interceptor for AddToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The proxy a per-workload token was issued to (put in the request's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundProxy {
    /// `sidecar` or `gateway`.
    pub role: String,
    pub namespace: String,
    pub workload: String,
}

impl std::fmt::Display for BoundProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.role, self.namespace, self.workload)
    }
}

/// Reads a per-workload token file: one `<token> <role> <namespace>/<workload>` per line.
pub fn read_workload_tokens(path: &Path) -> Result<Vec<(String, BoundProxy)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read workload token file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || {
            format!(
                "{}:{}: expected `<token> <role> <namespace>/<workload>`",
                path.display(),
                i + 1
            )
        };
        let mut parts = line.split_whitespace();
        let (Some(token), Some(role), Some(who), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let (namespace, workload) = who.split_once('/').ok_or_else(bad)?;
        out.push((
            token.to_string(),
            BoundProxy {
                role: role.into(),
                namespace: namespace.into(),
                workload: workload.into(),
            },
        ));
    }
    Ok(out)
}

/// Writes a fresh random token (hex of 32 random bytes).
pub fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Server side: refuses calls without a right token (when tokens are configured).
#[derive(Clone)]
pub struct RequireToken {
    mesh: Option<String>,
    workloads: std::sync::Arc<Vec<(String, BoundProxy)>>,
}

impl RequireToken {
    /// One token for the whole mesh (or `None`: open).
    pub fn new(token: Option<String>) -> RequireToken {
        RequireToken {
            mesh: token,
            workloads: Default::default(),
        }
    }

    /// Per-workload tokens, and optionally a mesh-wide one beside them.
    pub fn with_workloads(
        mesh: Option<String>,
        workloads: Vec<(String, BoundProxy)>,
    ) -> RequireToken {
        RequireToken {
            mesh,
            workloads: std::sync::Arc::new(workloads),
        }
    }

    fn open(&self) -> bool {
        self.mesh.is_none() && self.workloads.is_empty()
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for RequireToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if self.open() {
            return Ok(req);
        }
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_string();
        // Every candidate is compared, so timing does not say which one was close.
        let mut bound = None;
        for (token, who) in self.workloads.iter() {
            if constant_time_eq(given.as_bytes(), token.as_bytes()) {
                bound = Some(who.clone());
            }
        }
        let mesh = self
            .mesh
            .as_ref()
            .is_some_and(|m| constant_time_eq(given.as_bytes(), m.as_bytes()));
        match bound {
            Some(who) => {
                req.extensions_mut().insert(who);
                Ok(req)
            }
            None if mesh => Ok(req),
            None => Err(Status::unauthenticated(
                "missing or wrong control-plane token: start the proxy with --token-file pointing at the token made for it",
            )),
        }
    }
}

/// Connects a proxy's client to the control plane at `addr` (`host:port`).
pub async fn connect(addr: &str, token: Option<&str>) -> Result<ControlClient, String> {
    let interceptor = AddToken::new(token)?;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("control plane address {addr:?}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot reach the control plane at {addr}: {e}"))?;
    Ok(crate::MeshClient::with_interceptor(channel, interceptor)
        .max_decoding_message_size(crate::MAX_PUSH_BYTES + 1024)
        .max_encoding_message_size(crate::MAX_PUSH_BYTES + 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_exactly() {
        let mut server = RequireToken::new(Some("s3cret".into()));
        let with = |t: Option<&str>| AddToken::new(t).unwrap().call(Request::new(())).unwrap();
        assert!(server.call(with(Some("s3cret"))).is_ok());
        let err = server.call(with(Some("s3cre"))).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(server.call(with(None)).is_err());
        assert!(
            RequireToken::new(None).call(with(None)).is_ok(),
            "no token configured: open"
        );
        let who = BoundProxy {
            role: "sidecar".into(),
            namespace: "game".into(),
            workload: "player-v1".into(),
        };
        let mut per = RequireToken::with_workloads(None, vec![("p1".into(), who.clone())]);
        let ok = per.call(with(Some("p1"))).unwrap();
        assert_eq!(ok.extensions().get::<BoundProxy>(), Some(&who));
        assert!(per.call(with(Some("s3cret"))).is_err());
        assert!(per.call(with(None)).is_err());
    }

    #[test]
    fn created_tokens_are_private_and_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("weft-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let token = create_token(&path).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(read_token(&path).unwrap(), token);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&path, "  \n").unwrap();
        assert!(read_token(&path).unwrap_err().contains("printable"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
