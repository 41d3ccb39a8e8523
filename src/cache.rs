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
//! - It is **refreshed ahead** from `usable - window - jitter`, where the window
//!   is [`refresh_ahead`](TokenCacheBuilder::refresh_ahead) clamped to half the
//!   usable time and the jitter a random part of the window
//!   ([`refresh_jitter`](TokenCacheBuilder::refresh_jitter)). The first request
//!   past that point starts one background fetch and goes on with the
//!   still-valid token: no request waits while the token is usable.
//! - With no usable token, requests wait for the one fetch in flight (starting
//!   it if none runs). A dropped request does not cancel the fetch: it runs on
//!   its own task, and every waiter gets its result, success or failure.
//! - After a failure the cache **backs off** ([`Backoff`]): until the next
//!   attempt is due, requests with no usable token fail at once with the last
//!   error, and a still-usable token stays in use.
//! - Each fetch is bounded by [`fetch_timeout`](TokenCacheBuilder::fetch_timeout);
//!   a source that panics or hangs fails that fetch, never the cache.
//! - No task runs while nothing is due, and a fetch in flight is aborted when
//!   the last handle is dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::error::{ErrorClass, TokenError};
use crate::source::{DynTokenSource, TokenSource};
use crate::token::Token;

/// Default for [`TokenCacheBuilder::expiry_margin`]: 30 seconds.
pub const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Default for [`TokenCacheBuilder::refresh_ahead`]: 5 minutes.
pub const DEFAULT_REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// Default for [`TokenCacheBuilder::refresh_jitter`]: 20% of the window.
pub const DEFAULT_REFRESH_JITTER: f64 = 0.2;
/// Default for [`TokenCacheBuilder::default_lifetime`]: 5 minutes.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Default for [`TokenCacheBuilder::fetch_timeout`]: 30 seconds.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`TokenCacheBuilder::invalidation_cooldown`]: 5 seconds.
pub const DEFAULT_INVALIDATION_COOLDOWN: Duration = Duration::from_secs(5);
/// Lifetimes above this (about a year) are treated as this long.
pub const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// How the cache backs off after failed fetches.
///
/// After the `n`th failure in a row, the next fetch may start after
/// `initial * multiplier^(n-1)`, capped at `max`, less a random part
/// (`jitter`, a fraction) so that a fleet does not retry in step. A permanent
/// failure (see [`ErrorClass`]) waits the full `max`. A `Retry-After` from the
/// provider is honoured, up to `max_retry_after`.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    /// The first delay. Defaults to 1 second.
    pub initial: Duration,
    /// The cap. Defaults to 60 seconds.
    pub max: Duration,
    /// Growth per failure. Defaults to 2.
    pub multiplier: f64,
    /// The fraction of each delay that is random, 0 to 1. Defaults to 0.2.
    pub jitter: f64,
    /// The longest `Retry-After` honoured. Defaults to 5 minutes.
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// No backoff: every request after a failure may start a new fetch.
    /// (Still one fetch at a time.)
    pub fn none() -> Self {
        Self {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 1.0,
            jitter: 0.0,
            max_retry_after: Duration::ZERO,
        }
    }

    /// The delay before the next attempt after `failures` failures in a row.
    ///
    /// Never panics: a multiplier or jitter that is not a finite number is
    /// ignored, and every delay is capped at [`MAX_LIFETIME`].
    pub fn delay(&self, failures: u32, class: ErrorClass) -> Duration {
        let max = self.max.min(MAX_LIFETIME);
        let base = match class {
            ErrorClass::Permanent => max,
            ErrorClass::Transient { .. } => {
                let multiplier = if self.multiplier.is_finite() {
                    self.multiplier.max(1.0)
                } else {
                    1.0
                };
                let exponent = failures.saturating_sub(1).min(64) as i32;
                scaled(self.initial, multiplier.powi(exponent)).min(max)
            }
        };
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let delay = scaled(base, 1.0 - jitter * fastrand::f64());
        match class {
            ErrorClass::Transient {
                retry_after: Some(after),
            } => delay.max(after.min(self.max_retry_after).min(MAX_LIFETIME)),
            _ => delay,
        }
    }
}

