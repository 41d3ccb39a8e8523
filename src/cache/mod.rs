//! The token cache: lazy, single-flight, refresh-ahead, backing off.
//!
//! A [`TokenCache`] is a cheap `Clone` handle; every clone shares one token,
//! so one cache can serve many service stacks. Building it fetches nothing
//! and needs no runtime: the first request that needs a token starts the
//! fetch.
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_bearer::{BearerAuthLayer, Token, TokenCache, source::StaticSource};
//!
//! let cache = TokenCache::builder(StaticSource::new(Token::bearer("t")))
//!     .expiry_margin(Duration::from_secs(60))
//!     .refresh_ahead(Duration::from_secs(600))
//!     .build();
//!
//! // Two stacks, one token.
//! let layer = BearerAuthLayer::with_cache(cache.clone());
//! let a = ServiceBuilder::new().layer(layer.clone()).service(tower::service_fn(|_req: http::Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! }));
//! let b = ServiceBuilder::new().layer(layer).service(tower::service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(()))
//! }));
//! # drop((a, b));
//! assert_eq!(cache.stats().fetches_started, 0); // lazy
//! ```
//!
//! # How it behaves
//!
//! For a token that lives `L` (from when its request was sent):
//!
//! - It is **usable** until `L - margin`, where the margin is
//!   [`expiry_margin`](TokenCacheBuilder::expiry_margin) clamped to a quarter
//!   of `L` (but at least one second, and never more than half of `L`). A 3 s
//!   token is usable for 2 s.
//! - It is **refreshed ahead** a window before its usable end: a share of the
//!   usable time ([`refresh_share`](TokenCacheBuilder::refresh_share), 5%,
//!   at most [`refresh_ahead`](TokenCacheBuilder::refresh_ahead)), moved
//!   earlier by a random [`refresh_jitter`](TokenCacheBuilder::refresh_jitter),
//!   plus twice the time fetches have been taking, so that the refresh and
//!   one retry finish before the usable end; never more than half the usable
//!   time. The first request past that point starts one background fetch and
//!   goes on with the still-valid token: no request waits while the token is
//!   usable.
//! - If that refresh fails and the backoff would let the token run out, one
//!   retry is brought forward to finish before it does.
//! - With no usable token, requests wait for the one fetch in flight (starting
//!   it if none runs). A dropped request does not cancel the fetch: it runs on
//!   its own task, and every waiter gets its result, success or failure.
//! - A token is **never handed out past its usable end**: a fetch that took
//!   longer than the token's usable life fails
//!   ([`TokenErrorKind::ExpiredOnArrival`](crate::TokenErrorKind::ExpiredOnArrival)).
//! - After a failure the cache **backs off** ([`Backoff`]): until the next
//!   attempt is due, requests with no usable token fail at once with the last
//!   error, and a still-usable token stays in use.
//! - Each fetch is bounded by [`fetch_timeout`](TokenCacheBuilder::fetch_timeout);
//!   a source that panics or hangs fails that fetch, never the cache. A fetch
//!   whose task cannot run at all is given up a second later, and its late
//!   result, if it ever comes, is dropped.
//! - No task runs while nothing is due, and a fetch in flight is aborted when
//!   the last handle is dropped.
//!
//! # The schedule, with the defaults
//!
//! With a provider that answers in 300 ms; the refresh point moves up to a
//! fifth of the share earlier at random, which the token counts include.
//!
//! | lifetime | margin | usable for | refresh from | tokens per hour |
//! |---|---|---|---|---|
//! | 3 s | 1 s | 2 s | 1.28–1.30 s | 2,770–2,810 |
//! | 1 min | 15 s | 45 s | 41.7–42.2 s | 85–86 |
//! | 5 min | 30 s | 4 min 30 s | 253.2–255.9 s | 14.1–14.2 |
//! | 1 h | 30 s | 59 min 30 s | 3355.2–3390.9 s | 1.06–1.07 |
//! | 24 h | 30 s | 23 h 59 min 30 s | 86009.4–86069.4 s | 0.042 |
//!
//! # Runtime
//!
//! The cache needs a tokio runtime with its time driver (`enable_time` or
//! `enable_all`, as `#[tokio::main]` and `#[tokio::test]` build) to bound its
//! fetches; on a runtime without one, tokio panics with a message saying so.
//! On a multi-thread runtime a fresh token costs a request one atomic load
//! and no clock read (see [`FreshnessCheck`]).

