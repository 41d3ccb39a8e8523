//! Every live cache by id, so that a response future can report a 401
//! without holding a handle: cloning one per request would make every core
//! write the same reference count.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Weak};

use super::entry::TokenId;
use super::{Shared, TokenCache};

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

static REGISTRY: Mutex<BTreeMap<u64, Weak<Shared>>> = Mutex::new(BTreeMap::new());

fn registry() -> MutexGuard<'static, BTreeMap<u64, Weak<Shared>>> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registers a cache; returns its id.
pub(super) fn register(shared: Weak<Shared>) -> u64 {
    let id = NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed);
    registry().insert(id, shared);
    id
}

/// Forgets a cache that is being dropped.
pub(super) fn unregister(id: u64) {
    registry().remove(&id);
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
