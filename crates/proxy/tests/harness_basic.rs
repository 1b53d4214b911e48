//! The request path and the config stream, end to end in one process: client sidecar ->
//! mTLS -> server sidecar -> app, gateways, ACK/NACK and identities.

mod support;

use support::*;

const CLIENT_ID: &str = "spiffe://cluster.local/ns/test/sa/client";
const SERVER_ID: &str = "spiffe://cluster.local/ns/test/sa/server";

#[tokio::test]
async fn mtls_request_reaches_the_app_naming_the_caller() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    assert_eq!(pair.client.identity, CLIENT_ID);
    assert_eq!(pair.server.identity, SERVER_ID);

    let resp = pair.get("/hello?x=1").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header(APP_HEADER), Some("server-app"));

    let seen = app.last();
    assert_eq!(seen.path, "/hello?x=1");
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(
        seen.header("x-forwarded-client-cert"),
        Some(format!("By={SERVER_ID};URI={CLIENT_ID}").as_str())
    );
    assert_eq!(seen.header("host"), Some(pair.host.as_str()));
    assert!(
        seen.header(weft_proxy::PEER_HEADER).is_none(),
        "peer metadata is removed before the app"
    );
    assert!(seen.header("x-request-id").is_some());

    // Both sides counted it, with Istio's labels.
    requests_total(
        pair.client.admin,
        &[
            ("reporter", "source"),
            ("response_code", "200"),
            ("destination_principal", SERVER_ID),
        ],
        1.0,
    )
    .await;
    requests_total(
        pair.server.admin,
        &[
            ("reporter", "destination"),
            ("source_principal", CLIENT_ID),
            ("source_workload", "client"),
            ("connection_security_policy", "mutual_tls"),
        ],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn an_http2_app_gets_prior_knowledge_h2() {
    let app = App::echo("grpc-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let mut cfg = Config::sidecar(&pair.server).build();
    cfg.inbound.as_mut().unwrap().app_http2 = true;
    pair.control.push_acked("server", &cfg).await;
    let resp = pair.get("/h2").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(app.last().version, http::Version::HTTP_2);
}

#[tokio::test]
async fn a_bad_push_is_nacked_and_the_last_good_config_keeps_serving() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let good = pair
        .control
        .answers("client")
        .last()
        .unwrap()
        .version
        .clone();

    // A route to a cluster the config does not have.
    let mut bad = pair.config.clone().build();
    bad.routes.get_mut("outbound").unwrap().virtual_hosts[0].routes[0].destinations[0].cluster =
        "outbound|80||missing.test.svc.cluster.local".into();
    let v = pair.control.push("client", &bad);
    let error = pair.control.nacked("client", &v).await;
    assert!(
        error.contains("unknown cluster outbound|80||missing.test.svc.cluster.local"),
        "{error}"
    );

    // A payload that is not a ProxyConfig at all.
    let v = pair.control.next_version();
    pair.control.push_raw(
        "client",
        weft_protocol::pb::ConfigPush {
            version: v.clone(),
            config_json: b"{\"listeners\": 7}".to_vec(),
            ..Default::default()
        },
    );
    let error = pair.control.nacked("client", &v).await;
    assert!(error.contains("does not decode"), "{error}");

    let resp = pair.get("/").await;
    assert_eq!(resp.status, 200, "the last good config still routes");
    let dump: serde_json::Value =
        serde_json::from_str(&admin(pair.client.admin, "/config_dump").await.body).unwrap();
    assert_eq!(dump["version"], good.as_str());
}

#[tokio::test]
async fn a_new_route_is_live_once_acked() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let other = service_host("other", NAMESPACE);

    let before = get(pair.client.outbound(), &other, "/").await;
    assert_eq!(before.status, 404, "{}", before.body);
    assert!(before.body.contains("no virtual host"), "{}", before.body);
    requests_total(pair.client.admin, &[("response_flags", "NR")], 1.0).await;

    // `other` is served by the same sidecar; the app sees the new authority.
    let c = cluster(&other, 8080, vec![endpoint(&pair.server)]);
    let next = pair
        .config
        .clone()
        .route(&other, route_to(&c.name))
        .cluster(c);
    pair.control.push_acked("client", &next.build()).await;

    let after = get(pair.client.outbound(), &format!("{other}:8080"), "/x").await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(
        app.last().header("host"),
        Some(format!("{other}:8080").as_str())
    );
    assert_eq!(pair.get("/").await.status, 200, "the old route still works");
}

