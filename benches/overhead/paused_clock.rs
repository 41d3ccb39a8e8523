//! Figures in simulated time, exact on tokio's paused clock: the cold
//! storm, the refresh window, an outage, and the token economy.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Request, Uri};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_bearer::source::FnSource;
use tower_bearer::{Backoff, BearerAuthLayer, ErrorClass, Token, TokenCache, TokenSource};

use super::services::{NaiveBearer, noop_service, request};
use crate::{Summary, TOKEN, URI};

// ---------------------------------------------------------------------------
// Simulated time.

pub(crate) fn paused_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// Sends one request through a clone of `service`; returns how long it took
/// in simulated time and whether it succeeded.
pub(crate) async fn timed_request<S>(mut service: S) -> (Duration, bool)
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

pub(crate) const STORM_REQUESTS: usize = 10_000;
pub(crate) const STORM_FETCH: Duration = Duration::from_millis(50);

pub(crate) fn slow_source(delay: Duration, lifetime: Duration) -> impl TokenSource {
    FnSource::new(move || async move {
        tokio::time::sleep(delay).await;
        Ok::<_, Infallible>(Token::bearer(TOKEN).with_lifetime(lifetime))
    })
}

/// Fires every request at once at an empty cache; returns (slowest request,
/// requests served).
pub(crate) async fn storm<S>(service: S) -> (Duration, usize)
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

pub(crate) fn cold_storm(summary: &mut Summary) {
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

pub(crate) const REFRESH_FETCH: Duration = Duration::from_millis(200);
pub(crate) const REFRESH_LIFETIME: Duration = Duration::from_secs(60);
pub(crate) const REFRESH_RUN: Duration = Duration::from_secs(70);
pub(crate) const REQUEST_EVERY: Duration = Duration::from_millis(1);

/// Sends a request `every` so often for `run`, each on its own task; returns
/// (requests, how many were delayed at all, the largest delay).
pub(crate) async fn steady_flow<S>(
    service: S,
    run: Duration,
    every: Duration,
) -> (usize, usize, Duration)
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

pub(crate) fn refresh_window(summary: &mut Summary) {
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

pub(crate) const OUTAGE_RUN: Duration = Duration::from_secs(10);

/// The most fetches `backoff` allows in `run`: the first at once, then one
/// after each delay at its shortest (the full jitter taken off).
pub(crate) fn backoff_bound(backoff: &Backoff, run: Duration) -> u32 {
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

pub(crate) fn failing_source(fetches: Arc<std::sync::atomic::AtomicU64>) -> impl TokenSource {
    FnSource::new(move || {
        fetches.fetch_add(1, Ordering::Relaxed);
        async { Err::<Token, _>(std::io::Error::other("identity provider unavailable")) }
    })
}

pub(crate) fn outage(summary: &mut Summary) {
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

pub(crate) const ECONOMY_FETCH: Duration = Duration::from_millis(300);
/// Requests spread evenly over each run: dense enough that every refresh
/// window (5 minutes at most) sees some, as lazy refresh-ahead needs.
pub(crate) const ECONOMY_REQUESTS: u32 = 20_000;

/// The usable part of a lifetime under the default margin (30 s, clamped to
/// a quarter of the lifetime but at least 1 s, and at most half).
pub(crate) fn default_usable(lifetime: Duration) -> Duration {
    let margin = Duration::from_secs(30)
        .min((lifetime / 4).max(Duration::from_secs(1)))
        .min(lifetime / 2);
    lifetime - margin
}

/// Tokens fetched over ten lifetimes of steady traffic, default settings, a
/// provider that answers in 300 ms; how many requests waited.
pub(crate) fn economy_run(lifetime: Duration, run: Duration) -> (u64, usize, usize) {
    paused_runtime().block_on(async {
        let cache = TokenCache::new(slow_source(ECONOMY_FETCH, lifetime));
        cache.refresh().await.expect("warming the cache");
        let service = BearerAuthLayer::with_cache(cache.clone()).layer(noop_service());
        let rest = run.saturating_sub(ECONOMY_FETCH);
        let (sent, delayed, _) = steady_flow(service, rest, rest / ECONOMY_REQUESTS).await;
        (cache.stats().fetches_started, sent, delayed)
    })
}

pub(crate) fn economy(summary: &mut Summary) {
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
