//! `targetRef` / `targetRefs` (PolicyTargetReference) rules shared by
//! AuthorizationPolicy, RequestAuthentication and Telemetry: exclusivity with
//! `selector`, the CRD shape patterns, the supported target kinds and the
//! same-namespace restriction.

use super::common::is_namespace;
use super::Errs;
use crate::PolicyTargetReference;

/// The `(group, kind)` pairs Istio accepts as policy targets; an empty group
/// means the core API group (`""` and `core` are equivalent).
const SUPPORTED: &[(&str, &str)] = &[
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

/// `targetRef`/`targetRefs` shapes (CRD patterns), the selector exclusivity,
/// supported kinds and the same-namespace rule.
pub(crate) fn target_refs(
    errs: &mut Errs,
    has_selector: bool,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) {
    let set = [has_selector, target_ref.is_some(), !target_refs.is_empty()]
        .iter()
        .filter(|b| **b)
        .count();
    if set > 1 {
        let at = if target_ref.is_some() {
            "spec.targetRef"
        } else {
            "spec.targetRefs"
        };
        errs.key(at, "only one of targetRefs or selector can be set (targetRef, targetRefs and selector are mutually exclusive)");
    }
    if target_refs.len() > 16 {
        errs.key("spec.targetRefs", "at most 16 targetRefs may be set");
    }
    let refs = target_ref
        .map(|r| ("spec.targetRef".to_owned(), r))
        .into_iter()
        .chain(
            target_refs
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("spec.targetRefs[{i}]"), r)),
        );
    for (at, r) in refs {
        target_ref_shape(errs, &at, r);
    }
}

fn target_ref_shape(errs: &mut Errs, at: &str, r: &PolicyTargetReference) {
    let mut shape_ok = true;
    if let Some(g) = &r.group {
        if !g.is_empty() && !g.split('.').all(is_namespace) {
            shape_ok = false;
            errs.at(format!("{at}.group"), format!("{at}.group in body should match a DNS subdomain ({g:?} given), e.g. gateway.networking.k8s.io or \"\""));
        }
    }
    if let Some(k) = &r.kind {
        let ok = k.starts_with(|c: char| c.is_ascii_alphabetic())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !k.ends_with('-');
        if !ok {
            shape_ok = false;
            errs.at(format!("{at}.kind"), format!("{at}.kind in body should match a kind name such as Gateway or Service ({k:?} given)"));
        }
    }
    if r.name.is_empty() {
        errs.key(
            format!("{at}.name"),
            format!("{at}.name: Required value: name the target resource"),
        );
    }
    if let Some(ns) = r.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        errs.at(
            format!("{at}.namespace"),
            format!("targetRef namespace must not be set ({ns:?} given): cross-namespace references are not supported; place the policy in the target's namespace and remove namespace"),
        );
    }
    if shape_ok {
        supported_kind(errs, at, r);
    }
}

fn supported_kind(errs: &mut Errs, at: &str, r: &PolicyTargetReference) {
    let group = r.group.as_deref().unwrap_or_default();
    let canonical = if group.is_empty() { "core" } else { group };
    let kind = r.kind.as_deref().unwrap_or_default();
    if SUPPORTED.contains(&(canonical, kind)) {
        return;
    }
    let hint = match SUPPORTED.iter().find(|(_, k)| *k == kind) {
        Some((g, _)) if *g == "core" => format!(" (kind {kind} belongs to group \"\")"),
        Some((g, _)) => format!(" (kind {kind} belongs to group {g})"),
        None => String::new(),
    };
    let msg = |what: &str| {
        format!("unsupported targetRef {what}{hint}: target a Service (group \"\"), a ServiceEntry (networking.istio.io), or a Gateway/GatewayClass (gateway.networking.k8s.io)")
    };
    if r.kind.is_none() {
        errs.key(at, msg("without a kind"));
    } else {
        errs.at(format!("{at}.kind"), msg(&format!("{group:?}/{kind}")));
    }
}
