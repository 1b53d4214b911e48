//! Protocol selection as Istio does it (`pkg/config/protocol`): a port's declared
//! `protocol` (ServiceEntry, Gateway server), else the `<protocol>-` prefix of its name,
//! case-insensitive. HTTP and what rides on it are served by the HTTP pipeline; TCP, TLS,
//! HTTPS (at a sidecar), MONGO, REDIS, MYSQL… are opaque TCP. An unknown or missing
//! protocol is one Istio sniffs: weft serves such ports as HTTP (its outbound listener is an
//! explicit HTTP proxy) and reports that sniffing is not built.

use serde::{Deserialize, Serialize};

/// What a port carries, as far as the proxy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1, HTTP/2, gRPC, gRPC-Web.
    Http,
    /// Opaque bytes: TCP, MONGO, REDIS, MYSQL, and anything Istio treats as TCP.
    Tcp,
    /// TLS (and HTTPS on a mesh port): opaque, routed by the ClientHello's SNI.
    Tls,
    /// UDP: never proxied by Istio's sidecars.
    Udp,
    /// No or an unknown protocol: Istio sniffs it.
    Unknown,
}

impl Protocol {
    /// Istio's `protocol.Parse`, case-insensitive.
    pub fn parse(s: &str) -> Protocol {
        match s.to_ascii_uppercase().as_str() {
            "HTTP" | "HTTP2" | "HTTP_PROXY" | "GRPC" | "GRPC-WEB" => Protocol::Http,
            "TCP" | "MONGO" | "REDIS" | "MYSQL" => Protocol::Tcp,
            "TLS" | "HTTPS" => Protocol::Tls,
            "UDP" => Protocol::Udp,
            _ => Protocol::Unknown,
        }
    }

    /// A port's protocol: its declared one, else its name's prefix (`tcp-db`, `redis`).
    pub fn of_port(declared: Option<&str>, name: &str) -> Protocol {
        if let Some(p) = declared.filter(|p| !p.is_empty()) {
            return Protocol::parse(p);
        }
        let prefix = name.split_once('-').map_or(name, |(p, _)| p);
        Protocol::parse(prefix)
    }

    /// Carried by the HTTP pipeline (declared HTTP, or unknown: served as HTTP).
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Unknown)
    }

    /// Carried as opaque TCP (TCP, or TLS routed by SNI).
    pub fn is_opaque(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Tls)
    }
}

#[cfg(test)]
mod tests {
    use super::Protocol::{self, *};

    #[test]
    fn declared_protocol_wins_over_the_name() {
        assert_eq!(Protocol::of_port(Some("TCP"), "http-web"), Tcp);
        assert_eq!(Protocol::of_port(Some("redis"), ""), Tcp);
        assert_eq!(Protocol::of_port(Some("GRPC"), "tcp"), Http);
        assert_eq!(Protocol::of_port(Some("HTTPS"), "x"), Tls);
        assert_eq!(Protocol::of_port(Some("udp"), "x"), Udp);
    }

    #[test]
    fn the_name_prefix_decides_without_a_protocol() {
        assert_eq!(Protocol::of_port(None, "tcp-echo"), Tcp);
        assert_eq!(Protocol::of_port(None, "mysql"), Tcp);
        assert_eq!(Protocol::of_port(None, "mongo-primary"), Tcp);
        assert_eq!(Protocol::of_port(None, "tls-passthrough"), Tls);
        assert_eq!(Protocol::of_port(None, "grpc-web-api"), Http);
        assert_eq!(Protocol::of_port(Some(""), "http2-x"), Http);
        // Istio sniffs these; weft serves them as HTTP.
        assert_eq!(Protocol::of_port(None, "web"), Unknown);
        assert_eq!(Protocol::of_port(None, ""), Unknown);
        assert!(Unknown.is_http() && !Unknown.is_opaque());
        assert!(Tls.is_opaque() && Tcp.is_opaque() && !Udp.is_opaque());
    }
}
