//! Label values shared by several metric families, in one leaf module so the families' files
//! depend on it and not on each other.

/// The `status_class` values, in the order the per-status children are kept.
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The `client` value of a caller that is not a configured client (no key, `caller_auth =
/// "optional"` or `"off"`, an unknown key, a request no route matched).
pub const ANONYMOUS: &str = "anonymous";
