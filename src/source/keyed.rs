//! [`KeyedTokenSource`]: a source that can fetch the token a request names
//! with [`TokenParams`], not only its default one.
//!
//! The cache asks it once per key for a source of that key's tokens, and
//! keeps that source beside the key's token: everything a key needs (a
//! checked request, a Redis key) is worked out once, not on every fetch.
//!
//! ```
//! use std::convert::Infallible;
//! use std::future::Future;
//! use tower_bearer::{Token, TokenParams, TokenSource, source::KeyedTokenSource};
//!
//! /// Tokens from a sidecar that mints one per audience.
//! #[derive(Clone, Default)]
//! struct Sidecar {
//!     audience: Option<String>,
//! }
//!
//! impl TokenSource for Sidecar {
//!     type Error = Infallible;
//!     fn fetch(&self) -> impl Future<Output = Result<Token, Infallible>> + Send {
//!         let audience = self.audience.clone().unwrap_or_default();
//!         async move { Ok(Token::bearer(format!("token-for-{audience}"))) }
//!     }
//! }
//!
//! impl KeyedTokenSource for Sidecar {
//!     type Keyed = Sidecar;
//!     fn for_params(&self, params: &TokenParams) -> Result<Sidecar, Infallible> {
//!         Ok(Sidecar { audience: params.audiences().first().cloned() })
//!     }
//! }
//! # let _ = Sidecar::default().for_params(&TokenParams::for_audience("a"));
//! ```

use std::sync::Arc;

use super::DynTokenSource;
use crate::error::SourceError;
use crate::params::TokenParams;
use crate::source::TokenSource;

/// A [`TokenSource`] whose tokens can be asked for other scopes,
/// audiences, resources or parameters.
///
/// Its own [`fetch`](TokenSource::fetch) gives the default token (the one
/// for empty [`TokenParams`]); [`for_params`](Self::for_params) gives a
/// source of the token for a key. A key's part replaces the source's own
/// part of the same kind: a key with scopes asks for those scopes only.
pub trait KeyedTokenSource: TokenSource {
    /// The source of one key's tokens.
    type Keyed: TokenSource;

    /// A source of the tokens for `params`. Called once for each key the
    /// cache holds; an error fails that key's requests (and is asked again
    /// by the next one), never the others.
    fn for_params(&self, params: &TokenParams) -> Result<Self::Keyed, Self::Error>;
}

/// The object-safe form of [`KeyedTokenSource`].
pub(crate) trait DynKeyedTokenSource: Send + Sync + 'static {
    fn for_params_dyn(&self, params: &TokenParams) -> Result<Arc<dyn DynTokenSource>, SourceError>;
}

impl<T: KeyedTokenSource> DynKeyedTokenSource for T {
    fn for_params_dyn(&self, params: &TokenParams) -> Result<Arc<dyn DynTokenSource>, SourceError> {
        match self.for_params(params) {
            Ok(source) => Ok(Arc::new(source)),
            Err(error) => {
                let class = self.classify(&error);
                Err(SourceError::new(error, class))
            }
        }
    }
}
