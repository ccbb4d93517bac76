//! Property tests: random JSON documents with links, serialised three ways
//! (compact, pretty, and with random escapes and whitespace) and fed in random
//! chunks, must come out the same whatever the chunking, as valid JSON that
//! differs from the input only in the rewritten string values, and must not
//! change when rewritten again. Corrupted documents must be judged valid or
//! not exactly as serde_json judges them.
//!
//! The JSON oracle takes the link decision from `LinkTarget::rewrite` itself, so
//! that decision is checked on its own, differentially, against the `url`
//! crate's WHATWG parser: whatever is rewritten must point into the base origin
//! and path by `url`'s reading too, and keep its rest; whatever `url` reads as
//! pointing there and is already in `url`'s canonical form must be rewritten.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Map, Value};
use tollgate_rewrite::{JsonRewriter, LinkTarget, Skip};
use url::Url;

fn target() -> Arc<LinkTarget> {
    Arc::new(LinkTarget::new("https://api.example.com/v1", "http://tollgate.internal:8080/oas").unwrap())
}

fn matching_url() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["https", "HTTPS", "Https"]),
        prop::sample::select(vec!["api.example.com", "API.Example.COM"]),
        prop::sample::select(vec!["", ":443", ":"]),
        prop::sample::select(vec!["", "/", "/x", "/api/organisations/", "/caf\u{e9}/a%2Fb"]),
        prop::sample::select(vec![
            "",
            "?page=2",
            "?q=a%20b&x=\"y\"",
            "?e=\u{1F600}",
            "?s=a\\b",
            "?",
        ]),
        prop::sample::select(vec!["", "#frag", "#/x/../y"]),
    )
        .prop_map(|(s, h, p, path, q, f)| format!("{s}://{h}{p}/v1{path}{q}{f}"))
}

fn other_url() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "https://api.example.com.evil.net/v1/x",
        "https://evilapi.example.com/v1/x",
        "https://api.example.com:8443/v1/x",
        "http://api.example.com/v1/x",
        "https://user@api.example.com/v1/x",
        "https://api.example.com/v10/x",
        "https://api.example.com/",
        "//api.example.com/v1/x",
        "/v1/x",
        "see https://api.example.com/v1/x",
        "https://api.example.com/v1/a b",
        "http://tollgate.internal:8080/oas/x",
    ])
    .prop_map(String::from)
}

fn plain_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::char::range('a', 'z'),
            1 => prop::sample::select(vec!['"', '\\', '/', '\n', '\u{0}', '\u{1f}', '\u{e9}', '\u{1F600}', '\u{2028}']),
            1 => any::<char>(),
        ],
        0..12,
    )
    .prop_map(String::from_iter)
}

fn some_string() -> impl Strategy<Value = String> {
    prop_oneof![matching_url(), other_url(), plain_string()]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9..1e9f64).prop_map(Value::from),
        some_string().prop_map(Value::String),
        some_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(some_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The input with every rewritable string value (not key) rewritten.
fn expected(v: &Value, t: &LinkTarget, count: &mut u64) -> Value {
    match v {
        Value::String(s) => match t.rewrite(s) {
            Some(r) => {
                *count += 1;
                Value::String(r)
            }
            None => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| expected(x, t, count)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), expected(x, t, count)))
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// Serialiser that escapes at random (`\/`, `\uXXXX` in either hex case,
/// surrogate pairs) and sprinkles whitespace, to reach the decoder paths.
struct Noisy(u64);

impl Noisy {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn ws(&mut self, out: &mut String) {
        if self.next().is_multiple_of(4) {
            out.push_str([" ", "\n", "\t", "\r\n  "][(self.next() % 4) as usize]);
        }
    }

    fn unicode(&mut self, c: char, out: &mut String) {
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            if self.next().is_multiple_of(2) {
                out.push_str(&format!("\\u{:04x}", unit));
            } else {
                out.push_str(&format!("\\u{:04X}", unit));
            }
        }
    }

    fn string(&mut self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            let roll = self.next() % 8;
            match c {
                '"' | '\\' | '\u{0}'..='\u{1f}' if roll < 3 => self.unicode(c, out),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\u{0}'..='\u{1f}' => self.unicode(c, out),
                '/' if roll < 4 => out.push_str("\\/"),
                _ if roll == 0 => self.unicode(c, out),
                _ => out.push(c),
            }
        }
        out.push('"');
    }

    fn value(&mut self, v: &Value, out: &mut String) {
        self.ws(out);
        match v {
            Value::Null | Value::Bool(_) | Value::Number(_) => out.push_str(&v.to_string()),
            Value::String(s) => self.string(s, out),
            Value::Array(a) => {
                out.push('[');
                self.ws(out);
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.value(x, out);
                }
                out.push(']');
            }
            Value::Object(m) => {
                out.push('{');
                self.ws(out);
                for (i, (k, x)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.ws(out);
                    self.string(k, out);
                    self.ws(out);
                    out.push(':');
                    self.value(x, out);
                }
                out.push('}');
            }
        }
        self.ws(out);
    }
}