#[tokio::test]
async fn a_gateway_listener_forwards_over_mtls_to_a_sidecar() {
    let control = FakeControl::start().await;
    let app = App::echo("web").await;
    let web = Proxy::sidecar("web").app(app.addr).start(&control).await;
    let mut gw = Proxy::gateway("ingress").start(&control).await;
    assert!(gw.inbound.is_none() && gw.outbound.is_none());
    control
        .push_acked("web", &Config::sidecar(&web).build())
        .await;

    let host = service_host("web", NAMESPACE);
    let c = cluster(&host, 80, vec![endpoint(&web)]);
    let cfg = Config::gateway()
        .gateway_route(80, "shop.example.com", route_to(&c.name))
        .cluster(c);
    control.push_acked("ingress", &cfg.build()).await;
    let port80 = gw.listener("gateway_80").await;
    let listeners: serde_json::Value =
        serde_json::from_str(&admin(gw.admin, "/listeners").await.body).unwrap();
    assert_eq!(listeners["gateway_80"], port80.to_string());

    let resp = get(port80, "shop.example.com", "/cart").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = app.last();
    assert_eq!(seen.path, "/cart");
    assert!(
        seen.header("x-forwarded-client-cert")
            .unwrap()
            .ends_with("URI=spiffe://cluster.local/ns/test/sa/ingress"),
        "{:?}",
        seen.header("x-forwarded-client-cert")
    );
    let miss = get(port80, "elsewhere.example.com", "/").await;
    assert_eq!(miss.status, 404);

    // A push without the port closes it.
    control
        .push_acked("ingress", &Config::gateway().build())
        .await;
    assert!(tokio::net::TcpStream::connect(port80).await.is_err());
    gw.stop().await;
}

#[tokio::test]
async fn the_control_plane_decides_identities_and_clients_insist_on_them() {
    let control = FakeControl::start().await;
    control.set_identity("server", "spiffe://cluster.local/ns/test/sa/payments");
    let app = App::echo("server-app").await;
    let server = Proxy::sidecar("server").app(app.addr).start(&control).await;
    let client = Proxy::sidecar("client").start(&control).await;
    assert_eq!(
        server.identity,
        "spiffe://cluster.local/ns/test/sa/payments"
    );

    let host = service_host("server", NAMESPACE);
    let mut impostor = endpoint(&server);
    impostor.identity = "spiffe://cluster.local/ns/test/sa/server".into();
    let c = cluster(&host, 80, vec![impostor]);
    let cfg = Config::sidecar(&client)
        .route(&host, route_to(&c.name))
        .cluster(c);
    control.push_acked("client", &cfg.build()).await;
    let resp = get(client.outbound(), &host, "/").await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(
        resp.body.contains("upstream connect error"),
        "{}",
        resp.body
    );
    assert_eq!(app.count(), 0, "nothing reached the app");
    requests_total(client.admin, &[("response_flags", "UF")], 1.0).await;

    let c = cluster(&host, 80, vec![endpoint(&server)]);
    let cfg = Config::sidecar(&client)
        .route(&host, route_to(&c.name))
        .cluster(c);
    control.push_acked("client", &cfg.build()).await;
    assert_eq!(get(client.outbound(), &host, "/").await.status, 200);
}

#[tokio::test]
async fn a_proxy_needs_the_control_planes_token() {
    let control = FakeControl::builder().token("s3cret").start().await;
    let err = Proxy::sidecar("nobody")
        .try_start(&control)
        .await
        .err()
        .expect("no token, no certificate");
    assert!(err.contains("token"), "{err}");

    let mut p = Proxy::sidecar("member")
        .token("s3cret")
        .start(&control)
        .await;
    p.connected(1).await;
    let node = control.node("member").unwrap();
    assert_eq!(node.id, "sidecar~member.test");
    assert_eq!(node.inbound_addr, p.inbound().to_string());
    p.stop().await;
}

#[tokio::test]
async fn a_reconnecting_proxy_gets_the_latest_config_again() {
    let app = App::echo("server-app").await;
    let mut pair = Pair::start(&app, |r| r).await;
    pair.client.connected(1).await;
    pair.control.disconnect("client");
    pair.control.connections("client", 2).await;
    pair.client.connected(2).await;
    let node = pair.control.node("client").unwrap();
    assert!(
        !node.config_version.is_empty(),
        "the hello names the served version"
    );
    // The replayed push is answered again: one ACK per stream for the client's config.
    let acks = pair.control.wait_answers("client", 2).await;
    assert_eq!(acks[0].version, acks[1].version, "{acks:?}");
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    assert_eq!(pair.get("/").await.status, 200);
}

#[tokio::test]
async fn a_sidecar_ingress_listener_gives_the_app_address_of_its_port() {
    // Istio's Sidecar `ingress: [{port: {number: 9090}, defaultEndpoint: 127.0.0.1:<admin>}]`:
    // requests for service port 9090 go to the app's admin server, others to its address.
    let app = App::echo("main-app").await;
    let admin_app = App::echo("admin-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let mut server = Config::sidecar(&pair.server).build();
    let inbound = server.inbound.as_mut().unwrap();
    inbound.ports = vec![80, 9090];
    inbound.app_ports = [(9090, admin_app.addr.to_string())].into();
    pair.control.push_acked("server", &server).await;
    let host = pair.host.clone();
    let c9090 = cluster(&host, 9090, vec![endpoint(&pair.server)]);
    let cfg = pair
        .config
        .clone()
        .table_route("outbound", &format!("{host}:9090"), route_to(&c9090.name))
        .cluster(c9090)
        .build();
    pair.control.push_acked("client", &cfg).await;
    let r = get(pair.client.outbound(), &format!("{host}:9090"), "/admin").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header(APP_HEADER), Some("admin-app"));
    let r = pair.get("/main").await;
    assert_eq!(
        r.header(APP_HEADER),
        Some("main-app"),
        "{} {:?}",
        r.body,
        admin_app
            .requests()
            .iter()
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!((app.count(), admin_app.count()), (1, 1));
}