mod builder;
mod entry;
mod flight;
pub mod keyed;
mod policy;
mod reader;
mod registry;
mod stats;
mod telemetry;

use crate::binding::Bound;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::Instant;

pub use builder::{
    DEFAULT_FETCH_TIMEOUT, DEFAULT_INVALIDATION_COOLDOWN, FreshnessCheck, TokenCacheBuilder,
};
pub use keyed::DEFAULT_MAX_KEYS;
pub use policy::{
    Backoff, DEFAULT_EXPIRY_MARGIN, DEFAULT_LIFETIME, DEFAULT_REFRESH_AHEAD,
    DEFAULT_REFRESH_JITTER, DEFAULT_REFRESH_SHARE, MAX_LIFETIME,
};
pub use stats::Stats;

pub(crate) use entry::{Lease, TokenId};
pub(crate) use flight::Outcome;
// The fleet store judges stored tokens by the same rules.
#[cfg(feature = "redis")]
pub(crate) use policy::{default_lifetime, lifetime as token_lifetime, margin as clamped_margin};
pub(crate) use reader::Reader;

use builder::Config;
use entry::Entry;
use flight::{Flight, Reason, tell};
use policy::later;
use stats::{Counters, bump};
use telemetry::{Invalidation, Telemetry};

use crate::error::TokenError;
use crate::source::DynTokenSource;
use crate::token::Token;

/// How long past the fetch timeout a waiter gives up on a fetch whose task
/// does not run at all (its runtime is idle or gone).
const STALL_GRACE: Duration = Duration::from_secs(1);

/// The waiters of a flight the cache gave up on, to be told after the lock.
type Abandoned = Option<Vec<flight::Waiter>>;

/// A shared, lazily filled token cache. Cloning it is cheap and shares the
/// token.
#[derive(Clone)]
pub struct TokenCache {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    id: u64,
    // The hot path reads only this: one atomic load.
    current: ArcSwapOption<Entry>,
    state: Mutex<State>,
    source: Arc<dyn DynTokenSource>,
    config: Config,
    counters: Counters,
    telemetry: Telemetry,
    next_token: AtomicU64,
    // Set for a keyed cache: the other keys' caches.
    pub(crate) keys: Option<keyed::Keys>,
}

/// Everything that changes only under the lock.
#[derive(Default)]
struct State {
    flight: Option<Flight>,
    generations: u64,
    failure: Option<Failure>,
    last_rejection: Option<Instant>,
    fetch_estimate: Duration,
    // The current token's freshness timer.
    timer: Option<AbortHandle>,
}

struct Failure {
    error: TokenError,
    consecutive: u32,
    retry_at: Instant,
}

impl State {
    /// The failure whose backoff still runs at `now`: the one place that
    /// answers "backing off?".
    fn backing_off(&self, now: Instant) -> Option<&Failure> {
        self.failure.as_ref().filter(|f| now < f.retry_at)
    }

