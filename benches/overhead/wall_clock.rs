//! Figures in wall time: the hot path, contention, size and clone cost.
//! They run before any runtime pauses its clock.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Uri};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_bearer::cache::FreshnessCheck;
use tower_bearer::source::StaticSource;
use tower_bearer::{BearerAuthLayer, TokenCache, TokenParams};

use super::services::{
    KeyedStatic, NaiveBearer, multi_thread_runtime, noop_service, request, request_for,
    static_token, tower_http_layer, warm_cache,
};
use super::stats::{Variant, interleave, median, print_samples, ratio_of_rounds};
use crate::{Plan, Summary, URI};

// ---------------------------------------------------------------------------
// 1. Hot path.

/// Nanoseconds per request: `poll_ready`, `call`, one poll of the response
/// future, all driven by hand with a no-op waker so that no runtime is timed.
pub(crate) fn per_request_ns<S>(service: &mut S, iters: u64, uri: &Uri) -> f64
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    per_request_ns_of(service, iters, || request(uri))
}

/// [`per_request_ns`] with requests from `make`.
pub(crate) fn per_request_ns_of<S>(
    service: &mut S,
    iters: u64,
    make: impl Fn() -> Request<()>,
) -> f64
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let start = std::time::Instant::now();
    for _ in 0..iters {
        let Poll::Ready(Ok(())) = service.poll_ready(&mut cx) else {
            panic!("the service is not ready");
        };
        let mut future = pin!(service.call(make()));
        let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
            panic!("the response is not ready at once");
        };
        black_box(response);
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

