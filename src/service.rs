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

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::HeaderName;
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::binding::{Bound, ProofWatch};
use crate::cache::{Acquire, Outcome, Reader, TokenCache, TokenId};
use crate::error::{Error, TokenError};
use crate::opt_out::OptOut;
use crate::params::TokenParams;
use crate::rejection::{self, DpopNonceRequired, RejectionStatuses, TokenRejected};
use crate::request::{AuthRequest, AuthResponse, Target};
use crate::scope::{Scope, Verdict};

/// Settings shared by a layer and the services it builds.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) header_name: HeaderName,
    pub(crate) overwrite_existing: bool,
    pub(crate) scope: Scope,
    pub(crate) invalidate_on_unauthorized: bool,
    pub(crate) rejection_statuses: RejectionStatuses,
    pub(crate) selector: Option<Selector>,
}

/// What [`BearerAuthLayer::token_for`](crate::BearerAuthLayer::token_for) takes.
type SelectFn = dyn Fn(&Target<'_>) -> Option<TokenParams> + Send + Sync;

/// Picks a request's [`TokenParams`] from its target.
#[derive(Clone)]
pub(crate) struct Selector(pub(crate) Arc<SelectFn>);

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Selector")
    }
}

/// What to do when the response comes: which token the request carried,
/// and what a rejection of it may set off.
#[derive(Clone, Copy)]
struct Watch {
    token: TokenId,
    invalidate: bool,
    retry: bool,
    statuses: RejectionStatuses,
}

/// Attaches `Authorization: <Type> <token>` to every request, with the token
/// from a shared [`TokenCache`].
///
/// Built by [`BearerAuthLayer`](crate::BearerAuthLayer). See the
/// [crate docs](crate) for how it behaves.
#[derive(Clone, Debug)]
pub struct BearerAuth<S> {
    inner: S,
    cache: Reader,
    settings: Settings,
}

impl<S> BearerAuth<S> {
    pub(crate) fn new(inner: S, cache: TokenCache, settings: Settings) -> Self {
        Self {
            inner,
            cache: Reader::new(cache),
            settings,
        }
    }

    /// The token cache this service uses.
    pub fn cache(&self) -> &TokenCache {
        self.cache.cache()
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

    /// Takes the readied inner service out, leaving a clone that must be
    /// readied before the next call (tower-http #561).
    fn take_readied(&mut self) -> S
    where
        S: Clone,
    {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
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
        let opt_out = request
            .extensions()
            .and_then(|extensions| extensions.get::<OptOut>())
            .copied()
            .unwrap_or_default();
        let keep_existing =
            !settings.overwrite_existing && request.headers().contains_key(&settings.header_name);
        if keep_existing || opt_out.skips_token() {
            return ResponseFuture::calling(self.inner.call(request), None);
        }
        match settings.scope.verdict(&request) {
            Verdict::Attach => {}
            Verdict::Skip => return ResponseFuture::calling(self.inner.call(request), None),
            Verdict::UnknownOrigin => return self.fail(TokenError::unknown_origin()),
        }
        let on_rejection = OnRejection {
            invalidate: settings.invalidate_on_unauthorized && !opt_out.skips_invalidation(),
            retry: !opt_out.skips_retry(),
            statuses: settings.rejection_statuses,
        };
        // Which token: the one the request names (empty params name the
        // default), else the selector's pick, else the default.
        let named = request
            .extensions()
            .and_then(|extensions| extensions.get::<TokenParams>());
        let (acquired, waiting_on) = match (named, &settings.selector) {
            (Some(params), _) if params.is_empty() => (self.cache.acquire(), None),
            (Some(params), _) => self.cache.acquire_for(params),
            (None, Some(Selector(select))) => match select(&request.target()) {
                Some(params) if !params.is_empty() => self.cache.acquire_for(&params),
                _ => (self.cache.acquire(), None),
            },
            (None, None) => (self.cache.acquire(), None),
        };
        match acquired {
            Acquire::Ready(lease) => {
                request
                    .headers_mut()
                    .insert(settings.header_name.clone(), lease.header);
                let watch = on_rejection.watch(lease.id);
                ResponseFuture::calling(self.inner.call(request), Some(watch))
            }
            Acquire::Bound(bound) => self.call_bound(request, &bound, on_rejection),
            Acquire::Wait(token, deadline) => {
                let header_name = settings.header_name.clone();
                let cache = waiting_on.unwrap_or_else(|| self.cache.cache().clone());
                // The readied service goes into the future.
                let inner = self.take_readied();
                // Give up on a fetch whose task cannot run. Outside a
                // runtime there is no timer: wait on the fetch's own timeout.
                let deadline = tokio::runtime::Handle::try_current()
                    .ok()
                    .map(|_| Box::pin(tokio::time::sleep_until(deadline)));
                ResponseFuture {
                    state: State::Waiting {
                        token,
                        // Boxed: the cold path pays for the space, not every
                        // request's future.
                        pending: Some(Box::new(Pending {
                            inner,
                            request,
                            header_name,
                            on_rejection,
                            // Keeps the cache, and so its fetch, alive while
                            // this request waits.
                            cache,
                            deadline,
                        })),
                    },
                    watch: None,
                }
            }
            Acquire::Failed(error) => self.fail(error),
        }
    }
}

impl<S: Clone> BearerAuth<S> {
    /// Sends `request` with a token bound to a key and a fresh proof of
    /// possession (a signature): out of line, so that the bearer path
    /// stays short.
    #[inline(never)]
    fn call_bound<R>(
        &mut self,
        mut request: R,
        bound: &Bound,
        on_rejection: OnRejection,
    ) -> ResponseFuture<S, R>
    where
        S: Service<R>,
        R: AuthRequest,
    {
        // The proof first: a request that cannot be proven is not sent.
        let proof = match bound.attach(&mut request) {
            Ok(proof) => proof,
            Err(error) => return self.fail(error),
        };
        let lease = bound.lease();
        request
            .headers_mut()
            .insert(self.settings.header_name.clone(), lease.header);
        let watch = on_rejection.watch(lease.id);
        ResponseFuture {
            state: State::CallingProven {
                future: self.inner.call(request),
                proof: Some(proof),
            },
            watch: Some(watch),
        }
    }

