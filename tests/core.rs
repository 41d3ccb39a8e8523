//! The core contract: lazy single-flight fetches, expiry, the header, errors.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderName, Request, Response};
use http_body_util::Full;
use support::{Counting, echo};
use tokio::time::advance;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::source::{FnSource, StaticSource};
use tower_bearer::{
    Backoff, BearerAuthLayer, Error, ErrorClass, SourceError, Token, TokenCache, TokenErrorKind,
};

const SECOND: Duration = Duration::from_secs(1);

fn string_request() -> Request<String> {
    Request::get("http://api.test/v1")
        .body(String::new())
        .unwrap()
}

fn full_request() -> Request<Full<Bytes>> {
    Request::post("http://api.test/v1")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

/// A cache whose schedule is exact: no refresh-ahead, no jitter.
fn exact_cache(source: impl tower_bearer::TokenSource) -> TokenCache {
    TokenCache::builder(source)
        .refresh_ahead(Duration::ZERO)
        .refresh_jitter(0.0)
        .build()
}

async fn auth_header<S>(svc: &S) -> String
where
    S: Service<Request<String>, Response = Response<String>> + Clone,
    S::Error: std::fmt::Debug,
{
    svc.clone()
        .oneshot(string_request())
        .await
        .unwrap()
        .into_body()
}

#[test]
fn building_needs_no_runtime_and_fetches_nothing() {
    let counting = Counting::tokens(Duration::ZERO, None);
    let layer = BearerAuthLayer::new(counting.source());
    let _svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(echo::<String>());
    assert_eq!(counting.count(), 0);
    assert_eq!(layer.cache().stats().fetches_started, 0);
}

#[tokio::test(start_paused = true)]
async fn thousand_concurrent_cold_requests_make_one_fetch() {
    let counting = Counting::tokens(Duration::from_millis(50), Some(Duration::from_secs(3600)));
    let layer = BearerAuthLayer::new(counting.source());
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(echo::<String>());

    let tasks: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(svc.clone().oneshot(string_request())))
        .collect();
    for task in tasks {
        let res = task.await.unwrap().unwrap();
        assert_eq!(res.body(), "Bearer token-1");
    }
    assert_eq!(counting.count(), 1);
    let stats = layer.cache().stats();
    assert_eq!(stats.fetches_started, 1);
    assert_eq!(stats.waited_for_fetch, 1000);

    // Warm now: served from cache, no further fetch.
    assert_eq!(auth_header(&svc).await, "Bearer token-1");
    assert_eq!(layer.cache().stats().served_from_cache, 1);
    assert_eq!(counting.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_fetch_reaches_every_waiter_and_a_later_request_tries_again() {
    let counting = Counting::new(|n| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if n == 1 {
            Err(SourceError::new("provider down", ErrorClass::TRANSIENT))
        } else {
            Ok(Token::bearer("good").with_lifetime(Duration::from_secs(600)))
        }
    });
    let cache = TokenCache::builder(counting.source())
        .backoff(Backoff::default().jitter(0.0))
        .build();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service(echo::<String>());

    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(svc.clone().oneshot(string_request())))
        .collect();
    let mut errors = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Err(Error::Token(e)) => errors.push(e),
            other => panic!("expected a token error, got {other:?}"),
        }
    }
    assert_eq!(counting.count(), 1, "one fetch for 100 waiters");
    assert!(errors.iter().all(|e| e.same_failure(&errors[0])));
    assert_eq!(errors[0].kind(), TokenErrorKind::Source);
    assert!(errors[0].to_string().contains("provider down"));

    // Inside the backoff: fails at once with the same failure, no fetch.
    let early = svc.clone().oneshot(string_request()).await.unwrap_err();
    let early = early.as_token_error().unwrap();
    assert!(early.same_failure(&errors[0]));
    assert!(early.backoff_remaining().is_some());
    assert_eq!(counting.count(), 1);

    // After it: the next request tries again and succeeds.
    advance(SECOND).await;
    assert_eq!(auth_header(&svc).await, "Bearer good");
    assert_eq!(counting.count(), 2);
    assert_eq!(cache.stats().fetches_failed, 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_request_that_started_the_fetch_does_not_cancel_it() {
    let counting = Counting::tokens(Duration::from_millis(100), Some(Duration::from_secs(600)));
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(counting.source()))
        .service(echo::<String>());

    let mut first = tokio_test::task::spawn(svc.clone().oneshot(string_request()));
    assert!(
        first.poll().is_pending(),
        "the first request starts the fetch"
    );
    tokio::task::yield_now().await;
    assert_eq!(counting.count(), 1);

    let others: Vec<_> = (0..10)
        .map(|_| tokio::spawn(svc.clone().oneshot(string_request())))
        .collect();
    tokio::task::yield_now().await;
    drop(first);

    for task in others {
        assert_eq!(task.await.unwrap().unwrap().body(), "Bearer token-1");
    }
    assert_eq!(counting.count(), 1, "no second fetch");
}