pub(crate) fn hot_path(plan: &Plan, summary: &mut Summary) {
    println!(
        "\n## 1. hot path: ns per request over a no-op service ({} rounds x {} requests)",
        plan.hot_rounds, plan.hot_iters
    );
    let uri = Uri::from_static(URI);
    let iters = plan.hot_iters;

    // The token's freshness timer runs on a multi-thread runtime, as in
    // production; the requests are driven by hand on this thread.
    let runtime = multi_thread_runtime(1);
    let cache = warm_cache(&runtime, static_token());
    // The same cache reading the clock on every request, for context.
    let clock_cache = TokenCache::builder(StaticSource::new(static_token()))
        .freshness_check(FreshnessCheck::Clock)
        .build();
    runtime
        .block_on(clock_cache.refresh())
        .expect("warming the cache");

    let mut bare = noop_service();
    let mut tower_http = tower_http_layer().layer(noop_service());
    let mut bearer = BearerAuthLayer::with_cache(cache.clone()).layer(noop_service());
    // Without the 401 check, to show what that check costs.
    let mut bearer_no_401 = BearerAuthLayer::with_cache(cache.clone())
        .invalidate_on_unauthorized(false)
        .layer(noop_service());
    let mut bearer_clock = BearerAuthLayer::with_cache(clock_cache.clone()).layer(noop_service());
    // A keyed cache, warm for one key: picked by the selector from the
    // request's host, or named by the request's extension.
    let keyed_cache = TokenCache::keyed(KeyedStatic);
    let params = TokenParams::for_audience("https://api.example.com");
    runtime
        .block_on(keyed_cache.for_params(&params).expect("a key").refresh())
        .expect("warming the key");
    let selected = params.clone();
    let mut bearer_keyed = BearerAuthLayer::with_cache(keyed_cache.clone())
        .token_for(move |target| {
            (target.host() == Some("api.example.com")).then(|| selected.clone())
        })
        .layer(noop_service());
    let mut bearer_keyed_ext =
        BearerAuthLayer::with_cache(keyed_cache.clone()).layer(noop_service());
    // The same requests with the extension, through tower-http: building
    // them costs an allocation that is not the layer's.
    let mut tower_http_ext = tower_http_layer().layer(noop_service());
    let mut naive = NaiveBearer::new(noop_service(), StaticSource::new(static_token()));
    // The naive design fetches on its first request; do it before timing.
    runtime.block_on(async {
        naive.ready().await.expect("ready");
        naive.call(request(&uri)).await.expect("first request");
    });

    let names = [
        "bare",
        "tower_http",
        "bearer",
        "naive",
        "bearer_no_401",
        "bearer_clock",
        "bearer_keyed",
        "tower_http_ext",
        "bearer_keyed_ext",
    ];
    let samples = {
        let uri = &uri;
        let mut variants: Vec<Variant<'_>> = vec![
            (names[0], Box::new(|| per_request_ns(&mut bare, iters, uri))),
            (
                names[1],
                Box::new(|| per_request_ns(&mut tower_http, iters, uri)),
            ),
            (
                names[2],
                Box::new(|| per_request_ns(&mut bearer, iters, uri)),
            ),
            (
                names[3],
                Box::new(|| per_request_ns(&mut naive, iters, uri)),
            ),
            (
                names[4],
                Box::new(|| per_request_ns(&mut bearer_no_401, iters, uri)),
            ),
            (
                names[5],
                Box::new(|| per_request_ns(&mut bearer_clock, iters, uri)),
            ),
            (
                names[6],
                Box::new(|| per_request_ns(&mut bearer_keyed, iters, uri)),
            ),
            (
                names[7],
                Box::new(|| {
                    per_request_ns_of(&mut tower_http_ext, iters, || request_for(uri, &params))
                }),
            ),
            (
                names[8],
                Box::new(|| {
                    per_request_ns_of(&mut bearer_keyed_ext, iters, || request_for(uri, &params))
                }),
            ),
        ];
        interleave(plan.hot_rounds, &mut variants)
    };
    assert_eq!(
        cache.stats().fetches_started,
        1,
        "the hot path never fetches"
    );
    assert_eq!(keyed_cache.keys().len(), 1, "one key");
    assert_eq!(keyed_cache.stats().fetches_started, 0, "never the default");
    let key = keyed_cache.for_params(&params).expect("the key");
    assert_eq!(
        key.stats().fetches_started,
        1,
        "the keyed path never fetches"
    );
    print_samples(&names, &samples, "ns/request");

    let [
        bare,
        tower_http,
        bearer,
        naive,
        bearer_no_401,
        bearer_clock,
        bearer_keyed,
        tower_http_ext,
        bearer_keyed_ext,
    ] = [0, 1, 2, 3, 4, 5, 6, 7, 8].map(|i| median(&samples[i]));
    let keyed_ratio = ratio_of_rounds(&samples[6], &samples[2]);
    let keyed_ext_ratio = ratio_of_rounds(&samples[8], &samples[7]);
    let bearer_ratio = ratio_of_rounds(&samples[2], &samples[1]);
    let naive_ratio = ratio_of_rounds(&samples[3], &samples[1]);
    let no_401_ratio = ratio_of_rounds(&samples[4], &samples[1]);
    let clock_ratio = ratio_of_rounds(&samples[5], &samples[1]);
    println!(
        "  added over bare: tower_http {:.1} ns, bearer {:.1} ns, naive {:.1} ns, bearer_no_401 {:.1} ns",
        tower_http - bare,
        bearer - bare,
        naive - bare,
        bearer_no_401 - bare
    );
    println!("  bearer / tower_http        = {bearer_ratio:.3} (target <= 1.15)");
    println!("  naive / tower_http         = {naive_ratio:.3}");
    println!("  bearer_no_401 / tower_http = {no_401_ratio:.3}");
    println!("  bearer_clock / tower_http  = {clock_ratio:.3}");
    println!("  bearer_keyed / bearer      = {keyed_ratio:.3} (a key picked by the selector)");
    println!(
        "  bearer_keyed_ext / tower_http_ext = {keyed_ext_ratio:.3} (a key named by the request)"
    );

    // Parts of the bearer hot path that tower-http does not have, for context.
    let clock = |iters: u64| {
        let start = std::time::Instant::now();
        for _ in 0..iters {
            black_box(Instant::now());
        }
        start.elapsed().as_nanos() as f64 / iters as f64
    };
    let arc_clone = |iters: u64| {
        let shared = Arc::new(0u64);
        let start = std::time::Instant::now();
        for _ in 0..iters {
            drop(black_box(Arc::clone(&shared)));
        }
        start.elapsed().as_nanos() as f64 / iters as f64
    };
    let clock_ns = median(&(0..9).map(|_| clock(iters)).collect::<Vec<_>>());
    let arc_ns = median(&(0..9).map(|_| arc_clone(iters)).collect::<Vec<_>>());
    println!("  for context: tokio Instant::now() {clock_ns:.1} ns, Arc clone+drop {arc_ns:.1} ns");

    summary.figure("hot_path_bare", format!("{bare:.1}"), "ns");
    summary.figure("hot_path_tower_http", format!("{tower_http:.1}"), "ns");
    summary.figure("hot_path_bearer", format!("{bearer:.1}"), "ns");
    summary.figure("hot_path_naive", format!("{naive:.1}"), "ns");
    summary.ratio("hot_path_bearer_over_tower_http", bearer_ratio);
    summary.ratio("hot_path_naive_over_tower_http", naive_ratio);
    summary.figure(
        "hot_path_bearer_no_401",
        format!("{bearer_no_401:.1}"),
        "ns",
    );
    summary.ratio("hot_path_bearer_no_401_over_tower_http", no_401_ratio);
    summary.figure("hot_path_bearer_clock", format!("{bearer_clock:.1}"), "ns");
    summary.ratio("hot_path_bearer_clock_over_tower_http", clock_ratio);
    summary.figure("hot_path_bearer_keyed", format!("{bearer_keyed:.1}"), "ns");
    summary.ratio("hot_path_bearer_keyed_over_bearer", keyed_ratio);
    summary.figure(
        "hot_path_tower_http_ext",
        format!("{tower_http_ext:.1}"),
        "ns",
    );
    summary.figure(
        "hot_path_bearer_keyed_ext",
        format!("{bearer_keyed_ext:.1}"),
        "ns",
    );
    summary.ratio(
        "hot_path_bearer_keyed_ext_over_tower_http_ext",
        keyed_ext_ratio,
    );
    drop(runtime);
}