/// `duration * factor` without panicking: a NaN or negative factor gives
/// zero, an overflow gives [`MAX_LIFETIME`].
fn scaled(duration: Duration, factor: f64) -> Duration {
    if factor.is_nan() || factor <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor)
        .unwrap_or(MAX_LIFETIME)
        .min(MAX_LIFETIME)
}

/// `at + duration`, saturating instead of panicking.
fn later(at: Instant, duration: Duration) -> Instant {
    at.checked_add(duration.min(MAX_LIFETIME)).unwrap_or(at)
}

/// Counters of what the cache did, for metrics.
///
/// Each is a monotonic count since the cache was built; export them as
/// counters (`rate()` them in Prometheus).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls made to the token source.
    pub fetches_started: u64,
    /// Calls to the token source that failed (error, timeout, panic, invalid token).
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
}

#[derive(Default)]
struct Counters {
    fetches_started: AtomicU64,
    fetches_failed: AtomicU64,
    refreshes_ahead: AtomicU64,
    // Bumped on every request: striped so that cores do not fight over one
    // cache line.
    served_from_cache: StripedCounter,
    waited_for_fetch: AtomicU64,
    failed_fast: AtomicU64,
    invalidations: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

const STRIPES: usize = 8;

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// A counter split over cache lines, one per group of threads.
#[derive(Default)]
struct StripedCounter([Padded; STRIPES]);

impl StripedCounter {
    fn bump(&self) {
        static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        }
        let stripe = STRIPE.try_with(|s| *s).unwrap_or(0);
        self.0[stripe].0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

#[derive(Clone, Debug)]
struct Config {
    expiry_margin: Duration,
    refresh_ahead: Duration,
    refresh_jitter: f64,
    default_lifetime: Duration,
    fetch_timeout: Duration,
    backoff: Backoff,
    invalidation_cooldown: Duration,
}

/// Builds a [`TokenCache`]. Every setting has a documented default.
pub struct TokenCacheBuilder {
    source: Arc<dyn DynTokenSource>,
    config: Config,
}

impl TokenCacheBuilder {
    /// How long before a token expires it stops being used. Clamped for
    /// short lifetimes (see the [module docs](self)).
    ///
    /// Defaults to [`DEFAULT_EXPIRY_MARGIN`] (30 s). It covers clock skew,
    /// the request's time in flight, and providers that stamp expiry in whole
    /// seconds.
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.config.expiry_margin = margin;
        self
    }

    /// How long before a token stops being usable a background refresh
    /// starts, at the latest. Clamped to half the usable lifetime; the
    /// jitter ([`refresh_jitter`](Self::refresh_jitter)) moves the start
    /// earlier by a random part of this window. `Duration::ZERO` turns
    /// refresh-ahead off.
    ///
    /// Defaults to [`DEFAULT_REFRESH_AHEAD`] (5 minutes).
    pub fn refresh_ahead(mut self, window: Duration) -> Self {
        self.config.refresh_ahead = window;
        self
    }

    /// How much earlier than the window a refresh may start, as a random
    /// fraction (0 to 1) of the window, so that a fleet of processes does not
    /// refresh in step. A value that is not a number keeps the default.
    ///
    /// Defaults to [`DEFAULT_REFRESH_JITTER`] (0.2).
    pub fn refresh_jitter(mut self, fraction: f64) -> Self {
        self.config.refresh_jitter = if fraction.is_nan() {
            DEFAULT_REFRESH_JITTER
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// The lifetime of a token whose source did not say how long it lives
    /// (or said zero).
    ///
    /// Defaults to [`DEFAULT_LIFETIME`] (5 minutes): an unknown lifetime is
    /// renewed often, and a token that dies sooner is dropped on its first
    /// 401.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.default_lifetime = lifetime;
        self
    }

    /// How long one fetch may take, whatever the source. Requests waiting
    /// for a fetch give up a second after this, even if the fetch's task
    /// cannot run (its runtime stopped).
    ///
    /// Defaults to [`DEFAULT_FETCH_TIMEOUT`] (30 seconds).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config.fetch_timeout = timeout.min(MAX_LIFETIME);
        self
    }

