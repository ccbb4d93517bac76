//! The one error of the webhook store API, whichever backend answered; never carries a body.

use crate::webhook::sqlite;

/// Why the store could not do something; never carries a body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error(transparent)]
    Sqlite(#[from] sqlite::StoreError),
    /// Redis failed, was slower than `op_timeout`, or is marked down (degraded).
    #[error("webhook store (Redis): {0}")]
    Fleet(String),
}