    fn stop_timer(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

/// What the cache can give a request right now.
pub(crate) enum Acquire {
    /// A usable token.
    Ready(Lease),
    /// A usable token bound to a key, and what each request adds for it.
    Bound(Arc<Bound>),
    /// Wait for the fetch in flight, until the deadline.
    Wait(oneshot::Receiver<Outcome>, Instant),
    /// No token, and no fetch may start now.
    Failed(TokenError),
}

impl TokenCache {
    /// A cache over `source` with every default.
    pub fn new(source: impl crate::TokenSource) -> Self {
        Self::builder(source).build()
    }

    /// A builder for a cache over `source`.
    pub fn builder(source: impl crate::TokenSource) -> TokenCacheBuilder {
        TokenCacheBuilder::new(source)
    }

    fn from_builder(builder: TokenCacheBuilder) -> Self {
        let keys = builder
            .keyed
            .map(|source| keyed::Keys::new(source, builder.config.clone(), builder.max_keys));
        let telemetry = Telemetry::new(
            builder.config.name.as_ref(),
            builder.source.kind_dyn(),
            builder.key.as_ref(),
            keys.is_some(),
        );
        let shared = Arc::new_cyclic(|weak| Shared {
            id: registry::register(weak.clone()),
            current: ArcSwapOption::empty(),
            state: Mutex::new(State::default()),
            source: builder.source,
            config: builder.config,
            counters: Counters::default(),
            telemetry,
            next_token: AtomicU64::new(1),
            keys,
        });
        TokenCache { shared }
    }

    /// A snapshot of the counters: for a keyed cache, of its default token
    /// (each key's are in its own cache, [`keys`](Self::keys)).
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Whether a usable token is cached now.
    pub fn has_usable_token(&self) -> bool {
        self.shared.usable(Instant::now()).is_some()
    }

    /// Throws the cached token away: the next request fetches a new one.
    pub fn invalidate(&self) {
        let removed = {
            let mut state = self.shared.lock();
            state.stop_timer();
            let removed = self.shared.current.swap(None).is_some();
            if removed {
                // Under the lock: a token published next must not be
                // reported as gone.
                self.shared.telemetry.invalidated(Invalidation::Requested);
            }
            removed
        };
        if removed {
            bump(&self.shared.counters.invalidations);
            tracing::debug!(reason = "requested", "token invalidated");
        }
    }

    /// Fetches a new token now, whatever the cached one's state and any
    /// backoff, and waits for it. Joins a fetch already in flight.
    ///
    /// Use it to warm the cache at start-up, or after rotating credentials.
    pub async fn refresh(&self) -> Result<(), TokenError> {
        let (joined, stalled) = {
            let mut state = self.shared.lock();
            let stalled = self.abandon_stalled(&mut state, Instant::now());
            let started = match state.flight {
                Some(_) => Ok(()),
                None => self.begin_flight(&mut state, Reason::Requested),
            };
            (started.map(|()| self.join(&mut state)), stalled)
        };
        self.tell_stalled(stalled);
        let (rx, deadline) = joined?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(outcome)) => outcome.map(drop),
            Ok(Err(_)) => Err(TokenError::cancelled()),
            Err(_) => {
                self.give_up_on_stalled();
                Err(TokenError::timeout(self.shared.config.fetch_timeout))
            }
        }
    }

    /// A usable token without a lock, or the way to get one.
    pub(crate) fn acquire(&self) -> Acquire {
        self.acquire_from(self.shared.current.load().as_deref())
    }

    /// Serves `entry`, the current token as the caller last saw it, if it is
    /// usable, starting its refresh if due; else the slow path decides.
    #[inline]
    fn acquire_from(&self, entry: Option<&Entry>) -> Acquire {
        if let Some(entry) = entry {
            // A live timer vouches that the refresh point has not come.
            if entry.is_fresh() {
                self.shared.served();
                return entry.serve();
            }
            let now = Instant::now();
            if entry.is_usable(now) {
                if entry.refresh_due(now) {
                    self.refresh_ahead(entry, now);
                }
                self.shared.served();
                return entry.serve();
            }
        }
        self.acquire_slow()
    }

    pub(crate) fn fetch_timeout(&self) -> Duration {
        self.shared.config.fetch_timeout
    }

    /// Called by a waiter whose deadline passed.
    pub(crate) fn give_up_on_stalled(&self) {
        let stalled = {
            let mut state = self.shared.lock();
            self.abandon_stalled(&mut state, Instant::now())
        };
        self.tell_stalled(stalled);
    }

    /// Past the refresh point: the request that claims the refresh starts
    /// one background fetch; every request goes on with the usable token.
    fn refresh_ahead(&self, entry: &Entry, now: Instant) {
        let Some(claim) = entry.claim_refresh(now) else {
            return;
        };
        let mut state = self.shared.lock();
        if !self.shared.is_current(entry.id) {
            // A newer token arrived meanwhile: nothing to refresh.
            return;
        }
        let stalled = self.abandon_stalled(&mut state, now);
        if state.flight.is_none() {
            match self.begin_flight(&mut state, Reason::RefreshAhead) {
                Ok(()) => bump(&self.shared.counters.refreshes_ahead),
                // No runtime to run it on: let a later request try.
                Err(_) => entry.release_refresh(claim),
            }
        }
        drop(state);
        self.tell_stalled(stalled);
    }

    fn acquire_slow(&self) -> Acquire {
        let shared = &self.shared;
        let mut state = shared.lock();
        // Read after the lock: waiting for it must not make a token look
        // usable longer than it is.
        let now = Instant::now();
        // A fetch may have finished since the lock-free look.
        if let Some(entry) = shared.usable(now) {
            shared.served();
            return entry.serve();
        }
        let stalled = self.abandon_stalled(&mut state, now);
        let acquired = self.wait_or_fail(&mut state, now);
        drop(state);
        self.tell_stalled(stalled);
        acquired
    }

