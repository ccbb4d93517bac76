//! Edge cases of the streaming JSON rewriter, each checked both in one chunk
//! and byte by byte, since chunk boundaries must never change the result.

use std::sync::Arc;

use tollgate_rewrite::{JsonRewriter, LinkTarget, Skip, MAX_STRING};

fn target() -> Arc<LinkTarget> {
    Arc::new(LinkTarget::new("https://api.example.com/v1", "http://gw:8080/oas").unwrap())
}

struct Run {
    out: Vec<u8>,
    rewritten: u64,
    skipped: Option<Skip>,
    too_long: u64,
}

fn run_chunks(input: &[u8], chunk: usize) -> Run {
    let mut rw = JsonRewriter::new(target());
    let mut out = Vec::new();
    for part in input.chunks(chunk.max(1)) {
        rw.feed(part, &mut out);
    }
    rw.finish(&mut out);
    Run {
        out,
        rewritten: rw.rewritten(),
        skipped: rw.skipped(),
        too_long: rw.strings_too_long(),
    }
}

/// One-shot run, cross-checked against byte-by-byte and 7-byte chunking.
fn run(input: &[u8]) -> Run {
    let whole = run_chunks(input, input.len());
    for size in [1, 7] {
        let split = run_chunks(input, size);
        assert_eq!(split.out, whole.out, "chunk size {size}");
        assert_eq!(split.rewritten, whole.rewritten, "chunk size {size}");
        assert_eq!(split.skipped, whole.skipped, "chunk size {size}");
        assert_eq!(split.too_long, whole.too_long, "chunk size {size}");
    }
    whole
}

fn text(r: &Run) -> &str {
    std::str::from_utf8(&r.out).unwrap()
}

#[test]
fn pagination_links_are_rewritten() {
    let input = br#"{"count": 42, "next": "https://api.example.com/v1/api/organisations/?page=2", "previous": null, "results": [{"id": 1, "self": "https://api.example.com/v1/api/organisations/1/"}]}"#;
    let r = run(input);
    assert_eq!(
        text(&r),
        r#"{"count": 42, "next": "http://gw:8080/oas/api/organisations/?page=2", "previous": null, "results": [{"id": 1, "self": "http://gw:8080/oas/api/organisations/1/"}]}"#
    );
    assert_eq!(r.rewritten, 2);
    assert_eq!(r.skipped, None);
}

