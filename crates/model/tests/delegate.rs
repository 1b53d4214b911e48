//! VirtualService delegation (`http[].delegate`): delegate routes merged into the root's
//! at the delegating route's position, as Istio's `mergeVirtualServices` /
//! `MergeHTTPRoutes` do — on gateways and on sidecars.

use weft_model::*;

/// Loads `text`, checks validation says `invalid` (empty: nothing), and compiles for the
/// WorkloadEntry `workload` in `ns`.
fn compile_for(text: &str, invalid: &[&str], role: Role, workload: &str, ns: &str) -> ProxyConfig {
    let loaded = weft_api::load_str(text, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let errors: Vec<String> = weft_api::validate_all(&loaded.resources)
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), invalid.len(), "{errors:#?}");
    for (e, want) in errors.iter().zip(invalid) {
        assert!(e.contains(want), "{e}");
    }
    let reg = Registry::build(&loaded.resources, &[]);
    let p = ProxyRef {
        role,
        workload: workload.into(),
        namespace: ns.into(),
    };
    compile(&loaded.resources, &reg, "cluster.local", &p).unwrap()
}

/// `VirtualService/ns/name (file:line)` of a root, and of the delegate it went through.
fn origin(text: &str, root: (&str, &str), delegate: Option<(&str, &str)>) -> String {
    let resources = weft_api::load_str(text, "mesh.yaml").resources;
    let one = |(ns, name): (&str, &str)| {
        let key = format!("VirtualService/{ns}/{name}");
        let r = resources.iter().find(|r| r.key() == key).unwrap();
        format!("{key} (mesh.yaml:{})", r.source.line)
    };
    match delegate {
        Some(d) => format!("{} via {}", one(root), one(d)),
        None => one(root),
    }
}

fn uri(m: StringMatcher) -> RouteMatch {
    RouteMatch {
        uri: Some(m),
        ..Default::default()
    }
}

fn prefix(p: &str) -> RouteMatch {
    uri(StringMatcher::Prefix(p.into()))
}

fn header(name: &str, value: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        matcher: StringMatcher::Exact(value.into()),
    }
}

fn clusters(r: &Route) -> Vec<&str> {
    r.destinations.iter().map(|d| d.cluster.as_str()).collect()
}

const WORKLOADS: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: gw, namespace: istio-system}
spec: {address: 127.0.0.1, labels: {istio: ingressgateway}, serviceAccount: gw}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: nsa}
spec: {address: 127.0.0.1, labels: {app: client}, serviceAccount: client}
"#;

/// istio.io's VirtualService reference, `Delegate` (namespaces `nsA`/`nsB` lower-cased,
/// as Kubernetes names are): `/productpage` to `productpage` in nsA, `/reviews` to
/// `reviews` in nsB, on a gateway.
const BOOKINFO: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: mygateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [bookinfo.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: [bookinfo.com]
  gateways: [mygateway]
  http:
  - match:
    - uri: {prefix: /productpage}
    delegate: {name: productpage, namespace: nsa}
  - match:
    - uri: {prefix: /reviews}
    delegate: {name: reviews, namespace: nsb}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: nsa}
spec:
  http:
  - match:
    - uri: {prefix: /productpage/v1/}
    route:
    - destination: {host: productpage-v1.nsa.svc.cluster.local}
  - route:
    - destination: {host: productpage.nsa.svc.cluster.local}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: nsb}
spec:
  http:
  - route:
    - destination: {host: reviews.nsb.svc.cluster.local}
"#;

#[test]
fn istio_reference_example_on_a_gateway() {
    let text = format!("{WORKLOADS}{BOOKINFO}");
    let cfg = compile_for(&text, &[], Role::Gateway, "gw", "istio-system");
    let table = &cfg.routes["gateway_80"];
    // The delegates (no hosts, no gateways) get no virtual host of their own.
    assert_eq!(table.virtual_hosts.len(), 1);
    let vh = &table.virtual_hosts[0];
    assert_eq!(vh.name, "VirtualService/default/bookinfo");
    assert_eq!(vh.domains, ["bookinfo.com"]);
    let routes = &vh.routes;
    assert_eq!(routes.len(), 3, "{routes:#?}");
    let root = ("default", "bookinfo");
    let (pp, rv) = (("nsa", "productpage"), ("nsb", "reviews"));

    // The delegate's narrower prefix replaces the root's.
    assert_eq!(routes[0].matches, [prefix("/productpage/v1/")]);
    assert_eq!(
        clusters(&routes[0]),
        ["outbound|80||productpage-v1.nsa.svc.cluster.local"]
    );
    assert_eq!(routes[0].name, "bookinfo/http[0]/productpage/http[0]");
    assert_eq!(routes[0].origin, origin(&text, root, Some(pp)));
    // A delegate route without matches takes the root's.
    assert_eq!(routes[1].matches, [prefix("/productpage")]);
    assert_eq!(
        clusters(&routes[1]),
        ["outbound|80||productpage.nsa.svc.cluster.local"]
    );
    assert_eq!(routes[1].origin, origin(&text, root, Some(pp)));
    assert_eq!(routes[2].matches, [prefix("/reviews")]);
    assert_eq!(
        clusters(&routes[2]),
        ["outbound|80||reviews.nsb.svc.cluster.local"]
    );
    assert_eq!(routes[2].name, "bookinfo/http[1]/reviews/http[0]");
    assert_eq!(routes[2].origin, origin(&text, root, Some(rv)));
    assert!(
        cfg.clusters
            .contains_key("outbound|80||reviews.nsb.svc.cluster.local"),
        "{:?}",
        cfg.clusters.keys()
    );
    // A correct delegation is enforced: nothing is reported about it.
    assert!(cfg.not_enforced.is_empty(), "{:#?}", cfg.not_enforced);
    let all = not_enforced(&weft_api::load_str(&text, "mesh.yaml").resources);
    assert!(all.is_empty(), "{all:#?}");
}

