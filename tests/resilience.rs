//! Refresh-ahead, failure handling, backoff, timeouts and 401 invalidation.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use support::{Counting, echo, no_jitter, request};
use tokio::time::{Instant, advance};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::retry::ReplayBody;
use tower_bearer::{
    BearerAuthLayer, ErrorClass, RetryOnUnauthorized, SourceError, Token, TokenCache,
    TokenErrorKind,
};

const MS: Duration = Duration::from_millis(1);

/// Sends a request and asserts that it completes on its first poll: it did
/// not wait for anything.
fn send_without_waiting<S>(svc: &S) -> String
where
    S: tower::Service<Request<String>, Response = Response<String>> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut fut = tokio_test::task::spawn(svc.clone().oneshot(request()));
    match fut.poll() {
        std::task::Poll::Ready(res) => res.unwrap().into_body(),
        std::task::Poll::Pending => panic!("the request waited"),
    }
}

/// Advances the paused clock to `at`.
async fn advance_to(at: Instant) {
    advance(at.saturating_duration_since(Instant::now())).await;
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_runs_once_in_the_background_and_no_request_waits() {
    // Lifetime 100 s: usable 75 s (25 s margin). Fetches take 5 s, so the
    // refresh window is 5% of 75 s plus twice 5 s: 13.75 s, and the refresh
    // point is at 61.25 s.
    let counting = Counting::new(|n| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(Token::bearer(format!("token-{n}")).with_lifetime(Duration::from_secs(100)))
    });
    let cache = TokenCache::builder(counting.source())
        .refresh_jitter(0.0)
        .build();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service(echo::<String>());

    let start = Instant::now();
    cache.refresh().await.unwrap();
    advance_to(start + Duration::from_millis(61_249)).await;
    assert_eq!(send_without_waiting(&svc), "Bearer token-1");
    tokio::task::yield_now().await;
    assert_eq!(counting.count(), 1, "not yet due");

    advance(MS).await;
    assert_eq!(send_without_waiting(&svc), "Bearer token-1");
    tokio::task::yield_now().await;
    assert_eq!(
        counting.count(),
        2,
        "the first request past the point started a refresh"
    );

    // While the refresh runs, requests go on with the old token at once.
    for _ in 0..49 {
        advance(Duration::from_millis(100)).await;
        assert_eq!(send_without_waiting(&svc), "Bearer token-1");
    }
    assert_eq!(counting.count(), 2, "exactly one refresh");

    advance(Duration::from_millis(100)).await;
    tokio::task::yield_now().await;
    assert_eq!(send_without_waiting(&svc), "Bearer token-2");
    let stats = cache.stats();
    assert_eq!(stats.refreshes_ahead, 1);
    assert_eq!(stats.waited_for_fetch, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_valid_token_and_retries_after_the_backoff() {
    let counting = Counting::new(|n| async move {
        match n {
            2 => Err(SourceError::new("503 from provider", ErrorClass::TRANSIENT)),
            _ => Ok(Token::bearer(format!("token-{n}")).with_lifetime(Duration::from_secs(100))),
        }
    });
    let cache = TokenCache::builder(counting.source())
        .refresh_jitter(0.0)
        .backoff(no_jitter())
        .build();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service(echo::<String>());

    // Usable 75 s, refreshed from 71.25 s (5% of 75 s; fetches take no time).
    cache.refresh().await.unwrap();
    advance(Duration::from_secs(72)).await;
    assert_eq!(send_without_waiting(&svc), "Bearer token-1");
    tokio::task::yield_now().await;
    assert_eq!(counting.count(), 2);
    assert_eq!(cache.stats().fetches_failed, 1, "the refresh failed");

    // The old token stays in use; no retry before the 1 s backoff is over.
    advance(Duration::from_millis(999)).await;
    assert_eq!(send_without_waiting(&svc), "Bearer token-1");
    tokio::task::yield_now().await;
    assert_eq!(counting.count(), 2);

    advance(MS).await;
    assert_eq!(send_without_waiting(&svc), "Bearer token-1");
    tokio::task::yield_now().await;
    assert_eq!(counting.count(), 3, "retried on schedule");
    assert_eq!(send_without_waiting(&svc), "Bearer token-3");
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_between_attempts() {
    let counting = Counting::new(|_| async {
        Err::<Token, _>(SourceError::new("down", ErrorClass::TRANSIENT))
    });
    let cache = TokenCache::builder(counting.source())
        .backoff(no_jitter())
        .build();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache))
        .service(echo::<String>());

    let start = Instant::now();
    for _ in 0..200 {
        assert!(svc.clone().oneshot(request()).await.is_err());
        advance(Duration::from_millis(100)).await;
    }
    let offsets: Vec<u64> = counting
        .start_times()
        .iter()
        .map(|t| (*t - start).as_millis() as u64)
        .collect();
    assert_eq!(offsets, [0, 1_000, 3_000, 7_000, 15_000]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let counting = Counting::new(|_| async {
        Err::<Token, _>(SourceError::new(
            "429 slow down",
            ErrorClass::Transient {
                retry_after: Some(Duration::from_secs(10)),
            },
        ))
    });
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(
            TokenCache::builder(counting.source())
                .backoff(no_jitter())
                .build(),
        ))
        .service(echo::<String>());

    let start = Instant::now();
    for _ in 0..250 {
        let err = svc.clone().oneshot(request()).await.unwrap_err();
        assert!(err.to_string().contains("429 slow down"));
        advance(Duration::from_millis(100)).await;
    }
    let offsets: Vec<u64> = counting
        .start_times()
        .iter()
        .map(|t| (*t - start).as_secs())
        .collect();
    assert_eq!(offsets, [0, 10, 20]);
}

#[tokio::test(start_paused = true)]
async fn an_outage_under_load_costs_the_provider_one_fetch_per_backoff_step() {
    // 1,000 requests a second for 10 s against a provider that is down.
    let counting = Counting::new(|_| async {
        Err::<Token, _>(SourceError::new(
            "connection refused",
            ErrorClass::TRANSIENT,
        ))
    });
    let cache = TokenCache::new(counting.source());
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service(echo::<String>());

    for _ in 0..10_000 {
        let err = svc.clone().oneshot(request()).await.unwrap_err();
        assert!(err.as_token_error().is_some());
        advance(MS).await;
    }
    // Default backoff: delays of at most 1, 2, 4 s (jitter only shortens
    // them, by at most 20%): attempts at 0 and by 1, 3 and 7 s; the fifth
    // cannot come before 12 s.
    assert_eq!(counting.count(), 4);
    let stats = cache.stats();
    assert_eq!(stats.failed_fast, 10_000 - 4);
    assert_eq!(stats.fetches_failed, 4);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_source_times_out_and_the_next_attempt_runs() {
    let counting = Counting::new(|n| async move {
        if n == 1 {
            std::future::pending::<()>().await;
        }
        Ok(Token::bearer("late"))
    });
    let cache = TokenCache::builder(counting.source())
        .fetch_timeout(Duration::from_secs(2))
        .backoff(no_jitter())
        .build();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache))
        .service(echo::<String>());

    let start = Instant::now();
    let waiters: Vec<_> = (0..5)
        .map(|_| tokio::spawn(svc.clone().oneshot(request())))
        .collect();
    for waiter in waiters {
        let err = waiter.await.unwrap().unwrap_err();
        let err = err.as_token_error().unwrap();
        assert_eq!(err.kind(), TokenErrorKind::Timeout);
        assert!(err.to_string().contains("did not answer within 2s"));
    }
    assert_eq!(start.elapsed(), Duration::from_secs(2));

    advance(Duration::from_secs(1)).await;
    assert_eq!(
        svc.clone().oneshot(request()).await.unwrap().body(),
        "Bearer late"
    );
    assert_eq!(counting.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_source_fails_its_waiters_without_poisoning_the_cache() {
    let counting = Counting::new(|n| async move {
        if n == 1 {
            panic!("source bug");
        }
        Ok(Token::bearer("recovered"))
    });
    let cache = TokenCache::builder(counting.source())
        .backoff(no_jitter())
        .build();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache))
        .service(echo::<String>());

    let waiters: Vec<_> = (0..5)
        .map(|_| tokio::spawn(svc.clone().oneshot(request())))
        .collect();
    for waiter in waiters {
        let err = waiter.await.unwrap().unwrap_err();
        assert_eq!(
            err.as_token_error().unwrap().kind(),
            TokenErrorKind::Panicked
        );
    }
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        svc.clone().oneshot(request()).await.unwrap().body(),
        "Bearer recovered"
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_runs_after_the_last_handle_is_dropped() {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let counting = Counting::new(move |_| {
        let guard = SetOnDrop(flag.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok(Token::bearer("never"))
        }
    });
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(counting.source()))
        .service(echo::<String>());
    let mut pending = tokio_test::task::spawn(svc.clone().oneshot(request()));
    assert!(pending.poll().is_pending());
    tokio::task::yield_now().await;
    assert_eq!(counting.count(), 1);
    assert!(!dropped.load(Ordering::SeqCst));

    drop(pending);
    drop(svc);
    tokio::task::yield_now().await;
    assert!(dropped.load(Ordering::SeqCst), "the fetch was aborted");
}

