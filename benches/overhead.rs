//! What `BearerAuth` costs, side by side with the floor and with peer designs.
//!
//! Run: `cargo bench --bench overhead` (a few minutes), or
//! `cargo bench --bench overhead -- --quick` (or `TOWER_BEARER_BENCH_QUICK=1`)
//! for a short run. Name sections to run only those: `hot`, `contention`,
//! `size`, `storm`, `refresh`, `outage`, `economy` (e.g. `-- --quick hot`).
//!
//! Variants compared:
//!
//! - `bare`: a no-op inner service, nothing added.
//! - `tower_http`: tower-http's `AddAuthorization::bearer`, a static header:
//!   the floor for attaching a bearer token.
//! - `bearer`: `BearerAuth` over a warm `TokenCache`.
//! - `naive`: a `tokio::sync::Mutex<Option<token>>` locked on every request,
//!   with the fetch under the lock (the design of Go's x/oauth2
//!   `ReuseTokenSource`), written here as a tiny tower service.
//!
//! Wall-time figures (hot path, contention, clone) interleave the variants in
//! rounds and take medians, and ratios are medians of per-round ratios, so
//! that noise on a shared machine hits every variant alike. Figures in
//! simulated time (cold storm, refresh window, outage) use tokio's paused
//! clock and are exact.
//!
//! The output ends with one line per figure, `ratio <name> <value>` or
//! `figure <name> <value> <unit>`, for scripts.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, Uri};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_bearer::cache::FreshnessCheck;
use tower_bearer::source::{BoxTokenSource, FnSource, StaticSource};
use tower_bearer::{
    Backoff, BearerAuthLayer, BoxError, ErrorClass, Token, TokenCache, TokenSource,
};
use tower_http::auth::AddAuthorizationLayer;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.bench-token-value.c2lnbmF0dXJl";
const URI: &str = "https://api.example.com/v1/items";

/// How long the benchmark runs.
struct Plan {
    quick: bool,
    /// Sections named on the command line; all when empty.
    only: Vec<String>,
    hot_rounds: usize,
    hot_iters: u64,
    contention_rounds: usize,
    contention_span: Duration,
    contention_tasks: usize,
    clone_iters: u64,
}

impl Plan {
    fn from_env() -> Self {
        let quick = std::env::args().any(|a| a == "--quick")
            || std::env::var_os("TOWER_BEARER_BENCH_QUICK").is_some_and(|v| v != "0");
        // `cargo bench` passes `--bench`; other flags are ours.
        let only = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with("--"))
            .collect();
        if quick {
            Self {
                quick,
                only,
                hot_rounds: 9,
                hot_iters: 50_000,
                contention_rounds: 5,
                contention_span: Duration::from_millis(100),
                contention_tasks: 64,
                clone_iters: 100_000,
            }
        } else {
            Self {
                quick,
                only,
                hot_rounds: 61,
                hot_iters: 1_000_000,
                contention_rounds: 31,
                contention_span: Duration::from_millis(500),
                contention_tasks: 64,
                clone_iters: 1_000_000,
            }
        }
    }
}

