//! Rewriting of the link targets inside an RFC 8288 `Link` header value.
//!
//! Partners announce pagination as `Link: <url>; rel="next", <url2>; rel="prev"`.
//! Only the `<...>` targets are URI-references that a client follows, so only
//! they are rewritten; parameters, separators and whitespace are copied
//! byte-for-byte. Quoted parameter values are skipped as opaque text so that a
//! `<` inside e.g. `title="a <b>"` is never mistaken for a link.

use super::origin::LinkTarget;

/// The header value with every matching `<url>` rewritten, or `None` when
/// nothing changed (so the caller can keep the original header untouched).
pub fn rewrite_link_header(value: &str, target: &LinkTarget) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out: Option<String> = None;
    // Start of the not yet copied part of `value`.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    // quoted-pair: the escaped byte cannot end the string.
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'<' => {
                let start = i + 1;
                let Some(len) = bytes[start..].iter().position(|&b| b == b'>') else {
                    break;
                };
                let end = start + len;
                if let Some(new) = target.rewrite(&value[start..end]) {
                    let buf = out.get_or_insert_with(|| String::with_capacity(value.len() + 64));
                    buf.push_str(&value[copied..start]);
                    buf.push_str(&new);
                    copied = end;
                }
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    let mut buf = out?;
    buf.push_str(&value[copied..]);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> LinkTarget {
        LinkTarget::new("https://api.example.com/v1", "http://gw:8080/oas").unwrap()
    }

    #[test]
    fn two_relations_are_rewritten() {
        let value = r#"<https://api.example.com/v1/items?page=3>; rel="next",  <https://API.example.com:443/v1/items?page=1>;rel="prev""#;
        assert_eq!(
            rewrite_link_header(value, &target()).as_deref(),
            Some(
                r#"<http://gw:8080/oas/items?page=3>; rel="next",  <http://gw:8080/oas/items?page=1>;rel="prev""#
            )
        );
    }

    #[test]
    fn only_matching_links_change() {
        let value = r#"<https://other.example.com/v1/x>; rel="alternate", <https://api.example.com/v1/y>; rel="next""#;
        assert_eq!(
            rewrite_link_header(value, &target()).as_deref(),
            Some(r#"<https://other.example.com/v1/x>; rel="alternate", <http://gw:8080/oas/y>; rel="next""#)
        );
    }

    #[test]
    fn unchanged_value_gives_none() {
        for value in [
            r#"<https://api.example.com.evil.net/v1/x>; rel="next""#,
            r#"<https://user@api.example.com/v1/x>; rel="next""#,
            r#"<http://api.example.com/v1/x>; rel="next""#,
            r#"</v1/x>; rel="next""#,
            "",
            "garbage without links",
            "<https://api.example.com/v1/unterminated",
        ] {
            assert_eq!(rewrite_link_header(value, &target()), None, "{value}");
        }
    }

    #[test]
    fn angle_brackets_in_quoted_params_are_not_links() {
        let value = r#"<https://x.example/a>; title="see <https://api.example.com/v1/q> \"here\"", <https://api.example.com/v1/z>; rel="next""#;
        assert_eq!(
            rewrite_link_header(value, &target()).as_deref(),
            Some(
                r#"<https://x.example/a>; title="see <https://api.example.com/v1/q> \"here\"", <http://gw:8080/oas/z>; rel="next""#
            )
        );
    }
}
