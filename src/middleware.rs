//! [`BearerAuthMiddleware`]: the bearer layer for `reqwest-middleware`
//! clients (`ClientWithMiddleware`).
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use tower_bearer::{BearerAuthLayer, Scope, Token, middleware::BearerAuthMiddleware, source::StaticSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any source: `ClientCredentials`, `TokenExchange`, your own.
//! let layer = BearerAuthLayer::new(StaticSource::new(Token::bearer("t0k3n")))
//!     .scope(Scope::origins(["https://api.example.com"])?);
//!
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     // Every setting of the layer carries over; a 401 is retried once.
//!     .with(BearerAuthMiddleware::from_layer(layer))
//! #   .with(StandIn)
//!     .build();
//!
//! let response = client.get("https://api.example.com/v1/me").send().await?;
//! # assert_eq!(response.text().await?, "Bearer t0k3n");
//! # Ok(()) }
//! # // The API, stood in for by the end of the chain: it answers with the
//! # // header it was sent, and no request leaves the process.
//! # struct StandIn;
//! # #[async_trait::async_trait]
//! # impl reqwest_middleware::Middleware for StandIn {
//! #     async fn handle(&self, req: reqwest::Request, _: &mut http::Extensions, _: reqwest_middleware::Next<'_>) -> reqwest_middleware::Result<reqwest::Response> {
//! #         let seen = req.headers()["authorization"].to_str().unwrap().to_owned();
//! #         Ok(http::Response::new(seen).into())
//! #     }
//! # }
//! ```
//!
//! # One set of rules
//!
//! The middleware sends each request through the same [`BearerAuth`](crate::BearerAuth)
//! service a [`BearerAuthLayer`] builds, with the rest of the middleware
//! chain as its inner service: it behaves as the layer does, setting for
//! setting. Configure the layer (header name, `overwrite_existing`,
//! [`Scope`](crate::Scope), rejection statuses, invalidation, `token_for`)
//! and hand it over with [`BearerAuthMiddleware::from_layer`];
//! [`new`](BearerAuthMiddleware::new), [`keyed`](BearerAuthMiddleware::keyed)
//! and [`with_cache`](BearerAuthMiddleware::with_cache) take the layer's
//! defaults. A [`TokenCache`] shared with tower stacks serves them all one
//! token.
//!
//! - **Per request**, the chain's [`Extensions`] are the request's: a
//!   [`TokenParams`](crate::TokenParams) there names the token of a keyed
//!   cache, an [`OptOut`] turns off the token, its invalidation or the
//!   retry (`client.get(url).with_extension(OptOut::default().skip_retry())`).
//! - **A rejected token** (a `401`, or another of the rejection statuses,
//!   unless its challenge says `insufficient_scope`) is thrown away if it
//!   is still the current one, and the request is sent once more with a
//!   fresh token, as [`RetryOnUnauthorized`] does in a tower stack; so is a
//!   request an API answered with a DPoP `use_dpop_nonce` challenge, with a
//!   new proof carrying the nonce. A request whose body is a stream cannot
//!   be sent twice: its answer comes back as it came (the token is thrown
//!   away all the same). Turn the retry off with
//!   [`retry_on_unauthorized`](BearerAuthMiddleware::retry_on_unauthorized).
//! - **No token, no request.** When no token can be had the request is not
//!   sent, and the error is a [`reqwest_middleware::Error::Middleware`]
//!   holding the [`TokenError`](crate::TokenError), which says why and
//!   holds no secret: `error.downcast_ref::<TokenError>()` reads it.
//!   Errors of the rest of the chain pass through unchanged.
//! - **Order.** Middlewares run in the order they are added. One added
//!   before this one (outside) sees requests without the token; one added
//!   after it sees the token (in a sensitive header value) and each attempt,
//!   the retry included.
//! - **Redirects** are followed by `reqwest::Client`, below the chain: as
//!   with the layer, the scope sees the first URL only, and reqwest itself
//!   drops `authorization` on a hop to another origin (see
//!   [`scope`](crate::scope#redirects)).
//!
//! # Cost
//!
//! A request builds the service anew (the chain's `Next` lives for one
//! call): a few reference counts, no lock, no allocation; the token comes
//! from the cache's lock-free path. With the retry on, a request that may
//! be retried is copied before it is sent (`reqwest::Request::try_clone`:
//! its URL, headers and a reference to its body), as tower's retry does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use http::{Extensions, HeaderMap, Method};
use reqwest_middleware::{Middleware, Next};
use tower::retry::Policy;
use tower_layer::Layer;
use tower_service::Service;

use crate::cache::TokenCache;
use crate::error::Error;
use crate::layer::BearerAuthLayer;
use crate::opt_out::OptOut;
use crate::request::{AuthRequest, Target};
use crate::retry::RetryOnUnauthorized;
use crate::source::{KeyedTokenSource, TokenSource};

/// A [`reqwest_middleware::Middleware`] that attaches an OAuth2 bearer token
/// to every request, with the rules of a [`BearerAuthLayer`].
///
/// See the [module docs](self).
#[derive(Clone, Debug)]
pub struct BearerAuthMiddleware {
    layer: BearerAuthLayer,
    retry: bool,
}

impl BearerAuthMiddleware {
    /// A middleware over a new cache with the layer's default settings for
    /// `source`.
    pub fn new(source: impl TokenSource) -> Self {
        Self::from_layer(BearerAuthLayer::new(source))
    }

    /// A middleware over a new keyed cache for `source`: a request gets the
    /// token for the [`TokenParams`](crate::TokenParams) its extensions
    /// name, or the default token.
    pub fn keyed(source: impl KeyedTokenSource) -> Self {
        Self::from_layer(BearerAuthLayer::keyed(source))
    }

    /// A middleware over an existing cache, with the layer's default
    /// settings: share one cache (and so one token) with tower stacks.
    pub fn with_cache(cache: TokenCache) -> Self {
        Self::from_layer(BearerAuthLayer::with_cache(cache))
    }

    /// A middleware with every setting of `layer`, over its cache.
    pub fn from_layer(layer: BearerAuthLayer) -> Self {
        Self { layer, retry: true }
    }

    /// Whether a request whose token the API rejected (or that must carry
    /// a DPoP nonce) is sent once more, with the new token, when its body
    /// can be replayed. Defaults to `true`. When `false`, the rejection
    /// comes back to the caller; the token is still thrown away, as the
    /// layer's [`invalidate_on_unauthorized`](BearerAuthLayer::invalidate_on_unauthorized)
    /// says.
    pub fn retry_on_unauthorized(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    /// The cache the middleware takes its tokens from.
    pub fn cache(&self) -> &TokenCache {
        self.layer.cache()
    }
}

impl From<BearerAuthLayer> for BearerAuthMiddleware {
    fn from(layer: BearerAuthLayer) -> Self {
        Self::from_layer(layer)
    }
}

#[async_trait::async_trait]
impl Middleware for BearerAuthMiddleware {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        // The copy is taken before the token goes in: the retry must carry
        // the new token, not keep the old one as a header of its own.
        let mut policy = retry_policy();
        // The extensions too, as tower's retry copies a request's: the
        // first attempt must not leave what the chain below it set on them
        // for the second.
        let replay = match extensions.get::<OptOut>() {
            Some(opt_out) if opt_out.skips_token() || opt_out.skips_retry() => None,
            _ if self.retry => policy
                .clone_request(&request)
                .map(|replay| (replay, extensions.clone())),
            _ => None,
        };
        let mut result = send(&self.layer, next.clone(), request, extensions).await;
        // The policy that decides for tower stacks decides here: a response
        // the service marked (token rejected, DPoP nonce asked for).
        if let Some((mut replay, replay_extensions)) = replay
            && policy.retry(&mut replay, &mut result).is_some()
        {
            drop(result);
            *extensions = replay_extensions;
            result = send(&self.layer, next, replay, extensions).await;
        }
        result.map_err(|error| match error {
            Error::Token(error) => reqwest_middleware::Error::middleware(error),
            Error::Service(error) => error,
        })
    }
}

/// What the service gives for one request sent down the chain.
type Sent = Result<reqwest::Response, Error<reqwest_middleware::Error>>;

/// The retry policy of tower stacks, for this chain's types.
fn retry_policy()
-> impl Policy<reqwest::Request, reqwest::Response, Error<reqwest_middleware::Error>> {
    RetryOnUnauthorized::default()
}

/// Sends `request` down the chain through the service `layer` builds,
/// which reads the chain's `extensions` as the request's. Not an `async
/// fn`: its future is the service's own, `Send` by its type.
fn send<'a>(
    layer: &BearerAuthLayer,
    next: Next<'a>,
    request: reqwest::Request,
    extensions: &'a mut Extensions,
) -> impl Future<Output = Sent> + Send + 'a {
    // A service per call: it holds the chain's `Next`, which lives for this
    // call only. What the call needs of the service, its future keeps.
    let mut service = layer.layer(Forward(next));
    // `Forward` is always ready, and so is the service: nothing to wait for.
    let ready = service.poll_ready(&mut Context::from_waker(Waker::noop()));
    debug_assert!(matches!(ready, Poll::Ready(Ok(()))));
    service.call(Outgoing {
        request,
        extensions,
    })
}

