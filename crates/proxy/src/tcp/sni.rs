//! Reading the server name of a client's TLS ClientHello without terminating TLS (Envoy's
//! TLS inspector): the bytes read are kept and sent on first, so the upstream sees the
//! connection unchanged. rustls' [`Acceptor`] parses the ClientHello.

use rustls::server::Acceptor;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// How long a client may take to send its ClientHello before the connection is routed
/// without SNI.
pub const INSPECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A ClientHello larger than this is not inspected (routed without SNI).
const MAX_HELLO: usize = 16 * 1024;

/// What the inspector saw: the SNI (lower-case) if the client sent a ClientHello with one,
/// and the bytes it read, to be sent upstream first.
pub struct Inspected {
    pub sni: Option<String>,
    pub prefix: Vec<u8>,
}

/// Reads until a whole ClientHello is in, the bytes are not TLS, the client closes its
/// side, or [`INSPECT_TIMEOUT`] passes.
pub async fn inspect(tcp: &mut TcpStream) -> Inspected {
    let mut prefix = Vec::new();
    let sni = tokio::time::timeout(INSPECT_TIMEOUT, read_hello(tcp, &mut prefix))
        .await
        .ok()
        .flatten();
    Inspected { sni, prefix }
}

async fn read_hello(tcp: &mut TcpStream, prefix: &mut Vec<u8>) -> Option<String> {
    let mut acceptor = Acceptor::default();
    let mut chunk = [0u8; 4096];
    while prefix.len() < MAX_HELLO {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        prefix.extend_from_slice(&chunk[..n]);
        acceptor.read_tls(&mut &chunk[..n]).ok()?;
        match acceptor.accept() {
            Ok(None) => continue,
            Ok(Some(accepted)) => {
                return accepted
                    .client_hello()
                    .server_name()
                    .map(str::to_ascii_lowercase)
            }
            Err(_) => return None,
        }
    }
    None
}
