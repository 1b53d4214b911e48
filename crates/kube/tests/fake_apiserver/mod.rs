//! A fake Kubernetes API server for tests: no real API server can run on these machines,
//! so this one speaks the parts of the real protocol a kube-rs watcher uses, over real
//! HTTP on a loopback socket (port 0): `GET` of a collection answers a List with the
//! current `resourceVersion`; `?watch=true&resourceVersion=N` streams newline-delimited
//! JSON `WatchEvent`s (ADDED/MODIFIED/DELETED after N, then a BOOKMARK, then live events);
//! a resourceVersion older than the last compaction answers an `ERROR` event with a
//! `410 Gone` Status, after which the client must list again. Custom resources are served
//! at every version of their group (the stored object, with that `apiVersion`), as the
//! API server does for CRDs without schema changes between versions.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// `(group, plural)` of a collection ("" for the core group).
type Collection = (String, String);

#[derive(Default)]
struct Db {
    rv: u64,
    /// Objects by collection, then `ns/name`.
    objects: BTreeMap<Collection, BTreeMap<String, Value>>,
    /// Every write: (resourceVersion, collection, event type, object).
    events: Vec<(u64, Collection, &'static str, Value)>,
    /// Watches from a resourceVersion at or below this answer 410 Gone.
    compacted: u64,
    /// How many lists each collection has answered.
    lists: BTreeMap<Collection, usize>,
    /// apiVersions answered 404, as a cluster whose CRDs do not serve them.
    unserved: Vec<String>,
    /// How many watches were answered 410 Gone.
    gone: usize,
}

/// The fake API server; dropping it stops it.
pub struct FakeApiServer {
    pub url: String,
    db: Arc<Mutex<Db>>,
    /// (last resourceVersion, watch generation): bumped on every write (wakes watches)
    /// and on [`FakeApiServer::compact_and_drop_watches`] (ends them).
    tick: watch::Sender<(u64, u64)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The collection an object belongs in, from its apiVersion and kind.
fn collection_of(obj: &Value) -> Collection {
    let api_version = obj["apiVersion"].as_str().expect("apiVersion");
    let kind = obj["kind"].as_str().expect("kind");
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let plural = match kind {
        "Telemetry" => "telemetries".to_string(),
        "ServiceEntry" => "serviceentries".to_string(),
        "WorkloadEntry" => "workloadentries".to_string(),
        "AuthorizationPolicy" => "authorizationpolicies".to_string(),
        k => format!("{}s", k.to_ascii_lowercase()),
    };
    (group.to_string(), plural)
}

fn key_of(obj: &Value) -> String {
    let m = &obj["metadata"];
    format!(
        "{}/{}",
        m["namespace"].as_str().unwrap_or(""),
        m["name"].as_str().expect("metadata.name")
    )
}

impl FakeApiServer {
    pub async fn start(objects: Vec<Value>) -> FakeApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let db = Arc::new(Mutex::new(Db::default()));
        let (tick, _) = watch::channel((0, 0));
        let server = FakeApiServer {
            url,
            db: db.clone(),
            tick: tick.clone(),
            task: tokio::spawn(serve(listener, db, tick)),
        };
        for o in objects {
            server.apply(o);
        }
        server
    }

    /// Creates or replaces an object (ADDED or MODIFIED), with a new resourceVersion.
    pub fn apply(&self, mut obj: Value) {
        let mut db = self.db.lock().unwrap();
        db.rv += 1;
        let rv = db.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let (c, k) = (collection_of(&obj), key_of(&obj));
        let existed = db
            .objects
            .entry(c.clone())
            .or_default()
            .insert(k, obj.clone())
            .is_some();
        let t = if existed { "MODIFIED" } else { "ADDED" };
        db.events.push((rv, c, t, obj));
        drop(db);
        self.tick.send_modify(|t| t.0 = rv);
    }

    /// Deletes an object (DELETED).
    pub fn delete(&self, obj: &Value) {
        let mut db = self.db.lock().unwrap();
        db.rv += 1;
        let rv = db.rv;
        let (c, k) = (collection_of(obj), key_of(obj));
        let mut gone = db.objects.entry(c.clone()).or_default().remove(&k).unwrap();
        gone["metadata"]["resourceVersion"] = json!(rv.to_string());
        db.events.push((rv, c, "DELETED", gone));
        drop(db);
        self.tick.send_modify(|t| t.0 = rv);
    }

    /// Forgets the event history (as etcd compaction does) and ends every open watch:
    /// a client's next watch from its last resourceVersion gets 410 Gone.
    pub fn compact_and_drop_watches(&self) {
        let mut db = self.db.lock().unwrap();
        db.compacted = db.rv;
        db.rv += 1; // lists after this point answer a version newer than the compaction
        db.events.clear();
        drop(db);
        self.tick.send_modify(|t| t.1 += 1);
    }