/// A sidecar's VirtualService delegating in its own namespace: matches narrowed (the
/// cross product, conflicting pairs left out), headers added, unset route fields taken
/// from the root, a delegate route conflicting with every root match dropped.
const REVIEWS_MESH: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: nsb}
spec:
  hosts: [reviews.nsb.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-root, namespace: nsb}
spec:
  hosts: [reviews]
  http:
  - name: api
    match:
    - uri: {prefix: /api}
      headers: {x-team: {exact: blue}}
    - uri: {prefix: /v2/api}
    timeout: 3s
    headers:
      request:
        set: {x-root: "1"}
    delegate: {name: reviews-api}
  - name: rest
    route:
    - destination: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-api, namespace: nsb}
spec:
  http:
  - name: v2
    match:
    - uri: {prefix: /api/v2}
      headers: {x-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2}
  - name: elsewhere
    match:
    - uri: {prefix: /other}
    route:
    - destination: {host: reviews, subset: v3}
  - name: fallback
    timeout: 1s
    route:
    - destination: {host: reviews, subset: v1}
"#;

fn reviews_routes(cfg: &ProxyConfig) -> &[Route] {
    let vh = cfg.routes["outbound"]
        .virtual_hosts
        .iter()
        .find(|v| v.name == "reviews.nsb.svc.cluster.local")
        .expect("reviews virtual host");
    &vh.routes
}

#[test]
fn sidecar_delegate_narrows_matches_adds_headers_and_inherits_unset_fields() {
    let text = format!("{WORKLOADS}{REVIEWS_MESH}");
    let cfg = compile_for(&text, &[], Role::Sidecar, "client", "nsa");
    let routes = reviews_routes(&cfg);
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    // `elsewhere` (/other is under neither /api nor /v2/api) is dropped.
    assert_eq!(names, ["api-v2", "api-fallback", "rest"]);
    let root = ("nsb", "reviews-root");
    let delegate = Some(("nsb", "reviews-api"));

    // /api/v2 lies under /api (headers unioned) but not under /v2/api: one match.
    let v2 = &routes[0];
    assert_eq!(
        v2.matches,
        [RouteMatch {
            headers: vec![header("x-team", "blue"), header("x-user", "jason")],
            ..prefix("/api/v2")
        }]
    );
    assert_eq!(
        clusters(v2),
        ["outbound|9080|v2|reviews.nsb.svc.cluster.local"]
    );
    // Unset in the delegate route: the root's timeout and header operations.
    assert_eq!(v2.timeout_ms, Some(3000));
    assert_eq!(
        v2.request_headers.set,
        [("x-root".to_string(), "1".to_string())]
    );
    assert_eq!(v2.origin, origin(&text, root, delegate));

    // No matches of its own: the root's; its own timeout wins.
    let fallback = &routes[1];
    assert_eq!(
        fallback.matches,
        [
            RouteMatch {
                headers: vec![header("x-team", "blue")],
                ..prefix("/api")
            },
            prefix("/v2/api"),
        ]
    );
    assert_eq!(fallback.timeout_ms, Some(1000));
    assert_eq!(
        clusters(fallback),
        ["outbound|9080|v1|reviews.nsb.svc.cluster.local"]
    );
    assert_eq!(fallback.origin, origin(&text, root, delegate));

    // The root's own route after the delegated ones, unchanged.
    assert_eq!(routes[2].matches, []);
    assert_eq!(routes[2].origin, origin(&text, root, None));
    assert!(cfg.not_enforced.is_empty(), "{:#?}", cfg.not_enforced);
}

#[test]
fn a_missing_delegate_drops_only_its_route() {
    // `reviews-gone` does not exist; `reviews` has hosts, so it is no delegate (Istio
    // looks delegates up among VirtualServices without hosts).
    let text =
        format!(
        "{WORKLOADS}{}",
        REVIEWS_MESH
            .replace("delegate: {name: reviews-api}", "delegate: {name: reviews-gone}")
            .replace(
                "  - name: rest\n",
                "  - name: not-a-delegate\n    delegate: {name: reviews-root}\n  - name: rest\n"
            )
    );
    let cfg = compile_for(&text, &[], Role::Sidecar, "client", "nsa");
    let names: Vec<&str> = reviews_routes(&cfg)
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["rest"]);
    assert!(cfg.not_enforced.is_empty(), "{:#?}", cfg.not_enforced);
}