impl Plan {
    fn runs(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

/// The lines a script reads at the end.
#[derive(Default)]
struct Summary(Vec<String>);

impl Summary {
    fn ratio(&mut self, name: &str, value: f64) {
        self.0.push(format!("ratio {name} {value:.3}"));
    }

    fn figure(&mut self, name: &str, value: impl std::fmt::Display, unit: &str) {
        self.0.push(format!("figure {name} {value} {unit}"));
    }
}

fn main() {
    let plan = Plan::from_env();
    println!(
        "tower-bearer overhead benchmark ({} run, {} CPUs)",
        if plan.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut summary = Summary::default();

    // Wall-time figures first: once any runtime pauses its clock, tokio's
    // `Instant::now()` (with the `test-util` feature the dev-dependencies
    // enable) reads the runtime's clock through a lock for the rest of the
    // process, which would inflate every later wall-time figure.
    if plan.runs("hot") {
        hot_path(&plan, &mut summary);
    }
    if plan.runs("contention") {
        contention(&plan, &mut summary);
    }
    if plan.runs("size") {
        size_and_clone(&plan, &mut summary);
    }
    if plan.runs("storm") {
        cold_storm(&mut summary);
    }
    if plan.runs("refresh") {
        refresh_window(&mut summary);
    }
    if plan.runs("outage") {
        outage(&mut summary);
    }
    if plan.runs("economy") {
        economy(&mut summary);
    }

    println!("\n# figures");
    for line in &summary.0 {
        println!("{line}");
    }
}

// ---------------------------------------------------------------------------
// The services under test.

type NoopFuture = Ready<Result<Response<()>, Infallible>>;

/// The inner service: answers at once, so only the layer's cost is measured.
fn noop_service()
-> impl Service<Request<()>, Response = Response<()>, Error = Infallible, Future = NoopFuture>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|request: Request<()>| {
        black_box(&request);
        std::future::ready(Ok(Response::new(())))
    })
}

fn request(uri: &Uri) -> Request<()> {
    let mut request = Request::new(());
    *request.uri_mut() = uri.clone();
    request
}

fn static_token() -> Token {
    Token::bearer(TOKEN).with_lifetime(Duration::from_secs(3600))
}

fn tower_http_layer() -> AddAuthorizationLayer {
    // Marked sensitive like ours; the flag costs nothing per request.
    AddAuthorizationLayer::bearer(TOKEN).as_sensitive(true)
}

/// Go x/oauth2's design: one async mutex around the cached token, locked by
/// every request, held across the fetch. Renews 10 s before expiry, as Go's
/// `expiryDelta` does; the header value is cached with the token so that the
/// comparison is about the lock, not about formatting.
#[derive(Clone)]
struct NaiveBearer<S> {
    inner: S,
    slot: Arc<tokio::sync::Mutex<Option<NaiveToken>>>,
    source: BoxTokenSource,
}

struct NaiveToken {
    header: HeaderValue,
    expires_at: Option<Instant>,
}

const NAIVE_EXPIRY_DELTA: Duration = Duration::from_secs(10);

impl<S> NaiveBearer<S> {
    fn new(inner: S, source: impl TokenSource) -> Self {
        Self {
            inner,
            slot: Arc::default(),
            source: BoxTokenSource::new(source),
        }
    }
}

impl<S> Service<Request<()>> for NaiveBearer<S>
where
    S: Service<Request<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<()>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let slot = Arc::clone(&self.slot);
        let source = self.source.clone();
        Box::pin(async move {
            let header = {
                let mut cached = slot.lock().await;
                match &*cached {
                    Some(token) if token.expires_at.is_none_or(|at| Instant::now() < at) => {
                        token.header.clone()
                    }
                    _ => {
                        let started = Instant::now();
                        let token = source.fetch().await?;
                        let mut header = HeaderValue::try_from(format!(
                            "{} {}",
                            token.token_type(),
                            token.access_token().secret()
                        ))?;
                        header.set_sensitive(true);
                        let expires_at = token
                            .lifetime()
                            .map(|l| started + l.saturating_sub(NAIVE_EXPIRY_DELTA));
                        *cached = Some(NaiveToken {
                            header: header.clone(),
                            expires_at,
                        });
                        header
                    }
                }
            };
            request.headers_mut().insert(AUTHORIZATION, header);
            inner.call(request).await.map_err(Into::into)
        })
    }
}

// ---------------------------------------------------------------------------
// Statistics.

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The 25th and 75th percentiles, to show the spread of rounds.
fn quartiles(values: &[f64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.75))
}

/// A named measurement that returns one sample.
type Variant<'a> = (&'static str, Box<dyn FnMut() -> f64 + 'a>);

/// Runs every variant once per round, rotating which goes first, and returns
/// each variant's samples (index: variant, then round).
fn interleave(rounds: usize, variants: &mut [Variant<'_>]) -> Vec<Vec<f64>> {
    let n = variants.len();
    // One untimed round warms caches, allocator and branch predictors.
    for (_, run) in variants.iter_mut() {
        run();
    }
    let mut samples = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            samples[i].push((variants[i].1)());
        }
    }
    samples
}

