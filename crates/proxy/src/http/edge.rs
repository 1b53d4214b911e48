//! The edge-checks phase: what no request may do whatever the config — header blocks over
//! the limit (431), missing, duplicated, malformed or disagreeing hosts (400), paths that
//! cannot be normalized — and the rewrites every request gets before routing: the path
//! normalized as Istio's default (`pathNormalization: BASE`), so routing and later
//! authorization see `/admin` however it was spelled; and at gateways the forwarding
//! headers (`x-forwarded-for`, `x-forwarded-proto`) as Envoy sets them.

use super::forwarded::{apply_forwarded, check_host, last_forwarded_for};
use super::headers::{header_block_size, MAX_REQUEST_HEADERS_BYTES};
use super::normalize::{normalize, PathNormalization};
use super::pipeline::{Conn, Side};
use crate::reply::LocalReply;
use http::{Request, Uri};
use std::borrow::Cow;
use std::net::IpAddr;
use weft_model::mesh::MeshOptions;

/// Checks and normalizes a request before anything else looks at it. Returns the original
/// client's address (authorization's `remote.ip`): at gateways as `x-forwarded-for` trust
/// decides (no trusted hops: the peer), on sidecars its rightmost entry, else the peer.
pub fn check<B>(
    req: &mut Request<B>,
    conn: &Conn,
    mesh: &MeshOptions,
) -> Result<IpAddr, LocalReply> {
    if header_block_size(req.headers()) > MAX_REQUEST_HEADERS_BYTES {
        return Err(LocalReply::HeadersTooLarge {
            limit: MAX_REQUEST_HEADERS_BYTES,
        });
    }
    check_host(req.headers(), req.uri()).map_err(|e| LocalReply::BadRequest {
        detail: e.to_string(),
    })?;
    normalize_path(req, mode(mesh.path_normalization))?;
    Ok(match conn.side {
        Side::Gateway => {
            let trusted = mesh.num_trusted_proxies;
            // Istio's gateway default (SANITIZE_SET): the client certificate the gateway
            // verified, or nothing — never what the client wrote.
            match &conn.xfcc {
                Some(v) => req.headers_mut().insert(XFCC, v.clone()),
                None => req.headers_mut().remove(XFCC),
            };
            apply_forwarded(req.headers_mut(), conn.peer.ip(), conn.https, trusted).ip
        }
        Side::Inbound | Side::Outbound => {
            last_forwarded_for(req.headers()).unwrap_or(conn.peer.ip())
        }
    })
}

const XFCC: &str = "x-forwarded-client-cert";

fn mode(m: weft_model::mesh::PathNormalization) -> PathNormalization {
    use weft_model::mesh::PathNormalization as M;
    match m {
        M::None => PathNormalization::None,
        M::Base => PathNormalization::Base,
        M::MergeSlashes => PathNormalization::MergeSlashes,
        M::DecodeAndMergeSlashes => PathNormalization::DecodeAndMergeSlashes,
    }
}

/// Replaces the request's path with its normalized form.
fn normalize_path<B>(req: &mut Request<B>, mode: PathNormalization) -> Result<(), LocalReply> {
    let Some(pq) = req.uri().path_and_query() else {
        return Ok(());
    };
    let normalized = match normalize(pq.as_str(), mode) {
        Ok(Cow::Borrowed(p)) if p.len() == pq.as_str().len() => return Ok(()),
        Ok(p) => p.into_owned(),
        Err(e) => {
            return Err(LocalReply::InvalidPath {
                status: e.status(),
                detail: e.to_string(),
            })
        }
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(normalized.parse().map_err(|_| LocalReply::BadRequest {
        detail: "the normalized path is not a valid request target".into(),
    })?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| LocalReply::BadRequest {
        detail: "the normalized path is not a valid request target".into(),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(side: Side) -> Conn {
        Conn {
            peer: ([192, 0, 2, 9], 5555).into(),
            ..Conn::listener(side, "t", None)
        }
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::builder().uri(uri);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(()).unwrap()
    }

    fn status(r: LocalReply) -> u16 {
        r.into_response().status().as_u16()
    }

    #[test]
    fn admin_cannot_be_reached_by_another_spelling() {
        for p in [
            "/x/../admin",
            "/./admin",
            "/%61dmin",
            "/%2e%2e/admin",
            "/a/%2E%2E/admin",
        ] {
            let mut r = req(p, &[("host", "game.local")]);
            check(&mut r, &conn(Side::Gateway), &MeshOptions::default()).unwrap();
            assert_eq!(r.uri().path(), "/admin", "{p}");
        }
        let mut r = req("/a/../b?x=/../y", &[("host", "game.local")]);
        check(&mut r, &conn(Side::Outbound), &MeshOptions::default()).unwrap();
        assert_eq!(r.uri().path_and_query().unwrap().as_str(), "/b?x=/../y");
        let mut r = req("/a%00b", &[("host", "game.local")]);
        assert_eq!(
            status(check(&mut r, &conn(Side::Outbound), &MeshOptions::default()).unwrap_err()),
            400
        );
    }

    #[test]
    fn hosts_must_be_one_and_agree() {
        let mut two = req("/", &[("host", "a.local"), ("host", "b.local")]);
        assert_eq!(
            status(check(&mut two, &conn(Side::Gateway), &MeshOptions::default()).unwrap_err()),
            400
        );
        let mut disagree = req("http://a.local/", &[("host", "b.local")]);
        assert_eq!(
            status(
                check(&mut disagree, &conn(Side::Gateway), &MeshOptions::default()).unwrap_err()
            ),
            400
        );
        let mut agree = req("http://a.local:8080/", &[("host", "A.local:8080")]);
        assert!(check(&mut agree, &conn(Side::Gateway), &MeshOptions::default()).is_ok());
        let mut none = req("/", &[]);
        assert_eq!(
            status(check(&mut none, &conn(Side::Gateway), &MeshOptions::default()).unwrap_err()),
            400
        );
    }

    #[test]
    fn oversized_header_blocks_are_431() {
        let big = "x".repeat(MAX_REQUEST_HEADERS_BYTES);
        let mut r = req("/", &[("host", "a.local"), ("x-big", &big)]);
        let reply = check(&mut r, &conn(Side::Gateway), &MeshOptions::default()).unwrap_err();
        assert_eq!(reply.flags().render(), "DPE");
        assert_eq!(status(reply), 431);
    }

    #[test]
    fn gateways_append_the_peer_to_x_forwarded_for() {
        let mut r = req(
            "/",
            &[("host", "a.local"), ("x-forwarded-for", "203.0.113.1")],
        );
        check(&mut r, &conn(Side::Gateway), &MeshOptions::default()).unwrap();
        assert_eq!(r.headers()["x-forwarded-for"], "203.0.113.1,192.0.2.9");
        assert_eq!(r.headers()["x-forwarded-proto"], "http");
        let mut r = req("/", &[("host", "a.local")]);
        check(&mut r, &conn(Side::Outbound), &MeshOptions::default()).unwrap();
        assert!(
            r.headers().get("x-forwarded-for").is_none(),
            "sidecars leave it alone"
        );
    }
}
