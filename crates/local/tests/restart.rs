//! The restart policy: exponential backoff, reset after a long run, give up on a crash loop.

use std::time::{Duration, Instant};
use weft_local::restart::{backoff_delay, Backoff, Decision, EXIT_WINDOW, MAX_EXITS, RESET_AFTER};

const MS: fn(u64) -> Duration = Duration::from_millis;

#[test]
fn backoff_doubles_from_100ms_up_to_5s() {
    let delays: Vec<Duration> = (0..8).map(backoff_delay).collect();
    assert_eq!(
        delays,
        [100, 200, 400, 800, 1600, 3200, 5000, 5000]
            .map(MS)
            .to_vec()
    );
    assert_eq!(backoff_delay(u32::MAX), Duration::from_secs(5));
}

/// Feeds a start/exit history: each entry is (uptime before the exit, then the delay the
/// policy must answer). The restart happens exactly after the answered delay.
fn replay(b: &mut Backoff, t: &mut Instant, uptime: Duration) -> Decision {
    b.started(*t);
    *t += uptime;
    let d = b.exited(*t);
    if let Decision::RestartIn(delay) = d {
        *t += delay;
    }
    d
}

#[test]
fn a_crash_loop_backs_off_then_is_given_up_on_the_sixth_quick_exit() {
    let mut b = Backoff::default();
    let mut t = Instant::now();
    let quick = MS(10);
    let decisions: Vec<Decision> = (0..MAX_EXITS)
        .map(|_| replay(&mut b, &mut t, quick))
        .collect();
    assert_eq!(
        decisions,
        vec![
            Decision::RestartIn(MS(100)),
            Decision::RestartIn(MS(200)),
            Decision::RestartIn(MS(400)),
            Decision::RestartIn(MS(800)),
            Decision::RestartIn(MS(1600)),
            Decision::GiveUp,
        ]
    );
}

#[test]
fn staying_up_30s_resets_the_backoff() {
    let mut b = Backoff::default();
    let mut t = Instant::now();
    for want in [100, 200, 400] {
        assert_eq!(
            replay(&mut b, &mut t, MS(10)),
            Decision::RestartIn(MS(want))
        );
    }
    assert_eq!(
        replay(&mut b, &mut t, RESET_AFTER),
        Decision::RestartIn(MS(100)),
        "after 30s up, the next restart is quick again"
    );
    assert_eq!(replay(&mut b, &mut t, MS(10)), Decision::RestartIn(MS(200)));
    assert_eq!(
        replay(&mut b, &mut t, RESET_AFTER - MS(1)),
        Decision::RestartIn(MS(400)),
        "just under 30s does not count as stable"
    );
}

#[test]
fn only_exits_within_60s_count_towards_giving_up() {
    let mut b = Backoff::default();
    let mut t = Instant::now();
    // Exits every 20s forever: at most 3 fall in any 60s window.
    for _ in 0..20 {
        let d = replay(&mut b, &mut t, Duration::from_secs(20));
        assert!(matches!(d, Decision::RestartIn(_)), "{d:?}");
    }
    // Five quick exits right after a long history: the old exits have aged out.
    let mut b = Backoff::default();
    let mut t = Instant::now();
    for _ in 0..MAX_EXITS - 1 {
        replay(&mut b, &mut t, MS(10));
    }
    t += EXIT_WINDOW;
    assert!(matches!(
        replay(&mut b, &mut t, MS(10)),
        Decision::RestartIn(_)
    ));
}

#[test]
fn failed_starts_count_as_exits() {
    // A start that fails never calls `started`: the exits still back off and give up.
    let mut b = Backoff::default();
    let mut t = Instant::now();
    let mut decisions = Vec::new();
    for _ in 0..MAX_EXITS {
        let d = b.exited(t);
        if let Decision::RestartIn(delay) = d {
            t += delay;
        }
        decisions.push(d);
    }
    assert_eq!(decisions.last(), Some(&Decision::GiveUp));
    assert_eq!(decisions[1], Decision::RestartIn(MS(200)));
}
