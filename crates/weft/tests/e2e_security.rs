//! Authorization on the real binary: the NECPGAME example's AuthorizationPolicies deciding
//! who may call whom, a CUSTOM policy with a real external authorizer, Istio's dry-run
//! and ingress access control tasks, and the bypass corpus — with curl as the client.

mod common;

use common::*;
use std::time::Duration;

const PLAYER_HOST: &str = "player.necpgame.svc.cluster.local:8080";
const LEADERBOARD_HOST: &str = "leaderboard.necpgame.svc.cluster.local:8080";
const INVENTORY_PATH: &str = "/api/v1/inventory/items";

/// `METHOD url` through `proxy` (an HTTP proxy address, as an app's HTTP_PROXY) or straight
/// to a gateway: (status, body).
fn call(method: &str, url: &str, proxy: Option<&str>) -> (u16, String) {
    let mut args = vec!["-sS", "-m", "10", "-X", method, "-w", "\n%{http_code}"];
    let via;
    if let Some(p) = proxy {
        via = format!("http://{p}");
        args.extend(["-x", via.as_str()]);
    }
    args.push(url);
    let out = curl(&args);
    assert!(
        out.status.success(),
        "curl {method} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout_of(&out);
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.parse().expect("status"), body.to_string())
}

#[test]
fn the_necpgame_authorization_policies_decide_who_may_call_whom() {
    let mesh = Mesh::up("authz");
    let gateway = format!("http://{}", mesh.gateway());
    let game = |path: &str| format!("{gateway}{path}");
    let with_host = |method: &str, path: &str| {
        let out = curl(&[
            "-sS",
            "-m",
            "10",
            "-X",
            method,
            "-H",
            &format!("Host: {GAME_HOST}"),
            "-w",
            "\n%{http_code}",
            &game(path),
        ]);
        let text = stdout_of(&out);
        let (body, code) = text.rsplit_once('\n').expect("status line");
        (code.parse::<u16>().expect("status"), body.to_string())
    };
    // The game's API through the gateway: GET and POST under /api/v1/ are allowed.
    let (code, body) = with_host("GET", "/api/v1/player/42");
    assert_eq!(code, 200, "{body}");
    let (code, body) = with_host("POST", "/api/v1/matchmaking/queue");
    assert_eq!(code, 200, "{body}");
    // … other methods are not (allow-ingress-to-api lists GET and POST).
    let (code, body) = with_host("DELETE", "/api/v1/player/42");
    assert_eq!((code, body.as_str()), (403, "RBAC: access denied"));

    // Sidecar to sidecar, each caller with its own identity.
    let player = mesh.addr(PLAYER_SIDECAR, "outbound");
    let matchmaking = mesh.addr("sidecar-matchmaking-v1.necpgame", "outbound");
    let inventory = mesh.addr(INVENTORY_V1_SIDECAR, "outbound");
    let url = |host: &str, path: &str| format!("http://{host}{path}");
    // matchmaking-reads-player: matchmaking may call player.
    let (code, body) = call(
        "GET",
        &url(PLAYER_HOST, "/api/v1/player/7"),
        Some(&matchmaking),
    );
    assert_eq!(code, 200, "{body}");
    // player-reads-inventory: player may GET inventory, nothing else.
    let (code, body) = call(
        "GET",
        &url("inventory.necpgame.svc.cluster.local:8080", "/x"),
        Some(&player),
    );
    assert_eq!(code, 200, "{body}");
    let (code, _) = call(
        "POST",
        &url("inventory.necpgame.svc.cluster.local:8080", "/x"),
        Some(&player),
    );
    assert_eq!(code, 403);
    // No policy lets inventory call player, or player call leaderboard.
    let (code, body) = call(
        "GET",
        &url(PLAYER_HOST, "/api/v1/player/7"),
        Some(&inventory),
    );
    assert_eq!((code, body.as_str()), (403, "RBAC: access denied"));
    let (code, _) = call(
        "GET",
        &url(LEADERBOARD_HOST, "/api/v1/leaderboard"),
        Some(&player),
    );
    assert_eq!(code, 403);

    // The denying sidecar counted the denials with the caller's identity (no response flag: Envoy has none for RBAC).
    let stats = poll_until(
        "player's RBAC denial count",
        Duration::from_secs(10),
        || {
            let s = admin_get(&mesh.addr(PLAYER_SIDECAR, "admin"), "/stats/prometheus");
            let denied = [
                ("reporter", "destination"),
                ("response_code", "403"),
                ("response_flags", "-"),
                ("source_workload", "inventory-v1"),
            ];
            (metric_sum(&s, "istio_requests_total", &denied) >= 1.0).then_some(s)
        },
    );
    assert!(
        stats.contains("weft_authorization_decisions_total"),
        "{stats}"
    );
}

