//! [`Reader`]: one service's view of a cache, for a hot path that touches
//! no shared reference count.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::entry::Entry;
use super::{Acquire, Shared, TokenCache};

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
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.cache, f)
    }
}