    /// Fails a request without sending it, and releases what the inner
    /// service's `poll_ready` reserved for it (a `ConcurrencyLimit` permit,
    /// a `Buffer` slot).
    fn fail<R>(&mut self, error: TokenError) -> ResponseFuture<S, R>
    where
        S: Service<R>,
    {
        drop(self.take_readied());
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            watch: None,
        }
    }
}

/// What a rejection of a request's token may set off, before the token is
/// known.
#[derive(Clone, Copy)]
struct OnRejection {
    invalidate: bool,
    retry: bool,
    statuses: RejectionStatuses,
}

impl OnRejection {
    fn watch(self, token: TokenId) -> Watch {
        Watch {
            token,
            invalidate: self.invalidate,
            retry: self.retry,
            statuses: self.statuses,
        }
    }
}

impl Watch {
    /// Reads the response: a nonce it gives is kept for the next proofs; a
    /// rejected token is thrown away (if still current) and the response
    /// marked for a retry, as is a request whose proof lacked the nonce.
    fn judge<T: AuthResponse>(self, response: &mut T) {
        let verdict = rejection::judge(response, self.statuses, false);
        if verdict != rejection::Verdict::Accepted {
            self.act_on(response, verdict, None);
        }
    }

    /// [`judge`](Self::judge) for a request proven with `proof`: a nonce
    /// the answer gives is kept for the next proofs.
    fn judge_proven<T: AuthResponse>(self, response: &mut T, proof: &ProofWatch) {
        let verdict = rejection::judge(response, self.statuses, true);
        self.act_on(response, verdict, Some(proof));
    }

    /// What [`judge`](Self::judge) does for a rejection, or for an answer
    /// to a proven request: out of line, to keep the common path short.
    #[inline(never)]
    fn act_on<T: AuthResponse>(
        self,
        response: &mut T,
        verdict: rejection::Verdict,
        proof: Option<&ProofWatch>,
    ) {
        let challenged = verdict == rejection::Verdict::NonceRequired;
        let nonce_given = proof.is_some_and(|proof| proof.observe(response, challenged));
        match verdict {
            rejection::Verdict::Accepted => {}
            rejection::Verdict::Rejected => {
                if self.invalidate {
                    self.token.reject("the API rejected the token");
                }
                self.mark(response, TokenRejected);
            }
            rejection::Verdict::NeedsMoreScope => {
                tracing::debug!("the API wants more scope than the token has; token kept");
            }
            rejection::Verdict::NonceRequired if nonce_given => {
                if self.mark(response, DpopNonceRequired)
                    && let Some(proof) = proof
                {
                    proof.count_retry();
                }
            }
            rejection::Verdict::NonceRequired => {
                tracing::warn!(
                    "the API asked for a DPoP nonce without giving one (no valid DPoP-Nonce header); token kept"
                );
            }
            rejection::Verdict::ProofRejected => {
                // Debug, not warn: it comes with every response while it
                // lasts, and the caller has the answer, challenge and all.
                tracing::debug!(
                    "the API refused the request's DPoP proof; token kept, not retried"
                );
            }
        }
    }

    /// Marks `response` for a retry, if this request may be retried and the
    /// response can carry a mark. Returns whether it was marked.
    fn mark<T: AuthResponse, M: Clone + Send + Sync + 'static>(
        &self,
        response: &mut T,
        mark: M,
    ) -> bool {
        match response.extensions_mut() {
            Some(extensions) if self.retry => {
                extensions.insert(mark);
                true
            }
            _ => false,
        }
    }
}

