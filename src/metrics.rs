//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, the one
//! Prometheus, OpenTelemetry and other exporters plug into (feature
//! `metrics`).
//!
//! Install a recorder (an exporter) and every [`TokenCache`] reports to it:
//! nothing else to configure. Name each cache with
//! [`TokenCacheBuilder::name`]; its metrics carry that name.
//!
//! ```
//! use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
//! use tower_bearer::TokenCache;
//! use tower_bearer::metrics::{FETCH_DURATION, REMAINING_LIFETIME, WAIT_DURATION};
//! # use tower_bearer::{Token, source::StaticSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Buckets, so that the histograms are exported as such (`_bucket`
//! // series), not as summaries.
//! let durations = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
//! let lifetimes = &[0.0, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
//! let recorder = PrometheusBuilder::new()
//!     .set_buckets_for_metric(Matcher::Full(FETCH_DURATION.into()), durations)?
//!     .set_buckets_for_metric(Matcher::Full(WAIT_DURATION.into()), durations)?
//!     .set_buckets_for_metric(Matcher::Full(REMAINING_LIFETIME.into()), lifetimes)?
//!     .build_recorder();
//! let scrape = recorder.handle(); // scrape.render() is the Prometheus text
//! metrics::set_global_recorder(recorder)?;
//!
//! # let source = StaticSource::new(Token::bearer("t"));
//! let cache = TokenCache::builder(source).name("orders").build();
//! # cache.refresh().await?;
//! # let text = scrape.render();
//! # assert!(text.contains(
//! #     r#"tower_bearer_fetches_total{cache="orders",key="default",reason="requested",outcome="ok"} 1"#
//! # ));
//! # assert!(text.contains("tower_bearer_fetch_duration_seconds_bucket{"));
//! # Ok(()) }
//! ```
//!
//! # The metrics
//!
//! Every metric but [`KEYS_EVICTED`] has the labels `cache` (the cache's
//! [name](crate::TokenCacheBuilder::name), else its source's kind, such as
//! `client_credentials`) and `key` (`default` for the default token; for a
//! keyed cache's other tokens, their [`TokenParams`] as
//! `scope=a,b audience=x resource=https://host/path param=name`: resources
//! and audiences without user info or query, parameters by name only).
//! None holds a token or a secret.
//!
//! | name | type | more labels | what it counts or measures |
//! |---|---|---|---|
//! | `tower_bearer_requests_total` | counter | `path`: `cached`, `waited`, `failed_fast` | requests that needed a token: served from cache without waiting, waited for a fetch, or failed at once because the cache was backing off |
//! | `tower_bearer_fetches_total` | counter | `reason`: `no_usable_token`, `refresh_ahead`, `requested`, `rejected`; `outcome`: `ok`, `transient_error`, `permanent_error` | calls to the token source, by why they started and how they ended |
//! | `tower_bearer_fetch_duration_seconds` | histogram | `outcome` | how long each fetch took |
//! | `tower_bearer_wait_duration_seconds` | histogram | | how long a request (or [`TokenCache::refresh`]) waited for a fetch's outcome; a waiter that gave up first (dropped, or past its deadline) is not in it |
//! | `tower_bearer_invalidations_total` | counter | `cause`: `rejected` (by the API), `requested` ([`TokenCache::invalidate`]) | tokens thrown away before their time |
//! | `tower_bearer_token_remaining_lifetime_seconds` | histogram | | the usable time a token had left when a new one replaced it: how early refreshes land (0: a request found it unusable) |
//! | `tower_bearer_token_refresh_timestamp_seconds` | gauge | | when the current token's background refresh is due, in seconds since the Unix epoch; 0 while no token is cached (and once the cache, or its key, is dropped). Seconds until the refresh: `tower_bearer_token_refresh_timestamp_seconds - time()` |
//! | `tower_bearer_token_usable_until_timestamp_seconds` | gauge | | when the current token stops being used, in seconds since the Unix epoch; 0 while no token is cached |
//! | `tower_bearer_keys_evicted_total` | counter | `cache` only | keys a keyed cache evicted to make room |
//!
//! The refresh point is a timestamp, not a countdown: a countdown would be
//! stale the moment it was set, while `timestamp - time()` is exact at every
//! scrape.
//!
//! # When handles are resolved
//!
//! A cache resolves its handles from the recorder in place at its first
//! fetch (or its first wait or invalidation, whichever comes first), and
//! keeps them: install the recorder before the first request. After that,
//! counting a request is one load to find the handles and one increment of
//! the exporter's counter: no lookup, no lock, no allocation. Every series
//! of a cache is registered at once, at zero, so that rates and dashboards
//! see every outcome from the start. A keyed cache registers a key's
//! series when the key is first used (and its own, `keys_evicted`
//! included, then at the latest). An evicted key's gauges go to 0, and its
//! series stay with the exporter. Do not have the exporter drop idle series
//! (`metrics-exporter-prometheus`'s `idle_timeout`) for these metrics: a
//! cache keeps its handles, so a series dropped while idle (a counter at
//! 0, a gauge set an hour ago) would not come back when it moves.
//! Keys whose parameters differ only in a parameter's value share one
//! `key` label (values stay out of labels): their counters add up, and
//! their gauges show whichever token landed last. So do two caches given
//! one name.
//!
//! Requests that cannot start a fetch at all (no tokio runtime, or one
//! shutting down) fail with their own error and are not counted as
//! `cached`, `waited` or `failed_fast`.
//!
//! What it costs, from `cargo bench --bench overhead --features metrics --
//! metrics` (2 cores): about 2 ns per request on one core (135.0 ns against
//! 133.1 ns with the facade's no-op handles, 1.013 times), and 0.95 times
//! the throughput when two cores serve requests from one cache without
//! pause (10.5 M against 11.0 M requests/s), since the
//! exporter's counter is one cache line every core writes; against a real
//! request's microseconds, nothing. The count is exact at every scrape:
//! batching it per core would spare that write, but leave a quiet
//! service's count behind until its next batch. Without the feature, none of this is
//! compiled: the cache's calls into it are empty and inlined away (a
//! request runs the same instructions as before the feature existed).
//!
//! [`TokenCache`]: crate::TokenCache
//! [`TokenCache::refresh`]: crate::TokenCache::refresh
//! [`TokenCache::invalidate`]: crate::TokenCache::invalidate
//! [`TokenCacheBuilder::name`]: crate::TokenCacheBuilder::name
//! [`TokenParams`]: crate::TokenParams

