//! The token cache the workload shares, alone or in front of the fleet-wide
//! store (`--redis`, client-credentials tokens only): a keyed cache, whose default token serves the requests
//! that name no resource and whose keys serve those that do (one token per
//! resource, each with its own single flight and backoff).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
#[cfg(feature = "redis")]
use std::sync::atomic::Ordering;

#[cfg(feature = "redis")]
use tower_bearer::store::StoreKey;
use tower_bearer::{ClientCredentials, TokenCache, TokenExchange};

use crate::args::Args;

/// The source of the run's tokens, as `--grant` chose it.
pub enum Source {
    ClientCredentials(ClientCredentials),
    TokenExchange(TokenExchange),
}

/// The token cache the workload shares, with the crate's defaults. With
/// `--redis`, its source is the fleet-wide store in front of `source` (each
/// key shared under its own Redis key), and the counter says how many
/// fetches reached the token endpoint.
#[cfg(feature = "redis")]
pub fn build_cache(source: Source, args: &Args) -> (TokenCache, Option<Arc<AtomicU64>>) {
    let source = match source {
        // Its token is the subject's: never shared (the arguments refuse
        // --redis with it).
        Source::TokenExchange(source) => return (TokenCache::keyed_builder(source).build(), None),
        Source::ClientCredentials(source) => source,
    };
    let Some(store) = &args.redis else {
        return (TokenCache::keyed_builder(source).build(), None);
    };
    // What identifies the token; never the secret or the x-api-key. The
    // default token's resources and audiences are extra parameters. A
    // discovered source is known by its issuer.
    let provider = source.token_url().or(source.issuer());
    let mut key = StoreKey::builder()
        .token_url(provider.map_or("", |url| url.as_str()))
        .client_id(source.client_id())
        .scopes(source.scopes());
    for (name, value) in source.extra_params() {
        key = key.param(name.clone(), value.clone());
    }
    let endpoint_fetches = Arc::new(AtomicU64::new(0));
    let counted = CountedSource {
        inner: source,
        fetches: Arc::clone(&endpoint_fetches),
    };
    let cache = TokenCache::keyed_builder(store.share(counted, key.build())).build();
    (cache, Some(endpoint_fetches))
}

/// The token cache the workload shares, with the crate's defaults.
#[cfg(not(feature = "redis"))]
pub fn build_cache(source: Source, _args: &Args) -> (TokenCache, Option<Arc<AtomicU64>>) {
    let cache = match source {
        Source::ClientCredentials(source) => TokenCache::keyed_builder(source).build(),
        Source::TokenExchange(source) => TokenCache::keyed_builder(source).build(),
    };
    (cache, None)
}

/// Counts the fetches that reach the wrapped source, to tell them from those
/// the shared store answered; each key's source counts into the same total.
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

#[cfg(feature = "redis")]
impl<S: tower_bearer::source::KeyedTokenSource> tower_bearer::source::KeyedTokenSource
    for CountedSource<S>
{
    type Keyed = CountedSource<S::Keyed>;

    fn for_params(&self, params: &tower_bearer::TokenParams) -> Result<Self::Keyed, S::Error> {
        Ok(CountedSource {
            inner: self.inner.for_params(params)?,
            fetches: Arc::clone(&self.fetches),
        })
    }
}
