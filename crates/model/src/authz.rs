//! AuthorizationPolicy for one proxy: which policies select its workload (Istio's scoping:
//! the root namespace mesh-wide, the workload's namespace, `selector`), and their rules in
//! a uniform form the proxy evaluates — every source field, operation field and `when`
//! condition becomes one [`AuthzField`] (an attribute, values, notValues).

use crate::registry::selects;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use weft_api::{
    Action, AuthorizationPolicy, Condition, MeshConfig, Operation, Resource, RuleSource, Spec,
};

/// MeshConfig `rootNamespace`'s default: policies here apply mesh-wide.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// The annotation that makes a policy log and count its decisions without enforcing them.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// Istio's trust-domain aliasing for principals: a `cluster.local/ns/N/sa/S` value (the
/// default trust domain, what most policies are written with) also names
/// `<mesh trust domain>/ns/N/sa/S`, so policies keep working under `--trust-domain`.
pub(crate) fn alias_trust_domain(authz: &mut Authz, trust_domain: &str) {
    if trust_domain == "cluster.local" {
        return;
    }
    let expand = |list: &mut Vec<String>| {
        let extra: Vec<String> = list
            .iter()
            .filter_map(|v| {
                let rest = v.strip_prefix("cluster.local/")?;
                (rest.split('/').count() == 4).then(|| format!("{trust_domain}/{rest}"))
            })
            .collect();
        list.extend(extra);
    };
    let fields = authz.policies.iter_mut().flat_map(|p| {
        p.rules.iter_mut().flat_map(|r| {
            r.from
                .iter_mut()
                .flatten()
                .chain(r.to.iter_mut().flatten())
                .chain(r.when.iter_mut())
        })
    });
    for f in fields.filter(|f| f.attr == AuthzAttr::Principal) {
        expand(&mut f.values);
        expand(&mut f.not_values);
    }
}

/// Go's `strconv.ParseBool`, which Istio reads `istio.io/dry-run` with.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The AuthorizationPolicies one proxy enforces, in the order they were declared.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Authz {
    pub policies: Vec<AuthzPolicy>,
    /// The external authorizers CUSTOM policies call (at most one per workload).
    #[serde(default)]
    pub providers: Vec<crate::ext_authz::ExtAuthzProvider>,
}

impl Authz {
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

/// One policy as it applies to this proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzPolicy {
    /// `namespace.name`, as Istio names a policy in logs and metrics.
    pub name: String,
    pub action: AuthzAction,
    /// `istio.io/dry-run: "true"`: decisions are logged and counted, never enforced.
    pub dry_run: bool,
    /// The policy matches a request when any rule does; no rules = matches nothing.
    pub rules: Vec<AuthzRule>,
    /// CUSTOM: the extension provider to ask.
    #[serde(default)]
    pub provider: Option<String>,
}

/// What a matching policy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthzAction {
    Allow,
    Deny,
    Audit,
    /// Ask the policy's external authorizer.
    Custom,
}

/// A rule matches when one of `from`, one of `to` and every `when` field match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuthzRule {
    /// Alternatives, each a conjunction of fields; empty = any source.
    pub from: Vec<Vec<AuthzField>>,
    /// Alternatives, each a conjunction of fields; empty = any operation.
    pub to: Vec<Vec<AuthzField>>,
    pub when: Vec<AuthzField>,
}

/// One attribute test: the value must match one of `values` (when any are given) and none
/// of `not_values`. An absent attribute (no mTLS peer, no header) matches no value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthzField {
    pub attr: AuthzAttr,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}

/// What an [`AuthzField`] tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthzAttr {
    /// The mTLS peer's SPIFFE id without `spiffe://` (`td/ns/N/sa/S`).
    Principal,
    /// The namespace in the peer's SPIFFE id.
    Namespace,
    /// `ns/sa` of the peer (a value without `/` is in the policy's namespace).
    ServiceAccount,
    /// The JWT's `iss/sub`.
    RequestPrincipal,
    /// The downstream connection's address (IPs or CIDRs).
    SourceIp,
    /// The original client address (X-Forwarded-For, as far as hops are trusted).
    RemoteIp,
    /// The Host / authority (case-insensitive).
    Host,
    /// The destination port.
    Port,
    Method,
    /// The path without its query string (after normalization); `{*}`/`{**}` templates.
    Path,
    /// A request header (lower-case name).
    Header(String),
    /// `request.auth.audiences`, `presenter`, `claims[a][b]`.
    AuthAudience,
    AuthPresenter,
    AuthClaim(Vec<String>),
    /// The address the connection was accepted on.
    DestinationIp,
    /// The TLS server name the downstream sent.
    Sni,
    /// A key weft cannot evaluate (`experimental.*`; reported as not enforced): absent on
    /// every request, so its values never match and its notValues always do.
    Unsupported(String),
}

