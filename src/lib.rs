//! OAuth2 bearer authentication for any tower HTTP service, done right.
//!
//! [`BearerAuthLayer`] wraps a tower service (a hyper-util client, a tonic
//! channel, `reqwest::Client`, an axum proxy), obtains an access token from a
//! [`TokenSource`] when the first request needs one, caches it, refreshes it
//! ahead of expiry with a single fetch, and attaches
//! `Authorization: Bearer <token>` to every request.
//!
//! # Quick start
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_bearer::{BearerAuthLayer, Token, source::FnSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let source = FnSource::new(|| async {
//!     // Ask your identity provider here; see `source::client_credentials`,
//!     // or `source::token_exchange` for workload identity.
//!     Ok::<_, std::io::Error>(Token::bearer("eyJhbGciOi").with_lifetime(std::time::Duration::from_secs(3600)))
//! });
//!
//! let mut client = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(source))
//!     .service_fn(|req: http::Request<()>| async move {
//!         // Your HTTP client goes here.
//!         Ok::<_, Infallible>(http::Response::new(req.headers()["authorization"].clone()))
//!     });
//!
//! let res = client.ready().await?.call(http::Request::new(())).await?;
//! assert_eq!(res.body(), "Bearer eyJhbGciOi");
//! # Ok(()) }
//! ```
//!
//! # How the cache behaves
//!
//! One [`TokenCache`] holds one token; clone it (or the layer) to share it
//! between stacks. See the [`cache`] module for the full story.
//!
//! - **Lazy.** Building the layer fetches nothing and needs no runtime. The
//!   first request that needs a token starts the fetch.
//! - **Single flight.** However many requests find no usable token, the
//!   source is called once and every waiter gets its result, success or
//!   error. The fetch runs on its own task: a dropped request cancels
//!   nothing.
//! - **Hot path.** While the token is fresh, a request costs a check that
//!   the service's cached view is current, a flag, a header clone and an
//!   insert: no lock, no await, no shared write but the header's reference
//!   count, and on a multi-thread runtime no clock read (a timer marks the
//!   token due; see [`cache::FreshnessCheck`]).
//! - **Refresh ahead.** Past its refresh point (5% of the usable time plus
//!   twice the observed fetch time before the usable end, with jitter) the
//!   first request starts one background refresh and goes on with the
//!   still-valid token. No request waits while a token is usable, and a
//!   token is refetched about once per usable lifetime, not twice.
//! - **Never a dead token.** A token is never attached past its usable end,
//!   even one that arrives from a slow provider already past it.
//! - **Failures.** A failed refresh keeps the usable token. After a failure
//!   the cache backs off (exponentially, with jitter, honouring
//!   `Retry-After`); meanwhile requests with no usable token fail at once with
//!   the last error, so an outage costs the provider one request per backoff
//!   step. A request is never sent without its token.
//! - **401.** A `401` (or gRPC `UNAUTHENTICATED`) throws away the token that
//!   request carried, only if it is still current, and starts one refresh
//!   (unless its challenge says `insufficient_scope`).
//!   [`RetryOnUnauthorized`] re-sends a replayable request once.
//! - **Rejections.** Which statuses mean "token rejected" is configurable
//!   ([`BearerAuthLayer::rejection_statuses`]); a `WWW-Authenticate` Bearer
//!   challenge saying `insufficient_scope` keeps the token and is not
//!   retried ([`rejection`], [`Challenge`]). An [`OptOut`] extension turns
//!   off attaching, invalidation or the retry for one request.
//! - **Many tokens.** A keyed cache ([`TokenCache::keyed`]) keeps one token
//!   per [`TokenParams`] (scopes, audiences, resources), each with all of
//!   the above, in a bounded map; a request names its key as an extension,
//!   or [`BearerAuthLayer::token_for`] picks it from the request's target.
//!   See [`cache::keyed`].
//! - **DPoP.** A token bound to a key (RFC 9449) goes as
//!   `Authorization: DPoP <token>` with a fresh proof of possession on
//!   every request, the servers' nonces kept per origin; see `dpop` (with
//!   the `client-credentials` feature).
//! - **Scope.** [`Scope`] keeps the token to the origins it is meant for;
//!   a request whose URI names no origin (tonic) is never sent bare under a
//!   restricted scope.
//! - **Runtime.** Fetches and timers need a tokio runtime with its time
//!   driver, as `#[tokio::main]` builds it.
//!
//! # Choosing settings
//!
//! | setting | default | change it when |
//! |---|---|---|
//! | [`expiry_margin`](TokenCacheBuilder::expiry_margin) | 30 s | requests spend long in flight, or clocks are skewed |
//! | [`refresh_share`](TokenCacheBuilder::refresh_share) | 5% of the usable time | tokens are cheap and you want more room for retries |
//! | [`refresh_ahead`](TokenCacheBuilder::refresh_ahead) | at most 5 min | long-lived tokens should be renewed earlier; `ZERO` turns refresh-ahead off |
//! | [`refresh_jitter`](TokenCacheBuilder::refresh_jitter) | 0.2 | many processes share one provider |
//! | [`default_lifetime`](TokenCacheBuilder::default_lifetime) | 5 min | the provider omits `expires_in` and documents a lifetime |
//! | [`fetch_timeout`](TokenCacheBuilder::fetch_timeout) | 30 s | the provider is known to be fast or slow |
//! | [`backoff`](TokenCacheBuilder::backoff) | 1 s doubling to 60 s | the provider asks for gentler retries |
//! | [`freshness_check`](TokenCacheBuilder::freshness_check) | a timer on multi-thread runtimes, the clock on current-thread ones | every request runs on one current-thread runtime (`Timer`), or you want the clock on every request (`Clock`) |
//! | [`BearerAuthLayer::overwrite_existing`] | `false` | requests carry stale credentials you want replaced |
//! | [`BearerAuthLayer::scope`] | every request | the client talks to more than one origin |
//! | [`BearerAuthLayer::rejection_statuses`] | `401` | the API answers `403` for an expired token |
//! | [`max_keys`](TokenCacheBuilder::max_keys) | 1,000 | a keyed cache sees many keys (tenants, resources) |
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `client-credentials` | yes | the OAuth2 client-credentials source, the token-exchange source (RFC 8693, workload identity) and [`dpop`] (RFC 9449, sender-constrained tokens) (reqwest, serde, aws-lc-rs) |
//! | `rustls` | yes | TLS for the default reqwest client |
//! | `reqwest` | with `client-credentials` | the layer over `reqwest::Client` |
//! | `reqwest-middleware` | no | [`middleware::BearerAuthMiddleware`], the layer's rules for `reqwest-middleware` clients |
//! | `tonic` | no | token failures as `tonic::Status` with code `UNAVAILABLE` (transient) or `UNAUTHENTICATED` (permanent); without it gRPC callers get `UNKNOWN` with the same message |
//! | `redis` | no | a fleet-wide shared token store: one fetch per lifetime across processes |
//! | `metrics` | no | counters, histograms and gauges of every cache through the `metrics` facade (see `metrics`) |
//! | `test-util` | no | `source::scripted`: a token source that plays a script (tokens, errors, delays, hangs) and counts its calls, for testing your own client stack |
//!
//! # Observability
//!
//! [`TokenCache::stats`] returns monotonic counters (fetches started and
//! failed, refreshes ahead, requests served from cache, requests that waited,
//! requests failed fast, invalidations): export them as metrics counters.
//! With the `metrics` feature, every cache reports requests, fetches,
//! waits, invalidations and its token's schedule through the `metrics`
//! facade, labelled by cache name and token key (see `metrics`).
//! Every fetch runs in a `token_fetch` tracing span with its cache name,
//! source kind, reason, outcome and duration; failures, backoffs and invalidations are
//! events. No token or secret is ever logged.
//!
//! # Errors
//!
//! The service's error is [`Error`]: [`Error::Token`] when no token could be
//! had (the request was not sent), [`Error::Service`] for the inner service's
//! own error. Both convert into [`BoxError`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod binding;
pub mod cache;
pub mod challenge;
#[cfg(feature = "client-credentials")]
#[cfg_attr(docsrs, doc(cfg(feature = "client-credentials")))]
pub mod dpop;
pub mod error;
pub mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub mod middleware;
pub mod opt_out;
pub mod params;
mod redact;
pub mod rejection;
pub mod request;
pub mod retry;
pub mod scope;
pub mod service;
pub mod source;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod store;
pub mod token;

pub use cache::{Backoff, Stats, TokenCache, TokenCacheBuilder};
pub use challenge::Challenge;
pub use error::{BoxError, Error, ErrorClass, SourceError, TokenError, TokenErrorKind};
pub use layer::BearerAuthLayer;
pub use opt_out::OptOut;
pub use params::{TokenParams, TokenParamsBuilder};
pub use redact::redact_url;
pub use retry::RetryOnUnauthorized;
pub use scope::Scope;
pub use service::BearerAuth;
#[cfg(feature = "client-credentials")]
#[cfg_attr(docsrs, doc(cfg(feature = "client-credentials")))]
pub use source::client_credentials::{
    AuthStyle, ClientCredentials, ClientCredentialsBuilder, ClientCredentialsError, ClientSecret,
};
#[cfg(feature = "client-credentials")]
#[cfg_attr(docsrs, doc(cfg(feature = "client-credentials")))]
pub use source::token_exchange::{
    SecurityToken, TokenExchange, TokenExchangeBuilder, TokenExchangeError,
};
pub use source::{KeyedTokenSource, TokenSource};
pub use token::{AccessToken, Token};