#[test]
fn escaped_slashes_are_decoded_for_the_match() {
    let r = run(br#"{"next":"https:\/\/api.example.com\/v1\/x?page=2"}"#);
    assert_eq!(text(&r), r#"{"next":"http://gw:8080/oas/x?page=2"}"#);
    assert_eq!(r.rewritten, 1);
}

#[test]
fn unicode_escapes_are_decoded_for_the_match() {
    // \u0068 is 'h'; the surrogate pair is U+1F600, kept (as UTF-8) in the query.
    let r = run(br#"["\u0068ttps://api.example.com/v1/a?e=\ud83d\ude00&q=\u00e9", "https://api.example.com/v1/\"q\""]"#);
    assert_eq!(
        text(&r),
        "[\"http://gw:8080/oas/a?e=\u{1F600}&q=\u{e9}\", \"http://gw:8080/oas/\\\"q\\\"\"]"
    );
    assert_eq!(r.rewritten, 2);
}

#[test]
fn lone_surrogate_is_left_untouched() {
    let input = br#"["https://api.example.com/v1/\ud800", "https://api.example.com/v1/\udc00x"]"#;
    let r = run(input);
    assert_eq!(r.out, input);
    assert_eq!(r.rewritten, 0);
    assert_eq!(r.skipped, None);
}

#[test]
fn url_inside_a_longer_string_is_untouched() {
    let input = br#"{"note":"see https://api.example.com/v1/x","u":" https://api.example.com/v1/x","v":"https://api.example.com/v1/x "}"#;
    let r = run(input);
    assert_eq!(r.out, input);
    assert_eq!(r.rewritten, 0);
}

#[test]
fn object_keys_are_untouched() {
    let input = br#"{"https://api.example.com/v1/x": "https://api.example.com/v1/y", "a": {"https://api.example.com/v1/z": 1}}"#;
    let r = run(input);
    assert_eq!(
        text(&r),
        r#"{"https://api.example.com/v1/x": "http://gw:8080/oas/y", "a": {"https://api.example.com/v1/z": 1}}"#
    );
    assert_eq!(r.rewritten, 1);
}

#[test]
fn other_origins_are_untouched() {
    let input = br#"["https://api.example.com.evil.net/v1/x","https://evilapi.example.com/v1/x","https://api.example.com:8443/v1/x","http://api.example.com/v1/x","https://user@api.example.com/v1/x","https://api.example.com/v10/x","/v1/x","//api.example.com/v1/x"]"#;
    let r = run(input);
    assert_eq!(r.out, input);
    assert_eq!(r.rewritten, 0);
}

#[test]
fn top_level_string_is_a_value() {
    let r = run(br#" "https://api.example.com/v1/x" "#);
    assert_eq!(text(&r), r#" "http://gw:8080/oas/x" "#);
    assert_eq!(r.skipped, None);
}

#[test]
fn deep_nesting_passes_through_without_recursion() {
    let depth = 10_000;
    let mut input = Vec::new();
    input.extend(std::iter::repeat_n(b'[', depth));
    input.extend_from_slice(br#""https://api.example.com/v1/deep""#);
    input.extend(std::iter::repeat_n(b']', depth));
    let r = run_chunks(&input, input.len());
    let mut want = Vec::new();
    want.extend(std::iter::repeat_n(b'[', depth));
    want.extend_from_slice(br#""http://gw:8080/oas/deep""#);
    want.extend(std::iter::repeat_n(b']', depth));
    assert_eq!(r.out, want);
    assert_eq!(r.skipped, None);
    assert_eq!(run_chunks(&input, 3).out, want);

    // Same depth with objects; and unbalanced input is reported, not failed.
    let mut objects = Vec::new();
    for _ in 0..depth {
        objects.extend_from_slice(br#"{"a":"#);
    }
    objects.extend_from_slice(b"1");
    objects.extend(std::iter::repeat_n(b'}', depth));
    let r = run_chunks(&objects, 5);
    assert_eq!(r.out, objects);
    assert_eq!(r.skipped, None);

    let unbalanced = &input[..input.len() - 1];
    let r = run_chunks(unbalanced, 4096);
    assert_eq!(r.skipped, Some(Skip::InvalidJson));
    // Streamed: the link before the point where it turned out invalid is already rewritten, the
    // rest passes as it came.
    assert_eq!(r.out, want[..want.len() - 1]);
}

#[test]
fn invalid_json_passes_through_from_the_point_of_failure() {
    let input = br#"{"a": "https://api.example.com/v1/x", "b": tru "https://api.example.com/v1/y"}"#;
    let r = run(input);
    let want = br#"{"a": "http://gw:8080/oas/x", "b": tru "https://api.example.com/v1/y"}"#;
    assert_eq!(r.out, want);
    assert_eq!(r.rewritten, 1);
    assert_eq!(r.skipped, Some(Skip::InvalidJson));
}

#[test]
fn invalid_inputs_are_never_truncated() {
    for input in [
        &br#"<html>https://api.example.com/v1/x</html>"#[..],
        br#"{"a": "https://api.example.com/v1/x"#,
        br#"["https://api.example.com/v1/x\q"]"#,
        br#"["https://api.example.com/v1/x\u12g4"]"#,
        b"[\"https://api.example.com/v1/x\nnewline\"]",
        b"[\"https://api.example.com/v1/\xff\"]",
        b"[\"https://api.example.com/v1/\xe2\x82\"]",
        br#"{"a" 1}"#,
        br#"{"a":1,}"#,
        br#"[1,]"#,
        br#"[01]"#,
        br#"[1.]"#,
        br#"[-]"#,
        br#"[1e]"#,
        br#"[1.2.3]"#,
        br#"[1e5e2]"#,
        br#"[1e5.2]"#,
        br#"[0x1]"#,
        br#"[+1]"#,
        br#"{"a":1}]"#,
        br#"{"a":1} {"b":2}"#,
        br#"{1:2}"#,
        br#"[nul]"#,
        "\u{feff}[]".as_bytes(),
        b"   ",
    ] {
        let r = run(input);
        assert_eq!(r.out, input, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(
            r.skipped,
            Some(Skip::InvalidJson),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(r.rewritten, 0);
    }
}

#[test]
fn empty_body_is_not_a_skip() {
    let r = run(b"");
    assert!(r.out.is_empty());
    assert_eq!(r.skipped, None);
}

#[test]
fn string_over_the_cap_passes_untouched_and_is_counted() {
    let long = format!("https://api.example.com/v1/{}", "a".repeat(70 * 1024));
    let input = format!(r#"["{long}", "{long}", "https://api.example.com/v1/after"]"#);
    let r = run_chunks(input.as_bytes(), input.len());
    let want = format!(r#"["{long}", "{long}", "http://gw:8080/oas/after"]"#);
    assert_eq!(text(&r), want);
    assert_eq!(r.rewritten, 1);
    assert_eq!(r.too_long, 2);
    assert_eq!(r.skipped, Some(Skip::StringTooLong));
    for size in [1, 1000, 64 * 1024, 64 * 1024 + 1] {
        let split = run_chunks(input.as_bytes(), size);
        assert_eq!(split.out, r.out, "chunk size {size}");
        assert_eq!(split.too_long, 2, "chunk size {size}");
    }

    // Exactly at the cap is still examined.
    let at_cap = format!(
        "https://api.example.com/v1/{}",
        "b".repeat(MAX_STRING - "https://api.example.com/v1/".len())
    );
    let input = format!(r#"["{at_cap}"]"#);
    let r = run_chunks(input.as_bytes(), 4096);
    assert_eq!(r.rewritten, 1);
    assert_eq!(r.skipped, None);
}

#[test]
fn scalars_and_whitespace_are_byte_identical() {
    let input = b" {\n\t\"n\" : -0.5e+10 ,\r\n \"m\":[0, 1E5, 12.25e-3, -7 ],\"t\":true,\"f\" :false,\"z\": null ,\"s\":\"\\u00e9\\/x\\n\"}\n\n";
    let r = run(input);
    assert_eq!(r.out, input);
    assert_eq!(r.skipped, None);
    for scalar in [&b"0"[..], b"-12.5e3", b"true", b" null ", b"\"x\""] {
        let r = run(scalar);
        assert_eq!(r.out, scalar);
        assert_eq!(r.skipped, None);
    }
}

#[test]
fn rewritten_strings_are_minimally_escaped() {
    let r = run(br#"["https://api.example.com/v1/a\\b\u0022c\t"]"#);
    // The raw tab (from \t) makes it no URL; the string stays as it was.
    assert_eq!(r.rewritten, 0);
    assert_eq!(r.out, br#"["https://api.example.com/v1/a\\b\u0022c\t"]"#);
    let r = run(br#"["https://api.example.com/v1/a?x=\\b\u0022c"]"#);
    assert_eq!(text(&r), r#"["http://gw:8080/oas/a?x=\\b\"c"]"#);
}

#[test]
fn rewriting_is_idempotent() {
    let input =
        br#"{"next":"https://api.example.com/v1/p?page=2","self":"https:\/\/api.example.com\/v1\/p"}"#;
    let once = run(input);
    let twice = run(&once.out);
    assert_eq!(twice.out, once.out);
    assert_eq!(twice.rewritten, 0);
}

#[test]
fn output_is_emitted_promptly() {
    let mut rw = JsonRewriter::new(target());
    let mut out = Vec::new();
    rw.feed(br#"{"count": 5, "next": "https://api.exa"#, &mut out);
    // Everything up to and including the candidate's opening quote is out.
    assert_eq!(out, br#"{"count": 5, "next": ""#);
    rw.feed(br#"mple.com/v1/x", "key": 1234"#, &mut out);
    assert_eq!(
        out,
        br#"{"count": 5, "next": "http://gw:8080/oas/x", "key": 1234"#
    );
    rw.feed(b"}", &mut out);
    rw.finish(&mut out);
    assert_eq!(
        out,
        br#"{"count": 5, "next": "http://gw:8080/oas/x", "key": 1234}"#
    );
    assert_eq!(rw.skipped(), None);
}

#[test]
fn utf8_split_across_chunks_is_accepted() {
    let input = "[\"caf\u{e9} \u{1F600}\", \"https://api.example.com/v1/\u{e9}\u{1F600}\"]";
    let r = run(input.as_bytes());
    assert_eq!(
        text(&r),
        "[\"caf\u{e9} \u{1F600}\", \"http://gw:8080/oas/\u{e9}\u{1F600}\"]"
    );
    assert_eq!(r.skipped, None);
}
