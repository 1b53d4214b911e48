//! `weft proxy-config`: what one proxy of a running local mesh has — listeners, routes,
//! clusters, endpoints with health, certificate — read from its admin endpoint (Envoy's
//! `/config_dump`, `/clusters`, `/certs`; `istioctl proxy-config`'s role).

use crate::status::{http_get, read};
use anyhow::{bail, Context};
use serde_json::Value;
use std::fmt::Write;
use std::path::Path;

/// What to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Listeners,
    Routes,
    Clusters,
    Endpoints,
    Certs,
}

/// Finds the proxy (by full name, or a unique part of it) and its admin address.
fn admin_of(state_dir: &Path, proxy: &str) -> anyhow::Result<(String, String)> {
    let status = read(state_dir)?;
    let proxies: Vec<_> = status
        .processes
        .iter()
        .filter(|p| p.role == "sidecar" || p.role == "gateway")
        .collect();
    let exact: Vec<_> = proxies.iter().filter(|p| p.name == proxy).collect();
    let found: Vec<_> = if exact.is_empty() {
        proxies.iter().filter(|p| p.name.contains(proxy)).collect()
    } else {
        exact
    };
    match found.as_slice() {
        [p] => {
            let admin = p
                .addresses
                .get("admin")
                .with_context(|| format!("{} has no admin address yet", p.name))?;
            Ok((p.name.clone(), admin.clone()))
        }
        [] => bail!(
            "no proxy matches {proxy:?}; proxies: {}",
            proxies
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        many => bail!(
            "{proxy:?} matches several proxies: {}",
            many.iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

async fn get_json(admin: &str, path: &str) -> anyhow::Result<Value> {
    let body = http_get(admin, path)
        .await
        .with_context(|| format!("asking the proxy's admin endpoint {admin}{path}"))?;
    serde_json::from_str(&body).with_context(|| format!("{admin}{path} did not answer JSON"))
}

/// The view as JSON (`json`) or as text tables.
pub async fn proxy_config(
    state_dir: &Path,
    proxy: &str,
    view: View,
    json: bool,
) -> anyhow::Result<String> {
    let (name, admin) = admin_of(state_dir, proxy)?;
    let dump = get_json(&admin, "/config_dump").await?;
    let cfg = &dump["config"];
    let value = match view {
        View::Listeners => cfg["listeners"].clone(),
        View::Routes => cfg["routes"].clone(),
        View::Clusters | View::Endpoints => {
            let health = get_json(&admin, "/clusters").await?;
            let mut clusters = cfg["clusters"].clone();
            if let Some(map) = clusters.as_object_mut() {
                for (k, c) in map.iter_mut() {
                    c["ejected"] = health[k]["ejected"].clone();
                }
            }
            clusters
        }
        View::Certs => get_json(&admin, "/certs").await?,
    };
    if json {
        return Ok(serde_json::to_string_pretty(&value)?);
    }
    let mut out = format!(
        "{name} (config version {})\n",
        dump["version"].as_str().unwrap_or("-")
    );
    match view {
        View::Listeners => {
            let _ = writeln!(
                out,
                "{:<20} {:<10} {:>6}  ROUTE TABLE",
                "NAME", "KIND", "PORT"
            );
            for l in value.as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "{:<20} {:<10} {:>6}  {}",
                    s(&l["name"]),
                    s(&l["kind"]),
                    l["port"],
                    s(&l["route_table"])
                );
            }
        }
        View::Routes => {
            let _ = writeln!(
                out,
                "{:<14} {:<44} {:<28} DESTINATIONS",
                "TABLE", "DOMAINS", "ROUTE"
            );
            for (table, t) in value.as_object().into_iter().flatten() {
                for vh in t["virtual_hosts"].as_array().into_iter().flatten() {
                    let domains: Vec<&str> = vh["domains"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    for r in vh["routes"].as_array().into_iter().flatten() {
                        let dests: Vec<String> = r["destinations"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|d| format!("{}:{}", s(&d["cluster"]), d["weight"]))
                            .collect();
                        let _ = writeln!(
                            out,
                            "{:<14} {:<44} {:<28} {}",
                            table,
                            domains.join(","),
                            s(&r["name"]),
                            dests.join(" ")
                        );
                    }
                }
            }
        }
        View::Clusters => {
            let _ = writeln!(
                out,
                "{:<64} {:<14} {:>9} {:>7}",
                "CLUSTER", "LB", "ENDPOINTS", "EJECTED"
            );
            for (k, c) in value.as_object().into_iter().flatten() {
                let n = c["endpoints"].as_array().map_or(0, Vec::len);
                let e = c["ejected"].as_array().map_or(0, Vec::len);
                let _ = writeln!(out, "{:<64} {:<14} {:>9} {:>7}", k, s(&c["lb"]), n, e);
            }
        }
        View::Endpoints => {
            let _ = writeln!(
                out,
                "{:<24} {:<9} {:<56} IDENTITY",
                "ENDPOINT", "STATUS", "CLUSTER"
            );
            for (k, c) in value.as_object().into_iter().flatten() {
                let ejected: Vec<&str> = c["ejected"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                for e in c["endpoints"].as_array().into_iter().flatten() {
                    let addr = s(&e["address"]);
                    let status = if ejected.contains(&addr.as_str()) {
                        "EJECTED"
                    } else {
                        "HEALTHY"
                    };
                    let _ = writeln!(
                        out,
                        "{:<24} {:<9} {:<56} {}",
                        addr,
                        status,
                        k,
                        s(&e["identity"])
                    );
                }
            }
        }
        View::Certs => {
            let _ = writeln!(
                out,
                "identity:  {}\nnot after: {} (unix seconds)",
                s(&value["identity"]),
                value["not_after_unix"]
            );
        }
    }
    Ok(out)
}

fn s(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}