fn ratio_of_rounds(numerator: &[f64], denominator: &[f64]) -> f64 {
    let ratios: Vec<f64> = numerator
        .iter()
        .zip(denominator)
        .map(|(a, b)| a / b)
        .collect();
    median(&ratios)
}

fn print_samples(names: &[&str], samples: &[Vec<f64>], unit: &str) {
    println!(
        "  {:<12} {:>12} {:>12} {:>12}",
        "variant", "median", "p25", "p75"
    );
    for (name, s) in names.iter().zip(samples) {
        let (p25, p75) = quartiles(s);
        println!(
            "  {:<12} {:>12.1} {:>12.1} {:>12.1}  {unit}",
            name,
            median(s),
            p25,
            p75
        );
    }
}

// ---------------------------------------------------------------------------
// 1. Hot path.

/// Nanoseconds per request: `poll_ready`, `call`, one poll of the response
/// future, all driven by hand with a no-op waker so that no runtime is timed.
fn per_request_ns<S>(service: &mut S, iters: u64, uri: &Uri) -> f64
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
        let mut future = pin!(service.call(request(uri)));
        let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
            panic!("the response is not ready at once");
        };
        black_box(response);
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

fn hot_path(plan: &Plan, summary: &mut Summary) {
    println!(
        "\n## 1. hot path: ns per request over a no-op service ({} rounds x {} requests)",
        plan.hot_rounds, plan.hot_iters
    );
    let uri = Uri::from_static(URI);
    let iters = plan.hot_iters;

    // The token's freshness timer runs on a multi-thread runtime, as in
    // production; the requests are driven by hand on this thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let cache = TokenCache::new(StaticSource::new(static_token()));
    runtime
        .block_on(cache.refresh())
        .expect("warming the cache");
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
        ];
        interleave(plan.hot_rounds, &mut variants)
    };
    assert_eq!(
        cache.stats().fetches_started,
        1,
        "the hot path never fetches"
    );
    print_samples(&names, &samples, "ns/request");

    let [bare, tower_http, bearer, naive, bearer_no_401, bearer_clock] =
        [0, 1, 2, 3, 4, 5].map(|i| median(&samples[i]));
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
    drop(runtime);
}

// ---------------------------------------------------------------------------
// 2. Contention.

/// Requests between cooperative yields, so that all tasks take turns (the
/// no-op futures never return `Pending` on their own).
const YIELD_EVERY: u64 = 16;

/// Requests per second from `tasks` tasks sharing clones of `service` on
/// `runtime`, for `span` of wall time.
fn requests_per_second<S>(runtime: &Runtime, service: &S, tasks: usize, span: Duration) -> f64
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