/// A request on its way down the chain, with the chain's extensions, where
/// it may carry [`TokenParams`](crate::TokenParams) and [`OptOut`].
struct Outgoing<'a> {
    request: reqwest::Request,
    extensions: &'a mut Extensions,
}

impl AuthRequest for Outgoing<'_> {
    fn headers(&self) -> &HeaderMap {
        self.request.headers()
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.request.headers_mut()
    }

    fn target(&self) -> Target<'_> {
        self.request.target()
    }

    fn extensions(&self) -> Option<&Extensions> {
        Some(self.extensions)
    }

    fn method(&self) -> Option<&Method> {
        Some(self.request.method())
    }
}

/// The rest of the chain, as the service's inner service. A `Next` is two
/// references: cloning it is free.
#[derive(Clone)]
struct Forward<'a>(Next<'a>);

/// The future of the rest of the chain, as `Next::run` returns it.
type ChainFuture<'a> =
    Pin<Box<dyn Future<Output = reqwest_middleware::Result<reqwest::Response>> + Send + 'a>>;

impl<'a> Service<Outgoing<'a>> for Forward<'a> {
    type Response = reqwest::Response;
    type Error = reqwest_middleware::Error;
    type Future = ChainFuture<'a>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, outgoing: Outgoing<'a>) -> Self::Future {
        self.0.clone().run(outgoing.request, outgoing.extensions)
    }
}
