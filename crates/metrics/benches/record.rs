//! Per-request recording cost: handles resolved once at start-up (what the gateway does) against
//! resolving label values on every request (`with_label_values`), in the same run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tollgate_metrics::Metrics;

fn record(c: &mut Criterion) {
    let metrics = Metrics::new("bench");
    let handles = metrics.upstream("osigu", "sandbox");
    let mut group = c.benchmark_group("record_one_request");
    group.bench_function("pre_resolved", |b| {
        b.iter(|| {
            handles.upstream_response(black_box(200), Duration::from_micros(900));
            handles.request_done(
                black_box(200),
                Duration::from_millis(1),
                Duration::from_micros(900),
            );
        })
    });

    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new("r_total", "r"),
        &["upstream", "environment", "status_class"],
    )
    .unwrap();
    let responses = IntCounterVec::new(
        Opts::new("u_total", "u"),
        &["upstream", "environment", "status_class"],
    )
    .unwrap();
    let hist = |n: &str| {
        HistogramVec::new(
            HistogramOpts::new(n, n).buckets(vec![0.005, 0.01, 0.1, 1.0, 30.0]),
            &["upstream", "environment"],
        )
        .unwrap()
    };
    let (duration, upstream, overhead) = (hist("d"), hist("ud"), hist("o"));
    for c in [&requests, &responses] {
        registry.register(Box::new(c.clone())).unwrap();
    }
    group.bench_function("with_label_values", |b| {
        b.iter(|| {
            let class = match black_box(200u16) / 100 {
                2 => "2xx",
                _ => "5xx",
            };
            responses.with_label_values(&["osigu", "sandbox", class]).inc();
            upstream.with_label_values(&["osigu", "sandbox"]).observe(0.0009);
            requests.with_label_values(&["osigu", "sandbox", class]).inc();
            duration.with_label_values(&["osigu", "sandbox"]).observe(0.001);
            overhead.with_label_values(&["osigu", "sandbox"]).observe(0.0001);
        })
    });
    group.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
