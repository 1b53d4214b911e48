//! What a config push contains, as far as the benchmark is concerned: its size on the
//! wire, its version, whether the control plane could serve it, whether more messages of
//! the same version follow, and whether it mentions a given string (an endpoint address).
//! This is the only module that looks inside a `ConfigPush`: when the wire format changes,
//! only this module changes.
//!
//! A push is a delta (`resources` changed or added since the last push on the stream,
//! `removed` names); older control planes sent the whole config as `config_json`, which
//! is searched too.

use prost::Message;
use weft_protocol::pb;

/// A view of one received push message.
#[derive(Debug, Clone, Copy)]
pub struct Push<'a> {
    /// The version to echo in the ACK.
    pub version: &'a str,
    /// Encoded size of the protobuf message, in bytes (what crossed the wire, less gRPC
    /// framing and HTTP/2 headers).
    pub bytes: usize,
    /// Why the control plane could not serve a config (the push then carries none).
    pub error: Option<&'a str>,
    /// More messages of this version follow: the version applies (and is ACKed) at the
    /// message without it.
    pub more: bool,
    msg: &'a pb::ConfigPush,
}

/// Looks at a push without copying it.
pub fn of(push: &pb::ConfigPush) -> Push<'_> {
    Push {
        version: &push.version,
        bytes: push.encoded_len(),
        error: (!push.error.is_empty()).then_some(push.error.as_str()),
        more: push.more,
        msg: push,
    }
}

impl Push<'_> {
    /// True when the pushed config contains `needle` (searched in the part bodies).
    pub fn mentions(&self, needle: &str) -> bool {
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        finder.find(&self.msg.config_json).is_some()
            || self
                .msg
                .resources
                .iter()
                .any(|r| finder.find(&r.body_json).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, body: &[u8]) -> pb::ConfigResource {
        pb::ConfigResource {
            name: name.into(),
            body_json: body.to_vec(),
        }
    }

    #[test]
    fn a_delta_push_reports_its_size_and_what_its_parts_mention() {
        let msg = pb::ConfigPush {
            version: "7".into(),
            resources: vec![
                part(
                    "cluster/a",
                    br#"{"endpoints":[{"address":"127.0.0.1:40001"}]}"#,
                ),
                part("cluster/b", br#"{"endpoints":[]}"#),
            ],
            removed: vec!["cluster/c".into()],
            ..Default::default()
        };
        let push = of(&msg);
        assert_eq!(push.version, "7");
        assert_eq!(push.bytes, msg.encoded_len());
        assert!(push.bytes > msg.resources[0].body_json.len());
        assert!(push.mentions("127.0.0.1:40001"));
        assert!(!push.mentions("127.0.0.1:40002"));
        assert!(!push.mentions("cluster/c"), "names are not bodies");
        assert_eq!(push.error, None);
        assert!(!push.more);
    }

    #[test]
    fn a_whole_config_push_from_an_older_control_plane_is_searched_too() {
        let msg = pb::ConfigPush {
            version: "3".into(),
            config_json: br#"{"address":"127.0.0.1:40001"}"#.to_vec(),
            ..Default::default()
        };
        assert!(of(&msg).mentions("127.0.0.1:40001"));
    }

    #[test]
    fn a_split_push_says_more_follows_and_an_unserved_one_says_why() {
        let first = pb::ConfigPush {
            version: "8".into(),
            full: true,
            more: true,
            resources: vec![part("layout", b"{}")],
            ..Default::default()
        };
        assert!(of(&first).more);
        let msg = pb::ConfigPush {
            version: "9".into(),
            error: "too large".into(),
            ..Default::default()
        };
        assert_eq!(of(&msg).error, Some("too large"));
        assert!(!of(&msg).mentions("127.0.0.1"));
    }
}
