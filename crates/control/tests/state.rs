//! Control-plane state: what is pushed to whom, and when.

use tokio::sync::watch;
use weft_control::state::State;
use weft_protocol::delta::Desired;
use weft_protocol::pb;

const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: inventory, namespace: game}
spec:
  hosts: [inventory.game.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: inventory}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: inv-v1, namespace: game}
spec: {address: 127.0.0.1, labels: {app: inventory, version: v1}, serviceAccount: inventory}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: player, namespace: game}
spec: {address: 127.0.0.1, labels: {app: player}}
"#;

fn resources(text: &str) -> Vec<weft_api::Resource> {
    let loaded = weft_api::load_str(text, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.resources
}

fn node(workload: &str, inbound: &str, config_version: &str) -> pb::Node {
    pb::Node {
        id: format!("sidecar~{workload}.game"),
        role: "sidecar".into(),
        workload: workload.into(),
        namespace: "game".into(),
        inbound_addr: inbound.into(),
        build_version: "test".into(),
        config_version: config_version.into(),
    }
}

type Rx = watch::Receiver<Option<std::sync::Arc<Desired>>>;

/// The newest push not yet seen, if any, once the push cycle has served every change so far.
async fn next(state: &State, rx: &mut Rx) -> Option<std::sync::Arc<Desired>> {
    state.flush().await;
    if rx.has_changed().unwrap_or(false) {
        rx.borrow_and_update().clone()
    } else {
        None
    }
}

fn channel() -> (watch::Sender<Option<std::sync::Arc<Desired>>>, Rx) {
    watch::channel(None)
}

#[tokio::test]
async fn pushes_on_connect_and_only_when_a_config_changes() {
    let state = State::new(
        resources(MESH),
        "cluster.local",
        weft_protocol::MAX_PUSH_BYTES,
    );
    let (tx, mut player) = channel();
    state
        .connect(node("player", "127.0.0.1:1001", ""), tx)
        .unwrap();
    let first = next(&state, &mut player)
        .await
        .expect("a new proxy gets a config at once");
    assert!(next(&state, &mut player).await.is_none());

    // inventory connects: player's config gains an endpoint, so player gets a push.
    let (tx, mut inv) = channel();
    let id = state
        .connect(node("inv-v1", "127.0.0.1:1002", ""), tx)
        .unwrap();
    assert!(next(&state, &mut inv).await.is_some());
    let second = next(&state, &mut player)
        .await
        .expect("endpoint change reaches the other proxy");
    assert!(
        second.version.parse::<u64>().unwrap() > first.version.parse::<u64>().unwrap(),
        "versions increase"
    );
    let cfg = second.config().unwrap();
    let cluster = cfg
        .clusters
        .values()
        .find(|c| c.service == "inventory.game.svc.cluster.local")
        .unwrap();
    assert_eq!(cluster.endpoints[0].address, "127.0.0.1:1002");
    assert_eq!(
        cluster.endpoints[0].identity,
        "spiffe://cluster.local/ns/game/sa/inventory"
    );

    // The same resources again: nothing changes, nothing is pushed.
    state.set_resources(resources(MESH));
    assert!(next(&state, &mut player).await.is_none() && next(&state, &mut inv).await.is_none());

    // inventory leaves: its endpoint leaves player's config.
    state.disconnect(id);
    let third = next(&state, &mut player)
        .await
        .expect("removal is pushed")
        .config()
        .unwrap();
    // (The passthrough cluster's one endpoint is where a request was addressed.)
    assert!(third
        .clusters
        .values()
        .filter(|c| c.egress.is_none())
        .all(|c| c.endpoints.is_empty()));
}

#[tokio::test]
async fn a_proxy_that_already_has_config_is_left_alone_during_the_reconnect_grace() {
    let state = State::new(
        resources(MESH),
        "cluster.local",
        weft_protocol::MAX_PUSH_BYTES,
    );
    let (tx, mut player) = channel();
    state
        .connect(node("player", "127.0.0.1:1001", "41"), tx)
        .unwrap();
    assert!(
        next(&state, &mut player).await.is_none(),
        "a reconnecting proxy keeps its config while peers reconnect"
    );
    let (tx, mut inv) = channel();
    state
        .connect(node("inv-v1", "127.0.0.1:1002", ""), tx)
        .unwrap();
    assert!(
        next(&state, &mut inv).await.is_some(),
        "a proxy without config is served at once"
    );
    assert!(next(&state, &mut player).await.is_none());
    // After the grace (driven here directly), everyone is brought up to date.
    state.push_now();
    let pushed = next(&state, &mut player).await;
    let cfg = pushed.expect("pushed after the grace").config().unwrap();
    assert!(cfg.clusters.values().any(|c| !c.endpoints.is_empty()));
}

#[tokio::test]
async fn unknown_workload_gets_no_config() {
    let state = State::new(
        resources(MESH),
        "cluster.local",
        weft_protocol::MAX_PUSH_BYTES,
    );
    let (tx, mut ghost) = channel();
    state
        .connect(node("ghost", "127.0.0.1:1003", ""), tx)
        .unwrap();
    assert!(next(&state, &mut ghost).await.is_none());
}

#[tokio::test]
async fn a_slow_proxy_gets_the_newest_config_not_a_backlog() {
    let state = State::new(
        resources(MESH),
        "cluster.local",
        weft_protocol::MAX_PUSH_BYTES,
    );
    let (tx, mut player) = channel();
    state
        .connect(node("player", "127.0.0.1:1001", ""), tx)
        .unwrap();
    // Three changes while player reads nothing: inventory comes, goes, comes back elsewhere.
    let (tx, _first) = channel();
    let first = state
        .connect(node("inv-v1", "127.0.0.1:2000", ""), tx)
        .unwrap();
    state.disconnect(first);
    let (tx, _inv) = channel();
    state
        .connect(node("inv-v1", "127.0.0.1:3000", ""), tx)
        .unwrap();
    let latest = next(&state, &mut player)
        .await
        .expect("a push is waiting")
        .config()
        .unwrap();
    let cluster = latest
        .clusters
        .values()
        .find(|c| c.service == "inventory.game.svc.cluster.local")
        .unwrap();
    assert_eq!(
        cluster.endpoints[0].address, "127.0.0.1:3000",
        "the newest state, not an old one"
    );
    assert!(
        next(&state, &mut player).await.is_none(),
        "coalesced into one push"
    );
}

#[tokio::test]
async fn a_second_proxy_for_a_connected_workload_is_refused_not_swapped_in() {
    let state = State::new(
        resources(MESH),
        "cluster.local",
        weft_protocol::MAX_PUSH_BYTES,
    );
    let (tx, _real) = channel();
    let real = state
        .connect(node("inv-v1", "127.0.0.1:2000", ""), tx)
        .unwrap();
    let (tx, _rogue) = channel();
    let err = state
        .connect(node("inv-v1", "127.0.0.1:6666", ""), tx)
        .unwrap_err();
    assert!(err.contains("already has a connected proxy"), "{err}");
    // Once the real one is gone, a proxy for that workload may connect again.
    state.disconnect(real);
    let (tx, _again) = channel();
    assert!(state
        .connect(node("inv-v1", "127.0.0.1:2001", ""), tx)
        .is_ok());
}
