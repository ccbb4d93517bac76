//! `${VAR}`, `${VAR:-default}` and `${file:PATH}` expansion inside config strings.
//!
//! Expansion runs on the parsed TOML tree before it is deserialised, so every error can name the key
//! path of the string that failed. The environment is injected (`Lookup`) so tests never touch the
//! process environment.

use std::path::Path;

/// Where `${VAR}` values come from: the process environment in the binary, a map in tests.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Why a string could not be expanded. The caller adds the key path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InterpolateError {
    #[error("environment variable `{0}` is not set (use `${{{0}:-default}}` for a default)")]
    MissingVar(String),
    #[error("cannot read `${{file:{path}}}`: {reason}")]
    File { path: String, reason: String },
    #[error("unterminated `${{` (write `$${{` for a literal `${{`)")]
    Unterminated,
    #[error("empty `${{}}`")]
    Empty,
}

/// Expands every `${...}` in `input`. `$${` stands for a literal `${`.
pub fn expand(input: &str, lookup: Lookup<'_>) -> Result<String, InterpolateError> {
    if !input.contains("${") {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let body_start = at + 2;
        let end = rest[body_start..]
            .find('}')
            .ok_or(InterpolateError::Unterminated)?;
        let body = &rest[body_start..body_start + end];
        out.push_str(&resolve(body, lookup)?);
        rest = &rest[body_start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(body: &str, lookup: Lookup<'_>) -> Result<String, InterpolateError> {
    if body.is_empty() {
        return Err(InterpolateError::Empty);
    }
    if let Some(path) = body.strip_prefix("file:") {
        return std::fs::read_to_string(Path::new(path))
            .map(|s| s.trim().to_owned())
            .map_err(|e| InterpolateError::File {
                path: path.to_owned(),
                reason: e.to_string(),
            });
    }
    match body.split_once(":-") {
        Some((name, default)) => Ok(lookup(name).unwrap_or_else(|| default.to_owned())),
        None => lookup(body).ok_or_else(|| InterpolateError::MissingVar(body.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_vars_defaults_and_literals() {
        assert_eq!(expand("x${A}y", &env).unwrap(), "xalphay");
        assert_eq!(expand("${B:-beta}", &env).unwrap(), "beta");
        assert_eq!(expand("${A:-beta}", &env).unwrap(), "alpha");
        assert_eq!(expand("${EMPTY:-d}", &env).unwrap(), "");
        assert_eq!(expand("$${A}", &env).unwrap(), "${A}");
        assert_eq!(expand("no vars", &env).unwrap(), "no vars");
    }

    #[test]
    fn names_the_missing_variable() {
        let err = expand("${NOPE}", &env).unwrap_err();
        assert_eq!(err, InterpolateError::MissingVar("NOPE".into()));
        assert!(err.to_string().contains("`NOPE`"));
        assert_eq!(expand("${A", &env), Err(InterpolateError::Unterminated));
        assert_eq!(expand("${}", &env), Err(InterpolateError::Empty));
    }

    #[test]
    fn reads_and_trims_files() {
        let dir = std::env::temp_dir().join(format!("tollgate-interp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "  s3cr3t\n").unwrap();
        let got = expand(&format!("${{file:{}}}", file.display()), &env).unwrap();
        assert_eq!(got, "s3cr3t");
        let err = expand("${file:/definitely/not/here}", &env).unwrap_err();
        assert!(matches!(err, InterpolateError::File { .. }));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
