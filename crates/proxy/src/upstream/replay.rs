//! Request bodies that stream upstream as they arrive while a copy is kept for retries and
//! mirrors (after linkerd2-proxy's `ReplayBody`). Each try gets a [`ReplayBody`] from the
//! shared [`Replay`]: it yields what was kept, then reads on from the downstream body. The
//! copy is capped (per request, and by a proxy-wide budget); past the cap nothing more is
//! kept and the request simply is not retried or mirrored. A body is replayable once it
//! has ended within the cap, so a retry never waits on — or races — the previous try.

use crate::body::{Body, BoxError};
use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::watch;
use tokio::time::Instant;

/// Bytes all in-flight requests of a proxy may keep for replay together.
#[derive(Debug, Clone)]
pub struct ReplayBudget(Arc<AtomicIsize>);

impl ReplayBudget {
    pub fn new(bytes: usize) -> ReplayBudget {
        ReplayBudget(Arc::new(AtomicIsize::new(
            isize::try_from(bytes).unwrap_or(isize::MAX),
        )))
    }

    fn take(&self, n: usize) -> bool {
        let n = isize::try_from(n).unwrap_or(isize::MAX);
        if self.0.fetch_sub(n, Ordering::AcqRel) >= n {
            return true;
        }
        self.0.fetch_add(n, Ordering::AcqRel);
        false
    }

    fn give(&self, n: usize) {
        self.0
            .fetch_add(isize::try_from(n).unwrap_or(0), Ordering::AcqRel);
    }
}

struct State {
    /// The downstream body, until it ends or fails.
    source: Option<Body>,
    /// Kept chunks; `chunks[0]` is chunk number `base` of the body.
    chunks: Vec<Bytes>,
    base: usize,
    kept: usize,
    limit: usize,
    capped: bool,
    trailers: Option<HeaderMap>,
    ended_at: Option<Instant>,
    error: Option<String>,
}

struct Inner {
    state: Mutex<State>,
    ended: watch::Sender<bool>,
    budget: ReplayBudget,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let kept = self.state.get_mut().map(|s| s.kept).unwrap_or(0);
        self.budget.give(kept);
    }
}

/// A request body shared by the tries (and mirrors) of one request.
#[derive(Clone)]
pub struct Replay(Arc<Inner>);

