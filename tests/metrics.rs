//! The `metrics` feature: what a cache reports through the `metrics` facade,
//! read back from a real exporter's Prometheus text.
#![cfg(feature = "metrics")]

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use support::scrape::Scrape;
use support::{Counting, no_jitter, request};
use tower::{Layer, Service, ServiceExt};
use tower_bearer::cache::FreshnessCheck;
use tower_bearer::source::{FnSource, KeyedTokenSource, StaticSource};
use tower_bearer::{
    BearerAuthLayer, ErrorClass, SourceError, Token, TokenCache, TokenParams, TokenSource,
};

/// A Prometheus recorder that also counts how many handles were asked of
/// it: after a cache's first fetch, none should be.
struct Recording {
    inner: PrometheusRecorder,
    registrations: AtomicUsize,
    // Handles asked for inside a tracing span, which a recorder such as
    // metrics-tracing-context would label with the span's fields.
    in_span: AtomicUsize,
}

impl Recording {
    fn new() -> (Self, PrometheusHandle) {
        let inner = PrometheusBuilder::new().build_recorder();
        let handle = inner.handle();
        let recording = Self {
            inner,
            registrations: AtomicUsize::new(0),
            in_span: AtomicUsize::new(0),
        };
        (recording, handle)
    }

    fn registrations(&self) -> usize {
        self.registrations.load(Ordering::SeqCst)
    }

    fn registered(&self) {
        self.registrations.fetch_add(1, Ordering::SeqCst);
        if !tracing::Span::current().is_none() {
            self.in_span.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Recorder for Recording {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description)
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description)
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description)
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.registered();
        self.inner.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.registered();
        self.inner.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.registered();
        self.inner.register_histogram(key, metadata)
    }
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    Scrape::parse(text).value(name, labels)
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn close(actual: f64, expected: f64, within: f64) -> bool {
    (actual - expected).abs() <= within
}

const ORDERS: (&str, &str) = ("cache", "orders");
const DEFAULT_KEY: (&str, &str) = ("key", "default");

