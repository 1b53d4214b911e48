//! The SPIFFE Workload API a sidecar serves to its own app (the standard's
//! `SPIFFE_Workload_API.md` and `SPIFFE_Workload_Endpoint.md`): gRPC on a Unix domain
//! socket, the X.509-SVID profile fed by the proxy's current credentials — the workload's
//! certificate chain, its PKCS#8 private key and the mesh trust bundle — and sent again on
//! every rotation (`service`). The JWT-SVID and WIT-SVID profiles answer UNIMPLEMENTED.
//!
//! Who may call: the socket is created mode 0600, so only processes of the proxy's user can
//! connect, and every caller gets this workload's SVID (one sidecar serves one workload; the
//! standard leaves caller attestation to the implementation, SPIRE's agent inspects the
//! caller's pid instead). Every call must carry the metadata `workload.spiffe.io: true` or is
//! refused with InvalidArgument, the standard's guard against a browser or a confused
//! proxy being tricked into calling the socket. `source` is the other direction: a proxy
//! taking its own identity from someone else's Workload API (a SPIRE agent). Each connection goes through `authority`,
//! which lets gRPC C-core clients (py-spiffe) past the HTTP/2 server's `:authority` check.

mod authority;
mod service;
pub mod source;

pub use service::WorkloadApi;

use crate::tls::TlsState;
use anyhow::Context;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tonic::{Request, Status};
use tracing::{debug, info, warn};
use weft_protocol::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use weft_protocol::workload::{MAX_SOCKET_PATH, SECURITY_HEADER};

/// A bound Workload API socket. The socket file is removed when this (or the future of
/// [`Endpoint::serve`]) is dropped.
pub struct Endpoint {
    listener: UnixListener,
    file: SocketFile,
}

struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Endpoint {
    /// Creates the socket at `path` (mode 0600). A stale socket left by a proxy that died is
    /// replaced; a socket some live process still serves, or any other file, is an error.
    pub async fn bind(path: &Path) -> anyhow::Result<Endpoint> {
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            anyhow::bail!(
                "the Workload API socket path {} is {len} bytes; Unix socket paths must be at most {MAX_SOCKET_PATH} bytes, choose a shorter one",
                path.display()
            );
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if tokio::net::UnixStream::connect(path).await.is_ok() {
                    anyhow::bail!(
                        "another process already serves {}; is a second proxy running for this workload?",
                        path.display()
                    );
                }
                std::fs::remove_file(path)
                    .with_context(|| format!("removing the stale socket {}", path.display()))?;
            }
            Ok(_) => anyhow::bail!(
                "{} exists and is not a socket; refusing to replace it with the Workload API socket",
                path.display()
            ),
            Err(_) => {}
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the socket folder {}", dir.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding the Workload API socket {}", path.display()))?;
        let file = SocketFile(path.to_path_buf());
        // The socket is the credential's only guard: owner read/write, nobody else. (Put it
        // in a 0700 folder, as `weft up` does, to close the moment between bind and chmod.)
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {} to its owner", path.display()))?;
        Ok(Endpoint { listener, file })
    }

    pub fn path(&self) -> &Path {
        &self.file.0
    }

    /// Serves the Workload API from `tls` until `closing` turns true: open streams end
    /// then, connections close, and the socket file is removed.
    pub async fn serve(self, tls: Arc<TlsState>, closing: watch::Receiver<bool>) {
        let Endpoint { listener, file } = self;
        let service = WorkloadApi::new(tls, closing.clone());
        let mut stop = closing;
        info!(socket = %file.0.display(), "serving the SPIFFE Workload API");
        let served = tonic::transport::Server::builder()
            .add_service(SpiffeWorkloadApiServer::with_interceptor(
                service,
                require_security_header,
            ))
            .serve_with_incoming_shutdown(incoming(listener), async move {
                let _ = stop.wait_for(|c| *c).await;
            })
            .await;
        if let Err(e) = served {
            warn!(socket = %file.0.display(), error = %e, "the SPIFFE Workload API server stopped");
        }
    }
}

/// Accepted connections, each behind the `:authority` shim: the server gets one end of a
/// pipe, a task relays between the other end and the socket.
fn incoming(
    listener: UnixListener,
) -> impl futures_util::Stream<Item = std::io::Result<DuplexStream>> + Send + 'static {
    futures_util::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((socket, _)) => {
                    let (server_end, relay_end) = tokio::io::duplex(64 * 1024);
                    tokio::spawn(relay(socket, relay_end));
                    return Some((Ok(server_end), listener));
                }
                Err(e) => {
                    warn!(error = %e, "accepting a Workload API connection failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    })
}

/// Client bytes through the shim to the server, server bytes straight back. The client
/// closing lets the server finish; the server closing ends the connection.
async fn relay(socket: UnixStream, server: DuplexStream) {
    let (client_in, mut client_out) = socket.into_split();
    let (mut server_in, server_out) = tokio::io::split(server);
    let up = authority::relay_client(client_in, server_out);
    let down = async move {
        tokio::io::copy(&mut server_in, &mut client_out).await?;
        client_out.shutdown().await
    };
    tokio::pin!(up, down);
    let result = tokio::select! {
        r = &mut up => match r {
            Ok(()) => down.await,
            Err(e) => Err(e),
        },
        r = &mut down => r,
    };
    if let Err(e) = result {
        debug!(error = %e, "a Workload API connection ended");
    }
}

/// The standard's security rule: every call carries `workload.spiffe.io: true`.
fn require_security_header(req: Request<()>) -> Result<Request<()>, Status> {
    match req.metadata().get(SECURITY_HEADER).map(|v| v.to_str()) {
        Some(Ok("true")) => Ok(req),
        _ => Err(Status::invalid_argument(format!(
            "the SPIFFE Workload API requires the metadata header `{SECURITY_HEADER}: true` on every call"
        ))),
    }
}
