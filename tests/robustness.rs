//! Odd settings and odd runtimes: the cache neither panics nor hangs.

mod support;

use std::convert::Infallible;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use support::{Counting, echo, request, strand_a_fetch, within};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::source::StaticSource;
use tower_bearer::{
    Backoff, BearerAuthLayer, ErrorClass, SourceError, Token, TokenCache, TokenErrorKind,
};

#[test]
fn a_request_on_a_runtime_that_has_shut_down_fails_instead_of_deadlocking() {
    let err = within(Duration::from_secs(10), || {
        let svc = ServiceBuilder::new()
            .layer(BearerAuthLayer::new(StaticSource::new(Token::bearer("t"))))
            .service(echo::<String>());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        drop(runtime);
        // The handle still says "a runtime", but it drops every task it is
        // given, inside `spawn`.
        let _entered = handle.enter();
        let mut fut = std::pin::pin!(svc.clone().call(request()));
        let mut cx = Context::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(res) => res.unwrap_err().as_token_error().unwrap().kind(),
            Poll::Pending => panic!("no fetch can run, so the request must fail at once"),
        }
    });
    assert_eq!(err, TokenErrorKind::Cancelled);
}

#[test]
fn a_fetch_stranded_on_an_idle_runtime_does_not_hang_requests_elsewhere() {
    within(Duration::from_secs(20), || {
        let counting = Counting::tokens(Duration::ZERO, Some(Duration::from_secs(3600)));
        let cache = TokenCache::builder(counting.source())
            .fetch_timeout(Duration::from_millis(100))
            .build();
        let svc = ServiceBuilder::new()
            .layer(BearerAuthLayer::with_cache(cache.clone()))
            .service(echo::<String>());

        // Runtime A starts the fetch, then is never driven again.
        let idle = strand_a_fetch(&svc);
        assert_eq!(cache.stats().fetches_started, 1);

        // Runtime B: its requests give up on that fetch, then start their own.
        let busy = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        busy.block_on(async {
            let err = svc.clone().oneshot(request()).await.unwrap_err();
            assert_eq!(
                err.as_token_error().unwrap().kind(),
                TokenErrorKind::Timeout
            );
            let res = svc.clone().oneshot(request()).await.unwrap();
            assert_eq!(res.body(), "Bearer token-1");
        });
        assert_eq!(cache.stats().fetches_started, 2);
        drop(idle);
    });
}

#[tokio::test(start_paused = true)]
async fn a_refresh_jitter_that_is_not_a_number_is_ignored() {
    let counting = Counting::tokens(Duration::from_millis(10), Some(Duration::from_secs(3600)));
    let cache = TokenCache::builder(counting.source())
        .refresh_jitter(f64::NAN)
        .build();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache))
        .service(echo::<String>());
    for _ in 0..3 {
        assert_eq!(
            svc.clone().oneshot(request()).await.unwrap().body(),
            "Bearer token-1"
        );
    }
    assert_eq!(counting.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn absurd_backoff_settings_neither_panic_nor_hang() {
    let settings = [
        (
            Backoff::default()
                .jitter(f64::NAN)
                .multiplier(f64::INFINITY),
            ErrorClass::TRANSIENT,
        ),
        (
            Backoff::default()
                .max(Duration::MAX)
                .max_retry_after(Duration::MAX),
            ErrorClass::Permanent,
        ),
        (
            Backoff::default().max_retry_after(Duration::MAX),
            ErrorClass::Transient {
                retry_after: Some(Duration::MAX),
            },
        ),
    ];
    for (backoff, class) in settings {
        let counting =
            Counting::new(move |_| async move { Err::<Token, _>(SourceError::new("down", class)) });
        let cache = TokenCache::builder(counting.source())
            .backoff(backoff.clone())
            .build();
        let svc = ServiceBuilder::new()
            .layer(BearerAuthLayer::with_cache(cache))
            .service(echo::<String>());
        for _ in 0..3 {
            let res = tokio::time::timeout(Duration::from_secs(60), svc.clone().oneshot(request()))
                .await
                .expect("a failed fetch must not hang its waiters");
            assert!(res.is_err());
        }
        assert_eq!(
            counting.count(),
            1,
            "{backoff:?}: backing off, not refetching"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_huge_invalidation_cooldown_does_not_panic() {
    let cache = TokenCache::builder(StaticSource::new(Token::bearer("t")))
        .invalidation_cooldown(Duration::MAX)
        .build();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service_fn(|_req: Request<String>| async {
            let mut res = Response::new(String::new());
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            Ok::<_, Infallible>(res)
        });
    for _ in 0..3 {
        let res = svc.clone().oneshot(request()).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        tokio::task::yield_now().await;
    }
    assert_eq!(cache.stats().invalidations, 1);
}

#[tokio::test(start_paused = true)]
async fn a_lone_oneshot_request_keeps_its_fetch_alive_without_401_handling() {
    // `oneshot` drops the service right after `call`: the waiting request
    // alone must keep the cache, and so the fetch, alive.
    let counting = Counting::tokens(Duration::from_millis(10), Some(Duration::from_secs(60)));
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(counting.source()).invalidate_on_unauthorized(false))
        .service(echo::<String>());
    assert_eq!(
        svc.oneshot(request()).await.unwrap().body(),
        "Bearer token-1"
    );
}

#[tokio::test(start_paused = true)]
async fn a_zero_lifetime_counts_as_unknown_not_as_fetch_on_every_request() {
    let counting = Counting::tokens(Duration::ZERO, Some(Duration::ZERO));
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(counting.source()))
        .service(echo::<String>());
    for _ in 0..10 {
        assert_eq!(
            svc.clone().oneshot(request()).await.unwrap().body(),
            "Bearer token-1"
        );
    }
    assert_eq!(counting.count(), 1);
}

/// The documented requirement: the cache needs the runtime's time driver.
/// Without it, tokio's own panic names the fix; nothing waits forever.
#[test]
fn a_runtime_without_timers_is_refused_by_tokio_with_its_fix_named() {
    let outcome = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(BearerAuthLayer::new(StaticSource::new(Token::bearer("t"))))
            .service(echo::<String>());
        runtime.block_on(svc.oneshot(request()))
    })
    .join();
    let panic = outcome.expect_err("a request cannot be bounded in time without timers");
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(message.contains("enable_time"), "{message}");
}

/// The hot path trusts a timer instead of the clock; a timer whose runtime
/// shut down can never fire, and must never keep an expired token in use.
#[test]
fn a_token_whose_timer_runtime_shut_down_is_not_used_past_its_usable_end() {
    within(Duration::from_secs(20), || {
        let counting = Counting::tokens(Duration::ZERO, Some(Duration::from_secs(100)));
        let cache = TokenCache::new(counting.source());
        let svc = ServiceBuilder::new()
            .layer(BearerAuthLayer::with_cache(cache.clone()))
            .service(echo::<String>());

        // A multi-thread runtime fetches the token and arms its timer, then
        // shuts down.
        let first = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        first.block_on(async {
            let res = svc.clone().oneshot(request()).await.unwrap();
            assert_eq!(res.body(), "Bearer token-1");
        });
        drop(first);

        // Another runtime, 80 s later: past the 75 s usable end.
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        second.block_on(async {
            tokio::time::advance(Duration::from_secs(80)).await;
            let res = svc.clone().oneshot(request()).await.unwrap();
            assert_eq!(res.body(), "Bearer token-2", "never the expired token");
        });
        assert_eq!(counting.count(), 2);
    });
}
