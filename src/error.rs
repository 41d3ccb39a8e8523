//! Error types.
//!
//! A request through [`BearerAuth`](crate::BearerAuth) fails in one of two
//! ways, and [`Error`] tells them apart:
//!
//! - [`Error::Token`]: no token could be had, so the request was **not sent**.
//!   The [`TokenError`] inside says why (the source's own error, a timeout, a
//!   backoff after earlier failures, a token that is not a valid header value).
//! - [`Error::Service`]: the inner service's own error, passed through.
//!
//! ```
//! use tower_bearer::{Error, TokenError};
//!
//! fn explain<E: std::fmt::Display>(error: &Error<E>) -> String {
//!     match error {
//!         Error::Token(e) if e.is_transient() => format!("auth provider trouble, try later: {e}"),
//!         Error::Token(e) => format!("fix the credentials: {e}"),
//!         Error::Service(e) => format!("the API call failed: {e}"),
//!     }
//! }
//! # let _ = explain::<std::io::Error>;
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Alias for a type-erased error, as tower uses it.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The error of [`BearerAuth`](crate::BearerAuth)'s response future.
///
/// When the inner error is a concrete error type, `Error<E>` is a
/// `std::error::Error` and converts into [`BoxError`] with `?` or `.into()`,
/// so it fits any tower stack that erases errors. When the inner service
/// already returns a `BoxError` (behind `Buffer` or `Timeout`), use
/// [`Error::into_box_error`], for example with
/// `ServiceBuilder::map_err(Error::into_box_error)` above the layer.
#[derive(Debug)]
pub enum Error<E> {
    /// No token could be had; the request was not sent.
    Token(TokenError),
    /// The inner service failed.
    Service(E),
}

impl<E> Error<E> {
    /// The token error, if that is what this is.
    pub fn as_token_error(&self) -> Option<&TokenError> {
        match self {
            Error::Token(e) => Some(e),
            Error::Service(_) => None,
        }
    }

    /// Erases the type, whatever the inner error: the token error is boxed,
    /// the inner service's error converted.
    pub fn into_box_error(self) -> BoxError
    where
        E: Into<BoxError>,
    {
        match self {
            Error::Token(e) => Box::new(e),
            Error::Service(e) => e.into(),
        }
    }

    /// The inner service's error, if that is what this is.
    pub fn into_service_error(self) -> Option<E> {
        match self {
            Error::Service(e) => Some(e),
            Error::Token(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Token(e) => fmt::Display::fmt(e, f),
            Error::Service(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<E: StdError + 'static> StdError for Error<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Token(e) => e.source_for_chain(),
            Error::Service(e) => e.source(),
        }
    }
}

/// How a source's failure should be retried.
///
/// [`TokenSource::classify`](crate::TokenSource::classify) returns it; the
/// cache backs off exponentially after transient failures and at the
/// backoff's cap after permanent ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// May succeed on retry: transport failure, timeout, 429, 5xx.
    Transient {
        /// How long the provider asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Will fail again until something is fixed: `invalid_client`,
    /// `invalid_scope`, `unauthorized_client`, other 4xx.
    Permanent,
}

impl ErrorClass {
    /// A transient failure with no `Retry-After`.
    pub const TRANSIENT: ErrorClass = ErrorClass::Transient { retry_after: None };

    /// Whether this class is transient.
    pub fn is_transient(&self) -> bool {
        matches!(self, ErrorClass::Transient { .. })
    }
}

/// A source's error with its type erased and its class kept.
///
/// It is cheap to clone: one fetch's failure reaches every waiting request.
#[derive(Clone)]
pub struct SourceError {
    error: Arc<dyn StdError + Send + Sync>,
    class: ErrorClass,
}

impl SourceError {
    /// Wraps an error with its class.
    pub fn new(error: impl Into<BoxError>, class: ErrorClass) -> Self {
        Self {
            error: Arc::from(error.into()),
            class,
        }
    }

    /// How to retry.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The source's own error, if it is of type `T`.
    pub fn downcast_ref<T: StdError + 'static>(&self) -> Option<&T> {
        self.error.downcast_ref::<T>()
    }

    /// The source's own error.
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }
}

impl fmt::Debug for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceError")
            .field("error", &self.error)
            .field("class", &self.class)
            .finish()
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl StdError for SourceError {
    // Transparent: Display already prints the wrapped error.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

/// What kind of failure a [`TokenError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenErrorKind {
    /// The token source returned an error.
    Source,
    /// The token source did not answer within the fetch timeout.
    Timeout,
    /// The token source panicked.
    Panicked,
    /// The token is not a valid HTTP header value (control bytes, CR/LF).
    InvalidToken,
    /// No tokio runtime (with its time driver) was running to drive the fetch.
    NoRuntime,
    /// The fetch was cancelled before it finished (the runtime shut down).
    Cancelled,
    /// The fetch took longer than the token's usable life: the token was
    /// already past its usable end when it arrived. Transient.
    ExpiredOnArrival,
    /// The layer's [`Scope`](crate::Scope) is restricted, and the request's
    /// URI names no origin to check it against (a relative URI, as a tonic
    /// `Channel` sends through its layers). Permanent.
    UnknownOrigin,
    /// The request names [`TokenParams`](crate::TokenParams), and the
    /// layer's source fetches only its default token: the request is not
    /// sent with a token meant for something else. Permanent.
    NotKeyed,
    /// The request's [`TokenParams`](crate::TokenParams) name a parameter
    /// that carries a credential: a token's key never holds one. Permanent.
    CredentialInParams,
    /// The token is bound to a DPoP key, and no proof of possession could
    /// be made for the request (its URI names no origin, its type does not
    /// say its method, or signing failed): it is not sent, since the API
    /// would refuse it. Permanent.
    ProofFailed,
}

