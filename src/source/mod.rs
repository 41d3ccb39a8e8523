//! Where tokens come from: the [`TokenSource`] trait and the sources shipped
//! with the crate.
//!
//! A source knows how to get one token and nothing of caching: the
//! [`TokenCache`](crate::TokenCache) decides when to ask, makes sure only one
//! fetch runs at a time, and shares its result.
//!
//! The sources shipped: [`StaticSource`] (one token, always), [`FnSource`]
//! (an async closure), and with the `client-credentials` feature
//! `client_credentials::ClientCredentials` (RFC 6749 section 4.4) and
//! `token_exchange::TokenExchange` (RFC 8693: a token the workload holds,
//! a Kubernetes service-account token say, exchanged for one the API
//! takes). For tests of your own stack, the `test-util` feature adds
//! `scripted::ScriptedSource` (a script of tokens, errors, delays and
//! hangs).
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::{Token, TokenSource, source::FnSource};
//!
//! # async fn run() -> Result<(), tower_bearer::BoxError> {
//! // An async closure as a source, for tokens from anywhere.
//! let source = FnSource::new(|| async {
//!     Ok::<_, std::io::Error>(Token::bearer("from-vault").with_lifetime(Duration::from_secs(600)))
//! });
//! let token = source.fetch().await?;
//! assert_eq!(token.access_token().secret(), "from-vault");
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(run()).unwrap();
//! ```

#[cfg(feature = "client-credentials")]
#[cfg_attr(docsrs, doc(cfg(feature = "client-credentials")))]
pub mod client_auth;
#[cfg(feature = "client-credentials")]
#[cfg_attr(docsrs, doc(cfg(feature = "client-credentials")))]
pub mod client_credentials;
#[cfg(feature = "client-credentials")]
#[cfg_attr(docsrs, doc(cfg(feature = "client-credentials")))]
pub mod discovery;
#[cfg(feature = "client-credentials")]
pub(crate) mod jwt_exp;
pub(crate) mod keyed;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod scripted;
#[cfg(feature = "client-credentials")]
#[cfg_attr(docsrs, doc(cfg(feature = "client-credentials")))]
pub mod token_exchange;

pub use keyed::KeyedTokenSource;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{BoxError, ErrorClass, SourceError};
use crate::token::Token;

/// A boxed, `Send` future, as [`BoxTokenSource`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Yields access tokens, asynchronously.
///
/// Implement it for any place tokens come from. The cache calls
/// [`fetch`](TokenSource::fetch) when it needs a token, at most one call at a
/// time, and asks [`classify`](TokenSource::classify) how to retry a failure.
///
/// The trait uses `impl Future` returns; where a trait object is needed, wrap
/// the source in [`BoxTokenSource`].
pub trait TokenSource: Send + Sync + 'static {
    /// The error a fetch can fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Fetches a new token.
    fn fetch(&self) -> impl Future<Output = Result<Token, Self::Error>> + Send;

    /// Says whether a failure is worth retrying soon.
    ///
    /// Defaults to transient with no `Retry-After`.
    fn classify(&self, error: &Self::Error) -> ErrorClass {
        let _ = error;
        ErrorClass::TRANSIENT
    }

    /// A short name for the kind of source, used in tracing spans.
    ///
    /// Defaults to `"custom"`.
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// Whether the tokens this source yields are bound to a key only this
    /// process holds (DPoP, RFC 9449): no other process can use them, so a
    /// fleet store neither shares them nor hands this source a token
    /// another process shared.
    ///
    /// Defaults to `false`. The client-credentials and token-exchange
    /// sources say `true` when given a DPoP key; a fleet store also notices
    /// a bound token when one comes back.
    fn binds_tokens(&self) -> bool {
        false
    }
}

/// The object-safe form of [`TokenSource`], implemented for every source.
pub trait DynTokenSource: Send + Sync + 'static {
    /// Fetches a new token, boxing the future and erasing the error.
    fn fetch_dyn(&self) -> BoxFuture<'_, Result<Token, SourceError>>;
    /// See [`TokenSource::kind`].
    fn kind_dyn(&self) -> &'static str;
    /// See [`TokenSource::binds_tokens`].
    fn binds_tokens_dyn(&self) -> bool;
}

