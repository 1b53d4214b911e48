//! AuthorizationPolicy enforcement: the policies that select this proxy's workload,
//! compiled when a config is applied, evaluated per request in Istio's order — DENY
//! policies first (any match denies), then ALLOW policies (when there are any, one must
//! match) — with dry-run policies evaluated the same way on the side and only logged and
//! counted. JWT attributes (requestPrincipals, `request.auth.*`) read the token that
//! request authentication validated; a request without one has none of them. AUDIT
//! policies only mark a request (nothing reads the mark until access logs
//! exist; they are reported as not enforced).

#[cfg(test)]
mod jwt_tests;
mod matchers;
#[cfg(test)]
mod tests;

use http::HeaderMap;
use matchers::{Actual, Field};
use std::net::IpAddr;
use weft_model::{Authz, AuthzAction, AuthzAttr, ExtAuthzProvider};

/// What a request looks like to authorization.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The mTLS peer's SPIFFE id (`spiffe://td/ns/N/sa/S`), if any.
    pub peer: Option<&'a str>,
    pub source_ip: IpAddr,
    /// The original client (X-Forwarded-For, as far as hops are trusted).
    pub remote_ip: IpAddr,
    pub destination_ip: IpAddr,
    pub destination_port: u16,
    /// The authority as sent (lower-case; Istio does not strip the port: `example.com`
    /// does not match `example.com:8080`, `example.com:*` does).
    pub host: &'a str,
    pub method: &'a str,
    /// The normalized path, query string included (it is cut off here).
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub sni: Option<&'a str>,
    /// The request's validated JWT (RequestAuthentication), if it carried one.
    pub jwt: Option<&'a crate::authn::Verified>,
}

impl Input<'_> {
    fn principal(&self) -> Option<&str> {
        self.peer.map(|p| p.strip_prefix("spiffe://").unwrap_or(p))
    }

    /// `td/ns/N/sa/S` -> (`N`, `S`).
    fn namespace_and_account(&self) -> Option<(&str, &str)> {
        let p = self.principal()?;
        let rest = &p[p.find("/ns/")? + 4..];
        let (ns, rest) = rest.split_once('/')?;
        let sa = rest.strip_prefix("sa/")?;
        Some((ns, sa))
    }

    /// A top-level claim of the request's JWT.
    fn claim(&self, name: &[&str]) -> Actual<'_> {
        self.jwt
            .and_then(|j| name.iter().try_fold(&j.claims, |v, k| v.get(*k)))
            .map_or(Actual::Absent, Actual::Claim)
    }

    fn actual(&self, attr: &AuthzAttr) -> Actual<'_> {
        match attr {
            AuthzAttr::Principal => self.principal().map_or(Actual::Absent, Actual::Str),
            AuthzAttr::Namespace => self
                .namespace_and_account()
                .map_or(Actual::Absent, |(ns, _)| Actual::Str(ns)),
            // Compared as `ns/sa` (built only for policies that ask).
            AuthzAttr::ServiceAccount => match self.namespace_and_account() {
                Some((ns, sa)) => Actual::Owned(format!("{ns}/{sa}")),
                None => Actual::Absent,
            },
            AuthzAttr::SourceIp => Actual::Ip(self.source_ip),
            AuthzAttr::RemoteIp => Actual::Ip(self.remote_ip),
            AuthzAttr::DestinationIp => Actual::Ip(self.destination_ip),
            AuthzAttr::Port => Actual::Port(self.destination_port),
            AuthzAttr::Host => Actual::Str(self.host),
            AuthzAttr::Method => Actual::Str(self.method),
            AuthzAttr::Path => Actual::Str(self.path.split('?').next().unwrap_or("")),
            // Envoy's header matchers see the pseudo-headers on every HTTP version.
            AuthzAttr::Header(name) if name == ":authority" => Actual::Str(self.host),
            AuthzAttr::Header(name) if name == ":method" => Actual::Str(self.method),
            AuthzAttr::Header(name) if name == ":path" => Actual::Str(self.path),
            AuthzAttr::Header(name) => {
                // A header sent more than once is matched as its values joined with `,`.
                let mut all = self.headers.get_all(name.as_str()).iter();
                match (all.next(), all.next()) {
                    (None, _) => Actual::Absent,
                    (Some(v), None) => v.to_str().map_or(Actual::Absent, Actual::Str),
                    (Some(_), Some(_)) => {
                        let joined: Vec<&str> = self
                            .headers
                            .get_all(name.as_str())
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .collect();
                        Actual::Owned(joined.join(","))
                    }
                }
            }
            AuthzAttr::Sni => self.sni.map_or(Actual::Absent, Actual::Str),
            AuthzAttr::RequestPrincipal => match self.jwt {
                Some(j) => Actual::RequestPrincipal(&j.issuer, j.subject.as_deref()),
                None => Actual::Absent,
            },
            AuthzAttr::AuthAudience => self.claim(&["aud"]),
            AuthzAttr::AuthPresenter => self.claim(&["azp"]),
            AuthzAttr::AuthClaim(path) => match self.jwt {
                Some(j) => {
                    crate::authn::claims::at(&j.claims, path).map_or(Actual::Absent, Actual::Claim)
                }
                None => Actual::Absent,
            },
            AuthzAttr::Unsupported(_) => Actual::Absent,
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    from: Vec<Vec<Field>>,
    to: Vec<Vec<Field>>,
    when: Vec<Field>,
}

