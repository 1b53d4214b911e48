//! PeerAuthentication on a sidecar's inbound side — STRICT takes only mTLS, PERMISSIVE
//! takes mTLS and plaintext on one port, DISABLE only plaintext, port-level overrides — and
//! the client side's auto-mTLS (plaintext to endpoints marked so).

mod support;

use http::Request;
use http_body_util::Full;
use support::*;
use weft_model::mtls::{InboundMode, InboundMtls};
use weft_model::{Authz, AuthzAction, AuthzAttr, AuthzField, AuthzPolicy, AuthzRule};

const CLIENT_ID: &str = "spiffe://cluster.local/ns/test/sa/client";

async fn set_mode(pair: &Pair, mode: InboundMode, ports: &[(u32, InboundMode)]) {
    let mut cfg = Config::sidecar(&pair.server).build();
    cfg.inbound.as_mut().unwrap().mtls = InboundMtls {
        mode,
        ports: ports.iter().copied().collect(),
    };
    pair.control.push_acked("server", &cfg).await;
}

/// A plaintext HTTP/1.1 request straight to the server's inbound listener, as a client
/// without a sidecar sends it.
async fn plaintext(pair: &Pair, host: &str) -> Result<Resp, String> {
    try_send(
        pair.server.inbound(),
        Request::get("/from-outside")
            .header("host", host)
            .body(Full::default())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn permissive_takes_mtls_and_plaintext_on_one_port_and_strict_only_mtls() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;

    // STRICT (the harness default): the plaintext client is cut off.
    assert!(plaintext(&pair, &pair.host).await.is_err());
    assert_eq!(app.count(), 0);

    set_mode(&pair, InboundMode::Permissive, &[]).await;
    let plain = plaintext(&pair, &pair.host)
        .await
        .expect("PERMISSIVE takes plaintext");
    assert_eq!(plain.status, 200, "{}", plain.body);
    let seen = app.last();
    assert!(
        seen.header("x-forwarded-client-cert").is_none(),
        "a plaintext caller has no certificate to name"
    );
    // … and cannot claim one: a forged header is removed.
    let forged = try_send(
        pair.server.inbound(),
        Request::get("/forged")
            .header("host", &pair.host)
            .header("x-forwarded-client-cert", format!("By=x;URI={CLIENT_ID}"))
            .body(Full::default())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(forged.status, 200);
    assert!(app.last().header("x-forwarded-client-cert").is_none());
    // mTLS peers still get through, with their identity.
    let mesh = pair.get("/from-mesh").await;
    assert_eq!(mesh.status, 200, "{}", mesh.body);
    assert!(app
        .last()
        .header("x-forwarded-client-cert")
        .is_some_and(|x| x.contains(CLIENT_ID)));
    // The destination counted both, telling them apart.
    requests_total(
        pair.server.admin,
        &[
            ("reporter", "destination"),
            ("connection_security_policy", "none"),
            ("source_workload", "unknown"),
        ],
        2.0,
    )
    .await;
    requests_total(
        pair.server.admin,
        &[
            ("reporter", "destination"),
            ("connection_security_policy", "mutual_tls"),
            ("source_principal", CLIENT_ID),
        ],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn disable_takes_only_plaintext_and_auto_mtls_clients_send_it() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    set_mode(&pair, InboundMode::Disable, &[]).await;
    assert_eq!(plaintext(&pair, &pair.host).await.unwrap().status, 200);
    // The client still sends mTLS: refused.
    let refused = pair.get("/mtls").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    // With the endpoint marked plaintext (what auto-mTLS compiles for a DISABLE server),
    // the client sends h2c and gets through.
    let mut cfg = pair.config.clone().build();
    for c in cfg.clusters.values_mut() {
        for e in &mut c.endpoints {
            e.plaintext = true;
        }
    }
    pair.control.push_acked("client", &cfg).await;
    let ok = pair.get("/h2c").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let seen = app.last();
    assert_eq!(seen.path, "/h2c");
    assert!(seen.header("x-forwarded-client-cert").is_none());
}

#[tokio::test]
async fn port_level_modes_apply_to_the_port_a_request_addresses() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    set_mode(
        &pair,
        InboundMode::Permissive,
        &[(9000, InboundMode::Strict)],
    )
    .await;
    let open = plaintext(&pair, &format!("{}:8080", pair.host))
        .await
        .unwrap();
    assert_eq!(open.status, 200, "{}", open.body);
    let strict = plaintext(&pair, &format!("{}:9000", pair.host))
        .await
        .unwrap();
    assert_eq!(strict.status, 403);
    assert!(
        strict.body.contains("port 9000 requires mutual TLS"),
        "{}",
        strict.body
    );
    assert_eq!(app.count(), 1);
}

#[tokio::test]
async fn a_plaintext_caller_has_no_principal_for_authorization() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let mut cfg = Config::sidecar(&pair.server).build();
    cfg.inbound.as_mut().unwrap().mtls.mode = InboundMode::Permissive;
    // Istio's "require mTLS" idiom: deny requests without a principal.
    cfg.authz = Authz {
        policies: vec![AuthzPolicy {
            name: "test.require-mtls".into(),
            action: AuthzAction::Deny,
            dry_run: false,
            rules: vec![AuthzRule {
                from: vec![vec![AuthzField {
                    attr: AuthzAttr::Principal,
                    values: vec![],
                    not_values: vec!["*".into()],
                }]],
                ..Default::default()
            }],
            provider: None,
        }],
        providers: vec![],
    };
    pair.control.push_acked("server", &cfg).await;
    let plain = plaintext(&pair, &pair.host).await.unwrap();
    assert_eq!(
        (plain.status, plain.body.as_str()),
        (403, "RBAC: access denied")
    );
    assert_eq!(pair.get("/mtls").await.status, 200);
}
