//! Which config file `run` and `check` read.
//!
//! An installed binary is started from any directory (a service manager's is `/`), so a default
//! relative to the working directory alone would miss the system-wide file. Without `--config`
//! the file is `$TOLLGATE_CONFIG` when set, else the first of `./config/tollgate.toml` (a
//! checkout) and `/etc/tollgate/tollgate.toml` (a package) that exists. A path named by the
//! operator, by flag or by variable, is never passed over for another: a typo there must stop
//! the gateway, not start it on a different file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The variable that names the config file when `--config` is not given.
pub const ENV: &str = "TOLLGATE_CONFIG";
/// The file of a checkout or an unpacked release, relative to the working directory.
pub const LOCAL: &str = "./config/tollgate.toml";
/// The file of an installed package.
pub const SYSTEM: &str = "/etc/tollgate/tollgate.toml";

/// No config file to read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigPathError {
    /// The operator named a file that is not there.
    #[error("{}: no such file (named by {named_by})", .path.display())]
    Missing {
        /// `--config` or `TOLLGATE_CONFIG`.
        named_by: &'static str,
        path: PathBuf,
    },
    /// Nothing named, and no default file exists.
    #[error(
        "no config file found; tried $TOLLGATE_CONFIG (not set), ./config/tollgate.toml, \
         /etc/tollgate/tollgate.toml: pass --config PATH or set TOLLGATE_CONFIG"
    )]
    NotFound,
}

/// The config file for `--config` (`explicit`), searched as the module doc says.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, ConfigPathError> {
    resolve(explicit, std::env::var_os(ENV), &may_exist)
}

/// [`find`] with the variable's value and the existence test passed in (the test seam).
fn resolve(
    explicit: Option<&Path>,
    env: Option<OsString>,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<PathBuf, ConfigPathError> {
    let named = match (explicit, env) {
        (Some(path), _) => Some(("--config", path.to_path_buf())),
        // An empty value is how a shell unsets a variable for one command.
        (None, Some(v)) if !v.is_empty() => Some((ENV, PathBuf::from(v))),
        (None, _) => None,
    };
    if let Some((named_by, path)) = named {
        return if exists(&path) {
            Ok(path)
        } else {
            Err(ConfigPathError::Missing { named_by, path })
        };
    }
    [LOCAL, SYSTEM]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| exists(p))
        .ok_or(ConfigPathError::NotFound)
}

/// False only when the file is known to be absent: a file that cannot be looked at (no
/// permission on its directory) is chosen, so that reading it reports the real reason.
fn may_exist(path: &Path) -> bool {
    !matches!(path.try_exists(), Ok(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(present: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |p| present.iter().any(|q| Path::new(q) == p)
    }

    #[test]
    fn the_flag_wins_and_must_exist() {
        let all = only(&["/a.toml", "/b.toml", LOCAL, SYSTEM]);
        assert_eq!(
            resolve(Some(Path::new("/a.toml")), Some("/b.toml".into()), &all),
            Ok(PathBuf::from("/a.toml"))
        );
        let err = resolve(Some(Path::new("/none.toml")), None, &all).unwrap_err();
        assert_eq!(err.to_string(), "/none.toml: no such file (named by --config)");
    }

    #[test]
    fn the_variable_comes_next_and_must_exist() {
        let all = only(&["/b.toml", LOCAL, SYSTEM]);
        assert_eq!(
            resolve(None, Some("/b.toml".into()), &all),
            Ok(PathBuf::from("/b.toml"))
        );
        let err = resolve(None, Some("/typo.toml".into()), &all).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/typo.toml: no such file (named by TOLLGATE_CONFIG)"
        );
    }

    #[test]
    fn without_either_the_local_file_then_the_system_file() {
        assert_eq!(
            resolve(None, None, &only(&[LOCAL, SYSTEM])),
            Ok(PathBuf::from("./config/tollgate.toml"))
        );
        assert_eq!(
            resolve(None, Some(OsString::new()), &only(&[SYSTEM])),
            Ok(PathBuf::from("/etc/tollgate/tollgate.toml"))
        );
    }

    #[test]
    fn none_found_lists_every_path_tried() {
        let err = resolve(None, None, &only(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no config file found; tried $TOLLGATE_CONFIG (not set), ./config/tollgate.toml, \
             /etc/tollgate/tollgate.toml: pass --config PATH or set TOLLGATE_CONFIG"
        );
    }
}