#[tokio::test(start_paused = true)]
async fn a_token_s_life_is_counted_waits_hits_refresh_ahead_and_replacement() {
    let (recorder, scrape) = Recording::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    // Each fetch takes 2 s and brings a token living 100 s: usable 75 s.
    let source = Counting::tokens(Duration::from_secs(2), Some(Duration::from_secs(100)));
    let cache = TokenCache::builder(source.source())
        .name("orders")
        .refresh_jitter(0.0)
        .freshness_check(FreshnessCheck::Clock)
        .build();
    let svc = BearerAuthLayer::with_cache(cache.clone()).layer(support::echo::<String>());

    // Five requests find no token and wait for the one fetch.
    let waiting: Vec<_> = (0..5)
        .map(|_| tokio::spawn(svc.clone().oneshot(request())))
        .collect();
    for response in waiting {
        assert_eq!(response.await.unwrap().unwrap().body(), "Bearer token-1");
    }
    for _ in 0..10 {
        svc.clone().oneshot(request()).await.unwrap();
    }
    let text = scrape.render();
    let path = |p| {
        value(
            &text,
            "tower_bearer_requests_total",
            &[ORDERS, DEFAULT_KEY, ("path", p)],
        )
    };
    assert_eq!(
        (path("waited"), path("cached"), path("failed_fast")),
        (5.0, 10.0, 0.0)
    );
    let fetches = |reason, outcome| {
        value(
            &text,
            "tower_bearer_fetches_total",
            &[
                ORDERS,
                DEFAULT_KEY,
                ("reason", reason),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(fetches("no_usable_token", "ok"), 1.0);
    assert_eq!(
        fetches("refresh_ahead", "ok"),
        0.0,
        "every series is there from the start"
    );
    // On the paused clock each waiter waited exactly the fetch's 2 s.
    let wait = |suffix: &str| {
        value(
            &text,
            &format!("tower_bearer_wait_duration_seconds{suffix}"),
            &[ORDERS, DEFAULT_KEY],
        )
    };
    assert_eq!((wait("_count"), wait("_sum")), (5.0, 10.0));
    let fetch_sum = value(
        &text,
        "tower_bearer_fetch_duration_seconds_sum",
        &[ORDERS, ("outcome", "ok")],
    );
    assert_eq!(fetch_sum, 2.0);
    assert_eq!(
        value(
            &text,
            "tower_bearer_token_remaining_lifetime_seconds_count",
            &[ORDERS]
        ),
        0.0,
        "nothing replaced yet"
    );

    // The gauges: the usable end 73 s from now (75 s from the request that
    // fetched it), the refresh point before it. They are wall-clock
    // timestamps, set from the paused clock's offsets when the token
    // landed: compared with the wall clock, they are as exact as the real
    // time this test takes allows.
    let usable_until = value(
        &text,
        "tower_bearer_token_usable_until_timestamp_seconds",
        &[ORDERS],
    );
    let refresh_at = value(
        &text,
        "tower_bearer_token_refresh_timestamp_seconds",
        &[ORDERS],
    );
    assert!(
        close(usable_until - now_unix(), 73.0, 3.0),
        "{usable_until}"
    );
    let window = usable_until - refresh_at;
    assert!(window > 4.0 && window < 37.5, "refresh window {window}");

    // Past the refresh point (the window before the usable end, 73 s away
    // on the paused clock): the request is served at once and starts the
    // background refresh, which lands 2 s later.
    tokio::time::advance(Duration::from_secs_f64(73.0 - window + 0.1)).await;
    assert_eq!(
        svc.clone().oneshot(request()).await.unwrap().body(),
        "Bearer token-1"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        svc.clone().oneshot(request()).await.unwrap().body(),
        "Bearer token-2"
    );

    let text = scrape.render();
    assert_eq!(
        value(
            &text,
            "tower_bearer_fetches_total",
            &[ORDERS, ("reason", "refresh_ahead"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tower_bearer_requests_total",
            &[ORDERS, ("path", "cached")]
        ),
        12.0
    );
    assert_eq!(
        value(
            &text,
            "tower_bearer_requests_total",
            &[ORDERS, ("path", "waited")]
        ),
        5.0
    );
    // The old token had its window less the 0.1 s and the 2 s fetch left.
    assert_eq!(
        value(
            &text,
            "tower_bearer_token_remaining_lifetime_seconds_count",
            &[ORDERS]
        ),
        1.0
    );
    let left = value(
        &text,
        "tower_bearer_token_remaining_lifetime_seconds_sum",
        &[ORDERS],
    );
    assert!(
        close(left, window - 2.1, 0.2),
        "left {left}, window {window}"
    );
    let next_usable = value(
        &text,
        "tower_bearer_token_usable_until_timestamp_seconds",
        &[ORDERS],
    );
    // Set when it landed, 73 s before its end. (The wall clock stands
    // still while the paused one moves: both gauges read 73 s ahead.)
    assert!(close(next_usable - now_unix(), 73.0, 3.0), "{next_usable}");

    // Thrown away on request: counted, and the gauges say no token.
    cache.invalidate();
    let text = scrape.render();
    assert_eq!(
        value(
            &text,
            "tower_bearer_invalidations_total",
            &[ORDERS, ("cause", "requested")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tower_bearer_invalidations_total",
            &[ORDERS, ("cause", "rejected")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            "tower_bearer_token_refresh_timestamp_seconds",
            &[ORDERS]
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            "tower_bearer_token_usable_until_timestamp_seconds",
            &[ORDERS]
        ),
        0.0
    );
    assert_eq!(source.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn failures_fail_fast_and_rejections_are_counted_by_outcome_and_cause() {
    let (recorder, scrape) = Recording::new();
    let _local = metrics::set_default_local_recorder(&recorder);

    // A provider that asks for 10 s, then one that refuses for good.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let source = FnSource::new(move || {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let class = if n == 0 {
                ErrorClass::Transient {
                    retry_after: Some(Duration::from_secs(10)),
                }
            } else {
                ErrorClass::Permanent
            };
            Err::<Token, _>(SourceError::new(
                std::io::Error::other("provider said no"),
                class,
            ))
        }
    });
    let cache = TokenCache::builder(source)
        .name("billing")
        .backoff(no_jitter())
        .build();
    let billing = ("cache", "billing");
    assert!(cache.refresh().await.is_err());
    assert!(cache.refresh().await.is_err());
    let svc = BearerAuthLayer::with_cache(cache.clone()).layer(support::echo::<String>());
    assert!(
        svc.oneshot(request()).await.is_err(),
        "backing off: fails fast"
    );

    let text = scrape.render();
    let fetches = |outcome| {
        value(
            &text,
            "tower_bearer_fetches_total",
            &[billing, ("reason", "requested"), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (
            fetches("ok"),
            fetches("transient_error"),
            fetches("permanent_error")
        ),
        (0.0, 1.0, 1.0)
    );
    assert_eq!(
        value(
            &text,
            "tower_bearer_requests_total",
            &[billing, ("path", "failed_fast")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tower_bearer_fetch_duration_seconds_count",
            &[billing, ("outcome", "transient_error")]
        ),
        1.0
    );

    // An API that rejects its first token.
    let cache = TokenCache::builder(
        Counting::tokens(Duration::ZERO, Some(Duration::from_secs(3600))).source(),
    )
    .name("ledger")
    .build();
    let api = tower::service_fn(|req: http::Request<String>| async move {
        let status = if req.headers()["authorization"] == "Bearer token-1" {
            401
        } else {
            200
        };
        Ok::<_, Infallible>(
            http::Response::builder()
                .status(status)
                .body(String::new())
                .unwrap(),
        )
    });
    let mut svc = BearerAuthLayer::with_cache(cache.clone()).layer(api);
    let first = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(first.status(), 401);
    tokio::task::yield_now().await;
    let second = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(second.status(), 200);
    let text = scrape.render();
    let ledger = ("cache", "ledger");
    assert_eq!(
        value(
            &text,
            "tower_bearer_invalidations_total",
            &[ledger, ("cause", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tower_bearer_fetches_total",
            &[ledger, ("reason", "rejected"), ("outcome", "ok")]
        ),
        1.0
    );
    // It was thrown away, not replaced: nothing measured.
    assert_eq!(
        value(
            &text,
            "tower_bearer_token_remaining_lifetime_seconds_count",
            &[ledger]
        ),
        0.0
    );
}

#[derive(Clone)]
struct PerParams;

impl TokenSource for PerParams {
    type Error = Infallible;
    async fn fetch(&self) -> Result<Token, Infallible> {
        Ok(Token::bearer("default-secret-token"))
    }
}

impl KeyedTokenSource for PerParams {
    type Keyed = StaticSource;
    fn for_params(&self, params: &TokenParams) -> Result<StaticSource, Infallible> {
        Ok(StaticSource::new(Token::bearer(format!(
            "secret-token-for-{}",
            params.scopes().join("-")
        ))))
    }
}

#[tokio::test(start_paused = true)]
async fn a_keyed_cache_labels_each_key_without_secrets_and_counts_evictions() {
    let (recorder, scrape) = Recording::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let cache = TokenCache::keyed_builder(PerParams)
        .name("tenants")
        .max_keys(1)
        .build();
    let graph = TokenParams::builder()
        .resource("https://svc:hunter2@graph.example.com/v1?sig=s3cret#frag")
        .scope("Mail.Read User.Read")
        .param("tenant", "acme-private")
        .build();
    cache.for_params(&graph).unwrap().refresh().await.unwrap();
    let text = scrape.render();
    let key = (
        "key",
        "scope=Mail.Read,User.Read resource=https://graph.example.com/v1 param=tenant",
    );
    assert_eq!(
        value(
            &text,
            "tower_bearer_fetches_total",
            &[
                ("cache", "tenants"),
                key,
                ("reason", "requested"),
                ("outcome", "ok")
            ]
        ),
        1.0,
        "{text}"
    );
    for secret in ["hunter2", "s3cret", "frag", "acme-private", "secret-token"] {
        assert!(!text.contains(secret), "{secret} in\n{text}");
    }
    // The default token was never fetched, yet evictions count from 0.
    assert_eq!(
        value(
            &text,
            "tower_bearer_keys_evicted_total",
            &[("cache", "tenants")]
        ),
        0.0
    );
    // A second key evicts the first.
    cache
        .for_params(&TokenParams::for_scopes(["Files.Read"]))
        .unwrap()
        .refresh()
        .await
        .unwrap();
    let text = scrape.render();
    assert_eq!(
        value(
            &text,
            "tower_bearer_keys_evicted_total",
            &[("cache", "tenants")]
        ),
        1.0
    );
    // The evicted key's token is gone with it.
    assert_eq!(
        value(
            &text,
            "tower_bearer_token_usable_until_timestamp_seconds",
            &[("cache", "tenants"), key]
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            "tower_bearer_fetches_total",
            &[
                ("key", "scope=Files.Read"),
                ("reason", "requested"),
                ("outcome", "ok")
            ]
        ),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn handles_are_resolved_once_so_requests_look_nothing_up() {
    let (recorder, scrape) = Recording::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    // Unnamed: the source's kind names the cache.
    let cache = TokenCache::new(StaticSource::new(Token::bearer("t")));
    let mut svc = BearerAuthLayer::with_cache(cache.clone()).layer(support::echo::<String>());
    assert_eq!(
        recorder.registrations(),
        0,
        "building a cache registers nothing"
    );
    svc.ready().await.unwrap().call(request()).await.unwrap();
    let after_first = recorder.registrations();
    assert!(after_first > 0);
    for _ in 0..1000 {
        svc.ready().await.unwrap().call(request()).await.unwrap();
    }
    cache.invalidate();
    cache.refresh().await.unwrap();
    assert_eq!(
        recorder.registrations(),
        after_first,
        "no lookup after the first fetch"
    );
    let text = scrape.render();
    assert_eq!(
        value(
            &text,
            "tower_bearer_requests_total",
            &[("cache", "static"), ("path", "cached")]
        ),
        1000.0
    );
    assert_eq!(
        value(
            &text,
            "tower_bearer_requests_total",
            &[("cache", "static"), ("path", "waited")]
        ),
        1.0
    );
}

#[tokio::test]
async fn the_names_already_follow_the_recommended_naming() {
    let recorder = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .build_recorder();
    let scrape = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    TokenCache::builder(StaticSource::new(Token::bearer("t")))
        .name("plain")
        .build()
        .refresh()
        .await
        .unwrap();
    let text = scrape.render();
    for name in [
        tower_bearer::metrics::REQUESTS,
        tower_bearer::metrics::FETCHES,
        tower_bearer::metrics::FETCH_DURATION,
        tower_bearer::metrics::WAIT_DURATION,
        tower_bearer::metrics::INVALIDATIONS,
        tower_bearer::metrics::REFRESH_AT,
        tower_bearer::metrics::USABLE_UNTIL,
    ] {
        assert!(
            text.contains(&format!("\n{name}{{")),
            "{name} renamed in\n{text}"
        );
    }
    assert!(
        text.contains("# TYPE tower_bearer_fetches_total counter"),
        "{text}"
    );
}

#[test]
fn the_readme_example_is_the_module_example() {
    assert_eq!(
        support::readme::readme_example("## Metrics"),
        support::readme::module_example(include_str!("../src/metrics.rs"), 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_cache_zeroes_its_gauges_only_when_no_other_reports_under_its_name() {
    let (recorder, scrape) = Recording::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let twin = || {
        TokenCache::builder(StaticSource::new(
            Token::bearer("t").with_lifetime(Duration::from_secs(3600)),
        ))
        .name("twin")
        .build()
    };
    let (old, new) = (twin(), twin());
    old.refresh().await.unwrap();
    new.refresh().await.unwrap();
    let usable = |text: &str| {
        value(
            text,
            "tower_bearer_token_usable_until_timestamp_seconds",
            &[("cache", "twin")],
        )
    };
    drop(old);
    assert!(
        usable(&scrape.render()) > now_unix(),
        "the live one's token"
    );
    drop(new);
    assert_eq!(usable(&scrape.render()), 0.0, "no cache left, no token");
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_is_counted_and_moves_the_refresh_gauge() {
    let (recorder, scrape) = Recording::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let source = Counting::new(|n| async move {
        if n == 1 {
            Ok(Token::bearer("t").with_lifetime(Duration::from_secs(100)))
        } else {
            Err(SourceError::new(
                std::io::Error::other("provider down"),
                ErrorClass::TRANSIENT,
            ))
        }
    });
    let cache = TokenCache::builder(source.source())
        .name("flaky")
        .refresh_jitter(0.0)
        .backoff(no_jitter())
        .freshness_check(FreshnessCheck::Clock)
        .build();
    let mut svc = BearerAuthLayer::with_cache(cache.clone()).layer(support::echo::<String>());
    svc.ready().await.unwrap().call(request()).await.unwrap();
    let gauge = |text: &str, name| value(text, name, &[("cache", "flaky")]);
    let text = scrape.render();
    let usable_until = gauge(&text, "tower_bearer_token_usable_until_timestamp_seconds");
    let refresh_at = gauge(&text, "tower_bearer_token_refresh_timestamp_seconds");
    let window = usable_until - refresh_at;

    // Past the refresh point: the refresh fails, the token is kept, and its
    // next refresh is due later.
    tokio::time::advance(Duration::from_secs_f64(75.0 - window + 0.1)).await;
    let before = now_unix();
    let response = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(response.body(), "Bearer t");
    tokio::task::yield_now().await;
    let text = scrape.render();
    assert_eq!(
        value(
            &text,
            "tower_bearer_fetches_total",
            &[
                ("cache", "flaky"),
                ("reason", "refresh_ahead"),
                ("outcome", "transient_error")
            ]
        ),
        1.0
    );
    // Set when the refresh failed, between `before` and now on the wall
    // clock (which stands still while the paused one moves): due again
    // after the backoff's first step (1 s), well before the usable end
    // (window - 0.1 s away). Unmoved, it would read 0.1 s before `before`.
    let rescheduled = gauge(&text, "tower_bearer_token_refresh_timestamp_seconds") - 1.0;
    assert!(
        (before - 0.01..=now_unix() + 0.01).contains(&rescheduled),
        "due again 1 s after the failure: {rescheduled} not in {before}.."
    );
    assert_eq!(
        gauge(&text, "tower_bearer_token_usable_until_timestamp_seconds"),
        usable_until,
        "the kept token's end"
    );
    assert_eq!(source.count(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn handles_are_registered_outside_the_first_request_s_span() {
    let (recorder, _scrape) = Recording::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
    let mut svc = BearerAuthLayer::new(StaticSource::new(Token::bearer("t")))
        .layer(support::echo::<String>());
    let span = tracing::info_span!("request", uri = "/orders?customer=42");
    let _entered = span.enter();
    assert!(
        !tracing::Span::current().is_none(),
        "the request's span is current"
    );
    svc.ready().await.unwrap().call(request()).await.unwrap();
    assert!(recorder.registrations() > 0);
    assert_eq!(recorder.in_span.load(Ordering::SeqCst), 0);
}
