//! 100 MiB up and 100 MiB down through the real binary: bytes identical, memory flat.

mod support;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use support::{client, config_file, Running, EPHEMERAL_SERVER};
use tollgate_sandbox::{echo::pattern_byte, Echo};

const SIZE: u64 = 100 * 1024 * 1024;
const CHUNK: u64 = 256 * 1024;

fn pattern_chunk(start: u64) -> Vec<u8> {
    (start..(start + CHUNK).min(SIZE))
        .map(|i| pattern_byte(i.wrapping_mul(7)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_each_way_streams_with_bounded_memory() {
    let echo = Echo::start().await.unwrap();
    let cfg = config_file(&format!(
        "{EPHEMERAL_SERVER}[upstreams.bulk]\nmax_body = \"200MiB\"\nrequest_timeout = \"120s\"\n[upstreams.bulk.sandbox]\nbase_url = \"{}\"\n",
        echo.base_url()
    ));
    let gw = Running::start(&cfg.path, &[]);

    // Upload: a generated stream, hashed as it is produced; the echo hashes what arrives.
    let mut expected = Sha256::new();
    for start in (0..SIZE).step_by(CHUNK as usize) {
        expected.update(pattern_chunk(start));
    }
    let expected = hex::encode(expected.finalize());
    let upload = futures_util::stream::iter((0..SIZE).step_by(CHUNK as usize))
        .map(|start| Ok::<_, std::io::Error>(pattern_chunk(start)));
    let resp = client()
        .post(gw.url("/bulk/sha256"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["len"], SIZE);
    assert_eq!(v["sha256"], expected.as_str());

    // Download: the echo streams a known pattern; hash it as it arrives.
    let resp = client()
        .get(gw.url(&format!("/bulk/bytes/{SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(SIZE));
    let mut got = Sha256::new();
    let mut want = Sha256::new();
    let mut len = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        want.update(
            (len..len + chunk.len() as u64)
                .map(pattern_byte)
                .collect::<Vec<u8>>(),
        );
        len += chunk.len() as u64;
        got.update(&chunk);
    }
    assert_eq!(len, SIZE);
    assert_eq!(got.finalize(), want.finalize());

    let peak = gw.peak_rss_kib();
    assert!(
        peak < 64 * 1024,
        "gateway peak RSS {peak} KiB must stay under 64 MiB while streaming 200 MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_json_body_is_rewritten_while_streaming_with_bounded_memory() {
    const JSON_SIZE: u64 = 200 * 1024 * 1024;
    let echo = Echo::start().await.unwrap();
    let cfg = config_file(&format!(
        "{EPHEMERAL_SERVER}[upstreams.pages]\nrequest_timeout = \"120s\"\n[upstreams.pages.sandbox]\nbase_url = \"{}\"\n",
        echo.base_url()
    ));
    let gw = Running::start(&cfg.path, &[]);
    let resp = client()
        .get(gw.url(&format!("/pages/json/{JSON_SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.content_length().is_none(),
        "the rewritten length is not known up front"
    );
    let gateway_link = format!("\"self\":\"{}/items/", gw.url("/pages"));
    let partner_link = format!("\"self\":\"{}/items/", echo.base_url());
    // Count rewritten links as the body streams, keeping only a small overlap between chunks.
    let (mut len, mut rewritten, mut untouched) = (0u64, 0usize, 0usize);
    let mut tail = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len() as u64;
        let text = format!("{tail}{}", String::from_utf8_lossy(&chunk));
        let cut = text.rfind('}').map_or(0, |i| i + 1);
        rewritten += text[..cut].matches(&gateway_link).count();
        untouched += text[..cut].matches(&partner_link).count();
        tail = text[cut..].to_owned();
    }
    assert!(len >= JSON_SIZE, "{len} bytes");
    assert!(rewritten > 1_000_000, "{rewritten} links rewritten");
    assert_eq!(untouched, 0, "every link of the partner's origin was rewritten");
    let peak = gw.peak_rss_kib();
    assert!(
        peak < 64 * 1024,
        "gateway peak RSS {peak} KiB must stay under 64 MiB for a 200 MiB JSON body"
    );
}
