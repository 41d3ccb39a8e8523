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

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
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
    pub fn delay(&self, failures: u32, class: ErrorClass) -> Duration {
        let base = match class {
            ErrorClass::Permanent => self.max,
            ErrorClass::Transient { .. } => {
                let exponent = failures.saturating_sub(1).min(64) as i32;
                let factor = self.multiplier.max(1.0).powi(exponent);
                Duration::try_from_secs_f64(self.initial.as_secs_f64() * factor)
                    .unwrap_or(self.max)
                    .min(self.max)
            }
        };
        let jitter = self.jitter.clamp(0.0, 1.0);
        let delay = base.mul_f64(1.0 - jitter * fastrand::f64());
        match class {
            ErrorClass::Transient {
                retry_after: Some(after),
            } => delay.max(after.min(self.max_retry_after)),
            _ => delay,
        }
    }
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
    served_from_cache: AtomicU64,
    waited_for_fetch: AtomicU64,
    failed_fast: AtomicU64,
    invalidations: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
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
    /// starts. Clamped to half the usable lifetime. `Duration::ZERO` turns
    /// refresh-ahead off.
    ///
    /// Defaults to [`DEFAULT_REFRESH_AHEAD`] (5 minutes).
    pub fn refresh_ahead(mut self, window: Duration) -> Self {
        self.config.refresh_ahead = window;
        self
    }

    /// The random part of the refresh point, as a fraction (0 to 1) of the
    /// refresh window, so that a fleet of processes does not refresh in step.
    ///
    /// Defaults to [`DEFAULT_REFRESH_JITTER`] (0.2).
    pub fn refresh_jitter(mut self, fraction: f64) -> Self {
        self.config.refresh_jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// The lifetime of a token whose source did not say how long it lives.
    ///
    /// Defaults to [`DEFAULT_LIFETIME`] (5 minutes): an unknown lifetime is
    /// renewed often, and a token that dies sooner is dropped on its first
    /// 401.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.default_lifetime = lifetime;
        self
    }

    /// How long one fetch may take, whatever the source.
    ///
    /// Defaults to [`DEFAULT_FETCH_TIMEOUT`] (30 seconds).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config.fetch_timeout = timeout;
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
        TokenCache {
            shared: Arc::new(Shared {
                current: ArcSwapOption::empty(),
                state: Mutex::new(State::default()),
                source: self.source,
                config: self.config,
                counters: Counters::default(),
                next_id: AtomicU64::new(1),
            }),
        }
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

/// A shared, lazily filled token cache. Cloning it is cheap and shares the
/// token.
#[derive(Clone)]
pub struct TokenCache {
    shared: Arc<Shared>,
}

struct Shared {
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
}

struct Failure {
    error: TokenError,
    consecutive: u32,
    retry_at: Instant,
}

pub(crate) type Outcome = Result<Arc<Entry>, TokenError>;

/// A cached token, ready to attach.
pub(crate) struct Entry {
    id: u64,
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
            id: TokenId(self.id),
        }
    }

    fn offset_of(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.obtained_at).as_nanos())
            .unwrap_or(u64::MAX - 1)
    }
}

/// Identifies one cached token, so that a 401 invalidates only the token that
/// request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TokenId(u64);

/// A usable token's header value and identity.
pub(crate) struct Lease {
    pub(crate) header: HeaderValue,
    pub(crate) id: TokenId,
}

/// What the cache can give a request right now.
pub(crate) enum Acquire {
    /// A usable token.
    Ready(Lease),
    /// Wait for the fetch in flight.
    Wait(oneshot::Receiver<Outcome>),
    /// No token, and no fetch may start now.
    Failed(TokenError),
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Nothing runs after the last handle is gone.
        if let Ok(state) = self.state.get_mut()
            && let Some(flight) = &state.flight
        {
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
            served_from_cache: get(&c.served_from_cache),
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
        let _state = self.shared.lock();
        if self.shared.current.swap(None).is_some() {
            bump(&self.shared.counters.invalidations);
            tracing::debug!(reason = "requested", "token invalidated");
        }
    }

