//! What the `metrics` feature costs the hot path: the same cache with its
//! handles resolved from a Prometheus recorder, beside one whose handles
//! are the facade's no-ops (no recorder installed), in one run.

use std::hint::black_box;

use http::Uri;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::Layer;
use tower_bearer::BearerAuthLayer;

use super::services::{multi_thread_runtime, noop_service, static_token, warm_cache};
use super::stats::{Variant, interleave, median, print_samples, ratio_of_rounds};
use super::wall_clock::{per_request_ns, requests_per_second};
use crate::{Plan, Summary, URI};

pub(crate) fn metrics_hot_path(plan: &Plan, summary: &mut Summary) {
    println!(
        "\n## 9. metrics: the hot path with a Prometheus recorder's handles, beside no-op handles ({} rounds x {} requests; contention {} rounds)",
        plan.hot_rounds, plan.hot_iters, plan.contention_rounds
    );
    let uri = Uri::from_static(URI);
    let iters = plan.hot_iters;
    let runtime = multi_thread_runtime(2);

    // No recorder is installed: this cache's handles are no-ops.
    let plain = warm_cache(&runtime, static_token());
    // This one resolves its handles from a Prometheus recorder at its first
    // fetch, as a program that installed one would.
    let recorder = PrometheusBuilder::new().build_recorder();
    let scrape = recorder.handle();
    let recorded = metrics::with_local_recorder(&recorder, || warm_cache(&runtime, static_token()));

    let mut bearer = BearerAuthLayer::with_cache(plain.clone()).layer(noop_service());
    let mut bearer_metrics = BearerAuthLayer::with_cache(recorded.clone()).layer(noop_service());
    let names = ["bearer", "bearer_metrics"];
    let samples = {
        let uri = &uri;
        let mut variants: Vec<Variant<'_>> = vec![
            (
                names[0],
                Box::new(|| per_request_ns(&mut bearer, iters, uri)),
            ),
            (
                names[1],
                Box::new(|| per_request_ns(&mut bearer_metrics, iters, uri)),
            ),
        ];
        interleave(plan.hot_rounds, &mut variants)
    };
    print_samples(&names, &samples, "ns/request");
    let [plain_ns, metrics_ns] = [0, 1].map(|i| median(&samples[i]));
    let hot_ratio = ratio_of_rounds(&samples[1], &samples[0]);
    println!(
        "  bearer_metrics / bearer = {hot_ratio:.3} ({:+.1} ns per request)",
        metrics_ns - plain_ns
    );

    // Contention: the exporter's counter is one cache line that every core
    // writes.
    let (tasks, span) = (plan.contention_tasks, plan.contention_span);
    let plain_svc = BearerAuthLayer::with_cache(plain.clone()).layer(noop_service());
    let metrics_svc = BearerAuthLayer::with_cache(recorded.clone()).layer(noop_service());
    let contended = {
        let runtime = &runtime;
        let mut variants: Vec<Variant<'_>> = vec![
            (
                names[0],
                Box::new(|| requests_per_second(runtime, &plain_svc, tasks, span)),
            ),
            (
                names[1],
                Box::new(|| requests_per_second(runtime, &metrics_svc, tasks, span)),
            ),
        ];
        interleave(plan.contention_rounds, &mut variants)
    };
    print_samples(&names, &contended, "requests/s");
    let contention_ratio = ratio_of_rounds(&contended[1], &contended[0]);
    println!("  bearer_metrics / bearer under contention = {contention_ratio:.3} (requests/s)");

    // The recorder saw every request the recorded cache served.
    let text = scrape.render();
    let served = text
        .lines()
        .find(|line| {
            line.starts_with("tower_bearer_requests_total{") && line.contains("path=\"cached\"")
        })
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse::<f64>().ok())
        .expect("the served count in the scrape");
    assert!(
        served >= black_box(iters as f64),
        "the recorder counted {served} requests"
    );
    assert_eq!(plain.stats().fetches_started, 1);
    assert_eq!(recorded.stats().fetches_started, 1);

    summary.figure("metrics_hot_path_bearer", format!("{plain_ns:.1}"), "ns");
    summary.figure(
        "metrics_hot_path_bearer_metrics",
        format!("{metrics_ns:.1}"),
        "ns",
    );
    summary.ratio("metrics_hot_path_metrics_over_plain", hot_ratio);
    summary.ratio("metrics_contention_metrics_over_plain", contention_ratio);
    drop(runtime);
}
