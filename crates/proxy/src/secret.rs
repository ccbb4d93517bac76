//! `Secret`: a value that must never reach a log line, a metric label or `tollgate check` output.
//!
//! Debug and Display print `***`; the only way to the value is [`Secret::expose`], a greppable call.

use std::fmt;

/// A credential (API key, client secret, password, token) whose formatting is redacted.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T = String>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The plain value. Every call site is a place where a secret leaves the type: keep them few.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}

/// A secret from config that may name `${file:...}`: such a secret is re-read at each use (each
/// token fetch), so a rotated secret file takes effect without a restart.
#[derive(Clone)]
pub struct Reloadable<T> {
    value: Secret<T>,
    reload: Option<std::sync::Arc<dyn Fn() -> Result<T, String> + Send + Sync>>,
}

impl<T: Clone> Reloadable<T> {
    /// A secret whose source never changes.
    pub fn fixed(value: T) -> Self {
        Self {
            value: Secret::new(value),
            reload: None,
        }
    }

    /// A secret re-read by `reload` at each use; `value` is what it read at start-up.
    pub fn reloading(value: T, reload: impl Fn() -> Result<T, String> + Send + Sync + 'static) -> Self {
        Self {
            value: Secret::new(value),
            reload: Some(std::sync::Arc::new(reload)),
        }
    }

    /// The value now: re-read from its files when it has any.
    pub fn current(&self) -> Result<Secret<T>, String> {
        match &self.reload {
            None => Ok(self.value.clone()),
            Some(reload) => reload().map(Secret::new),
        }
    }

    /// The value read at start-up (for comparisons at config time).
    pub fn initial(&self) -> &Secret<T> {
        &self.value
    }
}

/// Equal when read the same at start-up: what a config reload compares (a secret whose file
/// changed since is re-read at its next use anyway).
impl<T: PartialEq> PartialEq for Reloadable<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value && self.reload.is_some() == other.reload.is_some()
    }
}

impl<T> fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