/// The policies that select the workload `(namespace, labels)`, compiled for its proxy,
/// with the keys of the resources used. Policies with `targetRef(s)` attach to Gateway API
/// gateways and waypoints, which weft does not build (reported as not enforced).
pub fn authz_for(
    resources: &[Resource],
    mesh: Option<&MeshConfig>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> (Authz, Vec<String>) {
    let root_namespace = mesh
        .and_then(|m| m.root_namespace.as_deref())
        .unwrap_or(DEFAULT_ROOT_NAMESPACE);
    let mut out = Authz::default();
    let mut used = Vec::new();
    let applicable: Vec<(&Resource, &AuthorizationPolicy)> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::AuthorizationPolicy(ap) => Some((r, ap)),
            _ => None,
        })
        .filter(|(r, ap)| applies(r, ap, root_namespace, namespace, labels))
        .collect();
    // Istio lets one workload's CUSTOM policies use one provider only.
    let custom_providers: BTreeSet<&str> = applicable
        .iter()
        .filter(|(_, ap)| ap.action == Some(Action::Custom))
        .filter_map(|(_, ap)| ap.provider.as_ref()?.name.as_deref())
        .collect();
    for (r, ap) in applicable {
        let mut name = format!("{}.{}", r.namespace(), r.name());
        let mut provider = None;
        let action = match ap.action.unwrap_or_default() {
            Action::Allow => AuthzAction::Allow,
            Action::Deny => AuthzAction::Deny,
            Action::Audit => AuthzAction::Audit,
            Action::Custom => {
                let p = ap
                    .provider
                    .as_ref()
                    .and_then(|p| p.name.clone())
                    .unwrap_or_default();
                match crate::ext_authz::provider(mesh, &p) {
                    Some(compiled) if custom_providers.len() == 1 => {
                        if !out.providers.iter().any(|q| q.name == compiled.name) {
                            out.providers.push(compiled);
                        }
                        provider = Some(p);
                        AuthzAction::Custom
                    }
                    // A bad CUSTOM action denies what it matches, as Istio does.
                    _ => {
                        name.push_str("-deny-due-to-bad-CUSTOM-action");
                        AuthzAction::Deny
                    }
                }
            }
        };
        used.push(r.key());
        out.policies.push(AuthzPolicy {
            name,
            action,
            dry_run: r
                .metadata
                .annotations
                .get(DRY_RUN_ANNOTATION)
                .is_some_and(|v| parse_bool(v) == Some(true)),
            rules: ap
                .rules
                .iter()
                .flatten()
                .map(|rule| compile_rule(rule, r.namespace()))
                .collect(),
            provider,
        });
    }
    (out, used)
}

fn compile_rule(rule: &weft_api::Rule, policy_ns: &str) -> AuthzRule {
    AuthzRule {
        from: rule
            .from
            .iter()
            .flatten()
            .filter_map(|f| f.source.as_ref())
            .map(|s| source_fields(s, policy_ns))
            .collect(),
        to: rule
            .to
            .iter()
            .flatten()
            .filter_map(|t| t.operation.as_ref())
            .map(operation_fields)
            .collect(),
        when: rule
            .when
            .iter()
            .flatten()
            .map(|c| condition_field(c, policy_ns))
            .collect(),
    }
}

/// Istio's scoping: a policy in the root namespace applies to every workload its selector
/// picks (all without one); elsewhere only to the workloads of its own namespace.
fn applies(
    r: &Resource,
    ap: &AuthorizationPolicy,
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let targeted = ap.target_ref.is_some() || !ap.target_refs.is_empty();
    in_scope(
        r,
        ap.selector.as_ref(),
        targeted,
        root_namespace,
        namespace,
        labels,
    )
}

/// Istio's policy attachment for sidecars and classic gateways: a policy with
/// `targetRef(s)` attaches to none of them; otherwise it applies when it is in the root
/// namespace or the workload's, and its selector (if any) picks the workload.
pub(crate) fn in_scope(
    r: &Resource,
    selector: Option<&weft_api::LabelSelector>,
    targeted: bool,
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    if targeted {
        return false;
    }
    let ns = r.namespace();
    (ns == root_namespace || ns == namespace)
        && selector.is_none_or(|s| selects(&s.match_labels, labels))
}

fn field(attr: AuthzAttr, values: &[String], not_values: &[String], out: &mut Vec<AuthzField>) {
    if values.is_empty() && not_values.is_empty() {
        return;
    }
    out.push(AuthzField {
        attr,
        values: values.to_vec(),
        not_values: not_values.to_vec(),
    });
}

/// `serviceAccounts` values name `ns/sa`; a bare `sa` is in the policy's namespace.
fn qualify_accounts(list: &[String], policy_ns: &str) -> Vec<String> {
    list.iter()
        .map(|sa| match sa.contains('/') {
            true => sa.clone(),
            false => format!("{policy_ns}/{sa}"),
        })
        .collect()
}