/// An API that rejects `token-1` and accepts any other token, counting calls.
fn api_rejecting_first_token(
    calls: Arc<Mutex<Vec<String>>>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<String>,
    Error = Infallible,
    Future: Send,
> + Clone {
    tower::service_fn(move |req: Request<Full<Bytes>>| {
        let calls = calls.clone();
        async move {
            let auth = req.headers()["authorization"].to_str().unwrap().to_owned();
            calls.lock().unwrap().push(auth.clone());
            tokio::time::sleep(Duration::from_millis(10)).await;
            let status = if auth == "Bearer token-1" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::OK
            };
            let mut res = Response::new(auth);
            *res.status_mut() = status;
            Ok::<_, Infallible>(res)
        }
    })
}

fn body_request() -> Request<Full<Bytes>> {
    Request::post("http://api.test/v1")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_401s_causes_one_refresh() {
    let counting = Counting::tokens(Duration::from_millis(5), Some(Duration::from_secs(3600)));
    let layer = BearerAuthLayer::new(counting.source());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(api_rejecting_first_token(calls.clone()));

    let burst: Vec<_> = (0..50)
        .map(|_| tokio::spawn(svc.clone().oneshot(body_request())))
        .collect();
    for res in burst {
        assert_eq!(
            res.await.unwrap().unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let res = svc.clone().oneshot(body_request()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "Bearer token-2");
    assert_eq!(counting.count(), 2, "one refresh for fifty 401s");
    assert_eq!(layer.cache().stats().invalidations, 1);
}

#[tokio::test(start_paused = true)]
async fn a_late_401_for_an_old_token_does_not_throw_away_the_new_one() {
    let counting = Counting::tokens(Duration::ZERO, Some(Duration::from_secs(3600)));
    let cache = TokenCache::new(counting.source());
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service_fn(move |req: Request<String>| {
            let gate = gate.clone();
            async move {
                let old = req.headers()["authorization"] == "Bearer token-1";
                if old {
                    gate.notified().await;
                }
                let mut res = Response::new(String::new());
                *res.status_mut() = if old {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::OK
                };
                Ok::<_, Infallible>(res)
            }
        });

    let slow = tokio::spawn(svc.clone().oneshot(request()));
    tokio::task::yield_now().await;
    // Meanwhile the token is replaced.
    cache.invalidate();
    cache.refresh().await.unwrap();
    assert_eq!(counting.count(), 2);

    release.notify_one();
    assert_eq!(
        slow.await.unwrap().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    tokio::task::yield_now().await;
    assert_eq!(counting.count(), 2, "the fresh token was kept");
    assert!(cache.has_usable_token());
    assert_eq!(cache.stats().invalidations, 1, "only the requested one");
    assert_eq!(
        svc.oneshot(request()).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_unauthenticated_in_headers_invalidates_and_it_can_be_turned_off() {
    for invalidate in [true, false] {
        let counting = Counting::tokens(Duration::ZERO, Some(Duration::from_secs(3600)));
        let layer = BearerAuthLayer::new(counting.source()).invalidate_on_unauthorized(invalidate);
        let svc =
            ServiceBuilder::new()
                .layer(layer.clone())
                .service_fn(|_req: Request<()>| async {
                    let res = Response::builder()
                        .header("grpc-status", "16")
                        .body(())
                        .unwrap();
                    Ok::<_, Infallible>(res)
                });
        svc.oneshot(Request::new(())).await.unwrap();
        tokio::task::yield_now().await;
        assert_eq!(layer.cache().stats().invalidations, u64::from(invalidate));
        // An invalidation starts the fetch of the replacement at once.
        assert_eq!(counting.count(), 1 + usize::from(invalidate));
    }
}

#[tokio::test(start_paused = true)]
async fn a_replayable_request_is_retried_once_with_the_new_token() {
    let counting = Counting::tokens(Duration::ZERO, Some(Duration::from_secs(3600)));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryOnUnauthorized::default()))
        .layer(BearerAuthLayer::new(counting.source()))
        .service(api_rejecting_first_token(calls.clone()));

    let res = svc.oneshot(body_request()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(*calls.lock().unwrap(), ["Bearer token-1", "Bearer token-2"]);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_keeps_failing_is_retried_only_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let counting = Counting::tokens(Duration::ZERO, Some(Duration::from_secs(3600)));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryOnUnauthorized::default()))
        .layer(BearerAuthLayer::new(counting.source()))
        .service_fn(move |_req: Request<String>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                let mut res = Response::new(String::new());
                *res.status_mut() = StatusCode::UNAUTHORIZED;
                Ok::<_, Infallible>(res)
            }
        });
    let res = svc.oneshot(request()).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A body that may be a stream, which cannot be replayed.
#[derive(Debug)]
enum MaybeStream {
    Buffered(Bytes),
    Stream,
}

impl ReplayBody for MaybeStream {
    fn try_clone_body(&self) -> Option<Self> {
        match self {
            MaybeStream::Buffered(b) => Some(MaybeStream::Buffered(b.clone())),
            MaybeStream::Stream => None,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_streaming_request_is_not_retried_but_its_401_still_invalidates() {
    for (body, expected_calls, status) in [
        (MaybeStream::Stream, 1, StatusCode::UNAUTHORIZED),
        (
            MaybeStream::Buffered(Bytes::from_static(b"x")),
            2,
            StatusCode::OK,
        ),
    ] {
        let counting = Counting::tokens(Duration::ZERO, Some(Duration::from_secs(3600)));
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        // Kept alive: a fetch is aborted once the last handle is gone.
        let cache = TokenCache::new(counting.source());
        let svc = ServiceBuilder::new()
            .layer(RetryLayer::new(RetryOnUnauthorized::default()))
            .layer(BearerAuthLayer::with_cache(cache.clone()))
            .service_fn(move |req: Request<MaybeStream>| {
                counted.fetch_add(1, Ordering::SeqCst);
                let ok = req.headers()["authorization"] != "Bearer token-1";
                async move {
                    let mut res = Response::new(());
                    if !ok {
                        *res.status_mut() = StatusCode::UNAUTHORIZED;
                    }
                    Ok::<_, Infallible>(res)
                }
            });
        let res = svc.oneshot(Request::new(body)).await.unwrap();
        assert_eq!(res.status(), status);
        assert_eq!(calls.load(Ordering::SeqCst), expected_calls);
        tokio::task::yield_now().await;
        assert_eq!(
            counting.count(),
            2,
            "the rejected token was replaced either way"
        );
        assert_eq!(cache.stats().invalidations, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn an_api_that_rejects_every_token_does_not_cause_a_fetch_storm() {
    // A wrong audience: every token is rejected. 100 requests a second for
    // 10 s cost one refetch per 5 s cooldown, not one per round trip.
    let counting = Counting::tokens(Duration::from_millis(5), Some(Duration::from_secs(3600)));
    let cache = TokenCache::new(counting.source());
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service_fn(|_req: Request<String>| async {
            let mut res = Response::new(String::new());
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            Ok::<_, Infallible>(res)
        });
    for _ in 0..1000 {
        let res = svc.clone().oneshot(request()).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        advance(Duration::from_millis(10)).await;
    }
    // The first fetch, then one each at about 0, 5 and 10 s.
    assert!(counting.count() <= 4, "{} fetches", counting.count());
    assert_eq!(cache.stats().invalidations as usize, counting.count() - 1);
}