// ---------------------------------------------------------------------------
// 2. Contention.

/// Requests between cooperative yields, so that all tasks take turns (the
/// no-op futures never return `Pending` on their own).
pub(crate) const YIELD_EVERY: u64 = 16;

/// Requests per second from `tasks` tasks sharing clones of `service` on
/// `runtime`, for `span` of wall time.
pub(crate) fn requests_per_second<S>(
    runtime: &Runtime,
    service: &S,
    tasks: usize,
    span: Duration,
) -> f64
where
    S: Service<Request<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let start = std::time::Instant::now();
        let mut workers = JoinSet::new();
        for _ in 0..tasks {
            let mut service = service.clone();
            let stop = Arc::clone(&stop);
            workers.spawn(async move {
                let uri = Uri::from_static(URI);
                let mut served = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..YIELD_EVERY {
                        let ready = service.ready().await.expect("ready");
                        black_box(ready.call(request(&uri)).await.expect("response"));
                    }
                    served += YIELD_EVERY;
                    tokio::task::yield_now().await;
                }
                served
            });
        }
        tokio::time::sleep(span).await;
        stop.store(true, Ordering::Relaxed);
        let elapsed = start.elapsed();
        let mut served = 0;
        while let Some(count) = workers.join_next().await {
            served += count.expect("worker");
        }
        served as f64 / elapsed.as_secs_f64()
    })
}

pub(crate) fn contention(plan: &Plan, summary: &mut Summary) {
    println!(
        "\n## 2. contention: requests/s, {} tasks sharing one service on 2 worker threads ({} rounds x {} ms)",
        plan.contention_tasks,
        plan.contention_rounds,
        plan.contention_span.as_millis()
    );
    let runtime = multi_thread_runtime(2);
    let cache = warm_cache(&runtime, static_token());

    let tower_http = tower_http_layer().layer(noop_service());
    let bearer = BearerAuthLayer::with_cache(cache.clone()).layer(noop_service());
    let naive = NaiveBearer::new(noop_service(), StaticSource::new(static_token()));
    let bearer_no_401 = BearerAuthLayer::with_cache(cache.clone())
        .invalidate_on_unauthorized(false)
        .layer(noop_service());

    let (tasks, span) = (plan.contention_tasks, plan.contention_span);
    let names = ["tower_http", "bearer", "naive", "bearer_no_401"];
    let samples = {
        let runtime = &runtime;
        let mut variants: Vec<Variant<'_>> = vec![
            (
                names[0],
                Box::new(|| requests_per_second(runtime, &tower_http, tasks, span)),
            ),
            (
                names[1],
                Box::new(|| requests_per_second(runtime, &bearer, tasks, span)),
            ),
            (
                names[2],
                Box::new(|| requests_per_second(runtime, &naive, tasks, span)),
            ),
            (
                names[3],
                Box::new(|| requests_per_second(runtime, &bearer_no_401, tasks, span)),
            ),
        ];
        interleave(plan.contention_rounds, &mut variants)
    };
    assert_eq!(cache.stats().fetches_started, 1, "no fetch under load");
    print_samples(&names, &samples, "requests/s");

    let [tower_http, bearer, naive, bearer_no_401] = [0, 1, 2, 3].map(|i| median(&samples[i]));
    let bearer_ratio = ratio_of_rounds(&samples[1], &samples[0]);
    let naive_ratio = ratio_of_rounds(&samples[2], &samples[0]);
    let no_401_ratio = ratio_of_rounds(&samples[3], &samples[0]);
    println!("  bearer / tower_http        = {bearer_ratio:.3} (target >= 0.9)");
    println!("  naive / tower_http         = {naive_ratio:.3}");
    println!("  bearer_no_401 / tower_http = {no_401_ratio:.3}");

    // What a per-request handle clone would add: the response future could
    // hold the cache to report a 401, instead of its id in a registry.
    let shared_count_ns = contended_arc_clone_ns(plan.clone_iters);
    println!(
        "  for context: an Arc clone + drop shared by 2 threads costs {shared_count_ns:.1} ns (what a per-request cache handle would add; the 401 path finds its cache by id instead)"
    );
    summary.figure("contended_arc_clone", format!("{shared_count_ns:.1}"), "ns");

    summary.figure(
        "contention_tower_http",
        format!("{tower_http:.0}"),
        "requests/s",
    );
    summary.figure("contention_bearer", format!("{bearer:.0}"), "requests/s");
    summary.figure("contention_naive", format!("{naive:.0}"), "requests/s");
    summary.ratio("contention_bearer_over_tower_http", bearer_ratio);
    summary.ratio("contention_naive_over_tower_http", naive_ratio);
    summary.figure(
        "contention_bearer_no_401",
        format!("{bearer_no_401:.0}"),
        "requests/s",
    );
    summary.ratio("contention_bearer_no_401_over_tower_http", no_401_ratio);
}

