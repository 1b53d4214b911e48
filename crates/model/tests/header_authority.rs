//! `Host` / `:authority` set in a route's `headers.request` is the authority, as Istio's
//! `translateHeadersOperations` makes it: the route's host rewrite, never a header (Istio
//! refuses it together with `rewrite.authority`); per destination it is reported as not
//! enforced.

use weft_model::*;

const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: player, namespace: game}
spec:
  hosts: [player.game.svc.cluster.local]
  ports: [{number: 9000, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: player}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: player-v1, namespace: game}
spec: {address: 127.0.0.1, labels: {app: player, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: player, namespace: game}
spec:
  hosts: [player]
  http:
  - match: [{uri: {prefix: /a}}]
    headers: {request: {set: {Host: a.example.com, x-keep: "1"}}}
    route: [{destination: {host: player}}]
  - match: [{uri: {prefix: /b}}]
    headers: {request: {add: {":authority": b.example.com}}}
    rewrite: {uri: /v2}
    route: [{destination: {host: player}}]
  - match: [{uri: {prefix: /c}}]
    route: [{destination: {host: player, subset: v1}, headers: {request: {set: {Host: d.example.com}}}}]
"#;

#[test]
fn request_host_and_authority_headers_become_the_routes_authority() {
    let loaded = weft_api::load_str(MESH, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert!(weft_api::validate_all(&loaded.resources).is_empty());
    let live = [LiveProxy {
        workload: "player-v1".into(),
        namespace: "game".into(),
        inbound_addr: "127.0.0.1:1003".into(),
        listeners: Default::default(),
    }];
    let reg = Registry::build(&loaded.resources, &live);
    let me = ProxyRef {
        role: Role::Sidecar,
        workload: "player-v1".into(),
        namespace: "game".into(),
    };
    let cfg = compile(&loaded.resources, &reg, "cluster.local", &me).unwrap();
    let vh = cfg.routes["outbound"]
        .virtual_hosts
        .iter()
        .find(|v| v.name == "player.game.svc.cluster.local")
        .expect("the player virtual host");
    let authority = |i: usize| {
        vh.routes[i]
            .rewrite
            .as_ref()
            .and_then(|r| r.authority.clone())
    };
    assert_eq!(authority(0).as_deref(), Some("a.example.com"));
    let set: Vec<&str> = vh.routes[0]
        .request_headers
        .set
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(set, ["x-keep"], "Host is the authority, not a header");
    assert_eq!(authority(1).as_deref(), Some("b.example.com"));
    assert_eq!(
        vh.routes[1].rewrite.as_ref().unwrap().uri.as_deref(),
        Some("/v2")
    );
    assert!(vh.routes[1].request_headers.add.is_empty());
    assert_eq!(
        authority(2),
        None,
        "a destination's Host is not the route's"
    );

    let report = not_enforced(&loaded.resources);
    assert!(
        report.iter().any(|n| n
            .what
            .contains("http[2].route[0].headers.request Host/:authority")),
        "{report:?}"
    );
}
