//! The config-source seam: where the control plane's resources come from. The default is
//! the watched folder ([`crate::watch`]); any other source (the Kubernetes API server, in
//! `weft-kube`) hands over a [`Feed`]: a watch channel of already loaded and validated
//! [`Snapshot`]s, applied here exactly as a folder reload is (one model, one compiler).

use crate::state::State;
use crate::Event;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{info, warn};
use weft_api::Resource;

/// Everything a config source holds at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The resources that loaded and validated.
    pub resources: Vec<Resource>,
    /// Objects that did not, one line each (`Kind/ns/name: path: message`): never served.
    pub rejected: Vec<String>,
    /// What Istio accepts but warns about, one line each.
    pub warnings: Vec<String>,
    /// Kinds weft knows but does not support, one line each.
    pub unsupported: Vec<String>,
}

/// A source's snapshots; the current value is the one in force.
pub type Feed = watch::Receiver<Arc<Snapshot>>;

/// Logs what a snapshot rejects and warns about that `before` did not; true when it
/// rejects something new.
pub(crate) fn log(snapshot: &Snapshot, before: Option<&Snapshot>) -> bool {
    let old = |list: fn(&Snapshot) -> &Vec<String>, item: &String| {
        before.is_some_and(|b| list(b).contains(item))
    };
    let mut new_rejections = false;
    for r in &snapshot.rejected {
        if !old(|s| &s.rejected, r) {
            warn!(error = %r, "object rejected; it reaches no proxy");
            new_rejections = true;
        }
    }
    for w in &snapshot.warnings {
        if !old(|s| &s.warnings, w) {
            warn!(warning = %w, "config accepted with a warning");
        }
    }
    new_rejections
}

/// Applies every new snapshot of `feed` until the feed's sender is gone.
pub(crate) async fn follow(mut feed: Feed, state: Arc<State>, jwks: Arc<crate::jwks::Jwks>) {
    let mut before = feed.borrow_and_update().clone();
    while feed.changed().await.is_ok() {
        let snapshot = feed.borrow_and_update().clone();
        if log(&snapshot, Some(&before)) {
            // Every object rejected now; the new ones were just logged.
            crate::emit(&Event::ConfigRejected {
                errors: snapshot.rejected.clone(),
            });
        }
        before = snapshot.clone();
        let previous = state.resources();
        if *previous == snapshot.resources {
            continue;
        }
        info!(
            resources = snapshot.resources.len(),
            "config source changed"
        );
        state.set_jwks(jwks.prefetch(&snapshot.resources).await);
        let (mut not_enforced, not_enforced_new) =
            crate::watch::apply(&state, snapshot.resources.clone());
        not_enforced.extend(snapshot.unsupported.iter().cloned());
        crate::emit(&Event::ConfigApplied {
            resources: snapshot.resources.len(),
            not_enforced,
            not_enforced_new,
        });
    }
    warn!("the config source stopped; the last config stays in force");
}
