//! [`BearerAuth`]: the service that attaches the token.
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_bearer::{BearerAuthLayer, Token, source::StaticSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let mut client = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(StaticSource::new(Token::bearer("t0k3n"))))
//!     .service_fn(|req: http::Request<String>| async move {
//!         let auth = req.headers()["authorization"].clone();
//!         Ok::<_, Infallible>(http::Response::new(auth))
//!     });
//!
//! let res = client.ready().await?.call(http::Request::new(String::new())).await?;
//! assert_eq!(res.body(), "Bearer t0k3n");
//! assert!(res.body().is_sensitive());
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderName;
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tower_service::Service;

use crate::cache::{Acquire, Outcome, TokenCache, TokenId};
use crate::error::{Error, TokenError};
use crate::layer::Settings;
use crate::request::{AuthRequest, AuthResponse};

/// Attaches `Authorization: <Type> <token>` to every request, with the token
/// from a shared [`TokenCache`].
///
/// Built by [`BearerAuthLayer`](crate::BearerAuthLayer). See the
/// [crate docs](crate) for how it behaves.
#[derive(Clone, Debug)]
pub struct BearerAuth<S> {
    inner: S,
    cache: TokenCache,
    settings: Settings,
}

impl<S> BearerAuth<S> {
    pub(crate) fn new(inner: S, cache: TokenCache, settings: Settings) -> Self {
        Self {
            inner,
            cache,
            settings,
        }
    }

    /// The token cache this service uses.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R> Service<R> for BearerAuth<S>
where
    S: Service<R> + Clone,
    S::Response: AuthResponse,
    R: AuthRequest,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Service)
    }

    fn call(&mut self, mut request: R) -> Self::Future {
        let settings = &self.settings;
        let keep_existing =
            !settings.overwrite_existing && request.headers().contains_key(&settings.header_name);
        if keep_existing || !settings.scope.allows(&request.target()) {
            return ResponseFuture::calling(self.inner.call(request), None);
        }
        match self.cache.acquire() {
            Acquire::Ready(lease) => {
                request
                    .headers_mut()
                    .insert(settings.header_name.clone(), lease.header);
                let rejected = settings
                    .invalidate_on_unauthorized
                    .then(|| (self.cache.clone(), lease.id));
                ResponseFuture::calling(self.inner.call(request), rejected)
            }
            Acquire::Wait(token) => {
                // The readied service goes into the future; a clone takes its
                // place and must be readied before the next call.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Waiting {
                        token,
                        pending: Some(Pending {
                            inner,
                            request,
                            header_name: settings.header_name.clone(),
                            cache: settings
                                .invalidate_on_unauthorized
                                .then(|| self.cache.clone()),
                        }),
                    },
                    rejected: None,
                }
            }
            Acquire::Failed(error) => ResponseFuture {
                state: State::Failed { error: Some(error) },
                rejected: None,
            },
        }
    }
}

struct Pending<S, R> {
    inner: S,
    request: R,
    header_name: HeaderName,
    cache: Option<TokenCache>,
}

pin_project! {
    /// The response future of [`BearerAuth`].
    pub struct ResponseFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        state: State<S, R, S::Future>,
        // The cache and the token this request carried, to invalidate on 401.
        rejected: Option<(TokenCache, TokenId)>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, R, F> {
        Waiting {
            token: oneshot::Receiver<Outcome>,
            pending: Option<Pending<S, R>>,
        },
        Calling {
            #[pin]
            future: F,
        },
        Failed {
            error: Option<TokenError>,
        },
    }
}

impl<S: Service<R>, R> ResponseFuture<S, R> {
    fn calling(future: S::Future, rejected: Option<(TokenCache, TokenId)>) -> Self {
        Self {
            state: State::Calling { future },
            rejected,
        }
    }
}

impl<S, R> Future for ResponseFuture<S, R>
where
    S: Service<R>,
    S::Response: AuthResponse,
    R: AuthRequest,
{
    type Output = Result<S::Response, Error<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { token, pending } => {
                    let outcome = ready!(Pin::new(token).poll(cx));
                    let entry = match outcome {
                        Ok(Ok(entry)) => entry,
                        Ok(Err(error)) => return Poll::Ready(Err(Error::Token(error))),
                        Err(_) => return Poll::Ready(Err(Error::Token(TokenError::cancelled()))),
                    };
                    let Pending {
                        mut inner,
                        mut request,
                        header_name,
                        cache,
                    } = pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let lease = entry.lease();
                    request.headers_mut().insert(header_name, lease.header);
                    *this.rejected = cache.map(|cache| (cache, lease.id));
                    let future = inner.call(request);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    if let (Ok(response), Some((cache, id))) = (&result, this.rejected.take())
                        && response.is_unauthorized()
                    {
                        cache.invalidate_if_current(id, "the API answered 401 Unauthorized");
                    }
                    return Poll::Ready(result.map_err(Error::Service));
                }
                StateProj::Failed { error } => {
                    let error = error
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Err(Error::Token(error)));
                }
            }
        }
    }
}
