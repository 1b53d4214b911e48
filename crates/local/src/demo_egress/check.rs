//! Protocol checks against the demo's servers outside the mesh (directly, while they
//! start, and through a sidecar once the mesh is ready): Redis `PING` in raw RESP,
//! PostgreSQL `select 1` with psql (or, without psql, a StartupMessage answered with
//! AuthenticationOk), and one DNS A query.

use anyhow::{bail, Context};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(10);

async fn connect(addr: &str) -> anyhow::Result<TcpStream> {
    tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .with_context(|| format!("connecting to {addr} timed out"))?
        .with_context(|| format!("connecting to {addr}"))
}

/// `PING` → `+PONG`: "PONG", or what went wrong.
pub(super) async fn redis_ping(addr: &str) -> anyhow::Result<String> {
    let mut s = connect(addr).await?;
    let answer = tokio::time::timeout(TIMEOUT, async {
        s.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64];
        while !buf.ends_with(b"\r\n") {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(buf)
    })
    .await
    .context("no answer to PING within 10s")?
    .context("talking to Redis")?;
    let text = String::from_utf8_lossy(&answer).trim_end().to_string();
    match text.strip_prefix('+') {
        Some("PONG") => Ok("PONG".into()),
        _ if text.is_empty() => bail!("the connection closed without an answer to PING"),
        _ => bail!("PING was answered {text:?}, not +PONG"),
    }
}

/// `select 1` with psql when it is installed, else the StartupMessage check.
pub(super) async fn postgres(addr: &str) -> anyhow::Result<String> {
    if super::servers::on_path("psql").is_none() {
        return postgres_startup(addr).await;
    }
    let (host, port) = addr.rsplit_once(':').context("an address without a port")?;
    let conn = format!("host={host} port={port} user=postgres dbname=postgres connect_timeout=10");
    let out = tokio::time::timeout(
        TIMEOUT * 2,
        tokio::process::Command::new("psql")
            .args([&conn, "-X", "-v", "ON_ERROR_STOP=1", "-Atc", "select 1"])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("psql did not finish within 20s")?
    .context("running psql")?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        bail!(
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if stdout != "1" {
        bail!("psql's select 1 printed {stdout:?}");
    }
    Ok("select 1 = 1 (psql)".into())
}

/// A protocol-3.0 StartupMessage as `postgres`; the server must answer AuthenticationOk.
pub(super) async fn postgres_startup(addr: &str) -> anyhow::Result<String> {
    let mut s = connect(addr).await?;
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes()); // protocol 3.0
    for p in ["user", "postgres", "database", "postgres"] {
        body.extend_from_slice(p.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    let head = tokio::time::timeout(TIMEOUT, async {
        s.write_all(&msg).await?;
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    })
    .await
    .context("no answer to the StartupMessage within 10s")?
    .context("talking to PostgreSQL")?;
    let code = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
    match (head[0], code) {
        (b'R', 0) => Ok("AuthenticationOk".into()),
        (b'R', c) => bail!("PostgreSQL asks for authentication (method {c})"),
        (b'E', _) => bail!("PostgreSQL answered the StartupMessage with an error"),
        (t, _) => bail!("PostgreSQL answered with message type {:?}", t as char),
    }
}

/// The first A record `server` gives for `name` (one UDP query), if any.
pub(super) async fn dns_query(server: SocketAddr, name: &str) -> Option<Ipv4Addr> {
    let sock = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .ok()?;
    // id 0x7765, RD, one question.
    let mut q = vec![0x77, 0x65, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    sock.send_to(&q, server).await.ok()?;
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    let r = &buf[..n];
    if n < 16 {
        return None;
    }
    let answers = u16::from_be_bytes([r[6], r[7]]);
    // Same id, a response, rcode 0, an answer; the one A record's address ends it.
    if r[..2] != q[..2] || r[2] & 0x80 == 0 || r[3] & 0x0f != 0 || answers == 0 {
        return None;
    }
    Some(Ipv4Addr::new(r[n - 4], r[n - 3], r[n - 2], r[n - 1]))
}