/// Why no token could be had.
///
/// One fetch's failure is shared by every request that waited for it, so this
/// is cheap to clone. When the cache is backing off after a failure, requests
/// that have no valid token fail at once with the last failure, and
/// [`TokenError::backoff_remaining`] says for how long that goes on.
#[derive(Clone)]
pub struct TokenError {
    repr: Arc<Repr>,
    backoff_remaining: Option<Duration>,
}

struct Repr {
    kind: TokenErrorKind,
    detail: Detail,
    #[cfg(feature = "tonic")]
    status: std::sync::OnceLock<tonic::Status>,
}

enum Detail {
    Source(SourceError),
    Timeout(Duration),
    ExpiredOnArrival { lifetime: Duration, took: Duration },
    Text(&'static str),
    Message(String),
}

impl TokenError {
    fn from_parts(kind: TokenErrorKind, detail: Detail) -> Self {
        Self {
            repr: Arc::new(Repr {
                kind,
                detail,
                #[cfg(feature = "tonic")]
                status: std::sync::OnceLock::new(),
            }),
            backoff_remaining: None,
        }
    }

    pub(crate) fn source_failed(error: SourceError) -> Self {
        Self::from_parts(TokenErrorKind::Source, Detail::Source(error))
    }

    pub(crate) fn timeout(after: Duration) -> Self {
        Self::from_parts(TokenErrorKind::Timeout, Detail::Timeout(after))
    }

    pub(crate) fn panicked() -> Self {
        Self::from_parts(
            TokenErrorKind::Panicked,
            Detail::Text("the token source panicked"),
        )
    }

    pub(crate) fn invalid_token() -> Self {
        Self::from_parts(
            TokenErrorKind::InvalidToken,
            Detail::Text("the token is not a valid header value (it holds control characters)"),
        )
    }

    pub(crate) fn cancelled() -> Self {
        Self::from_parts(
            TokenErrorKind::Cancelled,
            Detail::Text("the token fetch was cancelled before it finished"),
        )
    }

    pub(crate) fn expired_on_arrival(lifetime: Duration, took: Duration) -> Self {
        Self::from_parts(
            TokenErrorKind::ExpiredOnArrival,
            Detail::ExpiredOnArrival { lifetime, took },
        )
    }

    pub(crate) fn unknown_origin() -> Self {
        Self::from_parts(
            TokenErrorKind::UnknownOrigin,
            Detail::Text(
                "the request's URI names no origin, so the scope cannot tell whether it may carry the token (a tonic Channel adds the origin below this layer): name it with Scope::base_origin",
            ),
        )
    }

    pub(crate) fn not_keyed() -> Self {
        Self::from_parts(
            TokenErrorKind::NotKeyed,
            Detail::Text(
                "the request names TokenParams, and the layer's token source fetches only its default token: build the cache with TokenCache::keyed over a KeyedTokenSource",
            ),
        )
    }

    pub(crate) fn credential_in_params(name: &str) -> Self {
        Self::from_parts(
            TokenErrorKind::CredentialInParams,
            Detail::Message(format!(
                "the request's TokenParams name the parameter {name:?}, which carries a credential: credentials go to the token source, never into a token's key"
            )),
        )
    }

    #[cfg(feature = "client-credentials")]
    pub(crate) fn proof_failed(why: impl fmt::Display) -> Self {
        Self::from_parts(
            TokenErrorKind::ProofFailed,
            Detail::Message(format!(
                "the token is bound to a DPoP key and no proof could be made for the request: {why}"
            )),
        )
    }

    pub(crate) fn no_runtime() -> Self {
        Self::from_parts(
            TokenErrorKind::NoRuntime,
            Detail::Text("no tokio runtime is running to fetch a token"),
        )
    }

