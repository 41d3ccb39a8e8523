//! The source that shares tokens through the store: read, lease, fetch,
//! write, and wait on another process's lease.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

use super::key::StoreKey;
use super::redis::{Found, RedisStore, Unavailable};
use super::value::{millis, random_id};
use crate::error::ErrorClass;
use crate::params::TokenParams;
use crate::source::{KeyedTokenSource, TokenSource};
use crate::token::Token;

/// How many served ids a source remembers: far more than can be alive at
/// once (a token is refreshed once per lifetime).
const SERVED_KEPT: usize = 8;

/// A token source shared by every process that uses the same Redis and
/// [`StoreKey`](super::StoreKey): made by [`RedisStore::share`].
///
/// Its errors, [`classify`](TokenSource::classify) and
/// [`kind`](TokenSource::kind) are the wrapped source's: Redis trouble is
/// never an error, only a direct fetch.
///
/// A token bound to a DPoP key ([`Token::dpop`]) is never written: it is
/// useless to a process without the key. A source that binds its tokens
/// ([`TokenSource::binds_tokens`]) is never given a shared token either
/// (it would be a bearer token, sent without the proof the source is there
/// for): its fetches go straight to it, without Redis or a lease, as do
/// those of any source once it has returned a bound token.
pub struct SharedSource<S> {
    store: RedisStore,
    source: S,
    key: StoreKey,
    token_key: String,
    lease_key: String,
    // The ids of the stored tokens handed to this source's cache, newest
    // last. The cache asks again only when it wants a newer token, so none
    // of them is ever handed back.
    served: Mutex<VecDeque<String>>,
    // Set once the source returned a token bound to a DPoP key: no other
    // process can use its tokens, so none is shared or waited for.
    bound: AtomicBool,
}

impl<S> SharedSource<S> {
    pub(super) fn new(store: RedisStore, source: S, key: StoreKey, token_key: String) -> Self {
        Self {
            store,
            source,
            key,
            lease_key: format!("{token_key}:lease"),
            token_key,
            served: Mutex::new(VecDeque::with_capacity(SERVED_KEPT)),
            bound: AtomicBool::new(false),
        }
    }

    /// The wrapped source.
    pub fn get_ref(&self) -> &S {
        &self.source
    }

    /// The store.
    pub fn store(&self) -> &RedisStore {
        &self.store
    }

    /// The Redis key the token is stored under.
    pub fn redis_key(&self) -> &str {
        &self.token_key
    }

    fn served(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        self.served
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn has_served(&self, id: &str) -> bool {
        self.served().iter().any(|served| served == id)
    }

    fn record_served(&self, id: String) {
        let mut served = self.served();
        if served.len() == SERVED_KEPT {
            served.pop_front();
        }
        served.push_back(id);
    }

    /// The token in `found` if this source's cache has not had it yet. An
    /// unreadable value's id joins `replaceable`, so that a write may
    /// replace it.
    fn take(
        &self,
        found: Found,
        replaceable: &mut Vec<String>,
        how: &'static str,
    ) -> Option<Token> {
        match found {
            Found::Token(shared) if !self.has_served(&shared.id) => {
                tracing::debug!(
                    key = self.token_key.as_str(),
                    how,
                    remaining_ms = millis(shared.remaining),
                    "shared token hit"
                );
                self.record_served(shared.id);
                Some(shared.token)
            }
            Found::Token(_) => None,
            Found::Unreadable(unreadable) => {
                tracing::debug!(key = self.token_key.as_str(), "shared token unreadable");
                if let Some(id) = unreadable.id
                    && !replaceable.contains(&id)
                {
                    replaceable.push(id);
                }
                None
            }
            Found::Nothing => None,
        }
    }
}

impl<S: TokenSource> SharedSource<S> {
    async fn fetch_shared(&self) -> Result<Token, S::Error> {
        let key = self.token_key.as_str();
        if self.binds_tokens() {
            return self.source.fetch().await;
        }
        let mut replaceable = Vec::new();
        let mut waiting = false;
        loop {
            // A waiter follows the lease to its outcome: its token, or its
            // end. It never fetches beside a live lease: a holder that is
            // slow is most often slow because the provider is, and N waiters
            // fetching at once would add N requests to a provider that is
            // timing out. The cache's fetch timeout bounds the wait.
            if waiting {
                tokio::time::sleep(self.store.poll_interval()).await;
            }
            let read = match self.store.read(key, &self.lease_key).await {
                Ok(read) => read,
                Err(error) => return self.fetch_direct(&error).await,
            };
            let how = if waiting { "appeared" } else { "read" };
            if let Some(token) = self.take(read.found, &mut replaceable, how) {
                return Ok(token);
            }
            if read.lease_held {
                if !waiting {
                    tracing::debug!(
                        key,
                        "another process holds the lease; waiting for its outcome"
                    );
                }
                waiting = true;
                continue;
            }
            let lease_value = random_id();
            match self.store.try_lease(&self.lease_key, &lease_value).await {
                Ok(true) => return self.fetch_with_lease(lease_value, replaceable, true).await,
                // Taken in between: wait on it.
                Ok(false) => waiting = true,
                Err(error) if error.outcome_unknown() => {
                    // The SET may have run on Redis though its reply never
                    // came: act as the holder, so the token is shared and the
                    // lease released instead of stalling the fleet.
                    tracing::debug!(key, error = %error, "lease outcome unknown; treating it as ours");
                    return self.fetch_with_lease(lease_value, replaceable, false).await;
                }
                // Refused (out of memory, a read-only replica, the ACL):
                // the SET did not run, and another process may hold the lease.
                Err(error) => return self.fetch_direct(&error).await,
            }
        }
    }

