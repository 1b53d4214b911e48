//! Host sanity and forwarding headers at the edge.
//!
//! This module owns two decisions a gateway makes before routing:
//!
//! * **Which host the request is for** ([`check_host`]).
//!   The request is refused when it has no host at all, more than one `Host`
//!   header, a `Host` (or request-target authority) that is not
//!   `uri-host [":" port]`, or a `Host` that names another host than the request
//!   target's authority (HTTP/1.1 absolute-form, or HTTP/2 `:authority`). RFC 9112
//!   §3.2.2 says a server ignores `Host` then, and Envoy's codec replaces it
//!   (`ServerConnectionImpl::handlePath`); weft refuses the disagreement instead,
//!   so routing and the app can never read two different hosts.
//! * **Who the client is** ([`apply_forwarded`]), as Envoy's
//!   `ConnectionManagerUtility::mutateRequestHeaders` does with
//!   `use_remote_address: true` and `xff_num_trusted_hops: N` (Istio's
//!   `gatewayTopology.numTrustedProxies`, default 0).
//!
//! Headers Envoy adds or clears here, and what this module does about them:
//!
//! * `x-forwarded-for`: the peer address is appended (`,` separated). Envoy
//!   appends its own local address instead when the peer is loopback; this
//!   module always appends the peer, as it is not told the local address.
//! * `x-forwarded-proto`: overwritten with the connection's scheme unless there
//!   are trusted hops and the header is already present.
//! * `x-envoy-external-address`: set to the client address on every edge
//!   request. Since Envoy 1.36 no address is internal unless
//!   `internal_address_config` says so, so with `use_remote_address` every
//!   request is an edge request and Envoy always sets it. Set here too, which
//!   also overwrites any value the client sent.
//! * `x-envoy-internal`: always removed from incoming requests by Envoy and,
//!   with no internal addresses configured, never added. Removed here.
//! * Not done here: `x-forwarded-port` (off by default), `x-request-id`, and
//!   the other `x-envoy-*` request headers Envoy strips from external requests
//!   (`cleanInternalHeaders`: retry, timeout, force-trace, ...).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use http::Uri;

/// `x-forwarded-for`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-envoy-external-address`.
pub const X_ENVOY_EXTERNAL_ADDRESS: HeaderName =
    HeaderName::from_static("x-envoy-external-address");
/// `x-envoy-internal`.
pub const X_ENVOY_INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");

/// Why the request's host is unusable; the text suits a 400 reply body.
/// Offending values are not echoed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// Neither a `Host` header nor a request-target authority.
    Missing,
    /// More than one `Host` header (RFC 9112 §3.2: 400).
    Duplicate,
    /// The `Host` header is not `uri-host [":" port]`.
    InvalidHost,
    /// The request-target authority is not `[userinfo "@"] uri-host [":" port]`.
    InvalidAuthority,
    /// The `Host` header names another host than the request-target authority.
    Disagrees,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostError::Missing => "request has no Host header",
            HostError::Duplicate => "request has more than one Host header",
            HostError::InvalidHost => "Host header is not a valid host[:port]",
            HostError::InvalidAuthority => "request-target authority is not a valid host[:port]",
            HostError::Disagrees => "the Host header disagrees with the request target's authority",
        })
    }
}

impl std::error::Error for HostError {}

/// Checks that the request names exactly one, well-formed host.
///
/// A `Host` header that differs from the request-target authority is an error
/// (see the module docs).
pub fn check_host(headers: &HeaderMap, uri: &Uri) -> Result<(), HostError> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Duplicate);
    }
    if let Some(host) = host {
        if !is_valid_host(host.as_bytes()) {
            return Err(HostError::InvalidHost);
        }
    }
    match (uri.authority(), host) {
        (Some(authority), _) if !is_valid_host(host_and_port(authority.as_str()).as_bytes()) => {
            Err(HostError::InvalidAuthority)
        }
        (Some(authority), Some(host))
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(host_and_port(authority.as_str()).as_bytes()) =>
        {
            Err(HostError::Disagrees)
        }
        (None, None) => Err(HostError::Missing),
        _ => Ok(()),
    }
}

