//! `application/x-www-form-urlencoded` parsing, for token request bodies and query strings.
//!
//! Hand-written rather than through axum's `Form`/`Query` extractors so that a malformed input
//! gets an answer in the partner's own error style instead of axum's plain-text rejection.

/// Splits `a=1&b=x+y` into decoded pairs, in order; keys without `=` get an empty value.
pub(crate) fn pairs(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The first value of `name`, if present.
pub(crate) fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Percent-decodes (and turns `+` into a space); invalid escapes are kept literally.
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: Option<&u8>) -> Option<u8> {
    char::from(*b?).to_digit(16).map(|d| d as u8)
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
