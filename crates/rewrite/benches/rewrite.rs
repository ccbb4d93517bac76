//! The streaming link rewriter on a 1 MiB JSON page holding 100 links, against `serde_json`
//! parse + serialize of the same bytes in the same run (the target: at least 3× faster).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate_rewrite::{JsonRewriter, LinkTarget};

fn page() -> Vec<u8> {
    let origin = "https://api.partner.example/v1";
    let filler = "x".repeat(10_400);
    let items: Vec<_> = (0..100)
        .map(|i| serde_json::json!({"id": i, "self": format!("{origin}/items/{i}"), "name": format!("item {i}"), "notes": filler}))
        .collect();
    let body = serde_json::to_vec_pretty(
        &serde_json::json!({"count": 100, "next": format!("{origin}/items?page=2"), "results": items}),
    )
    .unwrap();
    assert!(
        (1 << 20..(1 << 20) + 64 * 1024).contains(&body.len()),
        "{}",
        body.len()
    );
    body
}

fn rewrite(c: &mut Criterion) {
    let body = page();
    let target = Arc::new(
        LinkTarget::new(
            "https://api.partner.example/v1",
            "http://tollgate.internal:8080/partner",
        )
        .unwrap(),
    );
    let mut group = c.benchmark_group("one_mib_page_100_links");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("streaming_rewriter", |b| {
        let mut out = Vec::with_capacity(body.len() + 4096);
        b.iter(|| {
            out.clear();
            let mut r = JsonRewriter::new(target.clone());
            for chunk in body.chunks(16 * 1024) {
                r.feed(black_box(chunk), &mut out);
            }
            r.finish(&mut out);
            black_box(out.len())
        })
    });
    group.bench_function("serde_json_parse_serialize", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(&body)).unwrap();
            black_box(serde_json::to_vec(&v).unwrap().len())
        })
    });
    group.finish();
}

criterion_group!(benches, rewrite);
criterion_main!(benches);