use metrics::Unit;

/// Requests that needed a token, by `path`.
pub const REQUESTS: &str = "tower_bearer_requests_total";
/// Calls to the token source, by `reason` and `outcome`.
pub const FETCHES: &str = "tower_bearer_fetches_total";
/// How long each fetch took, by `outcome`.
pub const FETCH_DURATION: &str = "tower_bearer_fetch_duration_seconds";
/// How long a waiter waited for a fetch's outcome.
pub const WAIT_DURATION: &str = "tower_bearer_wait_duration_seconds";
/// Tokens thrown away before their time, by `cause`.
pub const INVALIDATIONS: &str = "tower_bearer_invalidations_total";
/// The usable time a replaced token had left.
pub const REMAINING_LIFETIME: &str = "tower_bearer_token_remaining_lifetime_seconds";
/// When the current token's refresh is due (Unix seconds; 0: no token).
pub const REFRESH_AT: &str = "tower_bearer_token_refresh_timestamp_seconds";
/// When the current token stops being used (Unix seconds; 0: no token).
pub const USABLE_UNTIL: &str = "tower_bearer_token_usable_until_timestamp_seconds";
/// Keys a keyed cache evicted.
pub const KEYS_EVICTED: &str = "tower_bearer_keys_evicted_total";

/// Describes every metric to the recorder in place, with its unit.
pub(crate) fn describe_all() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests that needed a token: served from cache, waited for a fetch, or failed fast."
    );
    describe_counter!(
        FETCHES,
        Unit::Count,
        "Calls to the token source, by why they started and how they ended."
    );
    describe_histogram!(
        FETCH_DURATION,
        Unit::Seconds,
        "How long each token fetch took."
    );
    describe_histogram!(
        WAIT_DURATION,
        Unit::Seconds,
        "How long a request waited for a token fetch."
    );
    describe_counter!(
        INVALIDATIONS,
        Unit::Count,
        "Tokens thrown away before their time."
    );
    describe_histogram!(
        REMAINING_LIFETIME,
        Unit::Seconds,
        "Usable time a token had left when a new one replaced it."
    );
    describe_gauge!(
        REFRESH_AT,
        Unit::Seconds,
        "When the current token's refresh is due, in Unix seconds; 0 while none is cached."
    );
    describe_gauge!(
        USABLE_UNTIL,
        Unit::Seconds,
        "When the current token stops being used, in Unix seconds; 0 while none is cached."
    );
    describe_counter!(
        KEYS_EVICTED,
        Unit::Count,
        "Keys a keyed cache evicted to make room."
    );
}