#[tokio::test(start_paused = true)]
async fn expiry_boundaries_for_a_long_lived_token() {
    // 3600 s lifetime, default 30 s margin: usable for 3570 s.
    let counting = Counting::tokens(Duration::ZERO, Some(Duration::from_secs(3600)));
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(exact_cache(counting.source())))
        .service(echo::<String>());

    assert_eq!(auth_header(&svc).await, "Bearer token-1");
    advance(Duration::from_secs(3570) - Duration::from_millis(1)).await;
    assert_eq!(
        auth_header(&svc).await,
        "Bearer token-1",
        "just before the margin"
    );
    assert_eq!(counting.count(), 1);
    advance(Duration::from_millis(1)).await;
    assert_eq!(auth_header(&svc).await, "Bearer token-2", "at the margin");
    assert_eq!(counting.count(), 2);
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        auth_header(&svc).await,
        "Bearer token-2",
        "after: the new token"
    );
    assert_eq!(counting.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_three_second_token_is_cached_and_used() {
    // The margin is clamped to 1 s: usable for 2 s, not thrown away at once.
    let counting = Counting::tokens(Duration::ZERO, Some(Duration::from_secs(3)));
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(exact_cache(counting.source())))
        .service(echo::<String>());

    assert_eq!(auth_header(&svc).await, "Bearer token-1");
    advance(Duration::from_millis(1999)).await;
    assert_eq!(auth_header(&svc).await, "Bearer token-1");
    assert_eq!(counting.count(), 1);
    advance(Duration::from_millis(1)).await;
    assert_eq!(auth_header(&svc).await, "Bearer token-2");
    assert_eq!(counting.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_token_without_lifetime_uses_the_default_lifetime() {
    let counting = Counting::tokens(Duration::ZERO, None);
    let cache = TokenCache::builder(counting.source())
        .refresh_ahead(Duration::ZERO)
        .default_lifetime(Duration::from_secs(120))
        .build();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache))
        .service(echo::<String>());

    // 120 s default, 30 s margin: usable for 90 s. Never reused forever.
    assert_eq!(auth_header(&svc).await, "Bearer token-1");
    advance(Duration::from_millis(89_999)).await;
    assert_eq!(auth_header(&svc).await, "Bearer token-1");
    advance(Duration::from_millis(1)).await;
    assert_eq!(auth_header(&svc).await, "Bearer token-2");
    assert_eq!(counting.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn expiry_counts_from_when_the_fetch_started() {
    // The fetch takes 10 s of a 60 s lifetime: usable until 45 s after it
    // was sent (60 - 15 s margin), so 35 s after it arrived.
    let counting = Counting::tokens(Duration::from_secs(10), Some(Duration::from_secs(60)));
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(exact_cache(counting.source())))
        .service(echo::<String>());
    assert_eq!(auth_header(&svc).await, "Bearer token-1");
    advance(Duration::from_millis(34_999)).await;
    assert_eq!(auth_header(&svc).await, "Bearer token-1");
    advance(Duration::from_millis(1)).await;
    assert_eq!(auth_header(&svc).await, "Bearer token-2");
}

#[tokio::test]
async fn an_existing_header_is_kept_by_default_and_overwritten_when_asked() {
    let counting = Counting::tokens(Duration::ZERO, None);
    let layer = BearerAuthLayer::new(counting.source());
    let request = || {
        Request::get("http://api.test/")
            .header(AUTHORIZATION, "Basic dXNlcjpwYXNz")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    let keep = ServiceBuilder::new()
        .layer(layer.clone())
        .service(echo::<Full<Bytes>>());
    let res = keep.oneshot(request()).await.unwrap();
    assert_eq!(res.body(), "Basic dXNlcjpwYXNz");
    assert_eq!(
        counting.count(),
        0,
        "nothing fetched for a request with its own credentials"
    );

    let overwrite = ServiceBuilder::new()
        .layer(layer.overwrite_existing(true))
        .service(echo::<Full<Bytes>>());
    let res = overwrite.oneshot(request()).await.unwrap();
    assert_eq!(res.body(), "Bearer token-1");
}

#[tokio::test]
async fn a_token_that_is_not_a_header_value_is_a_clear_error_and_nothing_is_sent() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<String>, Response<String>>();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(StaticSource::new(Token::bearer(
            "abc\r\nx-injected: yes",
        ))))
        .service(mock);

    let err = svc.oneshot(string_request()).await.unwrap_err();
    let token_error = err.as_token_error().expect("a token error");
    assert_eq!(token_error.kind(), TokenErrorKind::InvalidToken);
    assert!(!token_error.is_transient());
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("abc") && !text.contains("injected"),
        "{text}"
    );
    assert!(text.contains("not a valid header value"), "{text}");
    // The service is gone and never saw a request.
    assert!(handle.next_request().await.is_none());
}