fn source_fields(s: &RuleSource, policy_ns: &str) -> Vec<AuthzField> {
    let mut out = Vec::new();
    field(
        AuthzAttr::Principal,
        &s.principals,
        &s.not_principals,
        &mut out,
    );
    field(
        AuthzAttr::RequestPrincipal,
        &s.request_principals,
        &s.not_request_principals,
        &mut out,
    );
    field(
        AuthzAttr::Namespace,
        &s.namespaces,
        &s.not_namespaces,
        &mut out,
    );
    field(
        AuthzAttr::ServiceAccount,
        &qualify_accounts(&s.service_accounts, policy_ns),
        &qualify_accounts(&s.not_service_accounts, policy_ns),
        &mut out,
    );
    field(
        AuthzAttr::SourceIp,
        &s.ip_blocks,
        &s.not_ip_blocks,
        &mut out,
    );
    field(
        AuthzAttr::RemoteIp,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        &mut out,
    );
    field(
        AuthzAttr::Unsupported("trustDomains".into()),
        &s.trust_domains,
        &s.not_trust_domains,
        &mut out,
    );
    out
}

fn operation_fields(o: &Operation) -> Vec<AuthzField> {
    let mut out = Vec::new();
    field(AuthzAttr::Host, &o.hosts, &o.not_hosts, &mut out);
    field(AuthzAttr::Port, &o.ports, &o.not_ports, &mut out);
    field(AuthzAttr::Method, &o.methods, &o.not_methods, &mut out);
    field(AuthzAttr::Path, &o.paths, &o.not_paths, &mut out);
    out
}

/// A `when` condition's key as an attribute (validation admitted only known keys; the
/// ones weft cannot evaluate are reported as not enforced and never match here).
pub fn condition_attr(key: &str) -> Option<AuthzAttr> {
    let bracketed = |prefix: &str| {
        key.strip_prefix(prefix)?
            .strip_prefix('[')?
            .strip_suffix(']')
            .map(str::to_string)
    };
    Some(match key {
        "source.ip" => AuthzAttr::SourceIp,
        "remote.ip" => AuthzAttr::RemoteIp,
        "source.namespace" => AuthzAttr::Namespace,
        "source.principal" => AuthzAttr::Principal,
        "source.serviceAccount" => AuthzAttr::ServiceAccount,
        "request.auth.principal" => AuthzAttr::RequestPrincipal,
        "request.auth.audiences" => AuthzAttr::AuthAudience,
        "request.auth.presenter" => AuthzAttr::AuthPresenter,
        "destination.ip" => AuthzAttr::DestinationIp,
        "destination.port" => AuthzAttr::Port,
        "connection.sni" => AuthzAttr::Sni,
        _ => {
            if let Some(h) = bracketed("request.headers") {
                AuthzAttr::Header(h.to_ascii_lowercase())
            } else if let Some(c) = bracketed("request.auth.claims") {
                AuthzAttr::AuthClaim(c.split("][").map(str::to_string).collect())
            } else {
                return None;
            }
        }
    })
}

fn condition_field(c: &Condition, policy_ns: &str) -> AuthzField {
    let attr = condition_attr(&c.key).unwrap_or_else(|| AuthzAttr::Unsupported(c.key.clone()));
    let (values, not_values) = match attr {
        AuthzAttr::ServiceAccount => (
            qualify_accounts(&c.values, policy_ns),
            qualify_accounts(&c.not_values, policy_ns),
        ),
        _ => (c.values.clone(), c.not_values.clone()),
    };
    AuthzField {
        attr,
        values,
        not_values,
    }
}

/// What of an AuthorizationPolicy weft loads but does not enforce (everything else is).
pub(crate) fn report(
    ap: &AuthorizationPolicy,
    mesh: Option<&MeshConfig>,
    push: &mut impl FnMut(String),
) {
    if ap.target_ref.is_some() || !ap.target_refs.is_empty() {
        push("targetRef/targetRefs (policies for Kubernetes Gateway API gateways and waypoints, which weft does not build; this policy applies to no proxy)".into());
    }
    match ap.action.unwrap_or_default() {
        Action::Custom => {
            let p = ap
                .provider
                .as_ref()
                .and_then(|p| p.name.as_deref())
                .unwrap_or_default();
            if let Some(why) = crate::ext_authz::provider_problem(mesh, p) {
                push(format!("action CUSTOM: {why}; requests this policy matches are denied, as Istio does with a bad CUSTOM action"));
            }
        }
        // AUDIT marks matching requests for the access log (Envoy's `access_log_hint`).
        Action::Audit | Action::Allow | Action::Deny => {}
    }
    for (i, rule) in ap.rules.iter().flatten().enumerate() {
        for (j, s) in rule
            .from
            .iter()
            .flatten()
            .filter_map(|f| f.source.as_ref())
            .enumerate()
        {
            if !s.trust_domains.is_empty() || !s.not_trust_domains.is_empty() {
                push(format!("rules[{i}].from[{j}].source.trustDomains (not evaluated: treated as absent, so its values never match and its notValues always do)"));
            }
        }
        for (j, c) in rule.when.iter().flatten().enumerate() {
            if condition_attr(&c.key).is_none() {
                push(format!(
                    "rules[{i}].when[{j}] key {} (not evaluated: its values never match)",
                    c.key
                ));
            }
        }
    }
}
