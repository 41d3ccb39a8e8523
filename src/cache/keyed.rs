//! Many tokens behind one cache: one per [`TokenParams`], each with the
//! whole machinery of a [`TokenCache`] (single flight, refresh-ahead,
//! backoff, invalidation, cooldown, counters), in a bounded map.
//!
//! ```
//! use std::convert::Infallible;
//! use std::future::Future;
//! use tower_bearer::{Token, TokenCache, TokenParams, TokenSource, source::KeyedTokenSource};
//!
//! #[derive(Clone, Default)]
//! struct PerAudience(String);
//!
//! impl TokenSource for PerAudience {
//!     type Error = Infallible;
//!     fn fetch(&self) -> impl Future<Output = Result<Token, Infallible>> + Send {
//!         std::future::ready(Ok(Token::bearer(format!("for-{}", self.0))))
//!     }
//! }
//!
//! impl KeyedTokenSource for PerAudience {
//!     type Keyed = PerAudience;
//!     fn for_params(&self, params: &TokenParams) -> Result<PerAudience, Infallible> {
//!         Ok(PerAudience(params.audiences().join(" ")))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_bearer::TokenError> {
//! let cache = TokenCache::keyed_builder(PerAudience::default()).max_keys(100).build();
//! let orders = cache.for_params(&TokenParams::for_audience("orders"))?;
//! orders.refresh().await?; // warm one key at start-up
//! assert_eq!(cache.key_count(), 1);
//! assert_eq!(orders.stats().fetches_started, 1);
//! assert_eq!(cache.stats().fetches_started, 0); // the default token is its own key
//! # Ok(()) }
//! ```
//!
//! # When the map is full
//!
//! A new key beyond [`max_keys`](super::TokenCacheBuilder::max_keys) evicts
//! an idle one, least recently used first, by the clock algorithm: a key
//! used since the last sweep gets a second chance, so a key in steady use
//! stays. An evicted key's token is dropped; a request already waiting on
//! its fetch still gets the token (it holds the key's cache), and the next
//! request for that key starts afresh. Eviction never fails a request; at
//! worst it costs a fetch.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use super::builder::Config;
use super::stats::{Stats, bump};
use super::{Shared, TokenCache, TokenCacheBuilder};
use crate::error::TokenError;
use crate::params::TokenParams;
use crate::source::KeyedTokenSource;
use crate::source::keyed::DynKeyedTokenSource;

/// Default for [`TokenCacheBuilder::max_keys`](super::TokenCacheBuilder::max_keys): 1,000.
pub const DEFAULT_MAX_KEYS: usize = 1000;

/// The keys' caches, swapped whole on every insertion so that a lookup
/// takes no lock.
pub(crate) type KeyMap = HashMap<TokenParams, Arc<Slot>, BuildHasherDefault<KeyHasher>>;

/// Takes the hash [`TokenParams`] computed when built (seeded per process)
/// as it is: a lookup hashes nothing.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    // `TokenParams` writes one u64; anything else is folded in, FNV-style.
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// One key's cache, and whether it was used since the last sweep.
pub(crate) struct Slot {
    pub(crate) cache: TokenCache,
    used: AtomicBool,
}

impl Slot {
    /// Marks the key used: a read, and a write only when the sweep cleared
    /// the mark, so that requests for a hot key do not share a write.
    #[inline]
    pub(crate) fn touch(&self) {
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }
}

/// The keyed part of a cache.
pub(crate) struct Keys {
    source: Arc<dyn DynKeyedTokenSource>,
    config: Config,
    max_keys: usize,
    pub(crate) map: ArcSwap<KeyMap>,
    // The clock's ring, in the order keys are swept; insertions and
    // evictions happen under this lock.
    ring: Mutex<VecDeque<TokenParams>>,
}

