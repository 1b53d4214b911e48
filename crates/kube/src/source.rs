//! The watches and the snapshot they make. One kube-rs reflector per watched collection
//! (each Istio kind at each served apiVersion, Services, Pods, Nodes, Namespaces); the
//! watcher under it lists, watches from the list's resourceVersion, follows bookmarks and
//! relists after `410 Gone`. Any change rebuilds the [`Snapshot`] from the stores.

use crate::kinds;
use crate::translate::{self, Translated};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};
use weft_api::Kind;
use weft_control::source::{Feed, Snapshot};

/// A Kubernetes client: from `kubeconfig` when given, else the usual places (in-cluster
/// service account, `$KUBECONFIG`, `~/.kube/config`).
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    use anyhow::Context;
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .with_context(|| format!("using the kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("finding the Kubernetes API server (in-cluster, $KUBECONFIG or ~/.kube/config); pass --kubeconfig")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}

/// Where one watch is: listing, listed, or its kind is not served by this cluster.
const PENDING: u8 = 0;
const LISTED: u8 = 1;
const NOT_SERVED: u8 = 2;

/// The running watches: their stores and the snapshot feed.
pub struct Source {
    /// Snapshots for the control plane; the current one is in force.
    pub feed: Feed,
    /// Namespaces (their labels decide sidecar injection).
    pub namespaces: Store<Namespace>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Source {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Source {
    /// The labels of each namespace, as the API server has them (for the webhook).
    pub fn namespace_labels(&self) -> crate::webhook::NamespaceLabels {
        let store = self.namespaces.clone();
        Arc::new(move |ns: &str| {
            store
                .state()
                .iter()
                .find(|n| n.name_any() == ns)
                .map(|n| n.labels().clone())
        })
    }
}

struct Stores {
    istio: Vec<(Kind, ApiResource, Store<DynamicObject>)>,
    services: Store<Service>,
    pods: Store<Pod>,
    nodes: Store<Node>,
}

/// Drives one reflector until aborted, recording when it has listed (or that the
/// cluster does not serve it) and waking the rebuild on every change.
fn drive<K>(
    api: Api<K>,
    writer: Writer<K>,
    what: String,
    changed: Arc<Notify>,
    phase: Arc<AtomicU8>,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let config = watcher::Config::default();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tokio::spawn(async move {
        futures_util::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    phase.store(LISTED, Ordering::SeqCst);
                    changed.notify_one();
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => changed.notify_one(),
                Err(watcher::Error::InitialListFailed(kube::Error::Api(s))) if s.code == 404 => {
                    if phase.swap(NOT_SERVED, Ordering::SeqCst) == PENDING {
                        info!(collection = %what, "not served by this cluster; watched in case it appears");
                        changed.notify_one();
                    }
                }
                Err(e) => {
                    warn!(collection = %what, error = %e, "watch failed; retrying with backoff")
                }
            }
        }
    })
}

/// The watches being started: each one's name and phase, and its task.
#[derive(Default)]
struct Watches {
    phases: Vec<(String, Arc<AtomicU8>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    changed: Arc<Notify>,
}

impl Watches {
    fn add<K>(&mut self, api: Api<K>, writer: Writer<K>, what: String)
    where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    {
        let phase = Arc::new(AtomicU8::new(PENDING));
        self.phases.push((what.clone(), phase.clone()));
        let changed = self.changed.clone();
        self.tasks.push(drive(api, writer, what, changed, phase));
    }

    /// A cluster-wide watch of a typed core kind.
    fn typed<K>(&mut self, client: &Client, what: &str) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let (store, writer) = reflector::store();
        self.add(Api::<K>::all(client.clone()), writer, what.into());
        store
    }

    /// Waits until every watch has listed or is not served, saying every 10 s which
    /// are still waiting (a 403 means the control plane's RBAC lacks them).
    async fn synced(&self) {
        let mut waited = 0u32;
        loop {
            let pending: Vec<&str> = self
                .phases
                .iter()
                .filter(|(_, p)| p.load(Ordering::SeqCst) == PENDING)
                .map(|(w, _)| w.as_str())
                .collect();
            if pending.is_empty() {
                return;
            }
            if waited > 0 && waited.is_multiple_of(10) {
                warn!(pending = %pending.join(", "), "still waiting for the first list of these collections (see the watch errors above)");
            }
            // A notification that raced the check is kept by Notify (one permit).
            let tick = tokio::time::timeout(Duration::from_secs(1), self.changed.notified());
            if tick.await.is_err() {
                waited += 1;
            }
        }
    }
}

/// Starts every watch and returns once each has listed (or is not served), with the
/// first snapshot in force.
pub async fn start(client: Client) -> anyhow::Result<Source> {
    let mut watches = Watches::default();
    let mut istio = Vec::new();
    for (kind, ar) in kinds::istio_resources() {
        let writer = Writer::<DynamicObject>::new(ar.clone());
        let store = writer.as_reader();
        let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
        watches.add(api, writer, format!("{}/{}", ar.api_version, ar.plural));
        istio.push((kind, ar, store));
    }
    let services = watches.typed::<Service>(&client, "v1/services");
    let pods = watches.typed::<Pod>(&client, "v1/pods");
    let nodes = watches.typed::<Node>(&client, "v1/nodes");
    let namespaces = watches.typed::<Namespace>(&client, "v1/namespaces");
    watches.synced().await;
    let stores = Stores {
        istio,
        services,
        pods,
        nodes,
    };
    let (tx, feed) = watch::channel(Arc::new(snapshot(&stores)));
    info!(
        resources = feed.borrow().resources.len(),
        "Kubernetes config source synced"
    );
    let Watches {
        mut tasks, changed, ..
    } = watches;
    tasks.push(tokio::spawn(rebuild(stores, tx, changed)));
    Ok(Source {
        feed,
        namespaces,
        tasks,
    })
}

/// A burst of watch events is applied once none came for this long.
const QUIET: Duration = Duration::from_millis(10);

async fn rebuild(stores: Stores, tx: watch::Sender<Arc<Snapshot>>, changed: Arc<Notify>) {
    loop {
        changed.notified().await;
        while tokio::time::timeout(QUIET, changed.notified())
            .await
            .is_ok()
        {}
        let next = snapshot(&stores);
        tx.send_if_modified(|current| {
            let differs = **current != next;
            if differs {
                *current = Arc::new(next);
            }
            differs
        });
        if tx.is_closed() {
            return;
        }
    }
}

/// Everything the stores hold, loaded and validated. An object served at several
/// apiVersions is read once, at the first (storage) version that has it.
fn snapshot(stores: &Stores) -> Snapshot {
    let mut out = Snapshot::default();
    let mut seen: BTreeMap<(Kind, String, String), ()> = BTreeMap::new();
    let mut translated: Vec<Translated> = Vec::new();
    for (kind, ar, store) in &stores.istio {
        for obj in store.state() {
            let key = (*kind, obj.namespace().unwrap_or_default(), obj.name_any());
            if seen.insert(key, ()).is_none() {
                translated.push(translate::istio(ar, &obj));
            }
        }
    }
    translated.extend(
        stores
            .services
            .state()
            .iter()
            .map(|s| translate::service(s)),
    );
    let localities: BTreeMap<String, String> = stores
        .nodes
        .state()
        .iter()
        .filter_map(|n| Some((n.name_any(), translate::locality(n)?)))
        .collect();
    translated.extend(
        stores
            .pods
            .state()
            .iter()
            .filter_map(|p| translate::pod(p, |node| localities.get(node).cloned())),
    );
    for t in translated {
        out.warnings.extend(t.warnings);
        match t.resource {
            Ok(r) => out.resources.push(r),
            Err(errors) => out.rejected.extend(errors),
        }
    }
    out.resources
        .sort_by(|a, b| (a.key(), &a.api_version).cmp(&(b.key(), &b.api_version)));
    out.rejected.sort();
    out.warnings.sort();
    out
}
