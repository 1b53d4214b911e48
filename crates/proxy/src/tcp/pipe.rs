//! Piping one TCP connection's bytes both ways, as Envoy's TCP proxy does: each direction
//! runs until its reader ends, then half-closes the other side's writer (FIN one way keeps
//! the other way open); the connection ends when both directions have, when either side
//! fails, or when no byte moved either way for the idle timeout. Bytes are counted per
//! read batch on the connection's [`TcpRecord`].

use crate::telemetry::tcp_metrics::TcpRecord;
use crate::telemetry::ResponseFlags;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Why a piped connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed their writing side.
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// The downstream failed (reset).
    Downstream,
    /// The upstream failed (reset).
    Upstream,
}

const CHUNK: usize = 16 * 1024;

/// One direction: `from` to `to` until `from` ends; then `to` is half-closed.
async fn copy<R, W>(
    mut from: R,
    mut to: W,
    count: impl Fn(usize),
    activity: &AtomicU64,
    start: Instant,
) -> Result<(), bool>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        // Err(true): the reading side failed; Err(false): the writing side.
        let n = from.read(&mut buf).await.map_err(|_| true)?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await.map_err(|_| false)?;
        count(n);
        activity.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Fires once nothing has moved for `idle` (never without one).
async fn idle_timer(idle: Option<Duration>, activity: &AtomicU64, start: Instant) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    loop {
        let last = start + Duration::from_millis(activity.load(Ordering::Relaxed));
        if Instant::now() >= last + idle {
            return;
        }
        tokio::time::sleep_until(last + idle).await;
    }
}

/// Pipes `downstream` and `upstream` until the connection ends; `first` (bytes already
/// read from the downstream, e.g. by the TLS inspector) goes upstream before anything else.
pub async fn pipe<D, U>(
    downstream: D,
    mut upstream: U,
    first: &[u8],
    idle: Option<Duration>,
    rec: &mut TcpRecord,
) -> End
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    if !first.is_empty() {
        if upstream.write_all(first).await.is_err() {
            rec.flag(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
            return End::Upstream;
        }
        rec.received(first.len());
    }
    let start = Instant::now();
    let activity = AtomicU64::new(0);
    let (dr, dw) = tokio::io::split(downstream);
    let (ur, uw) = tokio::io::split(upstream);
    let end = {
        let record = &*rec;
        let mut up = std::pin::pin!(copy(dr, uw, |n| record.received(n), &activity, start));
        let mut down = std::pin::pin!(copy(ur, dw, |n| record.sent(n), &activity, start));
        let (mut up_done, mut down_done) = (false, false);
        loop {
            // A failure on either side ends both directions at once.
            tokio::select! {
                r = &mut up, if !up_done => match r {
                    Ok(()) => up_done = true,
                    Err(true) => break End::Downstream,
                    Err(false) => break End::Upstream,
                },
                r = &mut down, if !down_done => match r {
                    Ok(()) => down_done = true,
                    Err(true) => break End::Upstream,
                    Err(false) => break End::Downstream,
                },
                () = idle_timer(idle, &activity, start) => break End::Idle,
            }
            if up_done && down_done {
                break End::Closed;
            }
        }
    };
    if end == End::Upstream {
        rec.flag(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
    }
    end
}