fn contention(plan: &Plan, summary: &mut Summary) {
    println!(
        "\n## 2. contention: requests/s, {} tasks sharing one service on 2 worker threads ({} rounds x {} ms)",
        plan.contention_tasks,
        plan.contention_rounds,
        plan.contention_span.as_millis()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cache = TokenCache::new(StaticSource::new(static_token()));
    runtime
        .block_on(cache.refresh())
        .expect("warming the cache");

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
fn contended_arc_clone_ns(iters: u64) -> f64 {
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

fn clone_ns<S: Clone>(service: &S, iters: u64) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..iters {
        drop(black_box(service.clone()));
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// The size of the response future `service` returns.
fn future_size<S: Service<Request<()>>>(_service: &S) -> usize {
    size_of::<S::Future>()
}

fn size_and_clone(plan: &Plan, summary: &mut Summary) {
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

// ---------------------------------------------------------------------------
// Simulated time.

fn paused_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// Sends one request through a clone of `service`; returns how long it took
/// in simulated time and whether it succeeded.
async fn timed_request<S>(mut service: S) -> (Duration, bool)
where
    S: Service<Request<()>>,
{
    let sent = Instant::now();
    if service.ready().await.is_err() {
        return (sent.elapsed(), false);
    }
    let ok = service.call(request(&Uri::from_static(URI))).await.is_ok();
    (sent.elapsed(), ok)
}

// 3. Cold storm.

const STORM_REQUESTS: usize = 10_000;
const STORM_FETCH: Duration = Duration::from_millis(50);

fn slow_source(delay: Duration, lifetime: Duration) -> impl TokenSource {
    FnSource::new(move || async move {
        tokio::time::sleep(delay).await;
        Ok::<_, Infallible>(Token::bearer(TOKEN).with_lifetime(lifetime))
    })
}

/// Fires every request at once at an empty cache; returns (slowest request,
/// requests served).
async fn storm<S>(service: S) -> (Duration, usize)
where
    S: Service<Request<()>> + Clone + Send + 'static,
    S::Future: Send,
{
    let mut requests = JoinSet::new();
    for _ in 0..STORM_REQUESTS {
        requests.spawn(timed_request(service.clone()));
    }
    let (mut slowest, mut served) = (Duration::ZERO, 0);
    while let Some(result) = requests.join_next().await {
        let (took, ok) = result.expect("request task");
        slowest = slowest.max(took);
        served += usize::from(ok);
    }
    (slowest, served)
}

fn cold_storm(summary: &mut Summary) {
    println!(
        "\n## 3. cold storm: {STORM_REQUESTS} concurrent requests, empty cache, source takes {} ms (simulated time)",
        STORM_FETCH.as_millis()
    );
    let lifetime = Duration::from_secs(3600);
    let (fetches, slowest, served) = paused_runtime().block_on(async {
        let cache = TokenCache::new(slow_source(STORM_FETCH, lifetime));
        let service = BearerAuthLayer::with_cache(cache.clone()).layer(noop_service());
        let (slowest, served) = storm(service).await;
        (cache.stats().fetches_started, slowest, served)
    });
    let (naive_fetches, naive_slowest, naive_served) = paused_runtime().block_on(async {
        let fetches = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&fetches);
        let source = FnSource::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(STORM_FETCH).await;
                Ok::<_, Infallible>(Token::bearer(TOKEN).with_lifetime(lifetime))
            }
        });
        let (slowest, served) = storm(NaiveBearer::new(noop_service(), source)).await;
        (fetches.load(Ordering::Relaxed), slowest, served)
    });
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  bearer: {fetches} fetch(es), all {served} served after {:.1} ms (target: 1 fetch, within 10 ms of 50 ms)",
        ms(slowest)
    );
    println!(
        "  naive:  {naive_fetches} fetch(es), all {naive_served} served after {:.1} ms",
        ms(naive_slowest)
    );
    assert_eq!(served, STORM_REQUESTS, "every storm request is served");
    summary.figure("cold_storm_fetches", fetches, "fetches");
    summary.figure("cold_storm_all_served", format!("{:.1}", ms(slowest)), "ms");
    summary.figure("cold_storm_naive_fetches", naive_fetches, "fetches");
    summary.figure(
        "cold_storm_naive_all_served",
        format!("{:.1}", ms(naive_slowest)),
        "ms",
    );
}

// 4. Refresh window.

const REFRESH_FETCH: Duration = Duration::from_millis(200);
const REFRESH_LIFETIME: Duration = Duration::from_secs(60);
const REFRESH_RUN: Duration = Duration::from_secs(70);
const REQUEST_EVERY: Duration = Duration::from_millis(1);

/// Sends a request `every` so often for `run`, each on its own task; returns
/// (requests, how many were delayed at all, the largest delay).
async fn steady_flow<S>(service: S, run: Duration, every: Duration) -> (usize, usize, Duration)
where
    S: Service<Request<()>> + Clone + Send + 'static,
    S::Future: Send,
{
    let mut requests = JoinSet::new();
    let mut ticks = tokio::time::interval(every);
    let end = Instant::now() + run;
    let (mut sent, mut delayed, mut slowest) = (0, 0, Duration::ZERO);
    let mut tally = |result: Result<(Duration, bool), tokio::task::JoinError>| {
        let (took, _) = result.expect("request task");
        delayed += usize::from(took > Duration::ZERO);
        slowest = slowest.max(took);
    };
    while ticks.tick().await < end {
        requests.spawn(timed_request(service.clone()));
        sent += 1;
        while let Some(result) = requests.try_join_next() {
            tally(result);
        }
    }
    while let Some(result) = requests.join_next().await {
        tally(result);
    }
    (sent, delayed, slowest)
}

