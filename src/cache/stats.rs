//! What the cache did, counted without a shared write on the hot path.
//!
//! ```
//! use tower_bearer::{Token, TokenCache, source::StaticSource};
//!
//! let cache = TokenCache::new(StaticSource::new(Token::bearer("t")));
//! let stats = cache.stats();
//! assert_eq!((stats.fetches_started, stats.served_from_cache), (0, 0));
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counters of what the cache did, for metrics. Counters add up
/// (`a + b`), as [`TokenCache::total_stats`](crate::TokenCache::total_stats)
/// adds a keyed cache's.
///
/// Each is a monotonic count since the cache was built; export them as
/// counters (`rate()` them in Prometheus).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls made to the token source.
    pub fetches_started: u64,
    /// Calls to the token source that failed (error, timeout, panic, invalid
    /// or already expired token).
    pub fetches_failed: u64,
    /// Fetches started ahead of expiry while a usable token was served.
    pub refreshes_ahead: u64,
    /// Requests served a cached token without waiting.
    pub served_from_cache: u64,
    /// Requests that waited for a fetch.
    pub waited_for_fetch: u64,
    /// Requests failed at once because the cache was backing off.
    pub failed_fast: u64,
    /// Tokens thrown away because the API rejected them (or on request).
    pub invalidations: u64,
    /// Keys a keyed cache evicted to make room for new ones (each key's own
    /// counters are in its cache: [`TokenCache::keys`](crate::TokenCache::keys)).
    pub keys_evicted: u64,
}

impl std::ops::Add for Stats {
    type Output = Stats;

    fn add(self, other: Stats) -> Stats {
        Stats {
            fetches_started: self.fetches_started + other.fetches_started,
            fetches_failed: self.fetches_failed + other.fetches_failed,
            refreshes_ahead: self.refreshes_ahead + other.refreshes_ahead,
            served_from_cache: self.served_from_cache + other.served_from_cache,
            waited_for_fetch: self.waited_for_fetch + other.waited_for_fetch,
            failed_fast: self.failed_fast + other.failed_fast,
            invalidations: self.invalidations + other.invalidations,
            keys_evicted: self.keys_evicted + other.keys_evicted,
        }
    }
}

/// The live counters behind [`Stats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) fetches_started: AtomicU64,
    pub(crate) fetches_failed: AtomicU64,
    pub(crate) refreshes_ahead: AtomicU64,
    // Bumped on every request: striped so that cores do not fight over one
    // cache line.
    pub(crate) served_from_cache: StripedCounter,
    pub(crate) waited_for_fetch: AtomicU64,
    pub(crate) failed_fast: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) keys_evicted: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            fetches_started: get(&self.fetches_started),
            fetches_failed: get(&self.fetches_failed),
            refreshes_ahead: get(&self.refreshes_ahead),
            served_from_cache: self.served_from_cache.get(),
            waited_for_fetch: get(&self.waited_for_fetch),
            failed_fast: get(&self.failed_fast),
            invalidations: get(&self.invalidations),
            keys_evicted: get(&self.keys_evicted),
        }
    }
}

/// Adds one to a counter that is not on the hot path.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

const STRIPES: usize = 8;

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// A counter split over cache lines, one per group of threads.
#[derive(Default)]
pub(crate) struct StripedCounter([Padded; STRIPES]);

impl StripedCounter {
    pub(crate) fn bump(&self) {
        static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        }
        let stripe = STRIPE.try_with(|s| *s).unwrap_or(0);
        self.0[stripe].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_striped_counter_adds_up_across_threads() {
        let counter = StripedCounter::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..1000).for_each(|_| counter.bump()));
            }
        });
        assert_eq!(counter.get(), 4000);
    }
}
