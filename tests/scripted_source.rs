//! The scripted token source (feature `test-util`) on its own and under the
//! cache, on tokio's paused clock: steps in order, delays and call times,
//! scripted errors driving the cache's real backoff, a script that runs out,
//! steps pushed while the test runs, a hang against the fetch timeout, one
//! call for a crowd of requests, and the README example kept the same as the
//! module's.
#![cfg(feature = "test-util")]

mod support;

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use tokio::task::JoinSet;
use tokio::time::{Instant, advance};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::source::scripted::{ScriptedError, ScriptedSource, Step};
use tower_bearer::{
    BearerAuthLayer, ErrorClass, Token, TokenCache, TokenError, TokenErrorKind, TokenSource,
};

use support::{echo, no_jitter, request};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// Sends a request through `svc`: the `Authorization` header the API saw,
/// or the token error that kept the request from being sent.
async fn send<S>(svc: &S) -> Result<String, TokenError>
where
    S: Service<
            Request<String>,
            Response = Response<String>,
            Error = tower_bearer::Error<Infallible>,
        > + Clone,
{
    match svc.clone().oneshot(request()).await {
        Ok(response) => Ok(response.into_body()),
        Err(error) => Err(error.as_token_error().expect("a token error").clone()),
    }
}

/// The layer over the echoing API, with `cache`.
fn client(
    cache: TokenCache,
) -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = tower_bearer::Error<Infallible>,
    Future: Send,
> + Clone
+ Send
+ 'static {
    ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache))
        .service(echo::<String>())
}

/// The scripted error inside a token error.
fn scripted(error: &TokenError) -> &ScriptedError {
    error
        .source_error()
        .and_then(|e| e.downcast_ref::<ScriptedError>())
        .expect("a scripted error")
}

#[tokio::test(start_paused = true)]
async fn steps_play_in_order_and_errors_name_their_call() {
    let dpop_token = Token::new("d1", "DPoP").with_lifetime(MINUTE);
    let source = ScriptedSource::new()
        .token("t1", MINUTE)
        .transient_error()
        .then(Step::retry_after(Duration::from_secs(7)))
        .permanent_error()
        .then(dpop_token.clone())
        .then(Step::error(ErrorClass::Transient {
            retry_after: Some(SECOND),
        }));
    let script = source.handle();
    assert_eq!((script.calls(), script.remaining()), (0, 6));

    let first = source.fetch().await.unwrap();
    assert_eq!(first, Token::bearer("t1").with_lifetime(MINUTE));

    let second = source.fetch().await.unwrap_err();
    assert_eq!(second.to_string(), "scripted transient error at call 2");
    assert_eq!(source.classify(&second), ErrorClass::TRANSIENT);

    let third = source.fetch().await.unwrap_err();
    assert_eq!(
        third.to_string(),
        "scripted transient error at call 3 (Retry-After 7s)"
    );
    assert_eq!(
        source.classify(&third),
        ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(7))
        }
    );

    let fourth = source.fetch().await.unwrap_err();
    assert_eq!(fourth.to_string(), "scripted permanent error at call 4");
    assert_eq!(source.classify(&fourth), ErrorClass::Permanent);
    assert_eq!(fourth.call(), 4);
    assert!(!fourth.is_exhausted());

    // A token given as it is comes back as it is, its type included.
    assert_eq!(source.fetch().await.unwrap(), dpop_token);
    let sixth = source.fetch().await.unwrap_err();
    assert_eq!(
        source.classify(&sixth),
        ErrorClass::Transient {
            retry_after: Some(SECOND)
        }
    );
    assert_eq!((script.calls(), script.remaining()), (6, 0));
    assert_eq!(source.kind(), "scripted");
}

