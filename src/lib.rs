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
//!     // Ask your identity provider here; see `source::client_credentials`.
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
//! See [`cache`] for the whole story. In short: lazy (nothing is fetched
//! until a request needs a token), single-flight (one fetch however many
//! requests wait, and a dropped request does not cancel it), refresh-ahead
//! (no request waits while the token is usable), backoff after failures (the
//! provider sees about one request per backoff step during an outage), and a
//! 401 throws away only the token that request carried.
//!
//! # Errors
//!
//! The service's error is [`Error`]: [`Error::Token`] when no token could be
//! had (the request was not sent), [`Error::Service`] for the inner service's
//! own error. A request is never sent without its token because a fetch
//! failed.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cache;
pub mod error;
pub mod layer;
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
pub use error::{BoxError, Error, ErrorClass, SourceError, TokenError, TokenErrorKind};
pub use layer::BearerAuthLayer;
pub use retry::RetryOnUnauthorized;
pub use scope::Scope;
pub use service::BearerAuth;
pub use source::TokenSource;
pub use token::{AccessToken, Token};