/// The authority without any `userinfo@`.
fn host_and_port(authority: &str) -> &str {
    authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..])
}

/// RFC 9110 §7.2 `Host = uri-host [ ":" port ]`. Stricter than Envoy, which
/// only checks the characters (and so also lets `@` and stray `:` through).
fn is_valid_host(value: &[u8]) -> bool {
    match value.strip_prefix(b"[") {
        Some(rest) => rest
            .iter()
            .position(|&b| b == b']')
            .is_some_and(|end| is_ipv6_literal(&rest[..end]) && is_port_suffix(&rest[end + 1..])),
        None => {
            let colon = value.iter().position(|&b| b == b':');
            let (name, port) = value.split_at(colon.unwrap_or(value.len()));
            is_reg_name(name) && is_port_suffix(port)
        }
    }
}

fn is_ipv6_literal(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

/// Non-empty `reg-name` (which also covers IPv4 addresses): unreserved,
/// sub-delims and `%XX`.
fn is_reg_name(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let Some((&b, tail)) = rest.split_first() {
        rest = match b {
            b'%' => match tail {
                [hi, lo, tail @ ..] if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => tail,
                _ => return false,
            },
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) => tail,
            _ => return false,
        };
    }
    !bytes.is_empty()
}

/// Empty, or `:` followed by digits (`port = *DIGIT`).
fn is_port_suffix(bytes: &[u8]) -> bool {
    match bytes {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// The address Envoy treats as the downstream client: what authorization's
/// `remote.ip` (and `x-envoy-external-address`) use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client address.
    pub ip: IpAddr,
    /// Where [`ClientAddr::ip`] was taken from.
    pub source: ClientAddrSource,
}

/// Where the client address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddrSource {
    /// The connection's peer: no trusted hops, or the trusted entry of
    /// `x-forwarded-for` was missing or not an IP address.
    Peer,
    /// The `x-forwarded-for` entry written by the outermost trusted proxy.
    ForwardedFor,
}

/// Applies Envoy's edge handling of forwarding headers (`use_remote_address:
/// true`, `xff_num_trusted_hops: trusted_hops`) and returns the client address.
///
/// With `trusted_hops` N > 0 the client is the Nth address from the right of
/// the incoming `x-forwarded-for` (all its field lines read as one list, as
/// Envoy coalesces them), taken before the peer is appended. If there are
/// fewer than N entries, or that entry is not a bare IPv4/IPv6 address (no
/// port, no brackets), the peer is the client.
pub fn apply_forwarded(
    headers: &mut HeaderMap,
    peer_ip: IpAddr,
    scheme_is_https: bool,
    trusted_hops: u32,
) -> ClientAddr {
    let incoming = joined_xff(headers);
    let trusted = trusted_hops
        .checked_sub(1)
        .and_then(|skip| nth_from_right(incoming.as_deref()?, skip));
    let client = match trusted {
        Some(ip) => ClientAddr {
            ip,
            source: ClientAddrSource::ForwardedFor,
        },
        None => ClientAddr {
            ip: peer_ip,
            source: ClientAddrSource::Peer,
        },
    };
    append_xff(headers, incoming, peer_ip);
    set_forwarded_proto(headers, scheme_is_https, trusted_hops);
    set_edge_headers(headers, client.ip);
    client
}

/// The client address a proxy that is not the edge sees (Envoy with `use_remote_address:
/// false`, as Istio's sidecars run): the rightmost `x-forwarded-for` entry, if it is an
/// IP address.
pub fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    nth_from_right(&joined_xff(headers)?, 0)
}

/// Every `x-forwarded-for` line, joined as Envoy's header map coalesces them
/// (`,` between non-empty values); `None` if there is no such header.
fn joined_xff(headers: &HeaderMap) -> Option<Vec<u8>> {
    let mut lines = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
    lines.peek()?;
    let mut joined = Vec::new();
    for line in lines {
        append_list(&mut joined, line.as_bytes());
    }
    Some(joined)
}

