//! Re-send a request once after its token was rejected, with a fresh token.
//!
//! When the API rejects a token (a 401, or another of the layer's
//! [rejection statuses](crate::rejection)), [`BearerAuth`](crate::BearerAuth)
//! invalidates the token that request carried, starts fetching a new one,
//! and marks the response [`TokenRejected`]; when the API asks for a DPoP
//! nonce, it stores the nonce and marks the response
//! [`DpopNonceRequired`]. Put [`RetryOnUnauthorized`] in a
//! `tower::retry::RetryLayer` **outside** the bearer layer and a marked
//! request is sent once more, carrying the new token. Not retried: a request
//! whose body cannot be replayed (a stream; its answer is returned as it
//! came), a 403 `insufficient_scope` (the token is fine; more of it would not
//! help), a request the layer sent without its token, and a request that
//! opts out ([`OptOut::skip_retry`](crate::OptOut::skip_retry)). For a
//! response type without extensions, where nothing can be marked, any 401
//! is re-sent.
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, retry::RetryLayer};
//! use tower_bearer::{BearerAuthLayer, RetryOnUnauthorized, Token, source::StaticSource};
//!
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryOnUnauthorized::default()))
//!     .layer(BearerAuthLayer::new(StaticSource::new(Token::bearer("t"))))
//!     .service_fn(|_req: http::Request<String>| async {
//!         Ok::<_, Infallible>(http::Response::new(String::new()))
//!     });
//! # drop(client);
//! ```

use bytes::Bytes;
use tower::retry::Policy;

use crate::rejection::{DpopNonceRequired, TokenRejected};
use crate::request::AuthResponse;

/// A [`Policy`] that retries a request once when the bearer layer says the
/// API rejected its token. For a response type without extensions, a 401
/// decides.
#[derive(Clone, Debug, Default)]
pub struct RetryOnUnauthorized {
    retried: bool,
}

impl<R, Res, E> Policy<R, Res, E> for RetryOnUnauthorized
where
    R: ReplayRequest,
    Res: AuthResponse,
{
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _request: &mut R, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(response) if !self.retried && token_rejected(response) => {
                self.retried = true;
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, request: &R) -> Option<R> {
        if self.retried {
            return None;
        }
        request.try_clone_request()
    }
}

/// Whether the layer marked `response` (its token rejected, or a DPoP
/// nonce asked for), or for a response that cannot be marked, whether it is
/// a 401.
fn token_rejected<Res: AuthResponse>(response: &Res) -> bool {
    match response.extensions() {
        Some(extensions) => {
            extensions.get::<TokenRejected>().is_some()
                || extensions.get::<DpopNonceRequired>().is_some()
        }
        None => response.is_unauthorized(),
    }
}

/// A request that may be sent twice: one whose body can be replayed.
pub trait ReplayRequest: Sized {
    /// A copy of the request, or `None` if its body cannot be replayed.
    fn try_clone_request(&self) -> Option<Self>;
}

/// A body that can be replayed, or not (a stream).
pub trait ReplayBody: Sized {
    /// A copy of the body, or `None` if it cannot be replayed.
    fn try_clone_body(&self) -> Option<Self>;
}

impl<B: ReplayBody> ReplayRequest for http::Request<B> {
    fn try_clone_request(&self) -> Option<Self> {
        let mut copy = http::Request::new(self.body().try_clone_body()?);
        *copy.method_mut() = self.method().clone();
        *copy.uri_mut() = self.uri().clone();
        *copy.version_mut() = self.version();
        *copy.headers_mut() = self.headers().clone();
        *copy.extensions_mut() = self.extensions().clone();
        Some(copy)
    }
}

macro_rules! replayable_by_clone {
    ($($ty:ty),* $(,)?) => {
        $(impl ReplayBody for $ty {
            fn try_clone_body(&self) -> Option<Self> {
                Some(self.clone())
            }
        })*
    };
}

replayable_by_clone!(
    (),
    String,
    Vec<u8>,
    Bytes,
    &'static str,
    &'static [u8],
    http_body_util::Full<Bytes>,
    http_body_util::Empty<Bytes>,
);

#[cfg(feature = "reqwest")]
impl ReplayRequest for reqwest::Request {
    fn try_clone_request(&self) -> Option<Self> {
        self.try_clone()
    }
}