    /// After a token is thrown away because the API rejected it, how long
    /// further rejections are not acted on: if fresh tokens are rejected too,
    /// the cause is configuration (audience, scope), and refetching on every
    /// 401 would only flood the provider.
    ///
    /// Defaults to [`DEFAULT_INVALIDATION_COOLDOWN`] (5 seconds).
    pub fn invalidation_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.invalidation_cooldown = cooldown;
        self
    }

    /// How to back off after failures. Defaults to [`Backoff::default`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Builds the cache. Fetches nothing.
    pub fn build(self) -> TokenCache {
        let id = NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            id,
            current: ArcSwapOption::empty(),
            state: Mutex::new(State::default()),
            source: self.source,
            config: self.config,
            counters: Counters::default(),
            next_id: AtomicU64::new(1),
        });
        registry().insert(id, Arc::downgrade(&shared));
        TokenCache { shared }
    }
}

impl fmt::Debug for TokenCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("source", &self.source.kind_dyn())
            .field("config", &self.config)
            .finish()
    }
}

/// How long past the fetch timeout a waiter gives up on a fetch whose task
/// does not run at all (its runtime is idle or gone).
const STALL_GRACE: Duration = Duration::from_secs(1);

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// Every live cache by id, so that a response future can report a 401
/// without holding a handle: cloning one per request would make every core
/// write the same reference count.
static REGISTRY: Mutex<BTreeMap<u64, Weak<Shared>>> = Mutex::new(BTreeMap::new());

fn registry() -> MutexGuard<'static, BTreeMap<u64, Weak<Shared>>> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A shared, lazily filled token cache. Cloning it is cheap and shares the
/// token.
#[derive(Clone)]
pub struct TokenCache {
    shared: Arc<Shared>,
}

struct Shared {
    id: u64,
    // The hot path reads only this: one atomic load.
    current: ArcSwapOption<Entry>,
    state: Mutex<State>,
    source: Arc<dyn DynTokenSource>,
    config: Config,
    counters: Counters,
    next_id: AtomicU64,
}

#[derive(Default)]
struct State {
    flight: Option<Flight>,
    failure: Option<Failure>,
    last_rejection: Option<Instant>,
}

struct Flight {
    waiters: Vec<oneshot::Sender<Outcome>>,
    task: AbortHandle,
    started: Instant,
}

struct Failure {
    error: TokenError,
    consecutive: u32,
    retry_at: Instant,
}

pub(crate) type Outcome = Result<Arc<Entry>, TokenError>;

/// A cached token, ready to attach.
pub(crate) struct Entry {
    id: TokenId,
    header: HeaderValue,
    obtained_at: Instant,
    refresh_at: Instant,
    usable_until: Instant,
    // Nanoseconds after `obtained_at` when the next background refresh may
    // start; `u64::MAX` while one runs. Lets the refresh window be handled
    // with atomics instead of the state lock.
    next_refresh: AtomicU64,
}

impl Entry {
    pub(crate) fn lease(&self) -> Lease {
        Lease {
            header: self.header.clone(),
            id: self.id,
        }
    }

    fn offset_of(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.obtained_at).as_nanos())
            .unwrap_or(u64::MAX - 1)
    }
}

/// Identifies one cached token of one cache, so that a 401 invalidates only
/// the token that request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TokenId {
    cache: u64,
    token: u64,
}