/// Istio's ext-authz sample in Python, run by `weft up` as a command app: binds the port
/// weft gives it (0: any) and says where with a ready event; allows `x-ext-authz: allow`.
const EXT_AUTHZ_PY: &str = r#"
import http.server, json, os
class Check(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def check(self):
        if self.headers.get("x-ext-authz") == "allow":
            self.send_response(200)
            self.send_header("x-ext-authz-check-result", "allowed")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        body = b"denied by ext_authz for not found header `x-ext-authz: allow` in the request"
        self.send_response(403)
        self.send_header("x-ext-authz-check-result", "denied")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = check
    def log_message(self, *args):
        pass
host, port = os.environ["WEFT_APP_ADDRESS"].rsplit(":", 1)
server = http.server.ThreadingHTTPServer((host, int(port)), Check)
print(json.dumps({"event": "ready", "address": "%s:%d" % server.server_address}), flush=True)
server.serve_forever()
"#;

fn ext_authz_yaml(script: &std::path::Path) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-authz, namespace: authz}}
spec:
  hosts: [ext-authz.authz.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: ext-authz}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: ext-authz
  namespace: authz
  annotations:
    weft.dev/run: command
    weft.dev/command: "exec python3 {}"
spec: {{address: 127.0.0.1, labels: {{app: ext-authz}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |-
    extensionProviders:
    - name: sample-ext-authz-http
      envoyExtAuthzHttp:
        service: ext-authz.authz.svc.cluster.local
        port: 8000
        includeRequestHeadersInCheck: [x-ext-authz]
        headersToDownstreamOnDeny: [x-ext-authz-check-result]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-authz, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: CUSTOM
  provider: {{name: sample-ext-authz-http}}
  rules: [{{to: [{{operation: {{paths: ["/api/v1/leaderboard*"]}}}}]}}]
"#,
        script.display()
    )
}

#[test]
fn a_custom_policy_asks_a_real_external_authorizer_at_the_gateway() {
    let mesh = Mesh::up_with("ext-authz", |dir| {
        let script = dir.parent().expect("a temp dir").join("ext_authz.py");
        std::fs::write(&script, EXT_AUTHZ_PY).expect("writing the authorizer");
        std::fs::write(dir.join("ext-authz.yaml"), ext_authz_yaml(&script))
            .expect("writing ext-authz.yaml");
    });
    let gateway = mesh.gateway();
    let get = |path: &str, header: Option<&str>| {
        let mut args = vec![
            "-sS".to_string(),
            "-m".into(),
            "10".into(),
            "-D".into(),
            "-".into(),
            "-H".into(),
            format!("Host: {GAME_HOST}"),
        ];
        if let Some(h) = header {
            args.extend(["-H".into(), h.to_string()]);
        }
        args.push(format!("http://{gateway}{path}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        stdout_of(&curl(&args))
    };
    let allowed = get("/api/v1/leaderboard/top", Some("x-ext-authz: allow"));
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    let denied = get("/api/v1/leaderboard/top", None);
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    assert!(
        denied.contains("x-ext-authz-check-result: denied"),
        "the authorizer's header reaches the client: {denied}"
    );
    assert!(
        denied.ends_with(
            "denied by ext_authz for not found header `x-ext-authz: allow` in the request"
        ),
        "{denied}"
    );
    // Paths the CUSTOM rule does not match never go to the authorizer.
    let other = get("/api/v1/player/1", None);
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
}

const ADMIN_DENY_YAML: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    pathNormalization: {normalization: DECODE_AND_MERGE_SLASHES}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: necpgame}
spec:
  selector: {matchLabels: {app: inventory}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/api/v1/inventory/admin, "/api/v1/inventory/admin/*"]}}]
"#;

