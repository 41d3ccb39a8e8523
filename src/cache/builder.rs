//! [`TokenCacheBuilder`]: every setting of a cache, each with a documented
//! default.
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::{Backoff, Token, TokenCache, source::StaticSource};
//!
//! let cache = TokenCache::builder(StaticSource::new(Token::bearer("t")))
//!     .expiry_margin(Duration::from_secs(60))
//!     .refresh_share(0.1)
//!     .fetch_timeout(Duration::from_secs(5))
//!     .backoff(Backoff::default().max(Duration::from_secs(30)))
//!     .build();
//! assert_eq!(cache.stats().fetches_started, 0);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::TokenCache;
use super::keyed::DEFAULT_MAX_KEYS;
use super::policy::{Backoff, MAX_LIFETIME, Timing};
use crate::source::keyed::DynKeyedTokenSource;
use crate::source::{DynTokenSource, KeyedTokenSource, TokenSource};

/// Default for [`TokenCacheBuilder::fetch_timeout`]: 30 seconds.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`TokenCacheBuilder::invalidation_cooldown`]: 5 seconds.
pub const DEFAULT_INVALIDATION_COOLDOWN: Duration = Duration::from_secs(5);

/// How the hot path knows that a cached token has not reached its refresh
/// point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FreshnessCheck {
    /// On a multi-thread runtime, a timer armed at the token's refresh point
    /// (at least a second before its usable end) marks the token due; until
    /// then a request reads no clock. The runtime's workers run due timers
    /// before they sit idle, so the flag is cleared on time unless the whole
    /// runtime falls behind by more than that second; if the runtime shuts
    /// down, the timer's task is dropped and the clock decides again. On a
    /// current-thread runtime, the clock on every request: such a runtime
    /// runs its timers only while something blocks on it, and polls the
    /// blocked-on future before it looks at its timers. The default.
    #[default]
    Auto,
    /// Every request compares the clock with the token's refresh point.
    Clock,
    /// The timer on any runtime, current-thread ones included. For tests on
    /// tokio's paused clock, where time moves only as the runtime allows; in
    /// a program, a current-thread runtime re-entered with `block_on` after
    /// an idle spell would see a stale flag.
    #[doc(hidden)]
    Timer,
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) timing: Timing,
    pub(crate) fetch_timeout: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) invalidation_cooldown: Duration,
    pub(crate) freshness: FreshnessCheck,
    pub(crate) name: Option<Arc<str>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timing: Timing::default(),
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            backoff: Backoff::default(),
            invalidation_cooldown: DEFAULT_INVALIDATION_COOLDOWN,
            freshness: FreshnessCheck::default(),
            name: None,
        }
    }
}

/// Builds a [`TokenCache`]. Every setting has a documented default.
pub struct TokenCacheBuilder {
    pub(crate) source: Arc<dyn DynTokenSource>,
    pub(crate) keyed: Option<Arc<dyn DynKeyedTokenSource>>,
    pub(crate) max_keys: usize,
    pub(crate) config: Config,
    // Set for one key's cache of a keyed cache: its key.
    pub(crate) key: Option<crate::params::TokenParams>,
}

impl TokenCacheBuilder {
    pub(crate) fn new(source: impl TokenSource) -> Self {
        Self::with_parts(Arc::new(source), Config::default())
    }

    pub(crate) fn new_keyed(source: impl KeyedTokenSource) -> Self {
        let source = Arc::new(source);
        let mut builder = Self::with_parts(source.clone(), Config::default());
        builder.keyed = Some(source);
        builder
    }

    /// A builder for one key's cache: the keyed cache's settings, no keys.
    pub(crate) fn with_parts(source: Arc<dyn DynTokenSource>, config: Config) -> Self {
        Self {
            source,
            keyed: None,
            max_keys: DEFAULT_MAX_KEYS,
            config,
            key: None,
        }
    }

