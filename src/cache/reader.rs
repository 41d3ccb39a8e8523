//! [`Reader`]: one service's view of a cache, for a hot path that touches
//! no shared reference count.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::entry::Entry;
use super::{Acquire, Shared, TokenCache};
use crate::error::TokenError;
use crate::params::TokenParams;

/// One service's view of a cache. It keeps the current token at hand and
/// checks that it is still current with one relaxed atomic load: no
/// reference count is touched on the hot path.
#[derive(Clone)]
pub(crate) struct Reader {
    cache: TokenCache,
    view: arc_swap::Cache<Current, Option<Arc<Entry>>>,
}

/// What a request gets from [`Reader::acquire_for`]: the answer, and the
/// key's cache when the request must wait for it.
pub(crate) struct KeyAcquire {
    pub(crate) acquire: Acquire,
    pub(crate) waiting_on: Option<TokenCache>,
}

/// The cache's current token, for [`arc_swap::Cache`].
#[derive(Clone)]
struct Current(Arc<Shared>);

impl std::ops::Deref for Current {
    type Target = ArcSwapOption<Entry>;

    fn deref(&self) -> &Self::Target {
        &self.0.current
    }
}

impl KeyAcquire {
    pub(crate) fn into_parts(self) -> (Acquire, Option<TokenCache>) {
        (self.acquire, self.waiting_on)
    }
}

impl Reader {
    pub(crate) fn new(cache: TokenCache) -> Self {
        let view = arc_swap::Cache::new(Current(Arc::clone(&cache.shared)));
        Self { cache, view }
    }

    pub(crate) fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// The hot path: a fresh token with no lock and no shared write but the
    /// header's reference count (and, with the timer, no clock read); past
    /// the refresh point or with no token, the cache decides.
    pub(crate) fn acquire(&mut self) -> Acquire {
        let entry = self.view.load();
        self.cache.acquire_from(entry.as_deref())
    }

    /// The token for `params` (not empty): for a held key, no lock and no
    /// shared write (one arc-swap load each for the map and the key's token,
    /// which write only to this thread's own slot; a relaxed load sees that
    /// the key is marked used); a new key is made under the map's lock. The map is loaded per
    /// request, not kept: an idle service must not keep evicted keys alive.
    pub(crate) fn acquire_for(&mut self, params: &TokenParams) -> KeyAcquire {
        let Some(keys) = self.cache.shared.keys.as_ref() else {
            return KeyAcquire {
                acquire: Acquire::Failed(TokenError::not_keyed()),
                waiting_on: None,
            };
        };
        let map = keys.map.load();
        let (acquire, cache) = match map.get(params) {
            Some(slot) => {
                slot.touch();
                (slot.cache.acquire(), &slot.cache)
            }
            None => match self.cache.for_params(params) {
                Ok(cache) => {
                    let acquire = cache.acquire();
                    let waiting_on = matches!(acquire, Acquire::Wait(..)).then_some(cache);
                    return KeyAcquire {
                        acquire,
                        waiting_on,
                    };
                }
                Err(error) => (Acquire::Failed(error), &self.cache),
            },
        };
        let waiting_on = matches!(acquire, Acquire::Wait(..)).then(|| cache.clone());
        KeyAcquire {
            acquire,
            waiting_on,
        }
    }
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.cache, f)
    }
}
