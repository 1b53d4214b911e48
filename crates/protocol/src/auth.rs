//! Bootstrap authentication of proxies to the control plane: a shared secret (a token file
//! the operator or `weft up` creates, mode 0600) sent as `authorization: Bearer <token>` on
//! every call. It keeps other local users' processes from asking for a workload's identity
//! or registering endpoints. (Per-workload attestation — Kubernetes service-account tokens —
//! replaces it with the Kubernetes work.)

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
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(token.as_bytes())?;
    std::fs::rename(&tmp, path)?;
    Ok(token)
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

/// Server side: refuses calls without the right token (when one is configured).
#[derive(Clone)]
pub struct RequireToken(Option<String>);

impl RequireToken {
    pub fn new(token: Option<String>) -> RequireToken {
        RequireToken(token)
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for RequireToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.0 else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong control-plane token: start the proxy with --token-file pointing at the control plane's token",
            ))
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
    Ok(crate::MeshClient::with_interceptor(channel, interceptor))
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
