//! Watches the config folder and reloads on change. A reload that fails to load or
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

/// Logs what is configured but not enforced yet (new items only, after the first call).
pub fn report_not_enforced(resources: &[Resource], previous: Option<&[Resource]>) {
    let before = previous.map(weft_model::not_enforced).unwrap_or_default();
    for n in weft_model::not_enforced(resources) {
        if !before.contains(&n) {
            warn!(resource = %n.resource, location = %n.location, what = %n.what, "loaded but not enforced yet");
        }
    }
}

/// Watches `dir` until the task is dropped; pushes each good reload.
pub async fn run(dir: PathBuf, state: Arc<State>) {
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
        // Editors write in several steps: let a burst of events settle before reloading.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while rx.try_recv().is_ok() {}
        match weft_api::load_valid(&dir) {
            Ok(resources) => {
                let previous = state.resources();
                if *previous == resources {
                    continue;
                }
                report_not_enforced(&resources, Some(&previous));
                info!(resources = resources.len(), "config reloaded");
                state.set_resources(resources);
                crate::emit(&Event::ConfigApplied {
                    resources: state.resources().len(),
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