    /// Fetches a new token now, whatever the cached one's state and any
    /// backoff, and waits for it. Joins a fetch already in flight.
    ///
    /// Use it to warm the cache at start-up, or after rotating credentials.
    pub async fn refresh(&self) -> Result<(), TokenError> {
        let rx = {
            let mut state = self.shared.lock();
            let (tx, rx) = oneshot::channel();
            if state.flight.is_none() {
                self.start_flight(&mut state, "requested")?;
            }
            if let Some(flight) = state.flight.as_mut() {
                flight.waiters.push(tx);
            }
            rx
        };
        match rx.await {
            Ok(outcome) => outcome.map(drop),
            Err(_) => Err(TokenError::cancelled()),
        }
    }

    /// The hot path: a usable token without a lock, or the way to get one.
    pub(crate) fn acquire(&self) -> Acquire {
        let now = Instant::now();
        if let Some(entry) = &*self.shared.current.load() {
            if now < entry.refresh_at {
                bump(&self.shared.counters.served_from_cache);
                return Acquire::Ready(entry.lease());
            }
            if now < entry.usable_until {
                self.maybe_refresh_ahead(entry, now);
                bump(&self.shared.counters.served_from_cache);
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
        if state.flight.is_some() {
            return;
        }
        if self.start_flight(&mut state, "refresh-ahead").is_ok() {
            bump(&self.shared.counters.refreshes_ahead);
        } else {
            // No runtime to run it on: let a later request try.
            entry.next_refresh.store(due, Ordering::Release);
        }
    }

    fn acquire_slow(&self, now: Instant) -> Acquire {
        let shared = &self.shared;
        let mut state = shared.lock();
        // A fetch may have finished since the lock-free look.
        if let Some(entry) = &*shared.current.load()
            && now < entry.usable_until
        {
            bump(&shared.counters.served_from_cache);
            return Acquire::Ready(entry.lease());
        }
        if state.flight.is_none() {
            if let Some(failure) = &state.failure
                && now < failure.retry_at
            {
                bump(&shared.counters.failed_fast);
                return Acquire::Failed(failure.error.while_backing_off(failure.retry_at - now));
            }
            if let Err(error) = self.start_flight(&mut state, "no usable token") {
                return Acquire::Failed(error);
            }
        }
        let (tx, rx) = oneshot::channel();
        state
            .flight
            .as_mut()
            .expect("a flight runs: checked or started above")
            .waiters
            .push(tx);
        bump(&shared.counters.waited_for_fetch);
        Acquire::Wait(rx)
    }

    /// Called when the API rejected the token `id`: throws it away only if it
    /// is still the current one, and starts the one fetch that replaces it.
    pub(crate) fn invalidate_if_current(&self, id: TokenId, reason: &'static str) {
        let shared = &self.shared;
        let is_current =
            |shared: &Shared| shared.current.load().as_ref().is_some_and(|e| e.id == id.0);
        if !is_current(shared) {
            // A newer token is already in place: keep it.
            return;
        }
        let now = Instant::now();
        // Fetches publish under this lock, so the check and the removal
        // below cannot straddle a new token's arrival.
        let mut state = shared.lock();
        if !is_current(shared) {
            return;
        }
        if let Some(last) = state.last_rejection
            && now < last + shared.config.invalidation_cooldown
        {
            // Fresh tokens rejected again and again point at configuration
            // (audience, scope), not at a stale token: do not hammer the
            // provider with a fetch per rejection.
            tracing::debug!(reason, "token rejected again within the cooldown; kept");
            return;
        }
        shared.current.store(None);
        state.last_rejection = Some(now);
        bump(&shared.counters.invalidations);
        tracing::info!(reason, "token rejected by the API; invalidated");
        let backing_off = state.failure.as_ref().is_some_and(|f| now < f.retry_at);
        if state.flight.is_none() && !backing_off {
            let _ = self.start_flight(&mut state, reason);
        }
    }

    /// Starts the one fetch, on its own task so that no caller can cancel it.
    fn start_flight(&self, state: &mut State, reason: &'static str) -> Result<(), TokenError> {
        debug_assert!(state.flight.is_none());
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TokenError::no_runtime())?;
        bump(&self.shared.counters.fetches_started);
        let source = Arc::clone(&self.shared.source);
        let timeout = self.shared.config.fetch_timeout;
        let span = tracing::info_span!(
            "token_fetch",
            source = source.kind_dyn(),
            reason,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        tracing::debug!(parent: &span, "token fetch started");
        let guard = FlightGuard {
            shared: Arc::downgrade(&self.shared),
            started: Instant::now(),
            reason,
            span: span.clone(),
            done: false,
        };
        let task = runtime.spawn(tracing::Instrument::instrument(
            async move {
                let mut guard = guard;
                let result = match tokio::time::timeout(timeout, source.fetch_dyn()).await {
                    Ok(Ok(token)) => Ok(token),
                    Ok(Err(error)) => Err(TokenError::source_failed(error)),
                    Err(_) => Err(TokenError::timeout(timeout)),
                };
                guard.finish(result);
            },
            span,
        ));
        state.flight = Some(Flight {
            waiters: Vec::new(),
            task: task.abort_handle(),
        });
        Ok(())
    }
}

/// Publishes a fetch's outcome, even when the source panics or the task is
/// dropped: waiters always hear back.
struct FlightGuard {
    shared: Weak<Shared>,
    started: Instant,
    reason: &'static str,
    span: tracing::Span,
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
        let waiters = {
            let mut state = self.lock();
            match &outcome {
                Ok(entry) => {
                    self.current.store(Some(Arc::clone(entry)));
                    state.failure = None;
                    tracing::info!(
                        reason,
                        duration_ms = elapsed.as_millis() as u64,
                        usable_for_s = entry.usable_until.saturating_duration_since(now).as_secs(),
                        "token fetched"
                    );
                }
                Err(error) => {
                    bump(&self.counters.fetches_failed);
                    let consecutive = state.failure.as_ref().map_or(0, |f| f.consecutive) + 1;
                    let delay = self.config.backoff.delay(consecutive, error.class());
                    let retry_at = now + delay;
                    let still_usable = match &*self.current.load() {
                        Some(entry) if now < entry.usable_until => {
                            // Keep the usable token; retry the refresh after the backoff.
                            entry
                                .next_refresh
                                .store(entry.offset_of(retry_at), Ordering::Release);
                            true
                        }
                        _ => false,
                    };
                    tracing::warn!(
                        reason,
                        duration_ms = elapsed.as_millis() as u64,
                        error = %error,
                        transient = error.is_transient(),
                        consecutive,
                        backoff_ms = delay.as_millis() as u64,
                        kept_usable_token = still_usable,
                        "token fetch failed; backing off"
                    );
                    state.failure = Some(Failure {
                        error: error.clone(),
                        consecutive,
                        retry_at,
                    });
                }
            }
            state.flight.take().map(|f| f.waiters).unwrap_or_default()
        };
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
    }

    fn entry_for(&self, token: Token, started: Instant) -> Result<Arc<Entry>, TokenError> {
        let header = header_value(&token)?;
        let config = &self.config;
        let lifetime = token
            .lifetime()
            .unwrap_or(config.default_lifetime)
            .min(MAX_LIFETIME);
        let usable = lifetime - clamped_margin(config.expiry_margin, lifetime);
        let window = config.refresh_ahead.min(usable / 2);
        let jitter = window.mul_f64(config.refresh_jitter * fastrand::f64());
        let usable_until = started + usable;
        let refresh_at = usable_until - window - jitter;
        let entry = Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
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
