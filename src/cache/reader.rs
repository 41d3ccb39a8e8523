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

/// The cache's current token, for [`arc_swap::Cache`].
#[derive(Clone)]
struct Current(Arc<Shared>);

impl std::ops::Deref for Current {
    type Target = ArcSwapOption<Entry>;

    fn deref(&self) -> &Self::Target {
        &self.0.current
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

    /// The token for `params` (not empty), and the key's cache when the
    /// request must wait for it. For a held key, no lock and no shared
    /// write: one arc-swap load each for the map and the key's token (they
    /// write only to this thread's own slot), and a relaxed load that sees
    /// the key marked used. A new key is made under the map's lock. The map
    /// is loaded per request, not kept: an idle service must not keep
    /// evicted keys alive.
    pub(crate) fn acquire_for(&self, params: &TokenParams) -> (Acquire, Option<TokenCache>) {
        let Some(keys) = self.cache.shared.keys.as_ref() else {
            return (Acquire::Failed(TokenError::not_keyed()), None);
        };
        let map = keys.map.load();
        let made;
        let cache = match map.get(params) {
            Some(slot) => {
                slot.touch();
                &slot.cache
            }
            None => match self.cache.for_params(params) {
                Ok(cache) => {
                    made = cache;
                    &made
                }
                Err(error) => return (Acquire::Failed(error), None),
            },
        };
        let acquire = cache.acquire();
        let waiting_on = matches!(acquire, Acquire::Wait(..)).then(|| cache.clone());
        (acquire, waiting_on)
    }
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.cache, f)
    }
}
