//! Longest-prefix routing and path normalisation.
//!
//! The upstream is chosen by the path alone, never by `Host`. The rest of the path after the prefix
//! is normalised before it is appended to the upstream's base path, and any path that would climb
//! above the prefix is refused, whichever spelling the climb uses (`..`, `%2e%2e`, `..;`), as are
//! encoded slashes and empty segments (`//host`), which partners' servers may read differently.

use std::borrow::Cow;

/// Prefixes sorted longest first, so the first match is the longest.
#[derive(Debug)]
pub struct Routes {
    entries: Vec<(String, usize)>,
}

impl Routes {
    /// `prefixes[i]` routes to upstream `i`.
    pub fn new<'a>(prefixes: impl IntoIterator<Item = &'a str>) -> Self {
        let mut entries: Vec<(String, usize)> = prefixes
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p.to_owned(), i))
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        Self { entries }
    }

    /// The upstream index and the rest of the path (empty or starting with `/`).
    pub fn find<'p>(&self, path: &'p str) -> Option<(usize, &'p str)> {
        self.entries.iter().find_map(|(prefix, idx)| {
            if prefix == "/" {
                return Some((*idx, path));
            }
            let rest = path.strip_prefix(prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((*idx, rest))
        })
    }
}

/// Why a path was refused; each is a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `..` (in any spelling) would leave the prefix.
    Climb,
    /// `%2f` or `%5c` or `\`: a separator the partner may decode differently.
    EncodedSeparator,
    /// `//`: an empty segment, which some servers read as a host.
    EmptySegment,
}

impl PathError {
    pub fn message(self) -> &'static str {
        match self {
            PathError::Climb => "the path climbs above the route prefix",
            PathError::EncodedSeparator => "the path holds an encoded slash or a backslash",
            PathError::EmptySegment => "the path holds an empty segment (`//`)",
        }
    }
}

/// Normalises the rest of a path (empty or starting with `/`): resolves `.` and `..` segments,
/// refusing any climb above the start. Returns the input unchanged (no allocation) when it is
/// already normal, which is nearly always.
pub fn normalise(rest: &str) -> Result<Cow<'_, str>, PathError> {
    if rest.is_empty() {
        return Ok(Cow::Borrowed(rest));
    }
    if rest.contains('\\') {
        return Err(PathError::EncodedSeparator);
    }
    // Checked without collecting the segments: this runs for every request.
    let mut needs_rewrite = false;
    let mut segments = rest[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        if seg.is_empty() && segments.peek().is_some() {
            return Err(PathError::EmptySegment);
        }
        if has_encoded_separator(seg) {
            return Err(PathError::EncodedSeparator);
        }
        needs_rewrite |= dot_kind(seg).is_some();
    }
    if !needs_rewrite {
        return Ok(Cow::Borrowed(rest));
    }
    let segments: Vec<&str> = rest[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        trailing_slash = false;
        match dot_kind(seg) {
            Some(Dot::Current) => trailing_slash = i == last,
            Some(Dot::Parent) => {
                out.pop().ok_or(PathError::Climb)?;
                trailing_slash = i == last;
            }
            None => out.push(seg),
        }
    }
    let mut path = String::with_capacity(rest.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if trailing_slash || path.is_empty() {
        path.push('/');
    }
    Ok(Cow::Owned(path))
}

enum Dot {
    Current,
    Parent,
}

/// Whether a segment means `.` or `..` to some server: percent-decoded, and with a `;` path
/// parameter cut off (`..;x` is `..` to Tomcat-style servers).
fn dot_kind(seg: &str) -> Option<Dot> {
    let seg = seg.split(';').next().unwrap_or(seg);
    if seg.len() > 6 || !seg.starts_with(['.', '%']) {
        return None;
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(seg).collect();
    match decoded.as_slice() {
        b"." => Some(Dot::Current),
        b".." => Some(Dot::Parent),
        _ => None,
    }
}

fn has_encoded_separator(seg: &str) -> bool {
    let b = seg.as_bytes();
    b.windows(3).any(|w| {
        w[0] == b'%' && ((w[1] == b'2' && (w[2] | 0x20) == b'f') || (w[1] == b'5' && (w[2] | 0x20) == b'c'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_at_segment_boundaries() {
        let r = Routes::new(["/osigu", "/osigu/v2", "/oas"]);
        assert_eq!(r.find("/osigu/v2/x"), Some((1, "/x")));
        assert_eq!(r.find("/osigu/v1/x"), Some((0, "/v1/x")));
        assert_eq!(r.find("/osigu"), Some((0, "")));
        assert_eq!(r.find("/osiguX/y"), None);
        assert_eq!(r.find("/oas/"), Some((2, "/")));
        assert_eq!(r.find("/nope"), None);
        let catch_all = Routes::new(["/", "/a"]);
        assert_eq!(catch_all.find("/a/b"), Some((1, "/b")));
        assert_eq!(catch_all.find("/b"), Some((0, "/b")));
    }

    #[test]
    fn normal_paths_are_borrowed_unchanged() {
        for p in [
            "",
            "/",
            "/v1/invoices",
            "/api/organisations/",
            "/a;b=c/d",
            "/%41bc",
            "/.well-known/x",
        ] {
            assert!(matches!(normalise(p), Ok(Cow::Borrowed(s)) if s == p), "{p}");
        }
    }

    #[test]
    fn dot_segments_resolve_inside_the_prefix() {
        assert_eq!(normalise("/v1/../v2/x").unwrap(), "/v2/x");
        assert_eq!(normalise("/v1/./x").unwrap(), "/v1/x");
        assert_eq!(normalise("/v1/%2e%2E/v2").unwrap(), "/v2");
        assert_eq!(normalise("/v1/x/..").unwrap(), "/v1/");
        assert_eq!(normalise("/v1/..").unwrap(), "/");
    }

    #[test]
    fn every_climb_spelling_is_refused() {
        for p in [
            "/..",
            "/../x",
            "/v1/../../x",
            "/%2e%2e/x",
            "/%2E%2e",
            "/.%2e/x",
            "/%2e./x",
            "/..;/x",
            "/..;jsessionid=1/x",
        ] {
            assert_eq!(normalise(p), Err(PathError::Climb), "{p}");
        }
    }

    #[test]
    fn encoded_separators_and_empty_segments_are_refused() {
        for p in ["/a%2fb", "/a%2F..%2Fb", "/%5c..", "/a\\b"] {
            assert_eq!(normalise(p), Err(PathError::EncodedSeparator), "{p}");
        }
        for p in ["//evil.example/x", "/a//b"] {
            assert_eq!(normalise(p), Err(PathError::EmptySegment), "{p}");
        }
    }
}