/// The authorization bypass corpus: every other spelling of a denied path, and forged
/// identity headers, sent by curl through the gateway. Nothing reaches the app as the
/// denied path, and no forged identity reaches it or the metrics.
#[test]
fn no_spelling_of_a_denied_path_or_forged_identity_gets_through() {
    let mesh = Mesh::up_with("bypass", |dir| {
        std::fs::write(dir.join("no-admin.yaml"), ADMIN_DENY_YAML).expect("writing no-admin.yaml");
    });
    let gateway = mesh.gateway();
    let status = |path: &str, host: &str| {
        let out = curl(&[
            "-s",
            "--path-as-is",
            "-m",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("Host: {host}"),
            &format!("http://{gateway}{path}"),
        ]);
        stdout_of(&out).trim().parse::<u16>().unwrap_or(0)
    };
    assert_eq!(
        status("/api/v1/inventory/items", GAME_HOST),
        200,
        "the control works"
    );
    let corpus = [
        "/api/v1/inventory/admin",
        "/api/v1/inventory/admin/",
        "/api/v1/inventory/admin/users",
        "/api/v1/inventory/./admin",
        "/api/v1/inventory/x/../admin",
        "/api/v1/inventory/items/../admin/users",
        "/api/v1/inventory/%2e/admin",
        "/api/v1/inventory/%2E%2E/inventory/admin",
        "/api/v1/inventory/%61dmin",
        "/api/v1/inventory/%61%64%6d%69%6e",
        "/api/v1/inventory//admin",
        "/api/v1/inventory///admin//users",
        "/api/v1/inventory/admin%2Fusers",
        "/api/v1/inventory%2Fadmin",
        "/api/v1/inventory%2fadmin%2f",
        "/api/v1/inventory/admin%5Cusers",
        "/api/v1/inventory\\admin",
        "/api/v1/inventory/admin?role=user",
        "/api/v1/inventory/admin#fragment",
        "/api/v1/inventory/admin;x=1/../admin",
    ];
    for path in corpus {
        for host in [GAME_HOST, "GAME.necpgame.LOCAL", "game.necpgame.local:80"] {
            let got = status(path, host);
            assert!(
                got == 403 || got == 404 || got == 400,
                "{path} (Host {host}) got {got}: the denied path reached the app"
            );
        }
    }

    // Forged identity headers from an outside client: the app sees the gateway's identity,
    // and the destination's metrics the gateway as the caller.
    let out = curl(&[
        "-sS", "-m", "10",
        "-H", &format!("Host: {GAME_HOST}"),
        "-H", "x-forwarded-client-cert: By=spiffe://cluster.local/ns/necpgame/sa/inventory;URI=spiffe://cluster.local/ns/necpgame/sa/admin",
        "-H", "x-weft-peer: workload=admin;namespace=necpgame",
        &format!("http://{gateway}/api/v1/inventory/items"),
    ]);
    let body = stdout_of(&out);
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(
        v["peer"], "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway",
        "{body}"
    );
    let version = v["version"].as_str().unwrap_or("v1").to_string();
    let sidecar = format!("sidecar-inventory-{version}.necpgame");
    let stats = admin_get(&mesh.addr(&sidecar, "admin"), "/stats/prometheus");
    assert!(!stats.contains("source_workload=\"admin\""), "{stats}");
}

/// Istio's "Dry run" task: a DENY policy annotated `istio.io/dry-run` denies nothing, and
/// says what it would have done in the sidecar's log and metrics.
#[test]
fn a_dry_run_policy_logs_and_counts_but_denies_nothing() {
    let mesh = Mesh::up_with("dry-run", |dir| {
        std::fs::write(
            dir.join("dry-run.yaml"),
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-get\n  namespace: necpgame\n  annotations: {istio.io/dry-run: \"true\"}\nspec:\n  selector: {matchLabels: {app: player}}\n  action: DENY\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n",
        )
        .expect("writing dry-run.yaml");
    });
    let mut conn = HttpConn::connect(&mesh.gateway()).unwrap();
    for _ in 0..5 {
        let r = conn.get(GAME_HOST, "/api/v1/player/1", &[]).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let admin = mesh.addr(PLAYER_SIDECAR, "admin");
    poll_until("the dry-run count", Duration::from_secs(10), || {
        let s = admin_get(&admin, "/stats/prometheus");
        let would = [
            ("policy", "necpgame.deny-get"),
            ("decision", "denied"),
            ("dry_run", "true"),
        ];
        (metric_sum(&s, "weft_authorization_decisions_total", &would) >= 5.0).then_some(())
    });
    let log = std::fs::read_to_string(mesh.state_dir.join(format!("logs/{PLAYER_SIDECAR}.log")))
        .unwrap_or_default();
    assert!(
        log.contains("authorization dry-run") && log.contains("necpgame.deny-get"),
        "{log}"
    );
}

/// Istio's "Ingress access control" task: ipBlocks judge the connection's address;
/// remoteIpBlocks the original client, from X-Forwarded-For as far as MeshConfig's
/// numTrustedProxies trusts it.
#[test]
fn ingress_access_control_by_client_address() {
    let mesh = Mesh::up_with("ingress-ip", |dir| {
        std::fs::write(
            dir.join("ingress-ip.yaml"),
            r#"apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    defaultConfig:
      gatewayTopology: {numTrustedProxies: 1}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress-policy, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: loopback-only, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: ALLOW
  rules: [{from: [{source: {ipBlocks: [127.0.0.0/8]}}]}]
"#,
        )
        .expect("writing ingress-ip.yaml");
    });
    let mut conn = HttpConn::connect(&mesh.gateway()).unwrap();
    let via = |conn: &mut HttpConn, xff: &str| {
        conn.get_retry_closed(GAME_HOST, INVENTORY_PATH, &[("x-forwarded-for", xff)])
            .unwrap()
            .status
    };
    // One trusted hop in front of the gateway: the client is the last XFF entry.
    assert_eq!(via(&mut conn, "198.51.100.7"), 200);
    assert_eq!(via(&mut conn, "203.0.113.9"), 403);
    assert_eq!(
        via(&mut conn, "203.0.113.9, 198.51.100.7"),
        200,
        "only one hop is trusted"
    );
}