struct Run {
    out: Vec<u8>,
    rewritten: u64,
    skipped: Option<Skip>,
}

fn run(input: &[u8], cuts: &[usize]) -> Run {
    let mut positions: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    positions.sort_unstable();
    let mut rw = JsonRewriter::new(target());
    let mut out = Vec::new();
    let mut start = 0;
    for p in positions.into_iter().chain([input.len()]) {
        rw.feed(&input[start..p], &mut out);
        start = p;
    }
    rw.finish(&mut out);
    Run {
        out,
        rewritten: rw.rewritten(),
        skipped: rw.skipped(),
    }
}

fn check_document(input: &[u8], exact: Option<Vec<u8>>, cuts: &[usize]) -> Result<(), TestCaseError> {
    let t = target();
    let whole = run(input, &[]);
    let split = run(input, cuts);
    prop_assert_eq!(&split.out, &whole.out);
    prop_assert_eq!(split.rewritten, whole.rewritten);
    prop_assert_eq!(split.skipped, None);
    prop_assert_eq!(whole.skipped, None);

    let got: Value = serde_json::from_slice(&whole.out)
        .map_err(|e| TestCaseError::fail(format!("output is not JSON: {e}")))?;
    let mut count = 0;
    let want = expected(&serde_json::from_slice(input).unwrap(), &t, &mut count);
    prop_assert_eq!(&got, &want);
    prop_assert_eq!(whole.rewritten, count);
    if let Some(exact) = exact {
        prop_assert_eq!(
            String::from_utf8_lossy(&whole.out),
            String::from_utf8_lossy(&exact)
        );
    }
    if count == 0 {
        prop_assert_eq!(&whole.out, &input.to_vec());
    }

    let again = run(&whole.out, cuts);
    prop_assert_eq!(&again.out, &whole.out);
    prop_assert_eq!(again.rewritten, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn chunking_never_changes_the_result(
        doc in json_value(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        seed in 1..u64::MAX,
    ) {
        let t = target();
        let mut n = 0;
        let rewritten = expected(&doc, &t, &mut n);

        // serde_json escapes exactly as the rewriter does, so the whole
        // output is known byte for byte: nothing but the rewritten strings moved.
        let compact = serde_json::to_vec(&doc).unwrap();
        check_document(&compact, Some(serde_json::to_vec(&rewritten).unwrap()), &cuts)?;
        let pretty = serde_json::to_vec_pretty(&doc).unwrap();
        check_document(&pretty, Some(serde_json::to_vec_pretty(&rewritten).unwrap()), &cuts)?;

        let mut noisy = String::new();
        Noisy(seed).value(&doc, &mut noisy);
        check_document(noisy.as_bytes(), None, &cuts)?;
    }

    #[test]
    fn validity_is_judged_like_serde_json(
        doc in json_value(),
        edits in prop::collection::vec((any::<usize>(), 0u8..3, any::<u8>()), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut bytes = serde_json::to_vec(&doc).unwrap();
        let structural = b"{}[]:,\"\\ 0-.eEtfnul\x01";
        for (at, kind, b) in edits {
            let at = at % (bytes.len() + 1);
            let b = if b % 2 == 0 { structural[usize::from(b) % structural.len()] } else { b };
            match kind {
                0 => bytes.insert(at, b),
                1 if at < bytes.len() => { bytes.remove(at); }
                _ if at < bytes.len() => bytes[at] = b,
                _ => bytes.push(b),
            }
        }
        prop_assume!(!bytes.is_empty());
        let whole = run(&bytes, &[]);
        let split = run(&bytes, &cuts);
        prop_assert_eq!(&split.out, &whole.out);
        prop_assert_eq!(split.rewritten, whole.rewritten);
        prop_assert_eq!(split.skipped, whole.skipped);

        let valid = std::str::from_utf8(&bytes).is_ok()
            && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
        prop_assert_eq!(whole.skipped != Some(Skip::InvalidJson), valid);
        if whole.rewritten == 0 {
            prop_assert_eq!(&whole.out, &bytes);
        }
        if valid {
            serde_json::from_slice::<serde::de::IgnoredAny>(&whole.out).unwrap();
        }
    }
}

/// A base URL for the differential test, with its parts as `url` reports them.
struct Base {
    url: &'static str,
    scheme: &'static str,
    host: &'static str,
    port: u16,
    path: &'static str,
}

const BASES: [Base; 2] = [
    Base {
        url: "https://api.example.com/v1",
        scheme: "https",
        host: "api.example.com",
        port: 443,
        path: "/v1",
    },
    Base {
        url: "http://127.0.0.1:9001/api",
        scheme: "http",
        host: "127.0.0.1",
        port: 9001,
        path: "/api",
    },
];

const REPLACEMENT: &str = "http://tollgate.internal:8080/oas";

/// Whether `url` (as the `url` crate parsed it) is in the base's origin, under its path, with no
/// userinfo.
fn points_into(url: &Url, base: &Base) -> bool {
    url.scheme() == base.scheme
        && url.username().is_empty()
        && url.password().is_none()
        && url.host_str() == Some(base.host)
        && url.port_or_known_default() == Some(base.port)
        && (url.path() == base.path || url.path().starts_with(&format!("{}/", base.path)))
}

/// Strings near the bases: right and wrong schemes, separators, userinfo, hosts that normalise to
/// the base host (IDNA, IPv4 shorthand, percent-encoding), ports, dot segments in every
/// spelling, backslashes, whitespace, then one stray character anywhere.
fn url_like() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "https", "HTTPS", "hTtPs", "http", "HTTP", "ftp", "ws", "", "https:", "h ttps",
    ]);
    let sep = prop::sample::select(vec![
        "://", "://", "://", ":/", ":", ":///", ":\\\\", "://\t", "//",
    ]);
    let userinfo = prop::sample::select(vec![
        "",
        "",
        "",
        "",
        "user@",
        "user:pw@",
        "api.example.com@",
        "127.0.0.1:9001@",
        ":@",
        "@",
    ]);
    let host = prop::sample::select(vec![
        "api.example.com",
        "api.example.com",
        "API.Example.COM",
        "api.example.com.",
        "api.example.com.evil.net",
        "evilapi.example.com",
        "api%2Eexample.com",
        "\u{ff41}pi.example.com",
        "\u{24d0}pi.example.com",
        "api.exa\tmple.com",
        "127.0.0.1",
        "127.0.0.1",
        "127.1",
        "0x7f.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "",
        "api.example.com\\",
        "api.example.com\\@evil.net",
        "evil.net\\@api.example.com",
        "api.example.com%00",
    ]);
    let port = prop::sample::select(vec![
        "", "", "", ":", ":443", ":0443", ":80", ":8443", ":9001", ":09001", ":99999", ":4a3", ": 443",
        ":+443",
    ]);
    let path = prop::sample::select(vec![
        "",
        "/",
        "/v1",
        "/v1/",
        "/v1/x",
        "/v1/x",
        "/V1/x",
        "/v10",
        "/v1/../admin",
        "/v1/%2e%2E/admin",
        "/v1/./x",
        "/v1\\..\\admin",
        "/v1/a b",
        "/%76%31/x",
        "/v1/caf\u{e9}",
        "//v1/x",
        "/v1;x",
        "/v1/..;/x",
        "/v1/a%2Fb",
        "/v1//x",
        "/api",
        "/api/p",
        "/api/p",
        "/api/../x",
        "/apix",
        "/api/%zz",
    ]);
    let tail = prop::sample::select(vec![
        "",
        "",
        "?q=1",
        "#f",
        "?",
        "#",
        "?a=\\b#\\c",
        "?x=/../y",
        "?e=\u{1F600}",
        "?'",
        "#/x/../y",
    ]);
    let stray = prop::option::weighted(
        0.3,
        (
            any::<usize>(),
            prop::sample::select(vec![
                '\u{0}', ' ', '\t', '\n', '/', '\\', '@', ':', '.', '%', '?', '#', '[', ']', 'A', '\u{e9}',
            ]),
        ),
    );
    (scheme, sep, userinfo, host, port, path, tail, stray).prop_map(
        |(scheme, sep, userinfo, host, port, path, tail, stray)| {
            let mut s = format!("{scheme}{sep}{userinfo}{host}{port}{path}{tail}");
            if let Some((at, c)) = stray {
                let mut at = at % (s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.insert(at, c);
            }
            s
        },
    )
}

/// One string against one base: sound (a rewrite implies `url` agrees, and keeps path rest,
/// query and fragment) and, for canonical strings, complete.
fn check_against_url_crate(s: &str, base: &Base) -> Result<(), TestCaseError> {
    let target = LinkTarget::new(base.url, REPLACEMENT).unwrap();
    let parsed = Url::parse(s);
    match target.rewrite(s) {
        Some(out) => {
            let u = parsed
                .map_err(|e| TestCaseError::fail(format!("rewrote {s:?}, which url cannot parse: {e}")))?;
            prop_assert!(
                points_into(&u, base),
                "rewrote {:?}, which url reads as {}",
                s,
                u.as_str()
            );
            let o = Url::parse(&out)
                .map_err(|e| TestCaseError::fail(format!("rewrite of {s:?} is not a URL: {out:?}: {e}")))?;
            prop_assert_eq!(o.scheme(), "http");
            prop_assert_eq!(o.host_str(), Some("tollgate.internal"));
            prop_assert_eq!(o.port(), Some(8080));
            prop_assert_eq!(
                o.path().to_owned(),
                format!("/oas{}", &u.path()[base.path.len()..])
            );
            prop_assert_eq!(o.query(), u.query());
            prop_assert_eq!(o.fragment(), u.fragment());
        }
        None => {
            if let Ok(u) = parsed {
                prop_assert!(
                    !(u.as_str() == s && points_into(&u, base)),
                    "left {:?} alone, though it is canonical and points into {}",
                    s,
                    base.url
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn origin_matching_agrees_with_the_url_crate(s in url_like()) {
        for base in &BASES {
            check_against_url_crate(&s, base)?;
        }
    }
}

/// Known strings where a naive matcher and the WHATWG parser part ways; each must hold the
/// property, and the canonical ones must really be rewritten (the property's other half is not
/// vacuous).
#[test]
fn origin_matching_known_vectors() {
    let base = &BASES[0];
    for s in [
        "https://api.example.com/v1",
        "https://api.example.com/v1/x?q=1#f",
        "HTTPS://API.EXAMPLE.COM:0443/v1/x",
        "https://api.example.com:/v1/x",
        "https://\u{ff41}pi.example.com/v1/x",
        "https://api.example.com\\@evil.net/v1/x",
        "https://evil.net\\@api.example.com/v1/x",
        "https:\\\\api.example.com/v1/x",
        "https://api.exa\tmple.com/v1/x",
        "https://api%2Eexample.com/v1/x",
        "https://api.example.com/v1/%2e%2E/admin",
        "https://api.example.com/v1\\..\\admin",
        " https://api.example.com/v1/x",
    ] {
        if let Err(e) = check_against_url_crate(s, base) {
            panic!("{s:?}: {e}");
        }
    }
    let target = LinkTarget::new(base.url, REPLACEMENT).unwrap();
    assert!(target.rewrite("https://api.example.com/v1/x?q=1#f").is_some());
    assert!(LinkTarget::new(BASES[1].url, REPLACEMENT)
        .unwrap()
        .rewrite("http://127.0.0.1:9001/api/p")
        .is_some());
}
