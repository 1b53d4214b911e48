//! Envoy's response flags as a bitset: set by whichever phase caused them, rendered to
//! Envoy's short strings (`UH`, `UF`, `DI,FI`, …, `-` for none) only in telemetry.

/// A set of Envoy response flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ResponseFlags(u32);

macro_rules! flags {
    ($($name:ident = $bit:expr, $short:literal, $doc:literal;)*) => {
        impl ResponseFlags {
            $(#[doc = $doc] pub const $name: ResponseFlags = ResponseFlags(1 << $bit);)*
            /// Every flag with its Envoy string, in Envoy's rendering order.
            const ALL: &'static [(ResponseFlags, &'static str)] = &[$((ResponseFlags::$name, $short)),*];
        }
    };
}

flags! {
    NO_HEALTHY_UPSTREAM = 0, "UH", "No healthy upstream endpoint (503).";
    UPSTREAM_REQUEST_TIMEOUT = 1, "UT", "The route or per-try timeout fired (504).";
    LOCAL_RESET = 2, "LR", "The proxy reset the stream.";
    UPSTREAM_REMOTE_RESET = 3, "UR", "The upstream reset the stream.";
    UPSTREAM_CONNECTION_FAILURE = 4, "UF", "The upstream connection could not be made.";
    UPSTREAM_CONNECTION_TERMINATION = 5, "UC", "The upstream connection closed mid-request.";
    UPSTREAM_OVERFLOW = 6, "UO", "A circuit breaker (request limit) refused the request.";
    NO_ROUTE_FOUND = 7, "NR", "No route (or no destination) for the request.";
    DELAY_INJECTED = 8, "DI", "A fault delay was injected.";
    FAULT_INJECTED = 9, "FI", "A fault abort answered the request.";
    DOWNSTREAM_CONNECTION_TERMINATION = 10, "DC", "The client went away before the response was done.";
    UPSTREAM_RETRY_LIMIT_EXCEEDED = 11, "URX", "Retries were exhausted.";
    STREAM_IDLE_TIMEOUT = 12, "SI", "The stream idled past its timeout.";
    DOWNSTREAM_PROTOCOL_ERROR = 13, "DPE", "The request broke HTTP rules (bad path, host, headers).";
    UPSTREAM_PROTOCOL_ERROR = 14, "UPE", "The upstream broke HTTP rules.";
    OVERLOAD_MANAGER = 15, "OM", "The proxy was over its overload limits.";
    UNAUTHORIZED_EXTERNAL_SERVICE = 16, "UAEX", "An external authorizer denied the request (or failed, closed).";
    DNS_RESOLUTION_FAILED = 17, "DF", "The upstream's name did not resolve (a service outside the mesh).";
}

impl ResponseFlags {
    pub const NONE: ResponseFlags = ResponseFlags(0);

    pub fn contains(self, other: ResponseFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// A cheap key for metric caches.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Envoy's bit vector (`response.flags` in CEL: Envoy's `ResponseFlag` values).
    pub fn envoy_bits(self) -> u64 {
        const ENVOY: [(ResponseFlags, u64); 18] = [
            (ResponseFlags::NO_HEALTHY_UPSTREAM, 0x2),
            (ResponseFlags::UPSTREAM_REQUEST_TIMEOUT, 0x4),
            (ResponseFlags::LOCAL_RESET, 0x8),
            (ResponseFlags::UPSTREAM_REMOTE_RESET, 0x10),
            (ResponseFlags::UPSTREAM_CONNECTION_FAILURE, 0x20),
            (ResponseFlags::UPSTREAM_CONNECTION_TERMINATION, 0x40),
            (ResponseFlags::UPSTREAM_OVERFLOW, 0x80),
            (ResponseFlags::NO_ROUTE_FOUND, 0x100),
            (ResponseFlags::DELAY_INJECTED, 0x200),
            (ResponseFlags::FAULT_INJECTED, 0x400),
            (ResponseFlags::UNAUTHORIZED_EXTERNAL_SERVICE, 0x1000),
            (ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION, 0x4000),
            (ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED, 0x8000),
            (ResponseFlags::STREAM_IDLE_TIMEOUT, 0x10000),
            (ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR, 0x40000),
            (ResponseFlags::UPSTREAM_PROTOCOL_ERROR, 0x80_0000),
            (ResponseFlags::OVERLOAD_MANAGER, 0x200_0000),
            (ResponseFlags::DNS_RESOLUTION_FAILED, 0x400_0000),
        ];
        ENVOY
            .iter()
            .filter(|(f, _)| self.contains(*f))
            .fold(0, |acc, (_, b)| acc | b)
    }

    /// The flags of [`ResponseFlags::bits`].
    pub fn from_bits(bits: u32) -> ResponseFlags {
        ResponseFlags(bits)
    }

    /// Envoy's rendering: flags joined by `,` in Envoy's order, `-` when none.
    pub fn render(self) -> String {
        if self.is_empty() {
            return "-".into();
        }
        let names: Vec<&str> = Self::ALL
            .iter()
            .filter(|(f, _)| self.contains(*f))
            .map(|(_, s)| *s)
            .collect();
        names.join(",")
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = ResponseFlags;
    fn bitor(self, rhs: ResponseFlags) -> ResponseFlags {
        ResponseFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for ResponseFlags {
    fn bitor_assign(&mut self, rhs: ResponseFlags) {
        self.0 |= rhs.0;
    }
}

#[cfg(test)]
mod tests {
    use super::ResponseFlags as F;

    #[test]
    fn renders_in_envoys_order() {
        assert_eq!(F::NONE.render(), "-");
        assert_eq!((F::FAULT_INJECTED | F::DELAY_INJECTED).render(), "DI,FI");
        assert_eq!(
            (F::UPSTREAM_RETRY_LIMIT_EXCEEDED | F::UPSTREAM_CONNECTION_FAILURE).render(),
            "UF,URX"
        );
        assert!(F::NO_ROUTE_FOUND.contains(F::NO_ROUTE_FOUND));
        assert!(!F::NO_ROUTE_FOUND.contains(F::NONE));
    }
}