    pub(crate) fn while_backing_off(&self, remaining: Duration) -> Self {
        Self {
            repr: self.repr.clone(),
            backoff_remaining: Some(remaining),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> TokenErrorKind {
        self.repr.kind
    }

    /// How retries should treat this failure.
    pub fn class(&self) -> ErrorClass {
        match &self.repr.detail {
            Detail::Source(e) => e.class(),
            _ if matches!(
                self.repr.kind,
                TokenErrorKind::InvalidToken
                    | TokenErrorKind::UnknownOrigin
                    | TokenErrorKind::NotKeyed
                    | TokenErrorKind::CredentialInParams
                    | TokenErrorKind::ProofFailed
            ) =>
            {
                ErrorClass::Permanent
            }
            _ => ErrorClass::TRANSIENT,
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.class().is_transient()
    }

    /// The source's error, when the source failed.
    pub fn source_error(&self) -> Option<&SourceError> {
        match &self.repr.detail {
            Detail::Source(e) => Some(e),
            _ => None,
        }
    }

    /// Set when this request failed without a fetch because the cache is
    /// backing off after the failure this error describes: how long until
    /// the next fetch may start.
    pub fn backoff_remaining(&self) -> Option<Duration> {
        self.backoff_remaining
    }

    /// Whether two errors come from the same failed fetch.
    pub fn same_failure(&self, other: &TokenError) -> bool {
        Arc::ptr_eq(&self.repr, &other.repr)
    }

    fn source_for_chain(&self) -> Option<&(dyn StdError + 'static)> {
        #[cfg(feature = "tonic")]
        {
            Some(self.repr.status.get_or_init(|| self.to_status()))
        }
        #[cfg(not(feature = "tonic"))]
        {
            StdError::source(self)
        }
    }

    /// The gRPC status a caller should see: `UNAVAILABLE` for transient
    /// failures (retry later), `UNAUTHENTICATED` for permanent ones. Its
    /// message is this error's and its causes', each once: for the
    /// client-credentials source, down to the transport's reason (`Connection
    /// refused`). A source of your own decides what its error's causes say;
    /// a tonic server that returns this status passes them to its callers.
    #[cfg(feature = "tonic")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
    pub fn to_status(&self) -> tonic::Status {
        let code = if self.is_transient() {
            tonic::Code::Unavailable
        } else {
            tonic::Code::Unauthenticated
        };
        // The status ends the error's chain: its message carries the causes.
        tonic::Status::new(code, Chain(self).to_string())
    }
}

impl fmt::Debug for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TokenError");
        d.field("kind", &self.repr.kind);
        if let Detail::Source(e) = &self.repr.detail {
            d.field("source", e);
        }
        d.field("backoff_remaining", &self.backoff_remaining);
        d.finish()
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no token could be had: ")?;
        match &self.repr.detail {
            Detail::Source(e) => write!(f, "the token source failed: {e}")?,
            Detail::Timeout(after) => {
                write!(f, "the token source did not answer within {after:?}")?
            }
            Detail::ExpiredOnArrival { lifetime, took } => write!(
                f,
                "the token source took {took:?} to return a token that lives {lifetime:?}: it was past its usable end on arrival"
            )?,
            Detail::Text(text) => f.write_str(text)?,
            Detail::Message(text) => f.write_str(text)?,
        }
        if let Some(remaining) = self.backoff_remaining {
            write!(
                f,
                " (not retried: backing off for another {:.1}s)",
                remaining.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

impl StdError for TokenError {
    // Display already prints the source's error; the chain goes on below it.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.repr.detail {
            Detail::Source(e) => e.get_ref().source(),
            _ => None,
        }
    }
}

/// An error and its causes on one line, each once: `outer: inner: ...`.
/// For logs, whatever the subscriber makes of an error value.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(layer) = cause {
            write!(f, ": {layer}")?;
            cause = layer.source();
        }
        Ok(())
    }
}

impl From<TokenError> for SourceError {
    fn from(error: TokenError) -> Self {
        let class = error.class();
        SourceError::new(error, class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_why() {
        let err = TokenError::source_failed(SourceError::new(
            "invalid_client: bad secret",
            ErrorClass::Permanent,
        ));
        assert_eq!(
            err.to_string(),
            "no token could be had: the token source failed: invalid_client: bad secret"
        );
        assert!(!err.is_transient());
        let backing = err.while_backing_off(Duration::from_millis(2500));
        assert!(
            backing
                .to_string()
                .ends_with("backing off for another 2.5s)")
        );
        assert!(backing.same_failure(&err));
    }

    #[test]
    fn the_chain_shows_each_cause_once() {
        #[derive(Debug)]
        struct Unreachable(std::io::Error);
        impl fmt::Display for Unreachable {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the token endpoint could not be reached")
            }
        }
        impl StdError for Unreachable {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = TokenError::source_failed(SourceError::new(
            Unreachable(refused),
            ErrorClass::TRANSIENT,
        ));
        let expected = "no token could be had: the token source failed: \
                        the token endpoint could not be reached: refused";
        assert_eq!(Chain(&err).to_string(), expected);
        #[cfg(feature = "tonic")]
        assert_eq!(err.to_status().message(), expected);
    }

    #[test]
    fn a_boxed_inner_error_converts_too() {
        let err: Error<BoxError> = Error::Service("timed out".into());
        assert_eq!(err.into_box_error().to_string(), "timed out");
        let err: Error<BoxError> = Error::Token(TokenError::no_runtime());
        assert!(err.into_box_error().is::<TokenError>());
    }

    #[test]
    fn converts_into_box_error() {
        let err: Error<std::io::Error> = Error::Token(TokenError::timeout(Duration::from_secs(1)));
        let boxed: BoxError = err.into();
        assert!(boxed.to_string().contains("did not answer within 1s"));
    }
}
