//! When the supervisor restarts a process that exited (or failed to start): after an
//! exponential backoff — 100 ms, doubling up to 5 s, back to 100 ms once the process has
//! stayed up for 30 s — and not at all after 6 exits within 60 s. Pure bookkeeping: the
//! caller passes the current time and arms the timer itself.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The first restart delay.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A process that stays up this long starts over at [`INITIAL_BACKOFF`].
pub const RESET_AFTER: Duration = Duration::from_secs(30);
/// Give up on a process after [`MAX_EXITS`] exits within this window.
pub const EXIT_WINDOW: Duration = Duration::from_secs(60);
/// See [`EXIT_WINDOW`].
pub const MAX_EXITS: usize = 6;

/// The delay before the restart following `consecutive` quick exits (0 = the first one):
/// 100 ms · 2^consecutive, at most 5 s.
pub fn backoff_delay(consecutive: u32) -> Duration {
    INITIAL_BACKOFF
        .saturating_mul(2u32.saturating_pow(consecutive))
        .min(MAX_BACKOFF)
}

/// What to do about a process that just exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    RestartIn(Duration),
    /// It exited [`MAX_EXITS`] times within [`EXIT_WINDOW`]: leave it stopped.
    GiveUp,
}

/// The restart history of one supervised process.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    exits: VecDeque<Instant>,
    consecutive: u32,
    started: Option<Instant>,
}

impl Backoff {
    /// The process was (re)started at `now`.
    pub fn started(&mut self, now: Instant) {
        self.started = Some(now);
    }

    /// The process exited at `now` (or a start attempt failed, which counts the same).
    pub fn exited(&mut self, now: Instant) -> Decision {
        if self
            .started
            .take()
            .is_some_and(|s| now.saturating_duration_since(s) >= RESET_AFTER)
        {
            self.consecutive = 0;
        }
        self.exits.push_back(now);
        while self
            .exits
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > EXIT_WINDOW)
        {
            self.exits.pop_front();
        }
        if self.exits.len() >= MAX_EXITS {
            return Decision::GiveUp;
        }
        let delay = backoff_delay(self.consecutive);
        self.consecutive = self.consecutive.saturating_add(1);
        Decision::RestartIn(delay)
    }
}