#[tokio::test(start_paused = true)]
async fn delays_run_on_the_paused_clock_and_call_times_are_exact() {
    let source = ScriptedSource::new()
        .then(Step::token("t1", MINUTE).delay(Duration::from_millis(300)))
        .then(Step::token("t2", MINUTE).delay(2 * SECOND));
    let script = source.handle();
    let svc = client(TokenCache::new(source));
    let start = Instant::now();

    assert_eq!(send(&svc).await.unwrap(), "Bearer t1");
    assert_eq!(Instant::now() - start, Duration::from_millis(300));

    // Past t1's usable end (45 s of its minute): the next request waits for t2.
    advance(MINUTE).await;
    assert_eq!(send(&svc).await.unwrap(), "Bearer t2");
    assert_eq!(Instant::now() - start, Duration::from_millis(62_300));
    assert_eq!(
        script.call_times(),
        [start, start + Duration::from_millis(60_300)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_of_7s_keeps_the_cache_from_calling_again_for_exactly_7s() {
    // The default backoff, jitter included: its first delay is at most a
    // second, so the 7 s are the provider's.
    let source = ScriptedSource::new()
        .then(Step::retry_after(Duration::from_secs(7)))
        .token("t1", MINUTE);
    let script = source.handle();
    let svc = client(TokenCache::new(source));
    let start = Instant::now();

    let failed = send(&svc).await.unwrap_err();
    assert_eq!(failed.kind(), TokenErrorKind::Source);
    assert_eq!(
        failed.class(),
        ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(scripted(&failed).call(), 1);
    assert!(
        failed.to_string().ends_with(
            "the token source failed: scripted transient error at call 1 (Retry-After 7s)"
        ),
        "{failed}"
    );

    advance(Duration::from_secs(7) - MS).await;
    let backing_off = send(&svc).await.unwrap_err();
    assert!(backing_off.same_failure(&failed));
    assert_eq!(backing_off.backoff_remaining(), Some(MS));
    assert_eq!(script.calls(), 1, "no call during the backoff");

    advance(MS).await;
    assert_eq!(send(&svc).await.unwrap(), "Bearer t1");
    assert_eq!(script.call_times(), [start, start + Duration::from_secs(7)]);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_classed_permanent_and_waits_out_the_backoff_cap() {
    let source = ScriptedSource::new().permanent_error().token("t1", MINUTE);
    let script = source.handle();
    let svc = client(TokenCache::builder(source).backoff(no_jitter()).build());
    let start = Instant::now();

    let failed = send(&svc).await.unwrap_err();
    assert_eq!(failed.class(), ErrorClass::Permanent);
    assert!(!failed.is_transient());
    assert_eq!(scripted(&failed).call(), 1);
    assert!(
        failed
            .to_string()
            .ends_with("scripted permanent error at call 1"),
        "{failed}"
    );

    // A permanent failure waits for the backoff's cap, a minute by default.
    advance(MINUTE - MS).await;
    let backing_off = send(&svc).await.unwrap_err();
    assert_eq!(backing_off.backoff_remaining(), Some(MS));
    assert_eq!(script.calls(), 1);

    advance(MS).await;
    assert_eq!(send(&svc).await.unwrap(), "Bearer t1");
    assert_eq!(script.call_times(), [start, start + MINUTE]);
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_script_fails_at_once_and_plays_steps_pushed_later() {
    let source = ScriptedSource::new().token("t1", 10 * SECOND);
    let script = source.handle();
    let svc = client(TokenCache::builder(source).backoff(no_jitter()).build());
    assert_eq!(send(&svc).await.unwrap(), "Bearer t1");

    // t1 is past its usable end; the script has nothing more.
    advance(10 * SECOND).await;
    let asked_at = Instant::now();
    let failed = send(&svc).await.unwrap_err();
    assert_eq!(Instant::now(), asked_at, "answered at once, no hang");
    assert!(scripted(&failed).is_exhausted());
    assert_eq!(scripted(&failed).call(), 2);
    assert_eq!(failed.class(), ErrorClass::Permanent);
    assert!(
        failed.to_string().ends_with(
            "script exhausted after 1 call: call 2 found no step left (add one with ScriptHandle::push)"
        ),
        "{failed}"
    );
    assert!(!format!("{failed} {failed:?}").contains("t1"));

    // A step pushed afterwards is played once the backoff (a minute) ends.
    script.push(Step::token("t2", MINUTE));
    advance(MINUTE).await;
    assert_eq!(send(&svc).await.unwrap(), "Bearer t2");
    assert_eq!((script.calls(), script.remaining()), (3, 0));
}

#[tokio::test(start_paused = true)]
async fn steps_pushed_while_a_call_is_in_flight_are_played_next() {
    let source = ScriptedSource::new().then(Step::token("t1", 10 * SECOND).delay(SECOND));
    let script = source.handle();
    let svc = client(TokenCache::new(source));
    let start = Instant::now();

    let first = tokio::spawn({
        let svc = svc.clone();
        async move { send(&svc).await }
    });
    // The request starts its call (on the fetch's own task, a few turns of
    // the scheduler away), then half the delay passes.
    for _ in 0..100 {
        if script.calls() > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(script.call_times(), [start]);
    advance(Duration::from_millis(500)).await;
    assert_eq!(
        (script.calls(), script.remaining()),
        (1, 0),
        "t1 is in flight"
    );
    // Another clone of the handle, in another task, adds the next step.
    let pusher = script.clone();
    tokio::spawn(async move { pusher.push(Step::token("t2", 10 * SECOND)) })
        .await
        .unwrap();
    assert_eq!(script.remaining(), 1);

    assert_eq!(first.await.unwrap().unwrap(), "Bearer t1");
    assert_eq!(Instant::now() - start, SECOND);

    // t1 lives 10 s from its call: usable until 7.5 s.
    advance(10 * SECOND).await;
    assert_eq!(send(&svc).await.unwrap(), "Bearer t2");
    assert_eq!((script.calls(), script.remaining()), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_hang_step_meets_the_caches_fetch_timeout() {
    let source = ScriptedSource::new().then(Step::hang()).token("t1", MINUTE);
    let script = source.handle();
    let cache = TokenCache::builder(source)
        .fetch_timeout(5 * SECOND)
        .backoff(no_jitter())
        .build();
    let svc = client(cache);
    let start = Instant::now();

    let failed = send(&svc).await.unwrap_err();
    assert_eq!(failed.kind(), TokenErrorKind::Timeout);
    assert!(failed.is_transient());
    assert_eq!(
        Instant::now() - start,
        5 * SECOND,
        "given up at the timeout"
    );

    // A timeout is transient: the next call comes after the first backoff step.
    advance(SECOND).await;
    assert_eq!(send(&svc).await.unwrap(), "Bearer t1");
    assert_eq!(script.call_times(), [start, start + 6 * SECOND]);
}

#[tokio::test(start_paused = true)]
async fn fifty_concurrent_requests_make_one_call() {
    // One step only: a second call would fail as the script runs out.
    let source =
        ScriptedSource::new().then(Step::token("t1", MINUTE).delay(Duration::from_millis(100)));
    let script = source.handle();
    let cache = TokenCache::new(source);
    let svc = client(cache.clone());
    let start = Instant::now();

    let mut requests = JoinSet::new();
    for _ in 0..50 {
        let svc = svc.clone();
        requests.spawn(async move { (send(&svc).await, Instant::now()) });
    }
    let mut answered = 0;
    while let Some(joined) = requests.join_next().await {
        let (sent, at) = joined.unwrap();
        assert_eq!(sent.unwrap(), "Bearer t1");
        assert_eq!(at - start, Duration::from_millis(100));
        answered += 1;
    }
    assert_eq!(answered, 50);
    assert_eq!(script.calls(), 1);
    assert_eq!(script.call_times(), [start]);
    assert_eq!(cache.stats().fetches_started, 1);
}

/// The README's example is the module's, which rustdoc compiles and runs.
#[test]
fn the_readme_example_is_the_compiled_module_example() {
    assert_eq!(
        support::readme::readme_example("## Testing your own stack"),
        support::readme::module_example(include_str!("../src/source/scripted.rs"), 0)
    );
}
