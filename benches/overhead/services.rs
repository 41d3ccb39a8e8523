//! The services under test: the floor, the peers, and the inner service.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, Uri};
use tokio::time::Instant;
use tower::Service;
use tower_bearer::source::{BoxTokenSource, KeyedTokenSource, StaticSource};
use tower_bearer::{BoxError, Token, TokenCache, TokenParams, TokenSource};
use tower_http::auth::AddAuthorizationLayer;

use crate::TOKEN;

pub(crate) type NoopFuture = Ready<Result<Response<()>, Infallible>>;

/// The inner service: answers at once, so only the layer's cost is measured.
pub(crate) fn noop_service()
-> impl Service<Request<()>, Response = Response<()>, Error = Infallible, Future = NoopFuture>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|request: Request<()>| {
        black_box(&request);
        std::future::ready(Ok(Response::new(())))
    })
}

pub(crate) fn request(uri: &Uri) -> Request<()> {
    let mut request = Request::new(());
    *request.uri_mut() = uri.clone();
    request
}

pub(crate) fn static_token() -> Token {
    Token::bearer(TOKEN).with_lifetime(Duration::from_secs(3600))
}

/// The static token for every key: what a keyed cache costs, with nothing
/// else changed.
#[derive(Clone, Copy)]
pub(crate) struct KeyedStatic;

impl TokenSource for KeyedStatic {
    type Error = Infallible;

    fn fetch(&self) -> impl Future<Output = Result<Token, Infallible>> + Send {
        std::future::ready(Ok(static_token()))
    }
}

impl KeyedTokenSource for KeyedStatic {
    type Keyed = KeyedStatic;

    fn for_params(&self, _params: &TokenParams) -> Result<KeyedStatic, Infallible> {
        Ok(KeyedStatic)
    }
}

/// A request carrying `params` as its extension.
pub(crate) fn request_for(uri: &Uri, params: &TokenParams) -> Request<()> {
    let mut request = request(uri);
    request.extensions_mut().insert(params.clone());
    request
}

pub(crate) fn tower_http_layer() -> AddAuthorizationLayer {
    // Marked sensitive like ours; the flag costs nothing per request.
    AddAuthorizationLayer::bearer(TOKEN).as_sensitive(true)
}

/// Go x/oauth2's design: one async mutex around the cached token, locked by
/// every request, held across the fetch. Renews 10 s before expiry, as Go's
/// `expiryDelta` does; the header value is cached with the token so that the
/// comparison is about the lock, not about formatting.
#[derive(Clone)]
pub(crate) struct NaiveBearer<S> {
    inner: S,
    slot: Arc<tokio::sync::Mutex<Option<NaiveToken>>>,
    source: BoxTokenSource,
}

pub(crate) struct NaiveToken {
    header: HeaderValue,
    expires_at: Option<Instant>,
}

pub(crate) const NAIVE_EXPIRY_DELTA: Duration = Duration::from_secs(10);

impl<S> NaiveBearer<S> {
    pub(crate) fn new(inner: S, source: impl TokenSource) -> Self {
        Self {
            inner,
            slot: Arc::default(),
            source: BoxTokenSource::new(source),
        }
    }
}

impl<S> Service<Request<()>> for NaiveBearer<S>
where
    S: Service<Request<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<()>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let slot = Arc::clone(&self.slot);
        let source = self.source.clone();
        Box::pin(async move {
            let header = {
                let mut cached = slot.lock().await;
                match &*cached {
                    Some(token) if token.expires_at.is_none_or(|at| Instant::now() < at) => {
                        token.header.clone()
                    }
                    _ => {
                        let started = Instant::now();
                        let token = source.fetch().await?;
                        let mut header = HeaderValue::try_from(format!(
                            "{} {}",
                            token.token_type(),
                            token.access_token().secret()
                        ))?;
                        header.set_sensitive(true);
                        let expires_at = token
                            .lifetime()
                            .map(|l| started + l.saturating_sub(NAIVE_EXPIRY_DELTA));
                        *cached = Some(NaiveToken {
                            header: header.clone(),
                            expires_at,
                        });
                        header
                    }
                }
            };
            request.headers_mut().insert(AUTHORIZATION, header);
            inner.call(request).await.map_err(Into::into)
        })
    }
}

/// A multi-thread runtime with `workers` threads, its timers on: where a
/// token's freshness timer runs, as in production.
pub(crate) fn multi_thread_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A cache holding `token`, fetched on `runtime`.
pub(crate) fn warm_cache(runtime: &tokio::runtime::Runtime, token: Token) -> TokenCache {
    let cache = TokenCache::new(StaticSource::new(token));
    runtime
        .block_on(cache.refresh())
        .expect("warming the cache");
    cache
}