#[tokio::test]
async fn a_mock_inner_service_sees_a_sensitive_header() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Full<Bytes>>, Response<()>>();
    let mut svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(StaticSource::new(Token::new(
            "t-123", "bearer",
        ))))
        .service(mock);

    handle.allow(1);
    svc.ready().await.unwrap();
    let call = tokio::spawn(svc.call(full_request()));
    let (req, respond) = handle.next_request().await.unwrap();
    let value = &req.headers()[AUTHORIZATION];
    assert_eq!(value, "Bearer t-123");
    assert!(value.is_sensitive());
    assert_eq!(req.headers().get_all(AUTHORIZATION).iter().count(), 1);
    respond.send_response(Response::new(()));
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_header_name_is_configurable() {
    let name = HeaderName::from_static("x-access-token");
    let svc = ServiceBuilder::new()
        .layer(
            BearerAuthLayer::new(StaticSource::new(Token::bearer("t"))).header_name(name.clone()),
        )
        .service_fn(move |req: Request<()>| {
            let seen = (
                req.headers().get("x-access-token").cloned(),
                req.headers().contains_key(AUTHORIZATION),
            );
            async move { Ok::<_, Infallible>(Response::new(seen)) }
        });
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.body().0.as_ref().unwrap(), "Bearer t");
    assert!(!res.body().1);
}

#[tokio::test]
async fn inner_errors_are_told_apart_from_token_errors_and_box() {
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(StaticSource::new(Token::bearer("t"))))
        .service_fn(|_req: Request<()>| async {
            Err::<Response<()>, _>(std::io::Error::other("connection reset"))
        });
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    assert!(err.as_token_error().is_none());
    let boxed: tower::BoxError = err.into();
    assert_eq!(boxed.to_string(), "connection reset");
}

#[tokio::test]
async fn a_closure_source_chooses_how_it_is_retried() {
    let source = FnSource::new(|| async {
        Err::<Token, _>(SourceError::new("invalid_client", ErrorClass::Permanent))
    });
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(echo::<String>());
    let err = svc.oneshot(string_request()).await.unwrap_err();
    let err = err.as_token_error().unwrap();
    assert!(!err.is_transient());
    assert!(
        err.source_error()
            .unwrap()
            .to_string()
            .contains("invalid_client")
    );
}

#[test]
fn without_a_runtime_a_request_fails_clearly_instead_of_panicking() {
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(StaticSource::new(Token::bearer("t"))))
        .service(echo::<String>());
    let fut = svc.clone().call(string_request());
    let err = futures_lite_block_on(fut).unwrap_err();
    assert_eq!(
        err.as_token_error().unwrap().kind(),
        TokenErrorKind::NoRuntime
    );
}

/// Polls a future to completion on this thread, outside any tokio runtime.
fn futures_lite_block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}
