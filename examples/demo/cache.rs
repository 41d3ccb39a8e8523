//! The token cache the workload shares, alone or in front of the fleet-wide
//! store (`--redis`).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
#[cfg(feature = "redis")]
use std::sync::atomic::Ordering;

#[cfg(feature = "redis")]
use tower_bearer::store::StoreKey;
use tower_bearer::{ClientCredentials, TokenCache};

use crate::args::Args;

/// The token cache the workload shares, with the crate's defaults. With
/// `--redis`, its source is the fleet-wide store in front of `source`, and
/// the counter says how many fetches reached the token endpoint.
#[cfg(feature = "redis")]
pub fn build_cache(source: ClientCredentials, args: &Args) -> (TokenCache, Option<Arc<AtomicU64>>) {
    let Some(store) = &args.redis else {
        return (TokenCache::builder(source).build(), None);
    };
    // What identifies the token; never the secret or the x-api-key.
    let key = StoreKey::builder()
        .token_url(source.token_url().as_str())
        .client_id(source.client_id())
        .scopes(source.scopes())
        .build();
    let endpoint_fetches = Arc::new(AtomicU64::new(0));
    let counted = CountedSource {
        inner: source,
        fetches: Arc::clone(&endpoint_fetches),
    };
    let cache = TokenCache::builder(store.share(counted, key)).build();
    (cache, Some(endpoint_fetches))
}

/// The token cache the workload shares, with the crate's defaults.
#[cfg(not(feature = "redis"))]
pub fn build_cache(
    source: ClientCredentials,
    _args: &Args,
) -> (TokenCache, Option<Arc<AtomicU64>>) {
    (TokenCache::builder(source).build(), None)
}

/// Counts the fetches that reach the wrapped source, to tell them from those
/// the shared store answered.
#[cfg(feature = "redis")]
struct CountedSource<S> {
    inner: S,
    fetches: Arc<AtomicU64>,
}

#[cfg(feature = "redis")]
impl<S: tower_bearer::TokenSource> tower_bearer::TokenSource for CountedSource<S> {
    type Error = S::Error;

    fn fetch(&self) -> impl Future<Output = Result<tower_bearer::Token, S::Error>> + Send {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.inner.fetch()
    }

    fn classify(&self, error: &S::Error) -> tower_bearer::ErrorClass {
        self.inner.classify(error)
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}