impl TokenId {
    /// The API rejected this token: tell its cache, if it is still alive.
    pub(crate) fn reject(self, reason: &'static str) {
        let shared = registry().get(&self.cache).and_then(Weak::upgrade);
        if let Some(shared) = shared {
            TokenCache { shared }.invalidate_if_current(self, reason);
        }
    }
}

/// A usable token's header value and identity.
pub(crate) struct Lease {
    pub(crate) header: HeaderValue,
    pub(crate) id: TokenId,
}

/// What the cache can give a request right now.
pub(crate) enum Acquire {
    /// A usable token.
    Ready(Lease),
    /// Wait for the fetch in flight, until the deadline.
    Wait(oneshot::Receiver<Outcome>, Instant),
    /// No token, and no fetch may start now.
    Failed(TokenError),
}

impl Drop for Shared {
    fn drop(&mut self) {
        registry().remove(&self.id);
        // Nothing runs after the last handle is gone.
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(flight) = &state.flight {
            flight.task.abort();
        }
    }
}

impl TokenCache {
    /// A cache over `source` with every default.
    pub fn new(source: impl TokenSource) -> Self {
        Self::builder(source).build()
    }

    /// A builder for a cache over `source`.
    pub fn builder(source: impl TokenSource) -> TokenCacheBuilder {
        TokenCacheBuilder {
            source: Arc::new(source),
            config: Config {
                expiry_margin: DEFAULT_EXPIRY_MARGIN,
                refresh_ahead: DEFAULT_REFRESH_AHEAD,
                refresh_jitter: DEFAULT_REFRESH_JITTER,
                default_lifetime: DEFAULT_LIFETIME,
                fetch_timeout: DEFAULT_FETCH_TIMEOUT,
                backoff: Backoff::default(),
                invalidation_cooldown: DEFAULT_INVALIDATION_COOLDOWN,
            },
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            fetches_started: get(&c.fetches_started),
            fetches_failed: get(&c.fetches_failed),
            refreshes_ahead: get(&c.refreshes_ahead),
            served_from_cache: c.served_from_cache.get(),
            waited_for_fetch: get(&c.waited_for_fetch),
            failed_fast: get(&c.failed_fast),
            invalidations: get(&c.invalidations),
        }
    }

    /// Whether a usable token is cached now.
    pub fn has_usable_token(&self) -> bool {
        self.shared
            .current
            .load()
            .as_ref()
            .is_some_and(|e| Instant::now() < e.usable_until)
    }

