//! Label values shared by several metric families, in one leaf module so the families' files
//! depend on it and not on each other: `upstream.rs` and `traffic.rs` both label by
//! [`ErrorKind`], and `upstream.rs` resolves `traffic.rs`'s handles, so the kind lives here
//! rather than in either of them.

/// The `status_class` values, in the order the per-status children are kept.
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The `client` value of a caller that is not a configured client (no key, `caller_auth =
/// "optional"` or `"off"`, an unknown key, a request no route matched).
pub const ANONYMOUS: &str = "anonymous";

/// Why an attempt got no partner response: the `kind` label of `tollgate_upstream_errors_total`,
/// and the failed `result` values of `tollgate_upstream_connects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Timeout,
    Tls,
    Protocol,
}

impl ErrorKind {
    pub(crate) const ALL: [ErrorKind; 4] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Tls,
        ErrorKind::Protocol,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Protocol => "protocol",
        }
    }
}
