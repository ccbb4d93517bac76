//! `application/x-www-form-urlencoded` parsing, for token request bodies and query strings.
//!
//! Through `form_urlencoded` rather than axum's `Form`/`Query` extractors so that a malformed
//! input gets an answer in the partner's own error style instead of axum's plain-text rejection.

/// Splits `a=1&b=x+y` into decoded pairs, in order; keys without `=` get an empty value.
pub(crate) fn pairs(input: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(input.as_bytes()).into_owned().collect()
}

/// The first value of `name`, if present.
pub(crate) fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Decodes one form-encoded component (`+` is a space); invalid escapes are kept literally.
pub(crate) fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_in_order() {
        let p = pairs("grant_type=client_credentials&client_id=a%2Bb&x=y+z&flag");
        assert_eq!(first(&p, "client_id"), Some("a+b"));
        assert_eq!(first(&p, "x"), Some("y z"));
        assert_eq!(first(&p, "flag"), Some(""));
        assert_eq!(first(&p, "missing"), None);
        assert_eq!(p[0].0, "grant_type");
    }

    #[test]
    fn keeps_broken_escapes() {
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%41"), "A");
    }
}