    fn wait_or_fail(&self, state: &mut State, now: Instant) -> Acquire {
        let counters = &self.shared.counters;
        if state.flight.is_none() {
            if let Some(failure) = state.backing_off(now) {
                bump(&counters.failed_fast);
                self.shared.telemetry.failed_fast();
                return Acquire::Failed(failure.error.while_backing_off(failure.retry_at - now));
            }
            if let Err(error) = self.begin_flight(state, Reason::NoUsableToken) {
                return Acquire::Failed(error);
            }
        }
        bump(&counters.waited_for_fetch);
        self.shared.telemetry.waited();
        let (rx, deadline) = self.join(state);
        Acquire::Wait(rx, deadline)
    }

    /// Starts the one fetch, under a new generation.
    fn begin_flight(&self, state: &mut State, reason: Reason) -> Result<(), TokenError> {
        debug_assert!(state.flight.is_none());
        // Before the fetch's task exists: its outcome and the token it
        // brings are counted by handles resolved here, on the caller's side.
        self.shared.telemetry.resolve();
        state.generations += 1;
        let flight = Flight::start(&self.shared, state.generations, reason)?;
        bump(&self.shared.counters.fetches_started);
        state.flight = Some(flight);
        Ok(())
    }

    /// Adds a waiter to the flight in progress.
    fn join(&self, state: &mut State) -> (oneshot::Receiver<Outcome>, Instant) {
        state
            .flight
            .as_mut()
            .expect("a flight runs: checked or started by the caller")
            .join(self.patience(), self.shared.telemetry.stamp())
    }

    fn patience(&self) -> Duration {
        self.shared.config.fetch_timeout + STALL_GRACE
    }

    /// Gives up on a flight whose task has not reported well past the fetch
    /// timeout: its runtime is idle or gone. Returns its waiters, to be told
    /// once the lock is released.
    fn abandon_stalled(&self, state: &mut State, now: Instant) -> Abandoned {
        match &state.flight {
            Some(flight) if flight.is_stalled(now, self.patience()) => {
                // A refresh claimed while this flight ran counted on it: the
                // next request may claim it again.
                if let Some(entry) = self.shared.current.load_full() {
                    entry.unclaim(now);
                }
                let flight = state.flight.take()?;
                let error = Err(TokenError::timeout(self.shared.config.fetch_timeout));
                let took = now.saturating_duration_since(flight.started);
                self.shared
                    .telemetry
                    .fetch_finished(flight.reason, &error, took);
                Some(flight.abandon())
            }
            _ => None,
        }
    }

    /// Tells the waiters of an abandoned flight, once the lock is released.
    fn tell_stalled(&self, abandoned: Abandoned) {
        if let Some(waiters) = abandoned {
            tracing::warn!("token fetch task did not finish within the fetch timeout; abandoned");
            let outcome = Err(TokenError::timeout(self.fetch_timeout()));
            tell(waiters, &outcome, &self.shared.telemetry);
        }
    }

    /// Called when the API rejected the token `id`: throws it away only if it
    /// is still the current one, and starts the one fetch that replaces it.
    fn invalidate_if_current(&self, id: TokenId, reason: &'static str) {
        let shared = &self.shared;
        if !shared.is_current(id) {
            // A newer token is already in place: keep it.
            return;
        }
        let now = Instant::now();
        let invalidated = {
            // Fetches publish under this lock, so the check and the removal
            // below cannot straddle a new token's arrival.
            let mut state = shared.lock();
            if !shared.is_current(id) {
                return;
            }
            let cooling_down = state.last_rejection.is_some_and(|last| {
                now.saturating_duration_since(last) < shared.config.invalidation_cooldown
            });
            if cooling_down {
                // Fresh tokens rejected again and again point at
                // configuration (audience, scope), not at a stale token:
                // do not hammer the provider with a fetch per rejection.
                false
            } else {
                shared.current.store(None);
                shared.telemetry.invalidated(Invalidation::Rejected);
                state.stop_timer();
                state.last_rejection = Some(now);
                if state.flight.is_none() && state.backing_off(now).is_none() {
                    let _ = self.begin_flight(&mut state, Reason::Rejected);
                }
                true
            }
        };
        if invalidated {
            bump(&shared.counters.invalidations);
            tracing::info!(reason, "token rejected by the API; invalidated");
        } else {
            tracing::debug!(reason, "token rejected again within the cooldown; kept");
        }
    }
}

