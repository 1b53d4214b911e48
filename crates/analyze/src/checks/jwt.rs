//! JWT claim-based routing (WA0117, istioctl IST0149): a VirtualService route that matches
//! `@request.auth.claims.*` on a gateway whose workloads no RequestAuthentication selects
//! never matches — without a validated token there are no claims.

use weft_api::{RequestAuthentication, Resource, Spec, VirtualService};
use weft_model::registry::selects;

use super::{at, gateway_ref};
use crate::finding::*;
use crate::index::Index;

pub(super) fn check(ix: &Index<'_>, out: &mut Vec<Finding>) {
    for r in ix.res {
        if let Spec::VirtualService(vs) = &r.spec {
            claim_routes(ix, r, vs, out);
        }
    }
}

/// Whether some RequestAuthentication applies to workload `w` (Istio's scoping).
fn authenticated(ix: &Index<'_>, w: usize) -> bool {
    let root = weft_model::mesh::root_namespace(ix.res);
    let wr = &ix.res[w];
    let labels = &ix.we(w).labels;
    ix.res.iter().any(|r| match &r.spec {
        Spec::RequestAuthentication(RequestAuthentication {
            selector,
            target_ref: None,
            target_refs,
            ..
        }) if target_refs.is_empty() => {
            (r.namespace() == root || r.namespace() == wr.namespace())
                && selector
                    .as_ref()
                    .is_none_or(|s| selects(&s.match_labels, labels))
        }
        _ => false,
    })
}

fn claim_routes(ix: &Index<'_>, r: &Resource, vs: &VirtualService, out: &mut Vec<Finding>) {
    for (i, http) in vs.http.iter().enumerate() {
        for (j, m) in http.r#match.iter().enumerate() {
            for key in m.headers.keys() {
                if weft_api::routing_claim(key).is_none() {
                    continue;
                }
                for g in &vs.gateways {
                    let Some((ns, name)) = gateway_ref(g, r.namespace()) else {
                        continue;
                    };
                    let Some(gw) = ix.res.iter().find_map(|x| match &x.spec {
                        Spec::Gateway(gw) if x.namespace() == ns && x.name() == name => Some(gw),
                        _ => None,
                    }) else {
                        continue;
                    };
                    let pods = ix.select(None, &gw.selector);
                    if let Some(&w) = pods.iter().find(|&&w| !authenticated(ix, w)) {
                        let wr = &ix.res[w];
                        out.push(at(
                            r,
                            &format!("spec.http[{i}].match[{j}].headers.{key}"),
                            JWT_CLAIM_ROUTE_WITHOUT_AUTHN,
                            Severity::Error,
                            format!(
                                "the route matches the JWT claim {key} but no RequestAuthentication applies to {}/{} behind gateway {ns}/{name}: without a validated token there are no claims, so it never matches",
                                wr.namespace(),
                                wr.name()
                            ),
                            Some("add a RequestAuthentication that selects the gateway's workload (e.g. in istio-system with its labels)".into()),
                        ));
                    }
                }
            }
        }
    }
}
