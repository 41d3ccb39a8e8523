//! [`BearerAuthLayer`]: wraps any tower HTTP service in [`BearerAuth`].
//!
//! ```
//! use std::convert::Infallible;
//! use http::header::HeaderName;
//! use tower::ServiceBuilder;
//! use tower_bearer::{BearerAuthLayer, Scope, Token, source::StaticSource};
//!
//! let layer = BearerAuthLayer::new(StaticSource::new(Token::bearer("t")))
//!     // Defaults: `authorization`, an existing header is kept, every request
//!     // is in scope, a 401 invalidates the token it carried.
//!     .header_name(HeaderName::from_static("x-access-token"))
//!     .overwrite_existing(true)
//!     .scope(Scope::https_only())
//!     .invalidate_on_unauthorized(true);
//!
//! let service = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|_req: http::Request<()>| async { Ok::<_, Infallible>(http::Response::new(())) });
//! # drop(service);
//! ```

use http::HeaderName;
use http::header::AUTHORIZATION;
use tower_layer::Layer;

use crate::cache::TokenCache;
use crate::scope::Scope;
use crate::service::{BearerAuth, Settings};
use crate::source::TokenSource;

/// A [`Layer`] that attaches an OAuth2 bearer token to every request.
///
/// Every service it builds shares one [`TokenCache`].
#[derive(Clone, Debug)]
pub struct BearerAuthLayer {
    cache: TokenCache,
    settings: Settings,
}

impl BearerAuthLayer {
    /// A layer over a new cache with default settings for `source`.
    pub fn new(source: impl TokenSource) -> Self {
        Self::with_cache(TokenCache::new(source))
    }

    /// A layer over an existing cache: share one cache between stacks, or
    /// configure it with [`TokenCache::builder`].
    pub fn with_cache(cache: TokenCache) -> Self {
        Self {
            cache,
            settings: Settings {
                header_name: AUTHORIZATION,
                overwrite_existing: false,
                scope: Scope::any(),
                invalidate_on_unauthorized: true,
            },
        }
    }

    /// The header the token goes in. Defaults to `authorization`.
    ///
    /// With `reqwest::Client` and a custom name, turn off reqwest's own
    /// redirects: it strips only `authorization` on a cross-origin hop (see
    /// [`Scope`]).
    pub fn header_name(mut self, name: HeaderName) -> Self {
        self.settings.header_name = name;
        self
    }

    /// Whether to replace a header the request already carries. Defaults to
    /// `false`: a request that brings its own credentials keeps them and is
    /// sent as it is.
    ///
    /// In a proxy that forwards inbound requests, strip the caller's
    /// `Authorization` before this layer (or set this to `true`): otherwise
    /// the caller's credentials go upstream instead of the service's token.
    pub fn overwrite_existing(mut self, overwrite: bool) -> Self {
        self.settings.overwrite_existing = overwrite;
        self
    }

    /// Which requests get the token. Defaults to [`Scope::any`].
    pub fn scope(mut self, scope: Scope) -> Self {
        self.settings.scope = scope;
        self
    }

    /// Whether a `401` (or gRPC `UNAUTHENTICATED`) response throws away the
    /// token its request carried, if it is still the current one, and starts
    /// the fetch of a new one. Defaults to `true`.
    pub fn invalidate_on_unauthorized(mut self, invalidate: bool) -> Self {
        self.settings.invalidate_on_unauthorized = invalidate;
        self
    }

    /// The cache the layer's services share.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> BearerAuth<S> {
        BearerAuth::new(inner, self.cache.clone(), self.settings.clone())
    }
}