fn refresh_window(summary: &mut Summary) {
    println!(
        "\n## 4. refresh window: a request every ms for {} s, {} s tokens, source takes {} ms (simulated time)",
        REFRESH_RUN.as_secs(),
        REFRESH_LIFETIME.as_secs(),
        REFRESH_FETCH.as_millis()
    );
    let (sent, delayed, slowest, renewals) = paused_runtime().block_on(async {
        // Default settings: refresh-ahead starts about 41.7 s into a 60 s
        // token (usable 45 s, less 5% of that, less twice the 200 ms fetch).
        let cache = TokenCache::new(slow_source(REFRESH_FETCH, REFRESH_LIFETIME));
        cache.refresh().await.expect("warming the cache");
        let service = BearerAuthLayer::with_cache(cache.clone()).layer(noop_service());
        let (sent, delayed, slowest) = steady_flow(service, REFRESH_RUN, REQUEST_EVERY).await;
        (sent, delayed, slowest, cache.stats().refreshes_ahead)
    });
    let (naive_sent, naive_delayed, naive_slowest) = paused_runtime().block_on(async {
        let mut service =
            NaiveBearer::new(noop_service(), slow_source(REFRESH_FETCH, REFRESH_LIFETIME));
        // Warm, as for ours.
        timed_request(&mut service).await;
        steady_flow(service, REFRESH_RUN, REQUEST_EVERY).await
    });
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  bearer: {renewals} refresh(es) ahead; {delayed} of {sent} requests delayed, slowest added {:.1} ms (target: none waits)",
        ms(slowest)
    );
    println!(
        "  naive:  {naive_delayed} of {naive_sent} requests delayed, slowest added {:.1} ms",
        ms(naive_slowest)
    );
    summary.figure(
        "refresh_max_added_latency",
        format!("{:.1}", ms(slowest)),
        "ms",
    );
    summary.figure("refresh_requests_delayed", delayed, "requests");
    summary.figure(
        "refresh_naive_max_added_latency",
        format!("{:.1}", ms(naive_slowest)),
        "ms",
    );
    summary.figure("refresh_naive_requests_delayed", naive_delayed, "requests");
}

// 5. Outage.

const OUTAGE_RUN: Duration = Duration::from_secs(10);

/// The most fetches `backoff` allows in `run`: the first at once, then one
/// after each delay at its shortest (the full jitter taken off).
fn backoff_bound(backoff: &Backoff, run: Duration) -> u32 {
    let unjittered = backoff.clone().jitter(0.0);
    let shortest = 1.0 - backoff.jitter.clamp(0.0, 1.0);
    let (mut at, mut fetches) = (Duration::ZERO, 0);
    while at < run {
        fetches += 1;
        at += unjittered
            .delay(fetches, ErrorClass::TRANSIENT)
            .mul_f64(shortest);
    }
    fetches
}

fn failing_source(fetches: Arc<std::sync::atomic::AtomicU64>) -> impl TokenSource {
    FnSource::new(move || {
        fetches.fetch_add(1, Ordering::Relaxed);
        async { Err::<Token, _>(std::io::Error::other("identity provider unavailable")) }
    })
}

