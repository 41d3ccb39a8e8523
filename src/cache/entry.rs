//! A cached token: its header, its schedule, and how the hot path knows it
//! is fresh without reading a clock.
//!
//! A timer armed at the token's refresh point clears the `fresh` flag; while
//! the flag is set, a request costs one atomic load. The timer's task holds a
//! guard that clears the flag however the task ends: fired, aborted, or
//! dropped with its runtime. A token whose timer can no longer fire is
//! therefore checked against the clock, never trusted past its time.
//!
//! ```
//! use tower_bearer::{Token, TokenCache, cache::FreshnessCheck, source::StaticSource};
//!
//! // The clock on every request, whatever the runtime.
//! let cache = TokenCache::builder(StaticSource::new(Token::bearer("t")))
//!     .freshness_check(FreshnessCheck::Clock)
//!     .build();
//! # drop(cache);
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use http::HeaderValue;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::Acquire;
use super::policy::{Schedule, later};
use crate::binding::Bound;

/// `next_refresh` while a refresh runs: no offset reaches it.
const REFRESHING: u64 = u64::MAX;

/// Identifies one cached token of one cache, so that a 401 invalidates only
/// the token that request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TokenId {
    pub(crate) cache: u64,
    pub(crate) token: u64,
}

/// A usable token's header value and identity.
#[derive(Clone)]
pub(crate) struct Lease {
    pub(crate) header: HeaderValue,
    pub(crate) id: TokenId,
}

/// A cached token, ready to attach.
pub(crate) struct Entry {
    pub(crate) id: TokenId,
    header: HeaderValue,
    bound: Option<Arc<Bound>>,
    obtained_at: Instant,
    pub(crate) usable_until: Instant,
    fresh_until: Instant,
    // Nanoseconds after `obtained_at` when the next background refresh may
    // start; `REFRESHING` while one runs. Claimed with a compare-and-swap, so
    // that exactly one request starts it.
    next_refresh: AtomicU64,
    // Set while a live timer guarantees that the refresh point is ahead.
    fresh: AtomicBool,
}

impl Entry {
    pub(crate) fn new(
        id: TokenId,
        header: HeaderValue,
        bound: Option<Arc<Bound>>,
        obtained_at: Instant,
        schedule: &Schedule,
    ) -> Self {
        Self {
            id,
            header,
            bound,
            obtained_at,
            usable_until: later(obtained_at, schedule.usable),
            fresh_until: later(obtained_at, schedule.fresh),
            next_refresh: AtomicU64::new(nanos(schedule.refresh)),
            fresh: AtomicBool::new(false),
        }
    }

    pub(crate) fn lease(&self) -> Lease {
        Lease {
            header: self.header.clone(),
            id: self.id,
        }
    }

    /// The token for a request: its lease, and for a token bound to a key,
    /// what each request adds (kept out of [`Lease`], so that a bearer
    /// token's path carries nothing it does not use).
    #[inline]
    pub(crate) fn serve(&self) -> Acquire {
        match &self.bound {
            None => Acquire::Ready(self.lease()),
            Some(bound) => Acquire::Bound(Arc::clone(bound)),
        }
    }

    /// Whether a timer vouches that the refresh point has not come: no clock
    /// read.
    #[inline]
    pub(crate) fn is_fresh(&self) -> bool {
        self.fresh.load(Ordering::Acquire)
    }

    pub(crate) fn is_usable(&self, now: Instant) -> bool {
        now < self.usable_until
    }

    pub(crate) fn refresh_due(&self, now: Instant) -> bool {
        self.offset(now) >= self.next_refresh.load(Ordering::Acquire)
    }