    /// Answers 404 for every collection at `api_version` from now on.
    pub fn stop_serving(&self, api_version: &str) {
        self.db
            .lock()
            .unwrap()
            .unserved
            .push(api_version.to_string());
    }

    /// How many watches were answered 410 Gone.
    pub fn gone(&self) -> usize {
        self.db.lock().unwrap().gone
    }

    /// How many lists of `(group, plural)` were answered.
    pub fn lists(&self, group: &str, plural: &str) -> usize {
        let db = self.db.lock().unwrap();
        let c = (group.to_string(), plural.to_string());
        db.lists.get(&c).copied().unwrap_or(0)
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn serve(
    listener: tokio::net::TcpListener,
    db: Arc<Mutex<Db>>,
    tick: watch::Sender<(u64, u64)>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (db, tick) = (db.clone(), tick.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (db, tick) = (db.clone(), tick.clone());
                async move { Ok::<_, Infallible>(handle(req, db, tick)) }
            });
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
        });
    }
}

/// `/api/v1/<plural>` or `/apis/<group>/<version>/<plural>` (cluster-wide collections).
fn parse_path(path: &str) -> Option<(Collection, String)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", "v1", plural] => Some((("".into(), plural.to_string()), "v1".into())),
        ["apis", group, version, plural] => Some((
            (group.to_string(), plural.to_string()),
            format!("{group}/{version}"),
        )),
        _ => None,
    }
}

fn with_version(mut obj: Value, api_version: &str) -> Value {
    obj["apiVersion"] = json!(api_version);
    obj
}

fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    db: Arc<Mutex<Db>>,
    tick: watch::Sender<(u64, u64)>,
) -> hyper::Response<Body> {
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Some((collection, api_version)) = parse_path(req.uri().path()) else {
        return json_response(404, &status(404, "NotFound", "no such path"));
    };
    if db.lock().unwrap().unserved.contains(&api_version) {
        return json_response(
            404,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    }
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        return watch_response(db, tick, collection, api_version, from);
    }
    let mut db = db.lock().unwrap();
    *db.lists.entry(collection.clone()).or_default() += 1;
    let items: Vec<Value> = db
        .objects
        .get(&collection)
        .map(|m| {
            m.values()
                .map(|o| with_version(o.clone(), &api_version))
                .collect()
        })
        .unwrap_or_default();
    let list = json!({
        "apiVersion": api_version,
        "kind": "List",
        "metadata": {"resourceVersion": db.rv.to_string()},
        "items": items,
    });
    json_response(200, &list)
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn json_response(code: u16, v: &Value) -> hyper::Response<Body> {
    hyper::Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap()
}

/// Streams the events of `collection` after `from`, a bookmark, then live events (each
/// batch followed by a bookmark) until the server drops its watches.
fn watch_response(
    db: Arc<Mutex<Db>>,
    tick: watch::Sender<(u64, u64)>,
    collection: Collection,
    api_version: String,
    from: u64,
) -> hyper::Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let line = |v: Value| Bytes::from(format!("{v}\n"));
    let mut ticks = tick.subscribe();
    let generation = ticks.borrow().1;
    tokio::spawn(async move {
        let compacted = db.lock().unwrap().compacted;
        if from <= compacted && compacted != 0 {
            db.lock().unwrap().gone += 1;
            let gone = status(410, "Expired", "too old resource version");
            let _ = tx
                .send(line(json!({"type": "ERROR", "object": gone})))
                .await;
            return;
        }
        let mut sent = from;
        loop {
            let (batch, rv) = {
                let db = db.lock().unwrap();
                let batch: Vec<Value> = db
                    .events
                    .iter()
                    .filter(|(rv, c, _, _)| *rv > sent && *c == collection)
                    .map(|(_, _, t, o)| {
                        json!({"type": t, "object": with_version(o.clone(), &api_version)})
                    })
                    .collect();
                (batch, db.rv)
            };
            for event in batch {
                if tx.send(line(event)).await.is_err() {
                    return;
                }
            }
            sent = rv;
            let bookmark = json!({"type": "BOOKMARK", "object": {"apiVersion": api_version,
                "kind": "Bookmark", "metadata": {"resourceVersion": rv.to_string()}}});
            if tx.send(line(bookmark)).await.is_err() {
                return;
            }
            if ticks.changed().await.is_err() || ticks.borrow().1 != generation {
                return; // the server dropped its watches: the stream ends
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    hyper::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed())
        .unwrap()
}