#[test]
fn a_delegates_own_delegation_is_not_followed() {
    let second = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-deeper, namespace: nsb}
spec:
  http:
  - route:
    - destination: {host: reviews, subset: deep}
"#;
    let text = format!(
        "{WORKLOADS}{}{second}",
        REVIEWS_MESH.replace(
            "  - name: elsewhere\n",
            "  - name: deeper\n    delegate: {name: reviews-deeper}\n  - name: elsewhere\n"
        )
    );
    // Validation refuses it; compiled anyway, the second level is left out.
    let cfg = compile_for(
        &text,
        &["delegation is one level deep"],
        Role::Sidecar,
        "client",
        "nsa",
    );
    let routes = reviews_routes(&cfg);
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["api-v2", "api-fallback", "rest"]);
    assert!(!cfg.clusters.keys().any(|c| c.contains("|deep|")));
}

#[test]
fn a_used_delegates_unbuilt_fields_are_reported_to_its_proxies() {
    // `statPrefix` is not built: reported for the proxies whose routes the delegate
    // shapes, under the delegate's name — and `delegate` itself is not reported.
    let text = format!(
        "{WORKLOADS}{}",
        REVIEWS_MESH.replace(
            "    - uri: {prefix: /api/v2}\n",
            "    - uri: {prefix: /api/v2}\n      statPrefix: v2\n"
        )
    );
    let cfg = compile_for(&text, &[], Role::Sidecar, "client", "nsa");
    let reported: Vec<String> = cfg
        .not_enforced
        .iter()
        .map(|n| format!("{} {}", n.resource, n.what))
        .collect();
    assert_eq!(
        reported,
        ["VirtualService/nsb/reviews-api http[0].match[0].statPrefix"]
    );
    // The gateway uses no VirtualService here: nothing is reported to it.
    let gw = compile_for(&text, &[], Role::Gateway, "gw", "istio-system");
    assert!(gw.not_enforced.is_empty(), "{:#?}", gw.not_enforced);
}

#[test]
fn gateway_delegate_matches_keep_client_conditions_of_both() {
    // The root only serves /productpage to the gateway `mygateway` (its match names the
    // gateway); the delegate's match adds a method and a query parameter; a delegate
    // match with another port conflicts with the root's and is dropped with its route.
    let productpage = r#"
  http:
  - match:
    - uri: {exact: /productpage/v1/}
      method: {exact: GET}
      queryParams: {u: {exact: "1"}}
    route:
    - destination: {host: productpage-v1.nsa.svc.cluster.local}
  - match:
    - port: 8080
    route:
    - destination: {host: elsewhere.nsa.svc.cluster.local}
  - match:
    - uri: {prefix: /productpage/v1/}
    route:
"#;
    let text = format!(
        "{WORKLOADS}{}",
        BOOKINFO
            .replace(
                "    - uri: {prefix: /productpage}\n",
                "    - uri: {prefix: /productpage}\n      gateways: [mygateway]\n      port: 80\n"
            )
            .replace(
                "\n  http:\n  - match:\n    - uri: {prefix: /productpage/v1/}\n    route:\n",
                productpage
            )
    );
    let cfg = compile_for(&text, &[], Role::Gateway, "gw", "istio-system");
    let routes = &cfg.routes["gateway_80"].virtual_hosts[0].routes;
    assert_eq!(routes.len(), 4, "{routes:#?}");
    assert_eq!(
        routes[0].matches,
        [RouteMatch {
            method: Some(StringMatcher::Exact("GET".into())),
            query_params: vec![header("u", "1")],
            ..uri(StringMatcher::Exact("/productpage/v1/".into()))
        }]
    );
    assert_eq!(
        clusters(&routes[0]),
        ["outbound|80||productpage-v1.nsa.svc.cluster.local"]
    );
    assert_eq!(routes[1].matches, [prefix("/productpage/v1/")]);
    assert_eq!(routes[2].matches, [prefix("/productpage")]);
    assert_eq!(routes[3].matches, [prefix("/reviews")]);
    assert!(!cfg.clusters.keys().any(|c| c.contains("elsewhere")));

    // The root's client conditions hold in the merged routes: on another gateway the
    // productpage routes do not exist.
    let other = text.replace(
        "gateways: [mygateway]\n      port",
        "gateways: [other]\n      port",
    );
    let cfg = compile_for(&other, &[], Role::Gateway, "gw", "istio-system");
    let routes = &cfg.routes["gateway_80"].virtual_hosts[0].routes;
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["bookinfo/http[1]/reviews/http[0]"]);
}