impl Replay {
    /// Wraps a downstream body; keeps at most `limit` bytes, within `budget`.
    /// A body that declares more than `limit` (its Content-Length) is never kept at all.
    pub fn new(source: Body, limit: usize, budget: &ReplayBudget) -> Replay {
        let done = hyper::body::Body::is_end_stream(&source);
        let too_long = hyper::body::Body::size_hint(&source).lower() > limit as u64;
        let state = State {
            source: (!done).then_some(source),
            chunks: Vec::new(),
            base: 0,
            kept: 0,
            limit,
            capped: too_long,
            trailers: None,
            ended_at: done.then(Instant::now),
            error: None,
        };
        Replay(Arc::new(Inner {
            state: Mutex::new(state),
            ended: watch::Sender::new(done),
            budget: budget.clone(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A body for the next try: what was kept, then the rest as it arrives.
    pub fn body(&self) -> ReplayBody {
        ReplayBody {
            replay: self.clone(),
            pos: 0,
            finished: false,
        }
    }

    /// Whether a new try can send the whole body again: it ended, within the cap.
    pub fn replayable(&self) -> bool {
        let s = self.lock();
        s.ended_at.is_some() && !s.capped && s.error.is_none()
    }

    /// When the downstream body ended (the route and per-try timers start then, as Envoy's do).
    pub fn ended_at(&self) -> Option<Instant> {
        self.lock().ended_at
    }

    /// Waits until the downstream body has ended (or failed).
    pub async fn ended(&self) {
        let mut rx = self.0.ended.subscribe();
        let _ = rx.wait_for(|ended| *ended).await;
    }

    fn finish(&self, s: &mut State, error: Option<String>) {
        s.source = None;
        s.error = error;
        s.ended_at = Some(Instant::now());
        self.0.ended.send_replace(true);
    }

    /// Stops keeping a copy (no further try or mirror will need it): the kept chunks and
    /// their budget are given back; a body still streaming to the last try flows on.
    pub fn release(&self) {
        let mut s = self.lock();
        if !s.capped {
            s.capped = true;
            self.0.budget.give(s.kept);
            s.kept = 0;
            s.base += s.chunks.len();
            s.chunks = Vec::new();
        }
    }

    /// Reads the rest of the downstream body into the copy when no try is reading it any
    /// more (the last try failed before sending it all), so a mirror waiting for the whole
    /// body gets it, as Envoy's shadow does whatever happens to the primary.
    pub async fn drain(&self) {
        if self.ended_at().is_some() {
            return;
        }
        let mut body = self.body();
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            if frame.is_err() {
                return;
            }
        }
    }

    /// Keeps a copy of chunk number `base + chunks.len()` if it fits.
    fn keep(&self, s: &mut State, data: &Bytes) {
        if !s.capped && s.kept + data.len() <= s.limit && self.0.budget.take(data.len()) {
            s.kept += data.len();
            s.chunks.push(data.clone());
            return;
        }
        if !s.capped {
            s.capped = true;
            self.0.budget.give(s.kept);
            s.kept = 0;
            s.base += s.chunks.len();
            s.chunks = Vec::new();
        }
        s.base += 1;
    }
}

/// One try's view of a [`Replay`].
pub struct ReplayBody {
    replay: Replay,
    /// Number of the next chunk this body yields.
    pos: usize,
    finished: bool,
}

impl hyper::body::Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let replay = self.replay.clone();
        let mut s = replay.lock();
        if self.pos < s.base {
            return Poll::Ready(Some(Err(
                "the request body was too large to send again".into()
            )));
        }
        if let Some(chunk) = s.chunks.get(self.pos - s.base).cloned() {
            self.pos += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(e) = &s.error {
            return Poll::Ready(Some(Err(e.clone().into())));
        }
        if s.ended_at.is_some() {
            self.finished = true;
            return Poll::Ready(s.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        }
        let Some(source) = s.source.as_mut() else {
            return Poll::Ready(Some(Err("the request body is gone".into())));
        };
        match Pin::new(source).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                replay.finish(&mut s, None);
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                replay.finish(&mut s, Some(format!("reading the request body: {e}")));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    replay.keep(&mut s, &data);
                    self.pos += 1;
                    if s.source.as_ref().is_some_and(|b| b.is_end_stream()) {
                        replay.finish(&mut s, None);
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => {
                    if let Some(t) = frame.trailers_ref() {
                        s.trailers = Some(t.clone());
                        replay.finish(&mut s, None);
                        self.finished = true;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.finished {
            return true;
        }
        let s = self.replay.lock();
        s.ended_at.is_some()
            && s.error.is_none()
            && s.trailers.is_none()
            && self.pos >= s.base + s.chunks.len()
    }

    fn size_hint(&self) -> SizeHint {
        let s = self.replay.lock();
        match &s.source {
            Some(src) if self.pos == 0 && s.chunks.is_empty() && s.base == 0 => src.size_hint(),
            None if s.error.is_none() && !s.capped && s.base == 0 => {
                let rest: usize = s.chunks.iter().skip(self.pos).map(Bytes::len).sum();
                SizeHint::with_exact(rest as u64)
            }
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full;
    use http_body_util::BodyExt;
    use hyper::body::Body as _;

    fn chunked(parts: &[&'static str], trailers: Option<HeaderMap>) -> Body {
        let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        if let Some(t) = trailers {
            frames.push(Ok(Frame::trailers(t)));
        }
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    async fn collect(b: ReplayBody) -> (Bytes, Option<HeaderMap>) {
        let c = b.collect().await.expect("body");
        let t = c.trailers().cloned();
        (c.to_bytes(), t)
    }

    #[tokio::test]
    async fn a_body_streams_once_and_replays_with_its_trailers() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        let r = Replay::new(
            chunked(&["ab", "cd"], Some(t)),
            1024,
            &ReplayBudget::new(1 << 20),
        );
        assert!(!r.replayable(), "not until it has ended");
        let (first, t1) = collect(r.body()).await;
        assert_eq!(first, "abcd");
        assert!(r.replayable());
        let (again, t2) = collect(r.body()).await;
        assert_eq!(again, "abcd");
        assert_eq!(t1, t2);
        assert_eq!(t2.unwrap()["grpc-status"], "0");
    }

    #[tokio::test]
    async fn past_the_cap_the_body_streams_on_but_is_not_replayable() {
        let budget = ReplayBudget::new(1 << 20);
        let r = Replay::new(chunked(&["aaaa", "bbbb", "cccc"], None), 6, &budget);
        let (all, _) = collect(r.body()).await;
        assert_eq!(all, "aaaabbbbcccc", "nothing is lost past the cap");
        assert!(!r.replayable());
        assert!(
            r.body().collect().await.is_err(),
            "a replay past the cap fails"
        );
        drop(r);
        assert_eq!(budget.0.load(Ordering::Relaxed), 1 << 20, "budget returned");
    }

    #[tokio::test]
    async fn a_body_declaring_more_than_the_cap_is_never_kept() {
        let budget = ReplayBudget::new(1 << 20);
        let r = Replay::new(full("x".repeat(2048)), 1024, &budget);
        let mut body = r.body();
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.data_ref().map(|d| d.len()), Some(2048));
        assert_eq!(
            budget.0.load(Ordering::Relaxed),
            1 << 20,
            "nothing of a body known to be over the cap is copied"
        );
        assert!(!r.replayable());
    }

    #[tokio::test]
    async fn the_proxy_wide_budget_caps_what_is_kept() {
        let budget = ReplayBudget::new(3);
        let r = Replay::new(full("abcd"), 1024, &budget);
        let (all, _) = collect(r.body()).await;
        assert_eq!(all, "abcd");
        assert!(!r.replayable(), "over the shared budget: not kept");
        let empty = Replay::new(crate::body::empty(), 1024, &budget);
        assert!(empty.replayable(), "an empty body is complete at once");
        assert!(empty.body().is_end_stream());
    }
}