impl<T: TokenSource> DynTokenSource for T {
    fn fetch_dyn(&self) -> BoxFuture<'_, Result<Token, SourceError>> {
        Box::pin(async move {
            self.fetch().await.map_err(|error| {
                let class = self.classify(&error);
                SourceError::new(error, class)
            })
        })
    }

    fn kind_dyn(&self) -> &'static str {
        self.kind()
    }

    fn binds_tokens_dyn(&self) -> bool {
        self.binds_tokens()
    }
}

/// A type-erased token source: one type for any source, cheap to clone.
///
/// ```
/// use tower_bearer::{Token, source::{BoxTokenSource, StaticSource}};
///
/// let sources: Vec<BoxTokenSource> = vec![
///     BoxTokenSource::new(StaticSource::new(Token::bearer("a"))),
///     BoxTokenSource::new(StaticSource::new(Token::bearer("b"))),
/// ];
/// assert_eq!(sources.len(), 2);
/// ```
#[derive(Clone)]
pub struct BoxTokenSource(Arc<dyn DynTokenSource>);

impl BoxTokenSource {
    /// Erases the source's type.
    pub fn new(source: impl TokenSource) -> Self {
        Self(Arc::new(source))
    }
}

impl fmt::Debug for BoxTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BoxTokenSource")
            .field(&self.0.kind_dyn())
            .finish()
    }
}

impl TokenSource for BoxTokenSource {
    type Error = SourceError;

    fn fetch(&self) -> impl Future<Output = Result<Token, SourceError>> + Send {
        self.0.fetch_dyn()
    }

    fn classify(&self, error: &SourceError) -> ErrorClass {
        error.class()
    }

    fn kind(&self) -> &'static str {
        self.0.kind_dyn()
    }

    fn binds_tokens(&self) -> bool {
        self.0.binds_tokens_dyn()
    }
}

/// A source that always yields the same token: for API keys used as bearer
/// tokens, and for tests.
#[derive(Clone, Debug)]
pub struct StaticSource {
    token: Token,
}

impl StaticSource {
    /// A source that yields `token` every time.
    pub fn new(token: Token) -> Self {
        Self { token }
    }
}

impl TokenSource for StaticSource {
    type Error = Infallible;

    fn fetch(&self) -> impl Future<Output = Result<Token, Infallible>> + Send {
        std::future::ready(Ok(self.token.clone()))
    }

    fn kind(&self) -> &'static str {
        "static"
    }

    fn binds_tokens(&self) -> bool {
        self.token.is_bound()
    }
}

/// A source made of a closure that returns a future: tokens from a vault, a
/// sidecar, a file, another library.
///
/// ```
/// use tower_bearer::{Token, source::FnSource};
///
/// let source = FnSource::new(|| async {
///     let value = std::env::var("API_TOKEN").map_err(std::io::Error::other)?;
///     Ok::<_, std::io::Error>(Token::bearer(value))
/// });
/// # let _ = source;
/// ```
pub struct FnSource<F> {
    f: F,
}

impl<F> FnSource<F> {
    /// A source that calls `f` for each fetch.
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F> fmt::Debug for FnSource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnSource")
    }
}

impl<F, Fut, E> TokenSource for FnSource<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, E>> + Send,
    E: Into<BoxError>,
{
    type Error = FnSourceError;

    fn fetch(&self) -> impl Future<Output = Result<Token, FnSourceError>> + Send {
        let fut = (self.f)();
        async move { fut.await.map_err(|e| FnSourceError(e.into())) }
    }

    fn classify(&self, error: &FnSourceError) -> ErrorClass {
        // A closure may return a SourceError to say how to retry.
        error
            .0
            .downcast_ref::<SourceError>()
            .map_or(ErrorClass::TRANSIENT, SourceError::class)
    }

    fn kind(&self) -> &'static str {
        "fn"
    }
}

/// The error of an [`FnSource`]: the closure's error, boxed.
///
/// A closure that returns a [`SourceError`] chooses how the failure is
/// retried; any other error is transient.
#[derive(Debug)]
pub struct FnSourceError(BoxError);

impl FnSourceError {
    /// The closure's error.
    pub fn into_inner(self) -> BoxError {
        self.0
    }

    /// The closure's error, borrowed.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Display for FnSourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for FnSourceError {
    // Transparent: Display already prints the closure's error.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Whether an HTTP status means "later" (408, 429 and 5xx), for a token
/// endpoint and a metadata document alike.
#[cfg(feature = "client-credentials")]
pub(crate) fn transient_status(status: http::StatusCode) -> bool {
    status == http::StatusCode::TOO_MANY_REQUESTS
        || status == http::StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}
