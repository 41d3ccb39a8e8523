//! What the cache tells the `metrics` facade, with the `metrics` feature;
//! without it, nothing, at no cost.
//!
//! Every cache resolves its metric handles once, from the recorder in place
//! at its first fetch (or first counted event); after that, counting is a
//! handle's own update: no lookup, no lock, no allocation. The hot path
//! adds one check that the handles are there and one counter increment.
//! See [`metrics`](crate::metrics) for the names and labels.

#[cfg(feature = "metrics")]
pub(crate) use enabled::{Stamp, Telemetry};

#[cfg(not(feature = "metrics"))]
pub(crate) use disabled::{Stamp, Telemetry};

/// Why the cache threw a token away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invalidation {
    /// The API rejected it.
    Rejected,
    /// [`TokenCache::invalidate`](super::TokenCache::invalidate) was called.
    Requested,
}

#[cfg(feature = "metrics")]
mod enabled {
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock, Mutex, OnceLock};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use metrics::{Counter, Gauge, Histogram, Label};
    use tokio::time::Instant;

    use super::Invalidation;
    use crate::cache::entry::Entry;
    use crate::cache::flight::{Ending, Outcome, Reason};
    use crate::metrics as names;
    use crate::params::TokenParams;

    /// When a waiter joined a flight.
    pub(crate) type Stamp = Instant;

    /// A cache's labels, and its handles once resolved.
    pub(crate) struct Telemetry {
        cache: Arc<str>,
        key: Arc<str>,
        keyed: bool,
        handles: OnceLock<Handles>,
    }

    const REASONS: [Reason; 4] = [
        Reason::NoUsableToken,
        Reason::RefreshAhead,
        Reason::Requested,
        Reason::Rejected,
    ];

    struct Handles {
        cached: Counter,
        waited: Counter,
        failed_fast: Counter,
        // By reason, then ending.
        fetches: [[Counter; 3]; 4],
        fetch_duration: [Histogram; 3],
        wait_duration: Histogram,
        invalidations: [Counter; 2],
        remaining_lifetime: Histogram,
        refresh_at: Gauge,
        usable_until: Gauge,
        keys_evicted: Option<Counter>,
    }

    impl Telemetry {
        /// Labels a cache by its `name` (else its source's kind), and its
        /// token by its `key` (`default` for the default token).
        pub(crate) fn new(
            name: Option<&Arc<str>>,
            source_kind: &'static str,
            key: Option<&TokenParams>,
            keyed: bool,
        ) -> Self {
            Self {
                cache: name.map_or_else(|| Arc::from(source_kind), Arc::clone),
                key: key.map_or_else(|| Arc::from("default"), |key| Arc::from(key.label())),
                keyed,
                handles: OnceLock::new(),
            }
        }

        fn handles(&self) -> &Handles {
            self.handles.get_or_init(|| {
                // Outside any span: a recorder that labels handles with the
                // current span's fields (metrics-tracing-context) must not
                // stamp the first request's fields on every series.
                let handles = tracing::dispatcher::with_default(&tracing::Dispatch::none(), || {
                    self.register()
                });
                live_series(|live| *live.entry(self.labels()).or_default() += 1);
                handles
            })
        }

        fn labels(&self) -> (Arc<str>, Arc<str>) {
            (Arc::clone(&self.cache), Arc::clone(&self.key))
        }

        fn register(&self) -> Handles {
            names::describe_all();
            let labels = |extra: &[(&'static str, &'static str)]| -> Vec<Label> {
                let mut labels = vec![
                    Label::new("cache", Arc::clone(&self.cache)),
                    Label::new("key", Arc::clone(&self.key)),
                ];
                labels.extend(extra.iter().map(|&(k, v)| Label::new(k, v)));
                labels
            };
            let requests = |path| metrics::counter!(names::REQUESTS, labels(&[("path", path)]));
            Handles {
                cached: requests("cached"),
                waited: requests("waited"),
                failed_fast: requests("failed_fast"),
                fetches: REASONS.map(|reason| {
                    Ending::ALL.map(|ending| {
                        metrics::counter!(
                            names::FETCHES,
                            labels(&[("reason", reason.label()), ("outcome", ending.as_str())])
                        )
                    })
                }),
                fetch_duration: Ending::ALL.map(|ending| {
                    metrics::histogram!(
                        names::FETCH_DURATION,
                        labels(&[("outcome", ending.as_str())])
                    )
                }),
                wait_duration: metrics::histogram!(names::WAIT_DURATION, labels(&[])),
                invalidations: ["rejected", "requested"].map(|cause| {
                    metrics::counter!(names::INVALIDATIONS, labels(&[("cause", cause)]))
                }),
                remaining_lifetime: metrics::histogram!(names::REMAINING_LIFETIME, labels(&[])),
                refresh_at: metrics::gauge!(names::REFRESH_AT, labels(&[])),
                usable_until: metrics::gauge!(names::USABLE_UNTIL, labels(&[])),
                keys_evicted: self.keyed.then(|| {
                    metrics::counter!(
                        names::KEYS_EVICTED,
                        vec![Label::new("cache", Arc::clone(&self.cache))]
                    )
                }),
            }
        }

        /// A request was served a cached token: the hot path. Handles are
        /// resolved by the fetch that brought the token, so a lookup here
        /// is one load.
        #[inline]
        pub(crate) fn served(&self) {
            if let Some(handles) = self.handles.get() {
                handles.cached.increment(1);
            }
        }

        pub(crate) fn waited(&self) {
            self.handles().waited.increment(1);
        }

        pub(crate) fn failed_fast(&self) {
            self.handles().failed_fast.increment(1);
        }

        /// Resolves the handles now, from the recorder in place: before a
        /// fetch, so that a token is never served uncounted, and when a
        /// keyed cache makes its first key, so that its evictions count
        /// from zero.
        pub(crate) fn resolve(&self) {
            self.handles();
        }

        pub(crate) fn fetch_finished(&self, reason: Reason, outcome: &Outcome, took: Duration) {
            let handles = self.handles();
            let ending = Ending::of(outcome) as usize;
            let reason = REASONS.iter().position(|r| *r == reason).unwrap_or(0);
            handles.fetches[reason][ending].increment(1);
            handles.fetch_duration[ending].record(took.as_secs_f64());
        }

        /// The moment a waiter joins a flight.
        pub(crate) fn stamp(&self) -> Stamp {
            Instant::now()
        }

        /// A waiter that joined at `joined` was told the flight's outcome
        /// at `told`.
        pub(crate) fn waiter_told(&self, joined: Stamp, told: Stamp) {
            let waited = told.saturating_duration_since(joined);
            self.handles().wait_duration.record(waited.as_secs_f64());
        }

        pub(crate) fn invalidated(&self, cause: Invalidation) {
            let handles = self.handles();
            handles.invalidations[cause as usize].increment(1);
            handles.refresh_at.set(0.0);
            handles.usable_until.set(0.0);
        }

        /// The cache is gone (or its key evicted), and its token with it:
        /// its gauges say so, unless another live cache reports under the
        /// same labels (a cache rebuilt under its name, keys whose
        /// parameters differ only in value).
        pub(crate) fn dropped(&self) {
            let Some(handles) = self.handles.get() else {
                return;
            };
            // Under the count's lock: a cache registering under these labels
            // meanwhile must not have its fresh gauges zeroed.
            live_series(|live| {
                let labels = self.labels();
                let count = live.get_mut(&labels).map_or(0, |count| {
                    *count -= 1;
                    *count
                });
                if count == 0 {
                    live.remove(&labels);
                    handles.refresh_at.set(0.0);
                    handles.usable_until.set(0.0);
                }
            });
        }

        /// `token` is current now, in place of `replaced` if one was cached.
        pub(crate) fn token_published(
            &self,
            now: Instant,
            token: &Entry,
            replaced: Option<&Entry>,
        ) {
            let handles = self.handles();
            if let Some(replaced) = replaced {
                let left = replaced.usable_until.saturating_duration_since(now);
                handles.remaining_lifetime.record(left.as_secs_f64());
            }
            if let Some(at) = token.refresh_at() {
                handles.refresh_at.set(unix_seconds(at, now));
            }
            handles
                .usable_until
                .set(unix_seconds(token.usable_until, now));
        }

        /// A failed refresh moved the kept token's next refresh to `at`.
        pub(crate) fn refresh_rescheduled(&self, at: Instant, now: Instant) {
            self.handles().refresh_at.set(unix_seconds(at, now));
        }

        pub(crate) fn key_evicted(&self) {
            if let Some(counter) = &self.handles().keys_evicted {
                counter.increment(1);
            }
        }
    }

    /// How many live caches report under each `cache` and `key` label pair.
    type LiveSeries = HashMap<(Arc<str>, Arc<str>), usize>;

    fn live_series<T>(f: impl FnOnce(&mut LiveSeries) -> T) -> T {
        static LIVE: LazyLock<Mutex<LiveSeries>> = LazyLock::new(Mutex::default);
        let mut live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut live)
    }

    /// `at` on the wall clock, in seconds since the Unix epoch.
    fn unix_seconds(at: Instant, now: Instant) -> f64 {
        let wall = SystemTime::now();
        let wall = if at >= now {
            wall + (at - now)
        } else {
            wall - (now - at)
        };
        wall.duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64())
    }

    impl Reason {
        fn label(self) -> &'static str {
            match self {
                Reason::NoUsableToken => "no_usable_token",
                Reason::RefreshAhead => "refresh_ahead",
                Reason::Requested => "requested",
                Reason::Rejected => "rejected",
            }
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod disabled {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::Invalidation;
    use crate::cache::entry::Entry;
    use crate::cache::flight::{Outcome, Reason};
    use crate::params::TokenParams;

    /// Nothing is recorded of a waiter.
    #[derive(Clone, Copy)]
    pub(crate) struct Stamp;

    /// Without the `metrics` feature: nothing, and every call compiles to
    /// nothing.
    pub(crate) struct Telemetry;

    impl Telemetry {
        #[inline(always)]
        pub(crate) fn new(
            _name: Option<&Arc<str>>,
            _source_kind: &'static str,
            _key: Option<&TokenParams>,
            _keyed: bool,
        ) -> Self {
            Telemetry
        }
        #[inline(always)]
        pub(crate) fn served(&self) {}
        #[inline(always)]
        pub(crate) fn waited(&self) {}
        #[inline(always)]
        pub(crate) fn failed_fast(&self) {}
        #[inline(always)]
        pub(crate) fn resolve(&self) {}
        #[inline(always)]
        pub(crate) fn fetch_finished(&self, _reason: Reason, _outcome: &Outcome, _took: Duration) {}
        #[inline(always)]
        pub(crate) fn stamp(&self) -> Stamp {
            Stamp
        }
        #[inline(always)]
        pub(crate) fn waiter_told(&self, _joined: Stamp, _told: Stamp) {}
        #[inline(always)]
        pub(crate) fn invalidated(&self, _cause: Invalidation) {}
        #[inline(always)]
        pub(crate) fn token_published(
            &self,
            _now: Instant,
            _token: &Entry,
            _replaced: Option<&Entry>,
        ) {
        }
        #[inline(always)]
        pub(crate) fn refresh_rescheduled(&self, _at: Instant, _now: Instant) {}
        #[inline(always)]
        pub(crate) fn key_evicted(&self) {}
        #[inline(always)]
        pub(crate) fn dropped(&self) {}
    }
}