/// What a completed fetch did, for the log line written after the lock.
enum Landing {
    Fetched {
        usable_for: Duration,
    },
    Failed {
        error: TokenError,
        consecutive: u32,
        backoff: Duration,
        kept_usable_token: bool,
    },
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every await-free step, so a panic
        // elsewhere while holding the lock does not poison the cache.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a request served a cached token: the hot path.
    #[inline]
    fn served(&self) {
        self.counters.served_from_cache.bump();
        self.telemetry.served();
    }

    fn is_current(&self, id: TokenId) -> bool {
        self.current.load().as_ref().is_some_and(|e| e.id == id)
    }

    fn usable(&self, now: Instant) -> Option<Arc<Entry>> {
        self.current.load_full().filter(|e| e.is_usable(now))
    }

    /// A fetch of generation `generation` finished. Only the current flight
    /// may land: a flight the cache gave up on changes nothing.
    fn complete(
        &self,
        generation: u64,
        started: Instant,
        reason: Reason,
        result: Result<Token, TokenError>,
    ) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(started);
        let mut state = self.lock();
        let Some(flight) = state
            .flight
            .take_if(|flight| flight.generation == generation)
        else {
            drop(state);
            tracing::debug!("a token fetch the cache had given up on finished; ignored");
            return;
        };
        state.fetch_estimate = policy::fetch_estimate(state.fetch_estimate, elapsed);
        let outcome = result.and_then(|token| self.entry_for(&token, started, now, &state));
        self.telemetry.fetch_finished(reason, &outcome, elapsed);
        let landing = match &outcome {
            Ok(entry) => {
                state.failure = None;
                self.publish(&mut state, entry, now);
                Landing::Fetched {
                    usable_for: entry.usable_until.saturating_duration_since(now),
                }
            }
            Err(error) => self.record_failure(&mut state, error, now),
        };
        drop(state);