impl Keys {
    pub(crate) fn new(
        source: Arc<dyn DynKeyedTokenSource>,
        config: Config,
        max_keys: usize,
    ) -> Self {
        Self {
            source,
            config,
            max_keys: max_keys.max(1),
            map: ArcSwap::from_pointee(KeyMap::default()),
            ring: Mutex::new(VecDeque::new()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.load().len()
    }

    /// The cache of `params`, made (evicting an idle key if the map is full)
    /// if it has none.
    pub(crate) fn get_or_insert(
        &self,
        params: &TokenParams,
        parent: &Shared,
    ) -> Result<Arc<Slot>, TokenError> {
        if let Some(slot) = self.map.load().get(params) {
            slot.touch();
            return Ok(Arc::clone(slot));
        }
        if let Some(name) = params.credential_param() {
            return Err(TokenError::credential_in_params(name));
        }
        // The source's work is done before the lock: a slow `for_params`
        // holds up no other key. Should another request make the key
        // meanwhile, this one is dropped.
        let source = self
            .source
            .for_params_dyn(params)
            .map_err(TokenError::source_failed)?;
        let mut ring = self.ring();
        let current = self.map.load_full();
        if let Some(slot) = current.get(params) {
            slot.touch();
            return Ok(Arc::clone(slot));
        }
        parent.telemetry.resolve();
        let mut builder = TokenCacheBuilder::with_parts(source, self.config.clone());
        builder.key = Some(params.clone());
        let slot = Arc::new(Slot {
            cache: builder.build(),
            used: AtomicBool::new(true),
        });
        let mut next = KeyMap::clone(&current);
        while next.len() >= self.max_keys {
            let Some(evicted) = sweep(&mut ring, &next) else {
                break;
            };
            next.remove(&evicted);
            bump(&parent.counters.keys_evicted);
            parent.telemetry.key_evicted();
            tracing::debug!(params = ?evicted, "idle token key evicted");
        }
        next.insert(params.clone(), Arc::clone(&slot));
        ring.push_back(params.clone());
        self.map.store(Arc::new(next));
        Ok(slot)
    }

    fn ring(&self) -> MutexGuard<'_, VecDeque<TokenParams>> {
        self.ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The keyed cache's side of [`TokenCache`].
impl TokenCache {
    /// A keyed cache over `source` with every default: its default token,
    /// and one token per [`TokenParams`] that requests name.
    pub fn keyed(source: impl KeyedTokenSource) -> Self {
        Self::keyed_builder(source).build()
    }

    /// A builder for a keyed cache over `source`: every key's cache takes
    /// its settings. See [the keyed cache](self).
    pub fn keyed_builder(source: impl KeyedTokenSource) -> TokenCacheBuilder {
        TokenCacheBuilder::new_keyed(source)
    }

    /// Whether this cache holds a token per [`TokenParams`].
    pub fn is_keyed(&self) -> bool {
        self.shared.keys.is_some()
    }

    /// The cache of the token for `params`, made if the cache has none yet:
    /// to warm a key, read its counters, or invalidate it. Empty `params`
    /// give this cache itself (the default token). Fails when this cache is
    /// not keyed, or when the source cannot make a source for `params`.
    pub fn for_params(&self, params: &TokenParams) -> Result<TokenCache, TokenError> {
        if params.is_empty() {
            return Ok(self.clone());
        }
        let keys = self
            .shared
            .keys
            .as_ref()
            .ok_or_else(TokenError::not_keyed)?;
        keys.get_or_insert(params, &self.shared)
            .map(|slot| slot.cache.clone())
    }

    /// The caches of every key held now (not the default token's), with
    /// their parameters: for metrics per key.
    pub fn keys(&self) -> Vec<(TokenParams, TokenCache)> {
        let Some(keys) = &self.shared.keys else {
            return Vec::new();
        };
        keys.map
            .load()
            .iter()
            .map(|(params, slot)| (params.clone(), slot.cache.clone()))
            .collect()
    }

    /// How many keys the cache holds now, besides its default token.
    pub fn key_count(&self) -> usize {
        self.shared.keys.as_ref().map_or(0, Keys::len)
    }

    /// The counters of the default token and of every key held now, added
    /// up: what the whole cache did, less the keys it has evicted. The same
    /// as [`stats`](Self::stats) for a cache that is not keyed.
    pub fn total_stats(&self) -> Stats {
        self.keys()
            .into_iter()
            .fold(self.stats(), |total, (_, key)| total + key.stats())
    }
}

/// The clock: the first key in the ring not used since the last sweep,
/// clearing the marks it passes. Two turns at most: requests may mark keys
/// while it sweeps, and then the oldest goes.
fn sweep(ring: &mut VecDeque<TokenParams>, map: &KeyMap) -> Option<TokenParams> {
    for _ in 0..ring.len() * 2 {
        let params = ring.pop_front()?;
        match map.get(&params) {
            Some(slot) if slot.used.swap(false, Ordering::Relaxed) => ring.push_back(params),
            Some(_) => return Some(params),
            // Not in the map: a stale ring entry; drop it.
            None => {}
        }
    }
    ring.pop_front()
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("keys", &self.len())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(used: bool) -> Arc<Slot> {
        let cache = TokenCache::new(crate::source::StaticSource::new(crate::Token::bearer("t")));
        Arc::new(Slot {
            cache,
            used: AtomicBool::new(used),
        })
    }

    #[test]
    fn the_sweep_passes_used_keys_and_takes_the_first_idle_one() {
        let keys: Vec<TokenParams> = (0..4)
            .map(|i| TokenParams::for_audience(i.to_string()))
            .collect();
        let map: KeyMap = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), slot(i != 2)))
            .collect();
        assert_eq!(map.len(), 4);
        let mut ring: VecDeque<TokenParams> = keys.iter().cloned().collect();
        assert_eq!(sweep(&mut ring, &map), Some(keys[2].clone()));
        // The keys it passed lost their mark and went to the back.
        assert_eq!(ring, [keys[3].clone(), keys[0].clone(), keys[1].clone()]);
        assert!(!map[&keys[0]].used.load(Ordering::Relaxed));
        // Next time, key 3 (still marked) is passed, and the first key that
        // lost its mark goes.
        assert_eq!(sweep(&mut ring, &map), Some(keys[0].clone()));
        assert_eq!(ring, [keys[1].clone(), keys[3].clone()]);
    }

    #[test]
    fn with_every_key_in_use_the_oldest_goes() {
        let keys: Vec<TokenParams> = (0..3)
            .map(|i| TokenParams::for_resource(i.to_string()))
            .collect();
        let map: KeyMap = keys.iter().map(|k| (k.clone(), slot(true))).collect();
        let mut ring: VecDeque<TokenParams> = keys.iter().cloned().collect();
        assert_eq!(sweep(&mut ring, &map), Some(keys[0].clone()));
    }
}