    /// Throws the cached token away: the next request fetches a new one.
    pub fn invalidate(&self) {
        let removed = {
            let _state = self.shared.lock();
            self.shared.current.swap(None).is_some()
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
        let (rx, deadline) = {
            let mut state = self.shared.lock();
            self.reap_stalled(&mut state, Instant::now());
            if state.flight.is_none() {
                self.start_flight(&mut state, "requested")?;
            }
            self.join_flight(&mut state)
        };
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(outcome)) => outcome.map(drop),
            Ok(Err(_)) => Err(TokenError::cancelled()),
            Err(_) => {
                self.reap_stalled_now();
                Err(TokenError::timeout(self.shared.config.fetch_timeout))
            }
        }
    }

    /// The hot path: a usable token without a lock, or the way to get one.
    pub(crate) fn acquire(&self) -> Acquire {
        let now = Instant::now();
        if let Some(entry) = &*self.shared.current.load() {
            if now < entry.refresh_at {
                self.shared.counters.served_from_cache.bump();
                return Acquire::Ready(entry.lease());
            }
            if now < entry.usable_until {
                self.maybe_refresh_ahead(entry, now);
                self.shared.counters.served_from_cache.bump();
                return Acquire::Ready(entry.lease());
            }
        }
        self.acquire_slow(now)
    }

    fn maybe_refresh_ahead(&self, entry: &Entry, now: Instant) {
        let due = entry.next_refresh.load(Ordering::Acquire);
        if entry.offset_of(now) < due {
            return;
        }
        // Exactly one request claims the refresh.
        if entry
            .next_refresh
            .compare_exchange(due, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let mut state = self.shared.lock();
        let still_current = self
            .shared
            .current
            .load()
            .as_ref()
            .is_some_and(|c| c.id == entry.id);
        if !still_current {
            // A newer token arrived meanwhile: nothing to refresh.
            return;
        }
        if let Some(failure) = &state.failure
            && now < failure.retry_at
        {
            // A refresh just failed: wait out its backoff.
            entry
                .next_refresh
                .store(entry.offset_of(failure.retry_at), Ordering::Release);
            return;
        }
        let stalled = self.reap_stalled(&mut state, now);
        if state.flight.is_none() {
            if self.start_flight(&mut state, "refresh-ahead").is_ok() {
                bump(&self.shared.counters.refreshes_ahead);
            } else {
                // No runtime to run it on: let a later request try.
                entry.next_refresh.store(due, Ordering::Release);
            }
        }
        drop(state);
        fail_stalled(stalled, self.shared.config.fetch_timeout);
    }

    fn acquire_slow(&self, now: Instant) -> Acquire {
        let shared = &self.shared;
        let mut state = shared.lock();
        // A fetch may have finished since the lock-free look.
        if let Some(entry) = &*shared.current.load()
            && now < entry.usable_until
        {
            shared.counters.served_from_cache.bump();
            return Acquire::Ready(entry.lease());
        }
        let stalled = self.reap_stalled(&mut state, now);
        let acquired = self.wait_or_fail(&mut state, now);
        drop(state);
        fail_stalled(stalled, shared.config.fetch_timeout);
        acquired
    }

    fn wait_or_fail(&self, state: &mut State, now: Instant) -> Acquire {
        let shared = &self.shared;
        if state.flight.is_none() {
            if let Some(failure) = &state.failure
                && now < failure.retry_at
            {
                bump(&shared.counters.failed_fast);
                return Acquire::Failed(failure.error.while_backing_off(failure.retry_at - now));
            }
            if let Err(error) = self.start_flight(state, "no usable token") {
                return Acquire::Failed(error);
            }
        }
        bump(&shared.counters.waited_for_fetch);
        let (rx, deadline) = self.join_flight(state);
        Acquire::Wait(rx, deadline)
    }

    /// Adds a waiter to the flight in progress.
    fn join_flight(&self, state: &mut State) -> (oneshot::Receiver<Outcome>, Instant) {
        let (tx, rx) = oneshot::channel();
        let flight = state
            .flight
            .as_mut()
            .expect("a flight runs: checked or started by the caller");
        flight.waiters.push(tx);
        let deadline = later(
            flight.started,
            self.shared.config.fetch_timeout + STALL_GRACE,
        );
        (rx, deadline)
    }

    /// Drops a flight whose task has not finished well past the fetch
    /// timeout: its runtime is idle or gone. Returns its waiters, to be told
    /// once the lock is released.
    fn reap_stalled(&self, state: &mut State, now: Instant) -> Vec<oneshot::Sender<Outcome>> {
        let deadline = self.shared.config.fetch_timeout + STALL_GRACE;
        match &state.flight {
            Some(flight) if now >= later(flight.started, deadline) => {
                let flight = state.flight.take().expect("matched above");
                flight.task.abort();
                tracing::warn!(
                    "token fetch task did not finish within the fetch timeout; abandoned"
                );
                flight.waiters
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn fetch_timeout(&self) -> Duration {
        self.shared.config.fetch_timeout
    }

    /// Called by a waiter whose deadline passed.
    pub(crate) fn reap_stalled_now(&self) {
        let stalled = {
            let mut state = self.shared.lock();
            self.reap_stalled(&mut state, Instant::now())
        };
        fail_stalled(stalled, self.shared.config.fetch_timeout);
    }

    /// Called when the API rejected the token `id`: throws it away only if it
    /// is still the current one, and starts the one fetch that replaces it.
    fn invalidate_if_current(&self, id: TokenId, reason: &'static str) {
        let shared = &self.shared;
        let is_current =
            |shared: &Shared| shared.current.load().as_ref().is_some_and(|e| e.id == id);
        if !is_current(shared) {
            // A newer token is already in place: keep it.
            return;
        }
        let now = Instant::now();
        let invalidated = {
            // Fetches publish under this lock, so the check and the removal
            // below cannot straddle a new token's arrival.
            let mut state = shared.lock();
            if !is_current(shared) {
                return;
            }
            match state.last_rejection {
                Some(last)
                    if now.saturating_duration_since(last)
                        < shared.config.invalidation_cooldown =>
                {
                    // Fresh tokens rejected again and again point at
                    // configuration (audience, scope), not at a stale token:
                    // do not hammer the provider with a fetch per rejection.
                    false
                }
                _ => {
                    shared.current.store(None);
                    state.last_rejection = Some(now);
                    let backing_off = state.failure.as_ref().is_some_and(|f| now < f.retry_at);
                    if state.flight.is_none() && !backing_off {
                        let _ = self.start_flight(&mut state, reason);
                    }
                    true
                }
            }
        };
        if invalidated {
            bump(&shared.counters.invalidations);
            tracing::info!(reason, "token rejected by the API; invalidated");
        } else {
            tracing::debug!(reason, "token rejected again within the cooldown; kept");
        }
    }

    /// Starts the one fetch, on its own task so that no caller can cancel it.
    fn start_flight(&self, state: &mut State, reason: &'static str) -> Result<(), TokenError> {
        debug_assert!(state.flight.is_none());
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TokenError::no_runtime())?;
        let source = Arc::clone(&self.shared.source);
        let timeout = self.shared.config.fetch_timeout;
        let span = tracing::info_span!(
            "token_fetch",
            source = source.kind_dyn(),
            reason,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let spawn_state = Arc::new(AtomicU8::new(SPAWNING));
        let guard = FlightGuard {
            shared: Arc::downgrade(&self.shared),
            started,
            reason,
            span: span.clone(),
            spawn_state: Arc::clone(&spawn_state),
            done: false,
        };
        let fetch = async move { source.fetch_dyn().await };
        let Some(fetch) = with_timers(|| tokio::time::timeout(timeout, fetch)) else {
            drop(guard_disarmed(guard));
            return Err(TokenError::no_timers());
        };
        let task = runtime.spawn(tracing::Instrument::instrument(
            async move {
                let mut guard = guard;
                let result = match fetch.await {
                    Ok(Ok(token)) => Ok(token),
                    Ok(Err(error)) => Err(TokenError::source_failed(error)),
                    Err(_) => Err(TokenError::timeout(timeout)),
                };
                guard.finish(result);
            },
            span.clone(),
        ));
        if spawn_state
            .compare_exchange(SPAWNING, SPAWNED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // The runtime is shutting down and dropped the task at once.
            return Err(TokenError::cancelled());
        }
        bump(&self.shared.counters.fetches_started);
        tracing::debug!(parent: &span, "token fetch started");
        state.flight = Some(Flight {
            waiters: Vec::new(),
            task: task.abort_handle(),
            started,
        });
        Ok(())
    }
}

/// Runs `make`, which creates a tokio timer, or returns `None` on a runtime
/// built without its time driver: tokio panics there, and offers no way to
/// ask first.
pub(crate) fn with_timers<T>(make: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(make)).ok()
}

/// A guard for a flight that never started: dropping it tells nobody.
fn guard_disarmed(mut guard: FlightGuard) -> FlightGuard {
    guard.done = true;
    guard
}

fn fail_stalled(waiters: Vec<oneshot::Sender<Outcome>>, fetch_timeout: Duration) {
    for waiter in waiters {
        let _ = waiter.send(Err(TokenError::timeout(fetch_timeout)));
    }
}

const SPAWNING: u8 = 0;
const SPAWNED: u8 = 1;
const DROPPED_WHILE_SPAWNING: u8 = 2;

/// Publishes a fetch's outcome, even when the source panics or the task is
/// dropped: waiters always hear back.
struct FlightGuard {
    shared: Weak<Shared>,
    started: Instant,
    reason: &'static str,
    span: tracing::Span,
    // A runtime that is shutting down drops the task inside `spawn`, while
    // `start_flight` holds the state lock: the guard must not take it then.
    spawn_state: Arc<AtomicU8>,
    done: bool,
}

impl FlightGuard {
    fn finish(&mut self, result: Result<Token, TokenError>) {
        self.done = true;
        let elapsed = Instant::now().saturating_duration_since(self.started);
        self.span.record("duration_ms", elapsed.as_millis() as u64);
        self.span.record(
            "outcome",
            match &result {
                Ok(_) => "ok",
                Err(e) if e.is_transient() => "transient_error",
                Err(_) => "permanent_error",
            },
        );
        if let Some(shared) = self.shared.upgrade() {
            let _entered = self.span.enter();
            shared.complete(result, self.started, self.reason);
        }
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let dropped_while_spawning = self
            .spawn_state
            .compare_exchange(
                SPAWNING,
                DROPPED_WHILE_SPAWNING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if dropped_while_spawning {
            return;
        }
        let error = if std::thread::panicking() {
            TokenError::panicked()
        } else {
            TokenError::cancelled()
        };
        self.finish(Err(error));
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every await-free step, so a panic
        // elsewhere while holding the lock does not poison the cache.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn complete(&self, result: Result<Token, TokenError>, started: Instant, reason: &'static str) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(started);
        let outcome = result.and_then(|token| self.entry_for(token, started));
        let delay = match &outcome {
            Ok(_) => Duration::ZERO,
            Err(error) => {
                bump(&self.counters.fetches_failed);
                let consecutive = self.lock().failure.as_ref().map_or(0, |f| f.consecutive) + 1;
                self.config.backoff.delay(consecutive, error.class())
            }
        };
        let retry_at = later(now, delay);
        let (waiters, consecutive, kept_usable_token) = {
            let mut state = self.lock();
            let mut consecutive = 0;
            let mut kept = false;
            match &outcome {
                Ok(entry) => {
                    self.current.store(Some(Arc::clone(entry)));
                    state.failure = None;
                }
                Err(error) => {
                    consecutive = state.failure.as_ref().map_or(0, |f| f.consecutive) + 1;
                    if let Some(entry) = &*self.current.load()
                        && now < entry.usable_until
                    {
                        // Keep the usable token; retry the refresh after the backoff.
                        entry
                            .next_refresh
                            .store(entry.offset_of(retry_at), Ordering::Release);
                        kept = true;
                    }
                    state.failure = Some(Failure {
                        error: error.clone(),
                        consecutive,
                        retry_at,
                    });
                }
            }
            let waiters = state.flight.take().map(|f| f.waiters).unwrap_or_default();
            (waiters, consecutive, kept)
        };
        match &outcome {
            Ok(entry) => tracing::info!(
                reason,
                duration_ms = elapsed.as_millis() as u64,
                usable_for_s = entry.usable_until.saturating_duration_since(now).as_secs(),
                "token fetched"
            ),
            Err(error) => tracing::warn!(
                reason,
                duration_ms = elapsed.as_millis() as u64,
                error = %error,
                transient = error.is_transient(),
                consecutive,
                backoff_ms = delay.as_millis() as u64,
                kept_usable_token,
                "token fetch failed; backing off"
            ),
        }
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
    }

    fn entry_for(&self, token: Token, started: Instant) -> Result<Arc<Entry>, TokenError> {
        let header = header_value(&token)?;
        let config = &self.config;
        let lifetime = token
            .lifetime()
            .filter(|l| !l.is_zero())
            .unwrap_or(config.default_lifetime)
            .min(MAX_LIFETIME);
        let usable = lifetime - clamped_margin(config.expiry_margin, lifetime);
        let window = config.refresh_ahead.min(usable / 2);
        let jitter = scaled(window, config.refresh_jitter * fastrand::f64());
        let usable_until = later(started, usable);
        let refresh_at = usable_until
            .checked_sub(window + jitter)
            .unwrap_or(started)
            .max(started);
        let entry = Entry {
            id: TokenId {
                cache: self.id,
                token: self.next_id.fetch_add(1, Ordering::Relaxed),
            },
            header,
            obtained_at: started,
            refresh_at,
            usable_until,
            next_refresh: AtomicU64::new(0),
        };
        let offset = entry.offset_of(refresh_at);
        entry.next_refresh.store(offset, Ordering::Relaxed);
        Ok(Arc::new(entry))
    }
}

/// The expiry margin for a token that lives `lifetime`: `margin`, but no
/// more than a quarter of the lifetime (at least one second, since providers
/// stamp expiry in whole seconds) and never more than half, so that a
/// short-lived token is still cached and used.
pub(crate) fn clamped_margin(margin: Duration, lifetime: Duration) -> Duration {
    margin
        .min((lifetime / 4).max(Duration::from_secs(1)))
        .min(lifetime / 2)
}

/// `"<type> <token>"` as a sensitive header value. Both parts must be visible
/// ASCII with no spaces: anything else could split or inject headers.
fn header_value(token: &Token) -> Result<HeaderValue, TokenError> {
    let visible = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    let secret = token.access_token().secret();
    if !visible(secret) || !visible(token.token_type()) {
        return Err(TokenError::invalid_token());
    }
    let mut value = HeaderValue::try_from(format!("{} {}", token.token_type(), secret))
        .map_err(|_| TokenError::invalid_token())?;
    value.set_sensitive(true);
    Ok(value)
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("source", &self.shared.source.kind_dyn())
            .field("has_usable_token", &self.has_usable_token())
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_honours_retry_after() {
        let backoff = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        let t = ErrorClass::TRANSIENT;
        let secs: Vec<u64> = (1..=8).map(|n| backoff.delay(n, t).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            backoff.delay(1, ErrorClass::Permanent),
            Duration::from_secs(60)
        );
        let asked = ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(120)),
        };
        assert_eq!(backoff.delay(1, asked), Duration::from_secs(120));
        let absurd = ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(86_400)),
        };
        assert_eq!(backoff.delay(1, absurd), Duration::from_secs(300));
        assert_eq!(backoff.delay(u32::MAX, t), Duration::from_secs(60));
    }

    #[test]
    fn jitter_only_shortens_within_its_fraction() {
        let backoff = Backoff::default();
        for _ in 0..1000 {
            let d = backoff.delay(3, ErrorClass::TRANSIENT);
            assert!(
                d <= Duration::from_secs(4) && d >= Duration::from_secs_f64(3.2),
                "{d:?}"
            );
        }
    }

    #[test]
    fn header_rejects_control_bytes_and_spaces() {
        for bad in [
            "a\r\nx-injected: 1",
            "a\nb",
            "a\0b",
            "a b",
            "",
            "tab\there",
            "é",
        ] {
            assert!(header_value(&Token::bearer(bad)).is_err(), "{bad:?}");
        }
        assert!(header_value(&Token::new("ok", "Bad Type")).is_err());
        let value = header_value(&Token::bearer("abc.DEF-_~+/=")).unwrap();
        assert_eq!(value, "Bearer abc.DEF-_~+/=");
        assert!(value.is_sensitive());
    }
}