/// Envoy's `appendToHeader(value, data, ",")`.
fn append_list(list: &mut Vec<u8>, item: &[u8]) {
    if item.is_empty() {
        return;
    }
    if !list.is_empty() {
        list.push(b',');
    }
    list.extend_from_slice(item);
}

/// Envoy's `Utility::getLastAddressFromXFF(headers, skip)`: the entry `skip`
/// places from the right, trimmed, if it parses as an IP address.
fn nth_from_right(xff: &[u8], skip: u32) -> Option<IpAddr> {
    let entry = xff
        .rsplit(|&b| b == b',')
        .nth(usize::try_from(skip).ok()?)?;
    std::str::from_utf8(entry.trim_ascii()).ok()?.parse().ok()
}

fn append_xff(headers: &mut HeaderMap, incoming: Option<Vec<u8>>, peer_ip: IpAddr) {
    let peer = peer_ip.to_string();
    let mut list = incoming.unwrap_or_default();
    append_list(&mut list, peer.as_bytes());
    // The list is made of valid header bytes, so the bare peer address is a
    // fallback in theory only.
    let value = HeaderValue::from_bytes(&list).or_else(|_| HeaderValue::from_str(&peer));
    if let Ok(value) = value {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

/// The prior hop is untrusted when there are no trusted hops: its
/// `x-forwarded-proto` is replaced. Otherwise it is kept if present.
fn set_forwarded_proto(headers: &mut HeaderMap, scheme_is_https: bool, trusted_hops: u32) {
    if trusted_hops == 0 || !headers.contains_key(&X_FORWARDED_PROTO) {
        let scheme = if scheme_is_https { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    }
}

fn set_edge_headers(headers: &mut HeaderMap, client_ip: IpAddr) {
    headers.remove(&X_ENVOY_INTERNAL);
    if let Ok(value) = HeaderValue::from_str(&client_ip.to_string()) {
        headers.insert(X_ENVOY_EXTERNAL_ADDRESS, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for &(name, value) in pairs {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("name");
            map.append(name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    fn uri(s: &str) -> Uri {
        s.parse().expect("test uri")
    }

    fn values(map: &HeaderMap, name: &HeaderName) -> Vec<String> {
        map.get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));

    // ---- Host ----

    #[test]
    fn single_valid_host_is_accepted() {
        for host in [
            "example.com",
            "example.com:8080",
            "example.com:",
            "10.0.0.1",
            "10.0.0.1:80",
            "[::1]",
            "[2001:db8::1]:443",
            "xn--bcher-kva.example",
            "a%2Db.example",
            "example.com.",
        ] {
            let map = headers(&[("host", host)]);
            assert_eq!(check_host(&map, &uri("/")), Ok(()), "{host:?}");
        }
    }

    #[test]
    fn two_host_headers_are_rejected() {
        let map = headers(&[("host", "a.example"), ("host", "a.example")]);
        assert_eq!(check_host(&map, &uri("/")), Err(HostError::Duplicate));
        assert_eq!(
            check_host(&map, &uri("http://a.example/")),
            Err(HostError::Duplicate)
        );
        assert_eq!(
            HostError::Duplicate.to_string(),
            "request has more than one Host header"
        );
    }

    #[test]
    fn missing_host_is_rejected() {
        assert_eq!(
            check_host(&HeaderMap::new(), &uri("/")),
            Err(HostError::Missing)
        );
        // HTTP/2 `:authority` (or absolute-form) alone is enough.
        assert_eq!(
            check_host(&HeaderMap::new(), &uri("https://a.example/x")),
            Ok(())
        );
    }

    #[test]
    fn malformed_host_is_rejected() {
        for host in [
            "",
            "a b",
            "a/b",
            "user@a.example",
            "a.example:80:90",
            "a.example:http",
            "::1",
            "[::1",
            "[::1]x",
            "[not-ipv6]",
            "[fe80::1%25eth0]",
            "a%zz",
            "a\\b",
            "caf\u{e9}.example",
        ] {
            let Ok(value) = HeaderValue::from_bytes(host.as_bytes()) else {
                continue;
            };
            let mut map = HeaderMap::new();
            map.insert(HOST, value);
            assert_eq!(
                check_host(&map, &uri("/")),
                Err(HostError::InvalidHost),
                "{host:?}"
            );
        }
        assert!(HostError::InvalidHost.to_string().contains("not a valid"));
    }

    #[test]
    fn a_host_that_disagrees_with_the_authority_is_rejected() {
        let map = headers(&[("host", "evil.example")]);
        let target = uri("http://good.example:8080/admin");
        assert_eq!(check_host(&map, &target), Err(HostError::Disagrees));
        let agrees = headers(&[("host", "Good.Example:8080")]);
        assert_eq!(check_host(&agrees, &target), Ok(()));
        // userinfo is not part of the host
        let target = uri("http://user:pw@good.example/x");
        assert_eq!(
            check_host(&headers(&[("host", "good.example")]), &target),
            Ok(())
        );
        assert_eq!(
            check_host(&HeaderMap::new(), &uri("https://[::1]:8443/")),
            Ok(())
        );
    }

    #[test]
    fn malformed_authority_is_rejected() {
        // The http crate accepts these authorities; the host grammar does not.
        for target in ["http://a.example:port/", "http://[v1.x]/"] {
            let map = headers(&[("host", "a.example")]);
            assert_eq!(
                check_host(&map, &uri(target)),
                Err(HostError::InvalidAuthority),
                "{target:?}"
            );
        }
    }

    // ---- X-Forwarded-For / X-Forwarded-Proto ----

    #[test]
    fn no_trusted_hops_uses_peer_and_appends_it() {
        let mut map = headers(&[("x-forwarded-for", "1.1.1.1")]);
        let client = apply_forwarded(&mut map, PEER, false, 0);
        assert_eq!(
            client,
            ClientAddr {
                ip: PEER,
                source: ClientAddrSource::Peer
            }
        );
        assert_eq!(values(&map, &X_FORWARDED_FOR), ["1.1.1.1,203.0.113.9"]);
    }

    #[test]
    fn xff_is_created_when_absent() {
        let mut map = HeaderMap::new();
        let client = apply_forwarded(&mut map, PEER, true, 0);
        assert_eq!(client.ip, PEER);
        assert_eq!(values(&map, &X_FORWARDED_FOR), ["203.0.113.9"]);
    }

    #[test]
    fn trusted_hops_pick_nth_from_right_before_append() {
        let xff = "198.51.100.1, 10.0.0.2,10.0.0.3";
        for (hops, want) in [(1, "10.0.0.3"), (2, "10.0.0.2"), (3, "198.51.100.1")] {
            let mut map = headers(&[("x-forwarded-for", xff)]);
            let client = apply_forwarded(&mut map, PEER, false, hops);
            assert_eq!(client.ip, ip(want), "hops {hops}");
            assert_eq!(client.source, ClientAddrSource::ForwardedFor);
            assert_eq!(
                values(&map, &X_FORWARDED_FOR),
                [format!("{xff},203.0.113.9")]
            );
        }
    }

    #[test]
    fn more_trusted_hops_than_entries_falls_back_to_peer() {
        let mut map = headers(&[("x-forwarded-for", "198.51.100.1,10.0.0.2")]);
        let client = apply_forwarded(&mut map, PEER, false, 3);
        assert_eq!(
            client,
            ClientAddr {
                ip: PEER,
                source: ClientAddrSource::Peer
            }
        );

        let mut none = HeaderMap::new();
        assert_eq!(
            apply_forwarded(&mut none, PEER, false, 1).source,
            ClientAddrSource::Peer
        );
    }

    #[test]
    fn malformed_trusted_entry_falls_back_to_peer() {
        for xff in [
            "not-an-ip",
            "1.2.3.4:80",
            "[2001:db8::1]",
            "010.0.0.1",
            "1.2.3",
            "",
            "1.2.3.4,",
            "fe80::1%eth0",
            "unknown",
        ] {
            let mut map = headers(&[("x-forwarded-for", xff)]);
            let client = apply_forwarded(&mut map, PEER, false, 1);
            assert_eq!(client.source, ClientAddrSource::Peer, "{xff:?}");
            assert_eq!(client.ip, PEER);
        }
    }

    #[test]
    fn ipv6_entries_and_peers() {
        let mut map = headers(&[("x-forwarded-for", "2001:db8::1 ,\t2001:db8::2")]);
        let peer = ip("2001:db8::ff");
        let client = apply_forwarded(&mut map, peer, true, 2);
        assert_eq!(client.ip, ip("2001:db8::1"));
        assert_eq!(
            values(&map, &X_FORWARDED_FOR),
            ["2001:db8::1 ,\t2001:db8::2,2001:db8::ff"]
        );
        let mapped = apply_forwarded(&mut HeaderMap::new(), ip("::ffff:192.0.2.1"), true, 0);
        assert_eq!(mapped.ip, ip("::ffff:192.0.2.1"));
    }

    #[test]
    fn empty_xff_gets_no_leading_comma() {
        let mut map = headers(&[("x-forwarded-for", ""), ("x-forwarded-for", "10.0.0.2")]);
        let client = apply_forwarded(&mut map, PEER, false, 1);
        assert_eq!(client.ip, ip("10.0.0.2"));
        assert_eq!(values(&map, &X_FORWARDED_FOR), ["10.0.0.2,203.0.113.9"]);

        let mut map = headers(&[("x-forwarded-for", "")]);
        assert_eq!(
            apply_forwarded(&mut map, PEER, false, 1).source,
            ClientAddrSource::Peer
        );
        assert_eq!(values(&map, &X_FORWARDED_FOR), ["203.0.113.9"]);
    }

    #[test]
    fn multiple_xff_lines_are_one_list() {
        let mut map = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        let client = apply_forwarded(&mut map, PEER, false, 2);
        assert_eq!(client.ip, ip("198.51.100.1"));
        assert_eq!(
            values(&map, &X_FORWARDED_FOR),
            ["198.51.100.1,10.0.0.2,203.0.113.9"]
        );
    }

    #[test]
    fn forwarded_proto_overwritten_unless_trusted() {
        let mut map = headers(&[("x-forwarded-proto", "https")]);
        apply_forwarded(&mut map, PEER, false, 0);
        assert_eq!(values(&map, &X_FORWARDED_PROTO), ["http"]);

        let mut map = headers(&[("x-forwarded-proto", "https")]);
        apply_forwarded(&mut map, PEER, false, 1);
        assert_eq!(values(&map, &X_FORWARDED_PROTO), ["https"]);

        let mut map = HeaderMap::new();
        apply_forwarded(&mut map, PEER, true, 1);
        assert_eq!(values(&map, &X_FORWARDED_PROTO), ["https"]);
    }

    #[test]
    fn edge_headers_cannot_be_spoofed() {
        let mut map = headers(&[
            ("x-envoy-external-address", "127.0.0.1"),
            ("x-envoy-internal", "true"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        apply_forwarded(&mut map, PEER, false, 0);
        assert_eq!(values(&map, &X_ENVOY_EXTERNAL_ADDRESS), ["203.0.113.9"]);
        assert!(map.get(&X_ENVOY_INTERNAL).is_none());

        let mut map = headers(&[("x-forwarded-for", "198.51.100.7")]);
        apply_forwarded(&mut map, PEER, false, 1);
        assert_eq!(values(&map, &X_ENVOY_EXTERNAL_ADDRESS), ["198.51.100.7"]);
    }
}
