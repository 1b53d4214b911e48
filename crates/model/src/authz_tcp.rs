//! AuthorizationPolicy on opaque TCP connections, as istiod's builder makes the RBAC
//! network filter (`pilot/pkg/security/authz/model`, `forTCP`): fields that need HTTP
//! (hosts, methods, paths, requestPrincipals, `request.headers`, `request.auth.*`) cannot be
//! judged on a TCP connection. In an ALLOW policy a rule with any of them is skipped (the
//! policy allows less; an ALLOW policy left without rules allows nothing); in DENY and
//! AUDIT policies those fields are dropped from the rule (it denies more: a DENY rule made
//! only of HTTP fields denies every connection). CUSTOM policies ask an HTTP authorizer,
//! which cannot judge a TCP connection: weft treats a matching one as a denial (fail
//! closed) and reports it.

use crate::authz::{Authz, AuthzAction, AuthzAttr, AuthzField, AuthzRule};

/// Whether Istio can judge the attribute only on HTTP requests.
pub fn http_only(attr: &AuthzAttr) -> bool {
    matches!(
        attr,
        AuthzAttr::RequestPrincipal
            | AuthzAttr::Host
            | AuthzAttr::Method
            | AuthzAttr::Path
            | AuthzAttr::Header(_)
            | AuthzAttr::AuthAudience
            | AuthzAttr::AuthPresenter
            | AuthzAttr::AuthClaim(_)
            | AuthzAttr::Unsupported(_)
    )
}

fn rule_has_http(r: &AuthzRule) -> bool {
    r.from
        .iter()
        .chain(r.to.iter())
        .flatten()
        .chain(r.when.iter())
        .any(|f| http_only(&f.attr))
}

fn tcp_fields(fields: &[AuthzField]) -> Vec<AuthzField> {
    fields
        .iter()
        .filter(|f| !http_only(&f.attr))
        .cloned()
        .collect()
}

/// The policies as they apply to TCP connections.
pub fn for_tcp(authz: &Authz) -> Authz {
    let policies = authz
        .policies
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if p.action == AuthzAction::Allow {
                p.rules.retain(|r| !rule_has_http(r));
                return p;
            }
            if p.action == AuthzAction::Custom {
                p.action = AuthzAction::Deny;
                p.provider = None;
            }
            p.rules = p
                .rules
                .iter()
                .map(|r| AuthzRule {
                    from: r.from.iter().map(|a| tcp_fields(a)).collect(),
                    to: r.to.iter().map(|a| tcp_fields(a)).collect(),
                    when: tcp_fields(&r.when),
                })
                .collect();
            p
        })
        .collect();
    Authz {
        policies,
        providers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::AuthzPolicy;

    fn field(attr: AuthzAttr, v: &str) -> AuthzField {
        AuthzField {
            attr,
            values: vec![v.into()],
            not_values: Vec::new(),
        }
    }

    fn policy(action: AuthzAction, rules: Vec<AuthzRule>) -> Authz {
        Authz {
            policies: vec![AuthzPolicy {
                name: "ns.p".into(),
                action,
                dry_run: false,
                rules,
                provider: None,
            }],
            providers: Vec::new(),
        }
    }

    fn rule(to: Vec<AuthzField>) -> AuthzRule {
        AuthzRule {
            from: vec![vec![field(AuthzAttr::Namespace, "foo")]],
            to: vec![to],
            when: Vec::new(),
        }
    }

    #[test]
    fn allow_rules_with_http_fields_are_skipped() {
        let a = policy(
            AuthzAction::Allow,
            vec![
                rule(vec![field(AuthzAttr::Method, "GET")]),
                rule(vec![field(AuthzAttr::Port, "9000")]),
            ],
        );
        let t = for_tcp(&a);
        assert_eq!(
            t.policies[0].rules,
            vec![rule(vec![field(AuthzAttr::Port, "9000")])]
        );
        // Only HTTP rules: the ALLOW policy stays, with nothing it allows.
        let only_http = policy(
            AuthzAction::Allow,
            vec![rule(vec![field(AuthzAttr::Path, "/")])],
        );
        let t = for_tcp(&only_http);
        assert_eq!(t.policies.len(), 1);
        assert!(t.policies[0].rules.is_empty());
    }

    #[test]
    fn deny_rules_drop_http_fields_and_match_more() {
        let a = policy(
            AuthzAction::Deny,
            vec![rule(vec![
                field(AuthzAttr::Method, "GET"),
                field(AuthzAttr::Port, "9000"),
            ])],
        );
        let t = for_tcp(&a);
        assert_eq!(
            t.policies[0].rules,
            vec![rule(vec![field(AuthzAttr::Port, "9000")])]
        );
        let mut when = rule(Vec::new());
        when.when = vec![field(AuthzAttr::Header("x".into()), "1")];
        let t = for_tcp(&policy(AuthzAction::Deny, vec![when]));
        assert!(t.policies[0].rules[0].when.is_empty());
        assert_eq!(t.policies[0].rules[0].to, vec![Vec::<AuthzField>::new()]);
    }

    #[test]
    fn custom_fails_closed_on_tcp() {
        let mut a = policy(
            AuthzAction::Custom,
            vec![rule(vec![field(AuthzAttr::Path, "/x")])],
        );
        a.policies[0].provider = Some("ext".into());
        let t = for_tcp(&a);
        assert_eq!(t.policies[0].action, AuthzAction::Deny);
        assert_eq!(t.policies[0].provider, None);
        assert!(t.providers.is_empty());
    }
}
