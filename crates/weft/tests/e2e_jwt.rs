//! RequestAuthentication on the real binary, as Istio's "JWT authentication at ingress"
//! and "JWT claim based routing" tasks do it, with curl as the client and tokens signed by
//! the `openssl` CLI (an independent signer): no token, a bad token, a good one; the
//! requestPrincipals DENY rule; keys inline and from a `jwksUri` served by a Python process
//! on port 0 that the control plane fetches. (Its own test binary: it runs beside the other
//! end-to-end suites.)

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ISS: &str = "testing@secure.istio.io";

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../proxy/tests/testdata/jwt")
        .join(name)
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// An RS256 token with `claims`, signed with the test key `key` by `openssl dgst`.
fn sign(key: &str, kid: &str, claims: &serde_json::Value) -> String {
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    let signed = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let dir = TempDir::new("jwt-sign");
    let input = dir.path().join("signed");
    std::fs::write(&input, &signed).unwrap();
    let out = run(
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-sign",
            testdata(key).to_str().unwrap(),
            input.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{signed}.{}", b64url(&out.stdout))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Istio's demo token: issuer and subject `testing@secure.istio.io`.
fn good_token(groups: &[&str]) -> String {
    sign(
        "rsa-k1.pem",
        "k1",
        &serde_json::json!({"iss": ISS, "sub": ISS, "exp": now() + 3600, "groups": groups}),
    )
}

/// `GET path` at the gateway with `Host: host` and maybe a bearer token: status, headers
/// and body as curl prints them (`-i`).
fn get(mesh: &Mesh, host: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth;
    let host_header = format!("Host: {host}");
    let url = format!("http://{}{path}", mesh.gateway());
    let mut args = vec!["-sS", "-i", "-m", "10", "-H", host_header.as_str()];
    if let Some(t) = token {
        auth = format!("Authorization: Bearer {t}");
        args.extend(["-H", auth.as_str()]);
    }
    args.push(&url);
    let out = curl(&args);
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout_of(&out);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (code, text)
}

/// The task's policies: a RequestAuthentication on the ingress gateway, and a DENY of
/// requests without a request principal on it.
fn ingress_yaml(jwt_rule: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt-example, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  jwtRules: [{jwt_rule}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: frontend-ingress, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: DENY
  rules: [{{from: [{{source: {{notRequestPrincipals: ["*"]}}}}]}}]
"#
    )
}

#[test]
fn jwt_at_the_ingress_gateway_with_inline_keys() {
    let jwks = std::fs::read_to_string(testdata("jwks.json")).unwrap();
    let rule = format!(
        "{{issuer: {ISS:?}, outputClaimToHeaders: [{{header: x-player-tier, claim: tier}}], jwks: {:?}}}",
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&jwks).unwrap())
            .unwrap()
    );
    let mesh = Mesh::up_with("jwt-inline", |dir| {
        std::fs::write(dir.join("jwt.yaml"), ingress_yaml(&rule)).unwrap();
    });
    let api = "/api/v1/player/42";
    let (code, text) = get(&mesh, GAME_HOST, api, None);
    assert_eq!(code, 403, "no token, no request principal: {text}");
    assert!(text.ends_with("RBAC: access denied"), "{text}");

    let (code, text) = get(&mesh, GAME_HOST, api, Some("deadbeef"));
    assert_eq!(code, 401, "{text}");
    assert!(
        text.contains(&format!(
            "www-authenticate: Bearer realm=\"http://{GAME_HOST}{api}\", error=\"invalid_token\""
        )),
        "{text}"
    );
    let forged = sign(
        "rsa-other.pem",
        "k1",
        &serde_json::json!({"iss": ISS, "sub": ISS, "exp": now() + 3600}),
    );
    let (code, text) = get(&mesh, GAME_HOST, api, Some(&forged));
    assert_eq!(code, 401, "{text}");
    assert!(text.ends_with("Jwt verification fails"), "{text}");
    let expired = sign(
        "rsa-k1.pem",
        "k1",
        &serde_json::json!({"iss": ISS, "sub": ISS, "exp": now() - 3600}),
    );
    let (code, text) = get(&mesh, GAME_HOST, api, Some(&expired));
    assert_eq!(
        (code, text.ends_with("Jwt is expired")),
        (401, true),
        "{text}"
    );

    let (code, text) = get(&mesh, GAME_HOST, api, Some(&good_token(&[])));
    assert_eq!(code, 200, "{text}");
    // outputClaimToHeaders: the player app echoes the x-player-tier it got — the token's
    // `tier` claim, whatever the client sent under that name.
    let tiered = sign(
        "rsa-k1.pem",
        "k1",
        &serde_json::json!({"iss": ISS, "sub": ISS, "exp": now() + 3600, "tier": "gold"}),
    );
    let out = curl(&[
        "-sS",
        "-m",
        "10",
        "-H",
        &format!("Host: {GAME_HOST}"),
        "-H",
        "x-player-tier: premium",
        "-H",
        &format!("Authorization: Bearer {tiered}"),
        &format!("http://{}{api}", mesh.gateway()),
    ]);
    let echo: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout_of(&out)));
    assert_eq!(echo["headers"]["x-player-tier"], "gold", "{echo}");
}

