//! Zero-trust on the real binary, with the NECPGAME example as shipped: its
//! AuthorizationPolicies decide who may call whom, through real sidecars and the gateway,
//! with curl as the client. (Its own test binary: it runs beside `e2e.rs`'s meshes.)

mod common;

use common::*;
use std::time::Duration;

const PLAYER_HOST: &str = "player.necpgame.svc.cluster.local:8080";
const LEADERBOARD_HOST: &str = "leaderboard.necpgame.svc.cluster.local:8080";

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