    /// How long before a token expires it stops being used. Clamped for
    /// short lifetimes: at most a quarter of the lifetime (but at least one
    /// second) and never more than half of it, so a 3 s token is used for
    /// 2 s.
    ///
    /// Defaults to [`DEFAULT_EXPIRY_MARGIN`](super::DEFAULT_EXPIRY_MARGIN)
    /// (30 s). It covers clock skew, the request's time in flight, and
    /// providers that stamp expiry in whole seconds.
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.config.timing.expiry_margin = margin.min(MAX_LIFETIME);
        self
    }

    /// The most time before a token stops being usable that its background
    /// refresh starts, not counting twice the observed fetch time, which is
    /// always added so that the refresh and one retry finish in time.
    /// `Duration::ZERO` turns refresh-ahead off: the token is then renewed
    /// when a request finds it unusable, and that request waits.
    ///
    /// Defaults to [`DEFAULT_REFRESH_AHEAD`](super::DEFAULT_REFRESH_AHEAD)
    /// (5 minutes).
    pub fn refresh_ahead(mut self, window: Duration) -> Self {
        self.config.timing.refresh_ahead = window.min(MAX_LIFETIME);
        self
    }

    /// The share (0 to 0.5) of a token's usable time spent refreshing ahead,
    /// up to [`refresh_ahead`](Self::refresh_ahead). Each token fetched costs
    /// the user (providers bill and rate-limit machine tokens), so the
    /// default refetches a token about once per usable lifetime (1.06
    /// times). A value that is not a number keeps the default.
    ///
    /// Defaults to [`DEFAULT_REFRESH_SHARE`](super::DEFAULT_REFRESH_SHARE) (0.05).
    pub fn refresh_share(mut self, share: f64) -> Self {
        if !share.is_nan() {
            self.config.timing.refresh_share = share.clamp(0.0, 0.5);
        }
        self
    }

    /// How much earlier than its share a refresh may start, as a random
    /// fraction (0 to 1) of the share, so that a fleet of processes does not
    /// refresh in step. A value that is not a number keeps the default.
    ///
    /// Defaults to [`DEFAULT_REFRESH_JITTER`](super::DEFAULT_REFRESH_JITTER) (0.2).
    pub fn refresh_jitter(mut self, fraction: f64) -> Self {
        if !fraction.is_nan() {
            self.config.timing.refresh_jitter = fraction.clamp(0.0, 1.0);
        }
        self
    }

    /// The lifetime of a token whose source did not say how long it lives
    /// (or said zero). At least one second.
    ///
    /// Defaults to [`DEFAULT_LIFETIME`](super::DEFAULT_LIFETIME) (5
    /// minutes): an unknown lifetime is renewed often, and a token that dies
    /// sooner is dropped on its first 401.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.timing.default_lifetime = super::policy::default_lifetime(lifetime);
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
        self.config.invalidation_cooldown = cooldown.min(MAX_LIFETIME);
        self
    }

    /// How to back off after failures. Defaults to [`Backoff::default`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// How the hot path knows a token has not reached its refresh point.
    ///
    /// Defaults to [`FreshnessCheck::Auto`].
    pub fn freshness_check(mut self, check: FreshnessCheck) -> Self {
        self.config.freshness = check;
        self
    }

    /// How many keys a keyed cache ([`TokenCache::keyed`]) holds besides its
    /// default token. A new key beyond it evicts an idle one, least recently
    /// used first (see [the keyed cache](super::keyed#when-the-map-is-full)).
    /// At least 1; no effect on a cache that is not keyed.
    ///
    /// Lookups take no lock because a new key replaces the whole map with a
    /// copy: a new key costs time in proportion to the keys held. Keep it
    /// to the thousands; traffic that brings a new key on most requests
    /// (a key per user) is not what this cache is for.
    ///
    /// Defaults to [`DEFAULT_MAX_KEYS`](super::DEFAULT_MAX_KEYS) (1,000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// A name for the cache, which its metrics carry as their `cache` label
    /// (feature `metrics`; see `tower_bearer::metrics`) and its
    /// `token_fetch` tracing spans as their `cache` field. Keep it short and
    /// free of secrets: it is shown as given. A named keyed cache's keys
    /// carry its name.
    ///
    /// Defaults to none: the source's kind (`client_credentials`,
    /// `token_exchange`, `static`, ...) stands in.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = Some(Arc::from(name.into()));
        self
    }

    /// Builds the cache. Fetches nothing and needs no runtime.
    pub fn build(self) -> TokenCache {
        TokenCache::from_builder(self)
    }
}

impl fmt::Debug for TokenCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("source", &self.source.kind_dyn())
            .field("keyed", &self.keyed.is_some())
            .field("max_keys", &self.max_keys)
            .field("config", &self.config)
            .finish()
    }
}