fn outage(summary: &mut Summary) {
    println!(
        "\n## 5. outage: a source that always fails, 1000 requests/s for {} s (simulated time)",
        OUTAGE_RUN.as_secs()
    );
    let count = || Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (fetches, sent, stats) = paused_runtime().block_on(async {
        let fetches = count();
        let cache = TokenCache::new(failing_source(Arc::clone(&fetches)));
        let service = BearerAuthLayer::with_cache(cache.clone()).layer(noop_service());
        let (sent, _, _) = steady_flow(service, OUTAGE_RUN, REQUEST_EVERY).await;
        (fetches.load(Ordering::Relaxed), sent, cache.stats())
    });
    let naive_fetches = paused_runtime().block_on(async {
        let fetches = count();
        let service = NaiveBearer::new(noop_service(), failing_source(Arc::clone(&fetches)));
        steady_flow(service, OUTAGE_RUN, REQUEST_EVERY).await;
        fetches.load(Ordering::Relaxed)
    });
    let bound = backoff_bound(&Backoff::default(), OUTAGE_RUN);
    println!(
        "  bearer: {fetches} fetches for {sent} requests (bound by the default backoff: {bound}); {} failed fast, {} waited for a fetch",
        stats.failed_fast, stats.waited_for_fetch
    );
    println!("  naive:  {naive_fetches} fetches for {sent} requests");
    summary.figure("outage_fetches", fetches, "fetches");
    summary.figure("outage_fetch_bound", bound, "fetches");
    summary.figure("outage_naive_fetches", naive_fetches, "fetches");
}

// ---------------------------------------------------------------------------
// 7. Token economy.

const ECONOMY_FETCH: Duration = Duration::from_millis(300);
/// Requests spread evenly over each run: dense enough that every refresh
/// window (5 minutes at most) sees some, as lazy refresh-ahead needs.
const ECONOMY_REQUESTS: u32 = 20_000;

/// The usable part of a lifetime under the default margin (30 s, clamped to
/// a quarter of the lifetime but at least 1 s, and at most half).
fn default_usable(lifetime: Duration) -> Duration {
    let margin = Duration::from_secs(30)
        .min((lifetime / 4).max(Duration::from_secs(1)))
        .min(lifetime / 2);
    lifetime - margin
}

/// Tokens fetched over ten lifetimes of steady traffic, default settings, a
/// provider that answers in 300 ms; how many requests waited.
fn economy_run(lifetime: Duration, run: Duration) -> (u64, usize, usize) {
    paused_runtime().block_on(async {
        let cache = TokenCache::new(slow_source(ECONOMY_FETCH, lifetime));
        cache.refresh().await.expect("warming the cache");
        let service = BearerAuthLayer::with_cache(cache.clone()).layer(noop_service());
        let rest = run.saturating_sub(ECONOMY_FETCH);
        let (sent, delayed, _) = steady_flow(service, rest, rest / ECONOMY_REQUESTS).await;
        (cache.stats().fetches_started, sent, delayed)
    })
}

fn economy(summary: &mut Summary) {
    println!(
        "\n## 7. token economy: steady traffic over ten lifetimes, default settings, source takes {} ms (simulated time)",
        ECONOMY_FETCH.as_millis()
    );
    for (name, lifetime, goal) in [
        ("1min", Duration::from_secs(60), 1.5),
        ("5min", Duration::from_secs(300), 1.15),
        ("1h", Duration::from_secs(3600), 1.15),
        ("24h", Duration::from_secs(24 * 3600), 1.15),
    ] {
        let run = lifetime * 10;
        let (fetches, sent, delayed) = economy_run(lifetime, run);
        let usable_lifetimes = run.as_secs_f64() / default_usable(lifetime).as_secs_f64();
        let per_usable = fetches as f64 / usable_lifetimes;
        println!(
            "  {name:>5} tokens: {fetches} fetches in {usable_lifetimes:.2} usable lifetimes = {per_usable:.3} per usable lifetime (goal <= {goal}); {delayed} of {sent} requests waited"
        );
        summary.figure(
            &format!("economy_{name}_tokens_per_usable_lifetime"),
            format!("{per_usable:.3}"),
            "tokens",
        );
        summary.figure(
            &format!("economy_{name}_requests_waited"),
            delayed,
            "requests",
        );
    }
    let (fetches, sent, delayed) = economy_run(Duration::from_secs(3), Duration::from_secs(10));
    println!(
        "     3s tokens: {fetches} fetches in 10 s (goal <= 8); {delayed} of {sent} requests waited"
    );
    summary.figure("economy_3s_tokens_in_10s", fetches, "tokens");
    summary.figure("economy_3s_requests_waited", delayed, "requests");
}
