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

use std::sync::Arc;

use http::HeaderName;
use http::header::AUTHORIZATION;
use tower_layer::Layer;

use crate::cache::TokenCache;
use crate::params::TokenParams;
use crate::rejection::RejectionStatuses;
use crate::request::Target;
use crate::scope::Scope;
use crate::service::{BearerAuth, Selector, Settings};
use crate::source::{KeyedTokenSource, TokenSource};

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

    /// A layer over a new keyed cache with default settings for `source`:
    /// each request gets the token for the [`TokenParams`] it names (see
    /// [`token_for`](Self::token_for)), or the default token.
    pub fn keyed(source: impl KeyedTokenSource) -> Self {
        Self::with_cache(TokenCache::keyed(source))
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
                rejection_statuses: RejectionStatuses::default(),
                selector: None,
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

    /// Whether a response that rejects the token (a `401`, or gRPC
    /// `UNAUTHENTICATED`; see [`rejection_statuses`](Self::rejection_statuses))
    /// throws away the token its request carried, if it is still the
    /// current one, and starts the fetch of a new one. Defaults to `true`.
    pub fn invalidate_on_unauthorized(mut self, invalidate: bool) -> Self {
        self.settings.invalidate_on_unauthorized = invalidate;
        self
    }

    /// The statuses that mean the API rejected the token, unless its
    /// `WWW-Authenticate` challenge says `insufficient_scope` (see
    /// [`rejection`](crate::rejection)). Defaults to `401` alone; add `403`
    /// for APIs that answer it for an expired token.
    pub fn rejection_statuses(mut self, statuses: RejectionStatuses) -> Self {
        self.settings.rejection_statuses = statuses;
        self
    }

    /// Picks the token a request needs from where it goes, when the request
    /// does not name one itself (a [`TokenParams`] extension wins). `None`
    /// gives the default token. Needs a keyed cache
    /// ([`BearerAuthLayer::keyed`]); otherwise a request it picks params
    /// for fails, rather than carry the wrong token.
    ///
    /// ```
    /// use tower_bearer::{BearerAuthLayer, TokenParams};
    /// # use tower_bearer::{Token, TokenSource, source::KeyedTokenSource};
    /// # #[derive(Clone)] struct Idp;
    /// # impl TokenSource for Idp { type Error = std::convert::Infallible;
    /// #   fn fetch(&self) -> impl std::future::Future<Output = Result<Token, Self::Error>> + Send { std::future::ready(Ok(Token::bearer("t"))) } }
    /// # impl KeyedTokenSource for Idp { type Keyed = Idp;
    /// #   fn for_params(&self, _: &TokenParams) -> Result<Idp, Self::Error> { Ok(Idp) } }
    /// # let source = Idp;
    ///
    /// let graph = TokenParams::for_resource("https://graph.example.com");
    /// let billing = TokenParams::for_audience("billing-api");
    /// let layer = BearerAuthLayer::keyed(source).token_for(move |target| {
    ///     match (target.host(), target.path()) {
    ///         (Some("graph.example.com"), _) => Some(graph.clone()),
    ///         (_, path) if path.starts_with("/billing/") => Some(billing.clone()),
    ///         _ => None,
    ///     }
    /// });
    /// # drop(layer);
    /// ```
    pub fn token_for<F>(mut self, select: F) -> Self
    where
        F: Fn(&Target<'_>) -> Option<TokenParams> + Send + Sync + 'static,
    {
        if !self.cache.is_keyed() {
            // Said now, not only on the first request that fails.
            tracing::warn!(
                "BearerAuthLayer::token_for on a cache that is not keyed: requests it picks a key for will fail; build the cache with TokenCache::keyed"
            );
        }
        self.settings.selector = Some(Selector(Arc::new(select)));
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