    /// Claims the due refresh: `Some` for exactly one caller, with the claim
    /// to give back if the refresh cannot start.
    pub(crate) fn claim_refresh(&self, now: Instant) -> Option<u64> {
        let due = self.next_refresh.load(Ordering::Acquire);
        if self.offset(now) < due {
            return None;
        }
        self.next_refresh
            .compare_exchange(due, REFRESHING, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
    }

    pub(crate) fn release_refresh(&self, due: u64) {
        self.next_refresh.store(due, Ordering::Release);
    }

    /// Gives back a claim whose flight was abandoned: the refresh is due
    /// again at `now`. An unclaimed schedule is left as it is.
    pub(crate) fn unclaim(&self, now: Instant) {
        let _ = self.next_refresh.compare_exchange(
            REFRESHING,
            self.offset(now),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// When the next refresh may start; `None` while one runs.
    #[cfg(feature = "metrics")]
    pub(crate) fn refresh_at(&self) -> Option<Instant> {
        match self.next_refresh.load(Ordering::Acquire) {
            REFRESHING => None,
            offset => Some(later(
                self.obtained_at,
                std::time::Duration::from_nanos(offset),
            )),
        }
    }

    /// The next refresh may start at `at` (after a failed one).
    pub(crate) fn reschedule_refresh(&self, at: Instant) {
        self.next_refresh.store(self.offset(at), Ordering::Release);
    }

    /// Arms the timer that clears `fresh` at the fresh point, on `runtime`.
    /// `None` when that point has already come.
    pub(crate) fn arm_timer(self: &Arc<Self>, runtime: &Handle) -> Option<AbortHandle> {
        if Instant::now() >= self.fresh_until {
            return None;
        }
        let until = self.fresh_until;
        // Built before the flag is set and moved into the task: dropped,
        // it clears the flag whether the task ran, was aborted, or was
        // dropped unpolled by a runtime shutting down.
        let clear = ClearOnDrop(Arc::downgrade(self));
        self.fresh.store(true, Ordering::Release);
        let task = runtime.spawn(async move {
            let _clear = clear;
            tokio::time::sleep_until(until).await;
        });
        Some(task.abort_handle())
    }

    fn offset(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.obtained_at))
    }
}

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(REFRESHING - 1)
}

struct ClearOnDrop(Weak<Entry>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        if let Some(entry) = self.0.upgrade() {
            entry.fresh.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cache::policy::Timing;

    fn entry() -> Arc<Entry> {
        let schedule = Timing::default().schedule(Duration::from_secs(3600), Duration::ZERO, 0.0);
        Arc::new(Entry::new(
            TokenId { cache: 0, token: 1 },
            HeaderValue::from_static("Bearer t"),
            None,
            Instant::now(),
            &schedule,
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_clears_the_flag_at_the_fresh_point() {
        let entry = entry();
        let timer = entry.arm_timer(&Handle::current()).unwrap();
        assert!(entry.is_fresh());
        tokio::time::sleep_until(entry.fresh_until - Duration::from_millis(1)).await;
        assert!(entry.is_fresh());
        tokio::time::sleep_until(entry.fresh_until).await;
        tokio::task::yield_now().await;
        assert!(!entry.is_fresh());
        assert!(timer.is_finished());
        // Before the usable end, with room for the refresh.
        assert!(entry.fresh_until < entry.usable_until);
    }

    #[tokio::test(start_paused = true)]
    async fn an_aborted_timer_clears_the_flag() {
        let entry = entry();
        let timer = entry.arm_timer(&Handle::current()).unwrap();
        timer.abort();
        tokio::task::yield_now().await;
        assert!(!entry.is_fresh());
    }

    #[test]
    fn a_timer_whose_runtime_shuts_down_clears_the_flag() {
        let entry = entry();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        let _timer = runtime.block_on(async { entry.arm_timer(&Handle::current()) });
        assert!(entry.is_fresh(), "armed on a live runtime");
        drop(runtime);
        assert!(!entry.is_fresh(), "no timer can fire: the clock decides");
        // A runtime that has shut down drops the task inside `spawn`.
        let _entered = handle.enter();
        assert!(entry.arm_timer(&handle).is_some());
        assert!(!entry.is_fresh());
    }

    #[tokio::test(start_paused = true)]
    async fn exactly_one_caller_claims_a_due_refresh() {
        let entry = entry();
        let now = Instant::now();
        assert_eq!(entry.claim_refresh(now), None, "not due yet");
        let due = now + Duration::from_secs(3500);
        let claim = entry.claim_refresh(due).expect("due");
        assert_eq!(entry.claim_refresh(due), None);
        assert!(!entry.refresh_due(due + Duration::from_secs(60)));
        entry.release_refresh(claim);
        assert!(entry.refresh_due(due));
        entry.reschedule_refresh(due + Duration::from_secs(10));
        assert!(!entry.refresh_due(due));
    }
}
