//! PeerAuthentication precedence and auto-mTLS, as the compiler decides them per proxy.

use weft_model::mtls::{InboundMode, InboundMtls};
use weft_model::*;

const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: game}
spec:
  hosts: [db.game.svc.cluster.local]
  ports: [{number: 5000, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: game}
spec:
  hosts: [api.game.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-v1, namespace: game}
spec: {address: 127.0.0.1, labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-v1, namespace: game}
spec: {address: 127.0.0.1, labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-v1, namespace: web}
spec: {address: 127.0.0.1, labels: {app: web}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: game}
spec: {mtls: {mode: UNSET}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: db, namespace: game}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: DISABLE}
  portLevelMtls:
    5001: {mode: STRICT}
    5002: {mode: UNSET}
"#;

fn compile_with(extra: &str, workload: &str, ns: &str) -> ProxyConfig {
    let text = format!("{MESH}{extra}");
    let loaded = weft_api::load_str(&text, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let errors = weft_api::validate_all(&loaded.resources);
    assert!(errors.is_empty(), "{errors:?}");
    let live: Vec<LiveProxy> = [("db-v1", "game"), ("api-v1", "game"), ("web-v1", "web")]
        .iter()
        .enumerate()
        .map(|(i, (w, n))| LiveProxy {
            workload: w.to_string(),
            namespace: n.to_string(),
            inbound_addr: format!("127.0.0.1:{}", 7000 + i),
            listeners: Default::default(),
        })
        .collect();
    let reg = Registry::build(&loaded.resources, &live);
    compile(
        &loaded.resources,
        &reg,
        "cluster.local",
        &ProxyRef {
            role: Role::Sidecar,
            workload: workload.into(),
            namespace: ns.into(),
        },
    )
    .expect("compiles")
}

fn inbound(cfg: &ProxyConfig) -> &InboundMtls {
    &cfg.inbound.as_ref().unwrap().mtls
}

#[test]
fn workload_beats_namespace_beats_mesh_and_unset_inherits() {
    // db: its own DISABLE, with port overrides (UNSET at a port inherits DISABLE).
    let db = compile_with("", "db-v1", "game");
    assert_eq!(
        inbound(&db),
        &InboundMtls {
            mode: InboundMode::Disable,
            ports: [(5001, InboundMode::Strict)].into_iter().collect(),
        }
    );
    // api: the namespace says UNSET, so the mesh's STRICT applies.
    assert_eq!(
        inbound(&compile_with("", "api-v1", "game")).mode,
        InboundMode::Strict
    );
    // No PeerAuthentication anywhere: Istio's default, PERMISSIVE.
    let none = compile_with("", "web-v1", "web");
    assert_eq!(
        inbound(&none).mode,
        InboundMode::Strict,
        "mesh-wide STRICT reaches web"
    );
    let text_without_mesh = MESH.replace("mode: STRICT}}", "mode: UNSET}}");
    let loaded = weft_api::load_str(&text_without_mesh, "m.yaml");
    let reg = Registry::build(&loaded.resources, &[]);
    let web = compile(
        &loaded.resources,
        &reg,
        "cluster.local",
        &ProxyRef {
            role: Role::Sidecar,
            workload: "web-v1".into(),
            namespace: "web".into(),
        },
    )
    .unwrap();
    assert_eq!(inbound(&web).mode, InboundMode::Permissive);
    // Nothing about PeerAuthentication is reported as not enforced any more.
    assert!(
        !db.not_enforced
            .iter()
            .any(|n| n.resource.starts_with("PeerAuthentication/")),
        "{:#?}",
        db.not_enforced
    );
}

fn endpoint_plaintext(cfg: &ProxyConfig, cluster: &str) -> Vec<bool> {
    cfg.clusters[cluster]
        .endpoints
        .iter()
        .map(|e| e.plaintext)
        .collect()
}

#[test]
fn auto_mtls_sends_plaintext_to_disable_servers_unless_a_destination_rule_says() {
    let vs = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: routes, namespace: game}
spec:
  hosts: [db, api]
  http:
  - match: [{uri: {prefix: /db}}]
    route: [{destination: {host: db, port: {number: 5000}}}]
  - route: [{destination: {host: api, port: {number: 8080}}}]
"#;
    let web = compile_with(vs, "web-v1", "web");
    let db = "outbound|5000||db.game.svc.cluster.local";
    let api = "outbound|8080||api.game.svc.cluster.local";
    assert_eq!(
        endpoint_plaintext(&web, db),
        [true],
        "db takes plaintext only"
    );
    assert_eq!(endpoint_plaintext(&web, api), [false]);
    let dr = r#"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tls, namespace: game}
spec:
  host: api
  trafficPolicy: {tls: {mode: DISABLE}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: game}
spec:
  host: db
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
"#;
    let web = compile_with(&format!("{vs}{dr}"), "web-v1", "web");
    assert_eq!(
        endpoint_plaintext(&web, db),
        [false],
        "the DestinationRule wins"
    );
    assert_eq!(endpoint_plaintext(&web, api), [true]);
    assert!(
        !web.not_enforced.iter().any(|n| n.what.contains("tls")),
        "{:#?}",
        web.not_enforced
    );
}
