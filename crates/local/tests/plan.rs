//! What `weft up` reads from a folder: which processes to run, and which traffic to drive.

use weft_local::plan::{plan, App};
use weft_local::routes::load_routes;

fn load(text: &str) -> Vec<weft_api::Resource> {
    let loaded = weft_api::load_str(text, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.resources
}

const WE: &str = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: NAME\n  namespace: game\n  annotations:\nANNOT\nspec: {address: 127.0.0.1, labels: {app: inventory, version: v2}, serviceAccount: inv}\n";

fn we(name: &str, annotations: &[(&str, &str)]) -> String {
    let a: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    WE.replace("NAME", name).replace("ANNOT\n", &a)
}

#[test]
fn reads_gateways_demo_apps_and_commands() {
    let text = [
        we("gw", &[("weft.dev/role", "gateway")]),
        we(
            "inv",
            &[
                ("weft.dev/run", "demo-app"),
                ("weft.dev/demo-latency", "5ms"),
                ("weft.dev/demo-error-rate", "0.25"),
            ],
        ),
        we(
            "pg",
            &[
                ("weft.dev/run", "command"),
                ("weft.dev/command", "my-server --port 9000"),
                ("weft.dev/app-address", "127.0.0.1:9000"),
            ],
        ),
        we("plain", &[("owner", "team-a")]),
    ]
    .join("---\n");
    let p = plan(&load(&text), "cluster.local").unwrap();
    assert_eq!(p.gateways.len(), 1);
    assert_eq!(p.gateways[0].name, "gw");
    assert_eq!(
        p.workloads.len(),
        2,
        "a WorkloadEntry without weft.dev/run is not started"
    );
    match &p.workloads[0].app {
        App::Demo {
            service,
            version,
            latency,
            error_rate,
            identity,
        } => {
            assert_eq!((service.as_str(), version.as_str()), ("inventory", "v2"));
            assert_eq!(latency.as_millis(), 5);
            assert_eq!(*error_rate, 0.25);
            assert_eq!(identity, "spiffe://cluster.local/ns/game/sa/inv");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        p.workloads[1].app,
        App::Command {
            command: "my-server --port 9000".into(),
            address: Some("127.0.0.1:9000".into())
        }
    );
}

#[test]
fn bad_annotations_are_errors_at_the_workload_entry() {
    let text = [
        we(
            "a",
            &[
                ("weft.dev/run", "demo-app"),
                ("weft.dev/demo-latency", "soon"),
            ],
        ),
        we(
            "b",
            &[
                ("weft.dev/run", "demo-app"),
                ("weft.dev/demo-error-rate", "2"),
            ],
        ),
        we("c", &[("weft.dev/run", "docker")]),
        we("d", &[("weft.dev/run", "command")]),
    ]
    .join("---\n");
    let errors = plan(&load(&text), "cluster.local").unwrap_err();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors[0].starts_with("mesh.yaml:1: WorkloadEntry game/a: weft.dev/demo-latency"),
        "{errors:#?}"
    );
    assert!(errors[1].contains("from 0 to 1"), "{errors:#?}");
    assert!(
        errors[2].contains("\"docker\" is not one of demo-app, command"),
        "{errors:#?}"
    );
    assert!(
        errors[3].contains("needs weft.dev/command (and weft.dev/app-address, or a ready event"),
        "{errors:#?}"
    );
}

#[test]
fn traffic_routes_follow_gateway_virtual_services() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: game}
spec:
  hosts: [api.example.com]
  gateways: [public]
  http:
  - name: premium
    match:
    - uri: {prefix: /inv}
      headers: {x-tier: {exact: premium}}
    route: [{destination: {host: inv}}]
  - match:
    - uri: {regex: "/re/.*"}
    route: [{destination: {host: inv}}]
  - route: [{destination: {host: inv}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: internal, namespace: game}
spec:
  hosts: [inv]
  http:
  - route: [{destination: {host: inv}}]
"#;
    let routes = load_routes(&load(text));
    let summary: Vec<(String, String, String, usize)> = routes
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                r.authority.clone(),
                r.path.clone(),
                r.headers.len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "premium".to_string(),
                "api.example.com".to_string(),
                "/inv".to_string(),
                1
            ),
            (
                "api[2]".to_string(),
                "api.example.com".to_string(),
                "/".to_string(),
                0
            ),
        ],
        "regex-only matches are skipped; mesh-only VirtualServices get no gateway traffic"
    );
}