        let reason = reason.as_str();
        let duration_ms = elapsed.as_millis() as u64;
        match landing {
            Landing::Fetched { usable_for } => tracing::info!(
                reason,
                duration_ms,
                usable_for_s = usable_for.as_secs(),
                "token fetched"
            ),
            Landing::Failed {
                error,
                consecutive,
                backoff,
                kept_usable_token,
            } => {
                bump(&self.counters.fetches_failed);
                tracing::warn!(
                    reason,
                    duration_ms,
                    // With its causes: a transport failure's why is in them.
                    error = %crate::error::Chain(&error),
                    transient = error.is_transient(),
                    consecutive,
                    backoff_ms = backoff.as_millis() as u64,
                    kept_usable_token,
                    "token fetch failed; backing off"
                );
            }
        }
        tell(flight.land(), &outcome, &self.telemetry);
    }

    /// The cache entry for a fetched token, or why it cannot be used.
    fn entry_for(
        &self,
        token: &Token,
        started: Instant,
        now: Instant,
        state: &State,
    ) -> Result<Arc<Entry>, TokenError> {
        let header = token.header_value().ok_or_else(TokenError::invalid_token)?;
        let timing = &self.config.timing;
        let lifetime = timing.lifetime(token.lifetime());
        let schedule = timing.schedule(lifetime, state.fetch_estimate, fastrand::f64());
        let id = TokenId {
            cache: self.id,
            token: self.next_token.fetch_add(1, Ordering::Relaxed),
        };
        let bound = token.binding(&header, id);
        let entry = Entry::new(id, header, bound, started, &schedule);
        if !entry.is_usable(now) {
            return Err(TokenError::expired_on_arrival(
                lifetime,
                now.saturating_duration_since(started),
            ));
        }
        Ok(Arc::new(entry))
    }

    /// Makes `entry` the current token and arms its freshness timer.
    fn publish(&self, state: &mut State, entry: &Arc<Entry>, now: Instant) {
        let replaced = self.current.swap(Some(Arc::clone(entry)));
        self.telemetry
            .token_published(now, entry, replaced.as_deref());
        state.stop_timer();
        state.timer = self.freshness_timer(entry);
    }

    fn freshness_timer(&self, entry: &Arc<Entry>) -> Option<AbortHandle> {
        let runtime = Handle::try_current().ok()?;
        let trusted = match self.config.freshness {
            FreshnessCheck::Timer => true,
            FreshnessCheck::Clock => false,
            FreshnessCheck::Auto => runtime.runtime_flavor() == RuntimeFlavor::MultiThread,
        };
        if trusted {
            entry.arm_timer(&runtime)
        } else {
            None
        }
    }

    /// Records a failed fetch: the backoff, and when a still-usable token is
    /// kept, when its refresh is retried.
    fn record_failure(&self, state: &mut State, error: &TokenError, now: Instant) -> Landing {
        let consecutive = state.failure.as_ref().map_or(0, |f| f.consecutive) + 1;
        let class = error.class();
        let backoff = self.config.backoff.delay(consecutive, class);
        let kept = self.usable(now);
        if let Some(entry) = &kept {
            let until_unusable = entry.usable_until.saturating_duration_since(now);
            let retry = policy::refresh_retry(
                backoff,
                consecutive,
                class,
                until_unusable,
                state.fetch_estimate,
            );
            let at = later(now, retry);
            entry.reschedule_refresh(at);
            self.telemetry.refresh_rescheduled(at, now);
        }
        state.failure = Some(Failure {
            error: error.clone(),
            consecutive,
            retry_at: later(now, backoff),
        });
        Landing::Failed {
            error: error.clone(),
            consecutive,
            backoff,
            kept_usable_token: kept.is_some(),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        registry::unregister(self.id);
        self.telemetry.dropped();
        // Nothing runs after the last handle is gone.
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(flight) = &state.flight {
            flight.abort();
        }
        state.stop_timer();
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("TokenCache");
        out.field("source", &self.shared.source.kind_dyn())
            .field("has_usable_token", &self.has_usable_token())
            .field("stats", &self.stats());
        if let Some(keys) = &self.shared.keys {
            out.field("keys", keys);
        }
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::StaticSource;

    fn token(lifetime: u64) -> StaticSource {
        StaticSource::new(Token::bearer("t").with_lifetime(Duration::from_secs(lifetime)))
    }

    fn current(cache: &TokenCache) -> Arc<Entry> {
        cache.shared.current.load_full().expect("a token is cached")
    }

    /// A refresh claimed while another flight ran counted on that flight;
    /// when the cache gives up on it, the claim must come back, or the
    /// token is never refreshed ahead again and requests wait at its end.
    #[tokio::test(start_paused = true)]
    async fn a_refresh_claim_comes_back_when_the_flight_it_counted_on_is_abandoned() {
        let cache = TokenCache::builder(token(8))
            .refresh_share(0.5)
            .freshness_check(FreshnessCheck::Clock)
            .build();
        cache.refresh().await.unwrap();
        let entry = current(&cache);
        let now = Instant::now();
        {
            let mut state = cache.shared.lock();
            cache.begin_flight(&mut state, Reason::Requested).unwrap();
        }
        // Past the refresh point (3 s): claimed, while the flight runs.
        let due = now + Duration::from_millis(3100);
        assert!(entry.claim_refresh(due).is_some());
        assert!(!entry.refresh_due(due));
        // The flight's task never reports; the cache gives up on it.
        let abandoned = {
            let mut state = cache.shared.lock();
            cache.abandon_stalled(&mut state, now + Duration::from_secs(40))
        };
        assert!(abandoned.is_some());
        assert!(entry.refresh_due(due + Duration::from_secs(40)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unclaimed_schedule_is_left_alone_when_a_flight_is_abandoned() {
        let cache = TokenCache::builder(token(3600)).build();
        cache.refresh().await.unwrap();
        let entry = current(&cache);
        let now = Instant::now();
        {
            let mut state = cache.shared.lock();
            cache.begin_flight(&mut state, Reason::Requested).unwrap();
            assert!(
                cache
                    .abandon_stalled(&mut state, now + Duration::from_secs(40))
                    .is_some()
            );
        }
        assert!(
            !entry.refresh_due(now + Duration::from_secs(40)),
            "not pulled forward"
        );
    }

    /// A current-thread runtime runs its timers only while something blocks
    /// on it, and polls that future first: there the clock decides.
    #[tokio::test(flavor = "current_thread")]
    async fn auto_trusts_a_timer_on_a_multi_thread_runtime_only() {
        let cache = TokenCache::new(token(3600));
        cache.refresh().await.unwrap();
        assert!(!current(&cache).is_fresh());
        assert!(cache.shared.lock().timer.is_none());

        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cache = TokenCache::new(token(3600));
        let warmed = cache.clone();
        multi
            .spawn(async move { warmed.refresh().await })
            .await
            .unwrap()
            .unwrap();
        assert!(current(&cache).is_fresh());
        multi.shutdown_background();
    }
}
