//! Derives traffic-generator routes from the VirtualServices bound to gateways: one route
//! per HTTP match (URI exact/prefix plus exact header matches), so `weft demo`/`weft up
//! --traffic` exercise every route the config declares.

use weft_api::{Resource, Spec};
use weft_demo::LoadRoute;

/// Routes for every gateway-bound VirtualService (regex-only matches are skipped).
pub fn load_routes(resources: &[Resource]) -> Vec<LoadRoute> {
    let mut out = Vec::new();
    for r in resources {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        if vs.gateways.is_empty() || vs.gateways.iter().all(|g| g == "mesh") {
            continue;
        }
        let host = vs
            .hosts
            .iter()
            .find(|h| !h.contains('*'))
            .cloned()
            .unwrap_or_else(|| "localhost".into());
        for (i, http) in vs.http.iter().enumerate() {
            let base = http
                .name
                .clone()
                .unwrap_or_else(|| format!("{}[{i}]", r.name()));
            if http.r#match.is_empty() {
                out.push(LoadRoute {
                    name: base.clone(),
                    authority: host.clone(),
                    path: "/".into(),
                    headers: vec![],
                });
            }
            for m in &http.r#match {
                let path = match &m.uri {
                    None => "/".to_string(),
                    Some(u) => match (&u.exact, &u.prefix) {
                        (Some(e), _) => e.clone(),
                        (None, Some(p)) => p.clone(),
                        (None, None) => continue,
                    },
                };
                let headers: Vec<(String, String)> = m
                    .headers
                    .iter()
                    .filter_map(|(k, v)| v.exact.clone().map(|e| (k.clone(), e)))
                    .collect();
                if headers.len() != m.headers.len() {
                    continue;
                }
                let name = match &m.name {
                    Some(n) => format!("{base}/{n}"),
                    None => base.clone(),
                };
                out.push(LoadRoute {
                    name,
                    authority: host.clone(),
                    path,
                    headers,
                });
            }
        }
    }
    out
}