    /// Fetches under a lease that is ours (`confirmed`) or may be (its SET
    /// got no reply in time), then writes the token and releases the lease.
    async fn fetch_with_lease(
        &self,
        lease_value: String,
        mut replaceable: Vec<String>,
        confirmed: bool,
    ) -> Result<Token, S::Error> {
        let key = self.token_key.as_str();
        tracing::debug!(key, confirmed, "lease taken");
        let mut guard = LeaseGuard {
            store: self.store.clone(),
            lease_key: self.lease_key.clone(),
            lease_value: Some(lease_value),
        };
        // The token may have landed between the miss and the lease. Redis
        // just failed to answer in time when unconfirmed: skip the re-read.
        if confirmed
            && let Ok(read) = self.store.read(key, &self.lease_key).await
            && let Some(token) = self.take(read.found, &mut replaceable, "landed before the lease")
        {
            // Released on the side: nothing may wait between handing a
            // token out and returning it, or a cache that gives up meanwhile
            // would never get a token recorded as its own.
            drop(guard);
            return Ok(token);
        }
        let started = Instant::now();
        let token = match self.source.fetch().await {
            Ok(token) => token,
            Err(error) => {
                guard.release().await;
                return Err(error);
            }
        };
        Ok(self.share(token, started, guard, replaceable).await)
    }

    /// Writes `token`, fetched at `started`, and releases the lease. Returns
    /// the token to hand the cache: `token`, or the newer one Redis kept.
    async fn share(
        &self,
        token: Token,
        started: Instant,
        mut guard: LeaseGuard,
        replaceable: Vec<String>,
    ) -> Token {
        let key = self.token_key.as_str();
        if token.is_bound() {
            // Bound to this process's DPoP key: useless to any other.
            tracing::debug!(
                key,
                "token bound to a DPoP key; not shared, and fetched directly from now on"
            );
            self.bound.store(true, Ordering::Relaxed);
            guard.release().await;
            return token;
        }
        let Some(encoded) = self.store.format(key).encode(&token, started.elapsed()) else {
            tracing::debug!(key, "token too short-lived to share");
            guard.release().await;
            return token;
        };
        // Recorded before the write is sent: whether its reply comes or not,
        // Redis may hold this token from now on, and it must never come back
        // to this cache as a newer one.
        self.record_served(encoded.id.clone());
        let replaceable: Vec<String> = self.served().iter().cloned().chain(replaceable).collect();
        let lease_value = guard.lease_value.clone().unwrap_or_default();
        let written = self
            .store
            .write(key, (&self.lease_key, &lease_value), encoded, replaceable)
            .await;
        match written {
            Ok(None) => {
                guard.lease_value = None;
                tracing::debug!(key, "shared token written");
                token
            }
            Ok(Some(kept)) => {
                guard.lease_value = None;
                // Another holder wrote a token that ends later meanwhile:
                // the fleet uses that one, and so does this process.
                tracing::debug!(key, "a token that ends later was already shared; kept it");
                self.take(kept, &mut Vec::new(), "kept over an older fetch")
                    .unwrap_or(token)
            }
            Err(error) => {
                // The guard releases the lease on the side.
                tracing::debug!(key, error = %error, "shared token not written");
                token
            }
        }
    }

    async fn fetch_direct(&self, error: &Unavailable) -> Result<Token, S::Error> {
        tracing::debug!(
            key = self.token_key.as_str(),
            error = %error,
            "redis unavailable or refusing: fetching directly from the source"
        );
        self.source.fetch().await
    }
}

/// Each key's tokens are shared under their own Redis key, derived from this
/// source's [`StoreKey`] and the key's parameters
/// ([`StoreKey::for_params`]): the fleet fetches one token per key.
impl<S: KeyedTokenSource> KeyedTokenSource for SharedSource<S> {
    type Keyed = SharedSource<S::Keyed>;

    fn for_params(&self, params: &TokenParams) -> Result<Self::Keyed, S::Error> {
        let source = self.source.for_params(params)?;
        Ok(self.store.share(source, self.key.for_params(params)))
    }
}

impl<S: TokenSource> TokenSource for SharedSource<S> {
    type Error = S::Error;

    fn fetch(&self) -> impl Future<Output = Result<Token, S::Error>> + Send {
        self.fetch_shared()
    }

    fn classify(&self, error: &S::Error) -> ErrorClass {
        self.source.classify(error)
    }

    fn kind(&self) -> &'static str {
        self.source.kind()
    }

    fn binds_tokens(&self) -> bool {
        self.source.binds_tokens() || self.bound.load(Ordering::Relaxed)
    }
}

impl<S> fmt::Debug for SharedSource<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSource")
            .field("redis_key", &self.token_key)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Releases a lease when the fetch holding it ends early (an error, or the
/// cache dropping the fetch), instead of leaving others to wait out its TTL.
struct LeaseGuard {
    store: RedisStore,
    lease_key: String,
    lease_value: Option<String>,
}

impl LeaseGuard {
    async fn release(&mut self) {
        if let Some(value) = self.lease_value.take()
            && let Err(error) = self.store.release(&self.lease_key, &value).await
        {
            tracing::debug!(key = self.lease_key.as_str(), error = %error, "lease not released");
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some(value) = self.lease_value.take() else {
            return;
        };
        // Dropped mid-fetch: release on the side if a runtime is still there;
        // otherwise the lease expires on its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let lease_key = std::mem::take(&mut self.lease_key);
            runtime.spawn(async move {
                let _ = store.release(&lease_key, &value).await;
            });
        }
    }
}