struct Pending<S, R> {
    inner: S,
    request: R,
    header_name: HeaderName,
    on_rejection: OnRejection,
    cache: TokenCache,
    deadline: Option<Pin<Box<Sleep>>>,
}

pin_project! {
    /// The response future of [`BearerAuth`].
    pub struct ResponseFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        state: State<S, R, S::Future>,
        // The token this request carried, to act on its rejection.
        watch: Option<Watch>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, R, F> {
        Waiting {
            token: oneshot::Receiver<Outcome>,
            pending: Option<Box<Pending<S, R>>>,
        },
        Calling {
            #[pin]
            future: F,
        },
        // A request with a token bound to a key, and where the nonce its
        // answer may give goes: a state of its own, so that a bearer
        // request's path carries nothing of it.
        CallingProven {
            #[pin]
            future: F,
            proof: Option<ProofWatch>,
        },
        Failed {
            error: Option<TokenError>,
        },
    }
}

impl<S: Service<R>, R> ResponseFuture<S, R> {
    fn calling(future: S::Future, watch: Option<Watch>) -> Self {
        Self {
            state: State::Calling { future },
            watch,
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
                    let (watch, next) = match ready!(poll_waiting(token, pending, cx)) {
                        Ok(sent) => sent,
                        Err(error) => return Poll::Ready(Err(Error::Token(error))),
                    };
                    *this.watch = Some(watch);
                    this.state.set(next);
                }
                StateProj::Calling { future } => {
                    let mut result = ready!(future.poll(cx));
                    if let (Ok(response), Some(watch)) = (&mut result, this.watch.take()) {
                        watch.judge(response);
                    }
                    return Poll::Ready(result.map_err(Error::Service));
                }
                StateProj::CallingProven { future, proof } => {
                    let mut result = ready!(future.poll(cx));
                    if let (Ok(response), Some(watch), Some(proof)) =
                        (&mut result, this.watch.take(), proof.take())
                    {
                        watch.judge_proven(response, &proof);
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

/// The waiting state of [`ResponseFuture::poll`]: the token awaited, then
/// the request sent with it. Out of line: a request waits only while no
/// usable token is cached, and the path of every other stays short.
#[inline(never)]
#[allow(clippy::type_complexity)]
fn poll_waiting<S, R>(
    token: &mut oneshot::Receiver<Outcome>,
    pending: &mut Option<Box<Pending<S, R>>>,
    cx: &mut Context<'_>,
) -> Poll<Result<(Watch, State<S, R, S::Future>), TokenError>>
where
    S: Service<R>,
    R: AuthRequest,
{
    loop {
        let waiting = pending
            .as_mut()
            .expect("ResponseFuture polled after completion");
        let outcome = match Pin::new(&mut *token).poll(cx) {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => {
                if let Some(deadline) = waiting.deadline.as_mut() {
                    ready!(deadline.as_mut().poll(cx));
                    let cache = waiting.cache.clone();
                    // Release the readied service now, not when the caller
                    // drops this future.
                    pending.take();
                    cache.give_up_on_stalled();
                    return Poll::Ready(Err(TokenError::timeout(cache.fetch_timeout())));
                }
                return Poll::Pending;
            }
        };
        let acquired = match outcome {
            Ok(Ok(entry)) if entry.is_usable(Instant::now()) => entry.serve(),
            // This future sat unpolled past the token's usable end: ask the
            // cache again.
            Ok(Ok(_)) => waiting.cache.acquire(),
            Ok(Err(error)) => Acquire::Failed(error),
            Err(_) => Acquire::Failed(TokenError::cancelled()),
        };
        let (lease, bound) = match acquired {
            Acquire::Ready(lease) => (lease, None),
            Acquire::Bound(bound) => (bound.lease(), Some(bound)),
            Acquire::Wait(next, deadline) => {
                *token = next;
                if let Some(sleep) = waiting.deadline.as_mut() {
                    sleep.as_mut().reset(deadline);
                }
                continue;
            }
            Acquire::Failed(error) => {
                pending.take();
                return Poll::Ready(Err(error));
            }
        };
        let Pending {
            mut inner,
            mut request,
            header_name,
            on_rejection,
            ..
        } = *pending
            .take()
            .expect("ResponseFuture polled after completion");
        let proof = match bound {
            None => None,
            Some(bound) => match bound.attach(&mut request) {
                Ok(proof) => Some(proof),
                // Dropping `inner` releases what its readiness reserved.
                Err(error) => return Poll::Ready(Err(error)),
            },
        };
        request.headers_mut().insert(header_name, lease.header);
        let watch = on_rejection.watch(lease.id);
        let future = inner.call(request);
        let next = match proof {
            None => State::Calling { future },
            proof => State::CallingProven { future, proof },
        };
        return Poll::Ready(Ok((watch, next)));
    }
}