/// Nanoseconds per `Arc` clone + drop when two threads share the count.
pub(crate) fn contended_arc_clone_ns(iters: u64) -> f64 {
    let shared = Arc::new(0u64);
    let start = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let shared = &shared;
            scope.spawn(move || {
                for _ in 0..iters {
                    drop(black_box(Arc::clone(shared)));
                }
            });
        }
    });
    start.elapsed().as_nanos() as f64 / iters as f64
}

// ---------------------------------------------------------------------------
// 6. Size and clone cost (wall time, so it runs before the paused clock).

pub(crate) fn clone_ns<S: Clone>(service: &S, iters: u64) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..iters {
        drop(black_box(service.clone()));
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// The size of the response future `service` returns.
pub(crate) fn future_size<S: Service<Request<()>>>(_service: &S) -> usize {
    size_of::<S::Future>()
}

pub(crate) fn size_and_clone(plan: &Plan, summary: &mut Summary) {
    println!("\n## 6. size and clone cost");
    let inner = noop_service();
    let tower_http = tower_http_layer().layer(noop_service());
    let bearer = BearerAuthLayer::new(StaticSource::new(static_token())).layer(noop_service());
    let naive = NaiveBearer::new(noop_service(), StaticSource::new(static_token()));
    let inner_size = size_of_val(&inner);
    let sizes = [
        size_of_val(&tower_http) - inner_size,
        size_of_val(&bearer) - inner_size,
        size_of_val(&naive) - inner_size,
    ];
    println!(
        "  bytes added to the inner service: tower_http {}, bearer {}, naive {}",
        sizes[0], sizes[1], sizes[2]
    );
    // Every request moves its response future at least once, so its size is
    // part of the hot path.
    let future_sizes = [
        future_size(&tower_http),
        future_size(&bearer),
        future_size(&naive),
    ];
    println!(
        "  response future bytes: bare {}, tower_http {}, bearer {}, naive {} (boxed)",
        future_size(&inner),
        future_sizes[0],
        future_sizes[1],
        future_sizes[2]
    );

    let iters = plan.clone_iters;
    let names = ["bare", "tower_http", "bearer", "naive"];
    let samples = {
        let mut variants: Vec<Variant<'_>> = vec![
            (names[0], Box::new(|| clone_ns(&inner, iters))),
            (names[1], Box::new(|| clone_ns(&tower_http, iters))),
            (names[2], Box::new(|| clone_ns(&bearer, iters))),
            (names[3], Box::new(|| clone_ns(&naive, iters))),
        ];
        interleave(plan.hot_rounds.min(21), &mut variants)
    };
    print_samples(&names, &samples, "ns per clone + drop");

    summary.figure("size_bearer_over_inner", sizes[1], "bytes");
    summary.figure("size_tower_http_over_inner", sizes[0], "bytes");
    summary.figure("size_bearer_response_future", future_sizes[1], "bytes");
    summary.figure("size_tower_http_response_future", future_sizes[0], "bytes");
    summary.figure("clone_bearer", format!("{:.1}", median(&samples[2])), "ns");
    summary.figure(
        "clone_tower_http",
        format!("{:.1}", median(&samples[1])),
        "ns",
    );
}