/// A JWKS server: the test's jwks.json at `/jwks.json`, on a port the kernel picks; says
/// where with one JSON line.
const JWKS_SERVER_PY: &str = r#"
import http.server, json, sys
doc = open(sys.argv[1], "rb").read()
class Keys(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = doc if self.path == "/jwks.json" else b"not found"
        self.send_response(200 if self.path == "/jwks.json" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keys)
print(json.dumps({"event": "ready", "port": server.server_address[1]}), flush=True)
server.serve_forever()
"#;

/// Istio's claim-based routing task: tokens whose `groups` claim holds `group1` go to the
/// leaderboard, others to the player service.
const CLAIM_ROUTES: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: claims-gateway, namespace: necpgame}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [claims.necpgame.local]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: claims, namespace: necpgame}
spec:
  hosts: [claims.necpgame.local]
  gateways: [claims-gateway]
  http:
  - match:
    - uri: {prefix: /api/v1/}
      headers: {"@request.auth.claims.groups": {exact: group1}}
    route: [{destination: {host: leaderboard}}]
  - route: [{destination: {host: player}}]
"#;

#[test]
fn jwt_at_the_ingress_gateway_with_keys_the_control_plane_fetches() {
    let (mut server, stdout, _stderr) = ChildGuard::spawn(
        Command::new("python3")
            .arg("-c")
            .arg(JWKS_SERVER_PY)
            .arg(testdata("jwks.json")),
    );
    let port = stdout.wait_for("the JWKS server's port", 0, Duration::from_secs(10), |t| {
        t.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["port"].as_u64())
    });
    let rule = format!("{{issuer: {ISS:?}, jwksUri: \"http://127.0.0.1:{port}/jwks.json\"}}");
    let mesh = Mesh::up_with("jwt-uri", |dir| {
        std::fs::write(dir.join("jwt.yaml"), ingress_yaml(&rule)).unwrap();
        std::fs::write(dir.join("claims.yaml"), CLAIM_ROUTES).unwrap();
    });
    // The keys were fetched before the gateway's first config: a good token passes at once.
    let api = "/api/v1/player/42";
    let (code, text) = get(&mesh, GAME_HOST, api, Some(&good_token(&[])));
    assert_eq!(code, 200, "{text}");
    let (code, _) = get(&mesh, GAME_HOST, api, None);
    assert_eq!(code, 403);
    let (code, text) = get(&mesh, GAME_HOST, api, Some("deadbeef"));
    assert_eq!(code, 401, "{text}");

    // Routing on the validated token's claims.
    let host = "claims.necpgame.local";
    let service = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("x-weft-service: "))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| panic!("no x-weft-service in {text}"))
    };
    let (code, text) = get(&mesh, host, api, Some(&good_token(&["group1"])));
    assert_eq!(code, 200, "{text}");
    assert_eq!(service(&text), "leaderboard", "{text}");
    let (code, text) = get(&mesh, host, api, Some(&good_token(&["group2"])));
    assert_eq!(code, 200, "{text}");
    assert_eq!(service(&text), "player", "{text}");

    // The JWKS server goes away: the gateway keeps the keys it was pushed.
    server.stop(Duration::from_secs(5));
    let (code, text) = get(&mesh, GAME_HOST, api, Some(&good_token(&[])));
    assert_eq!(code, 200, "{text}");
    assert!(
        mesh.log("control").contains("fetched the JWKS"),
        "the control plane says it fetched the keys"
    );
}