#[derive(Debug, Clone)]
struct Policy {
    name: String,
    action: AuthzAction,
    dry_run: bool,
    rules: Vec<Rule>,
    /// CUSTOM: index into [`Engine::providers`].
    provider: Option<usize>,
}

/// The compiled policies of one config.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    policies: Vec<Policy>,
    providers: Vec<ExtAuthzProvider>,
}

/// The decision on one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Why the request is denied: the DENY policy that matched, or that no ALLOW policy
    /// did. `None`: allowed.
    pub denied: Option<String>,
    /// What the dry-run policies of each action would have decided, as Envoy's RBAC
    /// filters report their shadow rules: DENY first, then ALLOW (only if the request got
    /// past the enforced DENY policies).
    pub shadow: Vec<Shadow>,
    /// An AUDIT policy matched.
    pub audit: bool,
}

/// One action's dry-run result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    pub action: AuthzAction,
    /// The dry-run policy that matched (`None`: none did).
    pub policy: Option<String>,
    /// DENY: a policy matched; ALLOW: none did.
    pub denied: bool,
}

fn all(fields: &[Field], input: &Input) -> bool {
    fields.iter().all(|f| f.matches(&input.actual(&f.attr)))
}

impl Rule {
    fn matches(&self, input: &Input) -> bool {
        let any_of = |alts: &[Vec<Field>]| alts.is_empty() || alts.iter().any(|a| all(a, input));
        any_of(&self.from) && any_of(&self.to) && all(&self.when, input)
    }
}

impl Policy {
    fn matches(&self, input: &Input) -> bool {
        self.rules.iter().any(|r| r.matches(input))
    }
}

/// The first policy of `action` among `policies` that matches.
fn first_match<'p>(
    policies: &'p [Policy],
    action: AuthzAction,
    dry_run: bool,
    input: &Input,
) -> Option<&'p Policy> {
    policies
        .iter()
        .filter(|p| p.action == action && p.dry_run == dry_run)
        .find(|p| p.matches(input))
}

impl Engine {
    /// Compiles the policies of a pushed config (a bad IP, port or template fails the push).
    pub fn build(authz: &Authz) -> Result<Engine, String> {
        let fields = |list: &[weft_model::AuthzField]| -> Result<Vec<Field>, String> {
            list.iter().map(Field::compile).collect()
        };
        let mut policies = Vec::new();
        for p in &authz.policies {
            let mut rules = Vec::new();
            for r in &p.rules {
                rules.push(Rule {
                    from: r.from.iter().map(|f| fields(f)).collect::<Result<_, _>>()?,
                    to: r.to.iter().map(|t| fields(t)).collect::<Result<_, _>>()?,
                    when: fields(&r.when)?,
                });
            }
            let provider = match (&p.action, &p.provider) {
                (AuthzAction::Custom, Some(name)) => Some(
                    authz
                        .providers
                        .iter()
                        .position(|q| &q.name == name)
                        .ok_or_else(|| {
                            format!("policy {} names unknown provider {name}", p.name)
                        })?,
                ),
                (AuthzAction::Custom, None) => {
                    return Err(format!("CUSTOM policy {} has no provider", p.name))
                }
                _ => None,
            };
            policies.push(Policy {
                name: p.name.clone(),
                action: p.action,
                dry_run: p.dry_run,
                rules,
                provider,
            });
        }
        Ok(Engine {
            policies,
            providers: authz.providers.clone(),
        })
    }

    /// The CUSTOM policy that matches, and the authorizer to ask (evaluated first).
    pub fn custom(&self, input: &Input) -> Option<(&str, &ExtAuthzProvider)> {
        let p = first_match(&self.policies, AuthzAction::Custom, false, input)?;
        Some((p.name.as_str(), &self.providers[p.provider?]))
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    fn has(&self, action: AuthzAction, dry_run: bool) -> bool {
        self.policies
            .iter()
            .any(|p| p.action == action && p.dry_run == dry_run)
    }

    /// Dry-run policies of `action`, evaluated as their own filter would.
    fn shadow(&self, action: AuthzAction, input: &Input) -> Option<Shadow> {
        if !self.has(action, true) {
            return None;
        }
        let matched = first_match(&self.policies, action, true, input).map(|p| p.name.clone());
        let denied = match action {
            AuthzAction::Allow => matched.is_none(),
            _ => matched.is_some(),
        };
        Some(Shadow {
            action,
            policy: matched,
            denied,
        })
    }

    /// Istio's order: AUDIT (marks), DENY (any match denies), then ALLOW (when there are
    /// enforced ALLOW policies, one must match); each with its dry-run policies beside it.
    pub fn evaluate(&self, input: &Input) -> Verdict {
        let audit = first_match(&self.policies, AuthzAction::Audit, false, input).is_some();
        let mut shadow: Vec<Shadow> = self.shadow(AuthzAction::Deny, input).into_iter().collect();
        if let Some(p) = first_match(&self.policies, AuthzAction::Deny, false, input) {
            return Verdict {
                denied: Some(p.name.clone()),
                shadow,
                audit,
            };
        }
        shadow.extend(self.shadow(AuthzAction::Allow, input));
        let denied = (self.has(AuthzAction::Allow, false)
            && first_match(&self.policies, AuthzAction::Allow, false, input).is_none())
        .then(|| "no ALLOW policy matched".to_string());
        Verdict {
            denied,
            shadow,
            audit,
        }
    }
}
