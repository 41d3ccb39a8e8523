//! Re-send a request once after a 401, with a fresh token.
//!
//! When the API answers 401, [`BearerAuth`](crate::BearerAuth) invalidates the
//! token that request carried and starts fetching a new one. Put
//! [`RetryOnUnauthorized`] in a `tower::retry::RetryLayer` **outside** the
//! bearer layer and the request is sent once more, carrying the new token. A
//! request whose body cannot be replayed (a stream) is not retried: its 401 is
//! returned as it came.
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

use crate::request::AuthResponse;

/// A [`Policy`] that retries a request once when its response is a 401.
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
            Ok(response) if !self.retried && response.is_unauthorized() => {
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
