//! Watches the config folder and reloads on change, 10 ms after a burst of file events
//! ends (at most 100 ms after it began); only files whose bytes changed are parsed and
//! validated again ([`weft_api::Reloader`]). A reload that fails to load or
//! validate is rejected with file:line:col for each problem; the last good config stays in
//! force everywhere.

use crate::state::State;
use crate::Event;
use notify::{RecursiveMode, Watcher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};
use weft_api::Resource;

/// Logs what is configured but not enforced yet (the items `before` did not have; all of
/// them when there is no `before`); returns every item and the new ones, in words
/// (`Kind/ns/name (file:line): what`).
pub fn report_not_enforced(
    now: &[weft_model::NotEnforced],
    before: Option<&[weft_model::NotEnforced]>,
) -> (Vec<String>, Vec<String>) {
    let before = before.unwrap_or_default();
    let (mut all, mut new) = (Vec::new(), Vec::new());
    for n in now {
        let line = format!("{} ({}): {}", n.resource, n.location, n.what);
        if !before.contains(n) {
            warn!(resource = %n.resource, location = %n.location, what = %n.what, "loaded but not enforced yet");
            new.push(line.clone());
        }
        all.push(line);
    }
    (all, new)
}

/// Applies validated resources to the state and reports what they configure but is not
/// enforced yet: (every item, the items the previous resources did not have), from the
/// report the state computes once per config version.
pub(crate) fn apply(state: &State, resources: Vec<Resource>) -> (Vec<String>, Vec<String>) {
    let before = state.prepared();
    state.set_resources(resources);
    report_not_enforced(state.prepared().not_enforced(), Some(before.not_enforced()))
}

/// A burst of file events is over once none came for this long (editors write in steps).
const QUIET: Duration = Duration::from_millis(10);
/// A steady stream of events still reloads this often.
const MAX_SETTLE: Duration = Duration::from_millis(100);

/// Waits until the burst of events that started is over; false if the watcher is gone.
async fn settle(rx: &mut mpsc::UnboundedReceiver<()>) -> bool {
    let start = tokio::time::Instant::now();
    loop {
        match tokio::time::timeout(QUIET, rx.recv()).await {
            Ok(Some(())) if start.elapsed() < MAX_SETTLE => continue,
            Ok(None) => return false,
            _ => return true,
        }
    }
}

/// Watches `dir` until the task is dropped; pushes each good reload. `unsupported` is what
/// the folder held at start-up that weft knows but does not support.
pub async fn run(
    dir: PathBuf,
    state: Arc<State>,
    jwks: Arc<crate::jwks::Jwks>,
    mut unsupported: Vec<String>,
    mut reloader: weft_api::Reloader,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher =
        match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if !ev.kind.is_access() {
                    let _ = tx.send(());
                }
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                error!(error = %e, "cannot watch the config folder; changes will not be picked up");
                return;
            }
        };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::Recursive) {
        error!(dir = %dir.display(), error = %e, "cannot watch the config folder; changes will not be picked up");
        return;
    }
    while rx.recv().await.is_some() {
        if !settle(&mut rx).await {
            return;
        }
        match reloader.load(&dir) {
            Ok(weft_api::ValidConfig {
                resources,
                unsupported: now_unsupported,
                warnings,
            }) => {
                let previous = state.resources();
                if *previous == resources && now_unsupported == unsupported {
                    continue;
                }
                for w in &warnings {
                    warn!(warning = %w, "config accepted with a warning");
                }
                info!(resources = resources.len(), "config reloaded");
                // Keys a new jwksUri names are fetched before the config that names it goes out.
                state.set_jwks(jwks.prefetch(&resources).await);
                let (mut not_enforced, mut not_enforced_new) = apply(&state, resources);
                for u in &now_unsupported {
                    if !unsupported.contains(u) {
                        warn!(what = %u, "loaded but not supported");
                        not_enforced_new.push(u.clone());
                    }
                }
                not_enforced.extend(now_unsupported.iter().cloned());
                unsupported = now_unsupported;
                crate::emit(&Event::ConfigApplied {
                    resources: state.resources().len(),
                    not_enforced,
                    not_enforced_new,
                });
            }
            Err(errors) => {
                for e in &errors {
                    warn!(error = %e, "config change rejected; the last good config stays in force");
                }
                crate::emit(&Event::ConfigRejected { errors });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(streams: Option<u32>) -> Vec<Resource> {
        let pool = streams.map_or(String::new(), |n| {
            format!(
                "\n  trafficPolicy: {{connectionPool: {{http: {{maxConcurrentStreams: {n}}}}}}}"
            )
        });
        let text = format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r, namespace: game}}\nspec:\n  host: inventory{pool}\n"
        );
        let loaded = weft_api::load_str(&text, "rule.yaml");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        loaded.resources
    }

    #[tokio::test]
    async fn applying_reports_what_is_not_enforced_and_what_is_new() {
        let state = State::new(rule(None), "cluster.local", 4 << 20);
        assert!(state.prepared().not_enforced().is_empty());
        let (all, new) = apply(&state, rule(Some(10)));
        assert_eq!(all.len(), 1, "{all:?}");
        assert!(all[0].contains("maxConcurrentStreams"), "{all:?}");
        assert_eq!(new, all, "new in this reload");
        let (again, new) = apply(&state, rule(Some(10)));
        assert_eq!(again, all, "still reported");
        assert!(new.is_empty(), "not new the second time: {new:?}");
        let (all, new) = apply(&state, rule(None));
        assert!(all.is_empty() && new.is_empty(), "{all:?} {new:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_settles_after_its_last_event_and_a_stream_still_reloads() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = tokio::time::Instant::now();
        let burst = tokio::spawn(async move {
            for _ in 0..3 {
                tx.send(()).unwrap();
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
            tx
        });
        assert!(settle(&mut rx).await);
        let tx = burst.await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(18),
            "10 ms after the last of three events 4 ms apart"
        );
        let start = tokio::time::Instant::now();
        let stream = tokio::spawn(async move {
            for _ in 0..100 {
                if tx.send(()).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        assert!(settle(&mut rx).await);
        assert!(
            start.elapsed() <= MAX_SETTLE + Duration::from_millis(10),
            "a steady stream still reloads: {:?}",
            start.elapsed()
        );
        stream.abort();
    }
}
