//! SPIFFE identities of the form `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! This is the Istio/Kubernetes flavour of SPIFFE ids: a workload's identity is
//! derived from its namespace and service account. Validation follows the SPIFFE
//! specification (and go-spiffe): the trust domain is limited to lowercase
//! letters, digits, `.`, `-` and `_`; path segments to ASCII letters, digits,
//! `.`, `-` and `_`, non-empty and not `.`/`..`.

use std::fmt;
use std::str::FromStr;

const SCHEME: &str = "spiffe://";
/// SPIFFE caps the trust domain at 255 bytes.
const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// SPIFFE caps the whole id (URI SAN) at 2048 bytes.
const MAX_ID_LEN: usize = 2048;

/// Why a string is not an acceptable SPIFFE id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The id does not start with the lowercase `spiffe://` scheme.
    #[error("SPIFFE id {0:?} must start with \"spiffe://\"")]
    Scheme(String),
    /// The trust domain is empty, too long or has illegal characters.
    #[error("SPIFFE id {id:?}: invalid trust domain {trust_domain:?} (allowed: a-z 0-9 . - _, 1..=255 bytes)")]
    TrustDomain {
        /// The whole id being parsed (or built).
        id: String,
        /// The offending trust domain.
        trust_domain: String,
    },
    /// The path is not `/ns/<namespace>/sa/<service-account>`.
    #[error("SPIFFE id {0:?}: path must be /ns/<namespace>/sa/<service-account>")]
    Path(String),
    /// A namespace or service-account segment is empty, `.`/`..` or has illegal characters.
    #[error("SPIFFE id {id:?}: invalid {field} {value:?} (allowed: A-Z a-z 0-9 . - _, not empty, not . or ..)")]
    Segment {
        /// The whole id being parsed (or built).
        id: String,
        /// `"namespace"` or `"service account"`.
        field: &'static str,
        /// The offending segment.
        value: String,
    },
    /// The id exceeds the 2048-byte SPIFFE limit.
    #[error("SPIFFE id is {0} bytes long; the maximum is 2048")]
    TooLong(usize),
}

/// A Kubernetes-style SPIFFE id (`spiffe://td/ns/<ns>/sa/<sa>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// Trust domain, e.g. `cluster.local`.
    pub trust_domain: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Kubernetes service account.
    pub service_account: String,
}

impl SpiffeId {
    /// Builds and validates an id from its parts.
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Result<Self, SpiffeIdError> {
        let id = SpiffeId {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        };
        id.validate()?;
        Ok(id)
    }

    /// Parses `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong(s.len()));
        }
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| SpiffeIdError::Scheme(s.to_owned()))?;
        let (trust_domain, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        validate_trust_domain(s, trust_domain)?;
        let mut parts = path.split('/');
        let (Some(""), Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SpiffeIdError::Path(s.to_owned()));
        };
        validate_segment(s, "namespace", ns)?;
        validate_segment(s, "service account", sa)?;
        Ok(SpiffeId {
            trust_domain: trust_domain.to_owned(),
            namespace: ns.to_owned(),
            service_account: sa.to_owned(),
        })
    }

    /// Checks the invariants [`SpiffeId::parse`] enforces (the fields are public,
    /// so a hand-built value may violate them).
    pub fn validate(&self) -> Result<(), SpiffeIdError> {
        let rendered = self.to_string();
        if rendered.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong(rendered.len()));
        }
        validate_trust_domain(&rendered, &self.trust_domain)?;
        validate_segment(&rendered, "namespace", &self.namespace)?;
        validate_segment(&rendered, "service account", &self.service_account)
    }

    /// The id rendered as a URI (same as `to_string()`).
    pub fn to_uri(&self) -> String {
        self.to_string()
    }
}

pub(crate) fn validate_trust_domain(id: &str, td: &str) -> Result<(), SpiffeIdError> {
    let ok = !td.is_empty()
        && td.len() <= MAX_TRUST_DOMAIN_LEN
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(SpiffeIdError::TrustDomain {
            id: id.to_owned(),
            trust_domain: td.to_owned(),
        })
    }
}

fn validate_segment(id: &str, field: &'static str, seg: &str) -> Result<(), SpiffeIdError> {
    let ok = !seg.is_empty()
        && seg != "."
        && seg != ".."
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(SpiffeIdError::Segment {
            id: id.to_owned(),
            field,
            value: seg.to_owned(),
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for SpiffeId {
    type Error = SpiffeIdError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = "spiffe://cluster.local/ns/necpgame/sa/player";
        let id: SpiffeId = s.parse().unwrap();
        assert_eq!(id.trust_domain, "cluster.local");
        assert_eq!(id.namespace, "necpgame");
        assert_eq!(id.service_account, "player");
        assert_eq!(id.to_string(), s);
        assert_eq!(
            SpiffeId::new("cluster.local", "necpgame", "player").unwrap(),
            id
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "http://cluster.local/ns/a/sa/b",
            "SPIFFE://cluster.local/ns/a/sa/b",
            "spiffe://",
            "spiffe:///ns/a/sa/b",
            "spiffe://Cluster.local/ns/a/sa/b",
            "spiffe://cluster.local:8080/ns/a/sa/b",
            "spiffe://user@cluster.local/ns/a/sa/b",
            "spiffe://cluster.local",
            "spiffe://cluster.local/",
            "spiffe://cluster.local/ns/a",
            "spiffe://cluster.local/ns/a/sa",
            "spiffe://cluster.local/ns/a/sa/",
            "spiffe://cluster.local/ns//sa/b",
            "spiffe://cluster.local/ns/a/sa/b/",
            "spiffe://cluster.local/ns/a/sa/b/c",
            "spiffe://cluster.local/ns/../sa/b",
            "spiffe://cluster.local/ns/a/sa/b?x=1",
            "spiffe://cluster.local/ns/a/sa/b#frag",
            "spiffe://cluster.local/ns/a%2f/sa/b",
            "spiffe://cluster.local/sa/b/ns/a",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "accepted {bad:?}");
        }
        assert!(SpiffeId::new("td", "", "sa").is_err());
        assert!(SpiffeId::new("td", "ns", "a/b").is_err());
        assert!(SpiffeId::new("", "ns", "sa").is_err());
    }

    #[test]
    fn error_messages_name_the_problem() {
        let err = SpiffeId::parse("spiffe://cluster.local/ns/a/sa/").unwrap_err();
        assert!(err.to_string().contains("service account"), "{err}");
        let err = SpiffeId::parse("spiffe://Bad/ns/a/sa/b").unwrap_err();
        assert!(err.to_string().contains("trust domain"), "{err}");
    }
}
