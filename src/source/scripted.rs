//! A token source that plays a script, for testing your own client stack.
//!
//! A [`ScriptedSource`] answers each fetch with the next [`Step`] of a
//! script the test writes: a token, a transient or permanent error (with a
//! `Retry-After` if you like), after a delay, or no answer at all. Put it
//! where your application puts its real source, move it into the layer, and
//! keep its [`ScriptHandle`]: it counts the calls, says when each was made,
//! and adds steps while the test runs. Delays run on tokio's clock, so under
//! a paused clock they take no real time and the call times are exact.
//!
//! The example tests an application's own client, `OrdersClient`, over a
//! `tower_test::mock` API in three scenes: a token expires, the API answers
//! `401`, the identity provider is down.
//!
//! ```
//! use std::time::Duration;
//!
//! use http::{Request, Response, StatusCode};
//! use tower::retry::RetryLayer;
//! use tower::util::BoxCloneService;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_bearer::source::scripted::ScriptedSource;
//! use tower_bearer::{BearerAuthLayer, BoxError, RetryOnUnauthorized, TokenError, TokenSource};
//! use tower_test::mock;
//!
//! /// The application's client for its orders API: a bearer token on every
//! /// request, one retry after a 401, over any HTTP service.
//! #[derive(Clone)]
//! struct OrdersClient {
//!     http: BoxCloneService<Request<String>, Response<String>, BoxError>,
//! }
//!
//! impl OrdersClient {
//!     fn new<S>(tokens: impl TokenSource, http: S) -> Self
//!     where
//!         S: Service<Request<String>, Response = Response<String>, Error = BoxError>
//!             + Clone
//!             + Send
//!             + 'static,
//!         S::Future: Send,
//!     {
//!         let http = ServiceBuilder::new()
//!             .layer(RetryLayer::new(RetryOnUnauthorized::default()))
//!             .map_err(tower_bearer::Error::into_box_error)
//!             .layer(BearerAuthLayer::new(tokens))
//!             .service(http);
//!         Self { http: BoxCloneService::new(http) }
//!     }
//!
//!     async fn order(&self, id: u32) -> Result<String, BoxError> {
//!         let request = Request::get(format!("https://orders.example/orders/{id}"))
//!             .body(String::new())?;
//!         let response = self.http.clone().oneshot(request).await?;
//!         match response.status() {
//!             StatusCode::OK => Ok(response.into_body()),
//!             status => Err(format!("the orders API answered {status}").into()),
//!         }
//!     }
//! }
//!
//! type Api = mock::Handle<Request<String>, Response<String>>;
//!
//! /// Plays the orders API for one request: answers it with `status` and
//! /// returns the `Authorization` header it carried.
//! async fn answer(api: &mut Api, status: StatusCode) -> String {
//!     let (request, reply) = api.next_request().await.expect("a request");
//!     let mut response = Response::new(format!("order at {}", request.uri().path()));
//!     *response.status_mut() = status;
//!     reply.send_response(response);
//!     request.headers()["authorization"].to_str().unwrap().to_owned()
//! }
//!
//! // In your own tests: #[tokio::test(start_paused = true)]
//! #[tokio::main(flavor = "current_thread", start_paused = true)]
//! async fn main() {
//!     let minute = Duration::from_secs(60);
//!     let tokens = ScriptedSource::new()
//!         .token("t1", minute)
//!         .token("t2", minute)
//!         .token("t3", minute)
//!         .transient_error();
//!     let script = tokens.handle();
//!     let (http, mut api) = mock::pair();
//!     let client = OrdersClient::new(tokens, http);
//!
//!     // Scene 1: the token expires mid-test; the next request carries the next one.
//!     let (order, sent) = tokio::join!(client.order(1), answer(&mut api, StatusCode::OK));
//!     assert_eq!(order.unwrap(), "order at /orders/1");
//!     assert_eq!(sent, "Bearer t1");
//!     tokio::time::advance(minute).await; // t1's lifetime is over
//!     let (order, sent) = tokio::join!(client.order(2), answer(&mut api, StatusCode::OK));
//!     assert_eq!(order.unwrap(), "order at /orders/2");
//!     assert_eq!(sent, "Bearer t2");
//!     assert_eq!(script.calls(), 2);
//!
//!     // Scene 2: the API rejects t2; the client retries once, with a fresh token.
//!     let (order, (rejected, retried)) = tokio::join!(client.order(3), async {
//!         let rejected = answer(&mut api, StatusCode::UNAUTHORIZED).await;
//!         (rejected, answer(&mut api, StatusCode::OK).await)
//!     });
//!     assert_eq!(order.unwrap(), "order at /orders/3");
//!     assert_eq!((rejected.as_str(), retried.as_str()), ("Bearer t2", "Bearer t3"));
//!     assert_eq!(script.calls(), 3);
//!
//!     // Scene 3: the provider is down when t3 runs out; the call fails with a
//!     // token error, and the API never sees the request.
//!     tokio::time::advance(minute).await;
//!     let error = client.order(4).await.unwrap_err();
//!     let token_error = error.downcast_ref::<TokenError>().expect("a token error");
//!     assert!(token_error.is_transient());
//!     assert!(error.to_string().contains("scripted transient error at call 4"));
//!     assert!(api.poll_request().is_pending(), "the API saw no request");
//!     // While the cache backs off, the provider is not asked again.
//!     assert!(client.order(5).await.is_err());
//!     assert_eq!(script.calls(), 4);
//! }
//! ```
//!
//! # The script
//!
//! Steps are played in order, one per call, and the handle's
//! [`push`](ScriptHandle::push) appends more at any time. A step's
//! [`delay`](Step::delay) is a `tokio::time::sleep` before it answers (a
//! call dropped during its delay has used its step all the same); a
//! [`Step::hang`] never answers, to test the cache's
//! [`fetch_timeout`](crate::TokenCacheBuilder::fetch_timeout). Errors carry
//! their [`ErrorClass`], so they drive the cache's real backoff: a transient
//! error with a `Retry-After` of 7 s keeps the next call 7 s away, a
//! permanent one waits for the backoff's cap.
//!
//! When the script has run out, a call fails at once with a permanent
//! [`ScriptedError`] that says so ("script exhausted after 3 calls"): a
//! test that asks for more tokens than it scripted fails clearly, never
//! hangs and never reuses a token by accident. Push a step and the next call
//! plays it.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::TokenSource;
use crate::error::ErrorClass;
use crate::token::Token;

/// A [`TokenSource`] that answers each call with the next [`Step`] of its
/// script; see the [module docs](self) for an example.
///
/// Build the script with [`token`](Self::token),
/// [`transient_error`](Self::transient_error),
/// [`permanent_error`](Self::permanent_error) and [`then`](Self::then), and
/// take a [`handle`](Self::handle) before moving the source into the layer.
/// A script that has run out fails each call with a permanent
/// [`ScriptedError`] until more steps are pushed.
///
/// Its `Debug` shows the number of calls and steps left, never a token.
pub struct ScriptedSource {
    handle: ScriptHandle,
}

impl ScriptedSource {
    /// A source with an empty script: add steps before the first call, or
    /// push them through its [`handle`](Self::handle).
    pub fn new() -> Self {
        Self {
            handle: ScriptHandle {
                script: Arc::new(Mutex::new(Script::default())),
            },
        }
    }

    /// Adds a step to the script: a [`Step`], or a [`Token`] to answer
    /// with as it is (its lifetime, type or DPoP key are the test's choice).
    pub fn then(self, step: impl Into<Step>) -> Self {
        self.handle.push(step);
        self
    }

    /// Adds a bearer token `value` that lives `lifetime`.
    pub fn token(self, value: impl Into<Arc<str>>, lifetime: Duration) -> Self {
        self.then(Step::token(value, lifetime))
    }

    /// Adds a transient error, without `Retry-After`.
    pub fn transient_error(self) -> Self {
        self.then(Step::transient_error())
    }

    /// Adds a permanent error.
    pub fn permanent_error(self) -> Self {
        self.then(Step::permanent_error())
    }

    /// A handle on the script, for the test to keep: it counts the calls,
    /// records when each was made and adds steps. Clones share the script.
    pub fn handle(&self) -> ScriptHandle {
        self.handle.clone()
    }
}

impl Default for ScriptedSource {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ScriptedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.handle.describe(f, "ScriptedSource")
    }
}

impl TokenSource for ScriptedSource {
    type Error = ScriptedError;

    fn fetch(&self) -> impl Future<Output = Result<Token, ScriptedError>> + Send {
        let handle = self.handle.clone();
        // The call counts when it is first polled, as the cache runs it.
        async move {
            let (call, step) = handle.next_call();
            let Some(step) = step else {
                return Err(ScriptedError {
                    call,
                    cause: Cause::Exhausted,
                });
            };
            if !step.delay.is_zero() {
                tokio::time::sleep(step.delay).await;
            }
            match step.answer {
                Answer::Token(token) => Ok(token),
                Answer::Error(class) => Err(ScriptedError {
                    call,
                    cause: Cause::Scripted(class),
                }),
                Answer::Hang => std::future::pending().await,
            }
        }
    }

    fn classify(&self, error: &ScriptedError) -> ErrorClass {
        error.class()
    }

    fn kind(&self) -> &'static str {
        "scripted"
    }
}

/// The test's handle on a [`ScriptedSource`]'s script: cheap to clone, and
/// still there after the source has moved into a layer.
#[derive(Clone)]
pub struct ScriptHandle {
    script: Arc<Mutex<Script>>,
}

#[derive(Default)]
struct Script {
    steps: VecDeque<Step>,
    calls: Vec<Instant>,
}

impl ScriptHandle {
    /// Appends a step: the call after the last scripted one plays it, even
    /// when the script had already run out.
    pub fn push(&self, step: impl Into<Step>) {
        self.lock().steps.push_back(step.into());
    }

    /// How many times the source was called, the calls that found the
    /// script run out included.
    pub fn calls(&self) -> usize {
        self.lock().calls.len()
    }

    /// When each call was made, in order, on tokio's clock (exact under a
    /// paused clock).
    pub fn call_times(&self) -> Vec<Instant> {
        self.lock().calls.clone()
    }

    /// How many steps are left to play.
    pub fn remaining(&self) -> usize {
        self.lock().steps.len()
    }

    /// Records a call now: its number (from 1) and the step it plays.
    fn next_call(&self) -> (usize, Option<Step>) {
        let mut script = self.lock();
        script.calls.push(Instant::now());
        let step = script.steps.pop_front();
        (script.calls.len(), step)
    }

    fn lock(&self) -> MutexGuard<'_, Script> {
        // Every update is one push or pop: a panic elsewhere leaves the
        // script whole.
        self.script
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
        let script = self.lock();
        f.debug_struct(name)
            .field("calls", &script.calls.len())
            .field("remaining", &script.steps.len())
            .finish()
    }
}

impl fmt::Debug for ScriptHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(f, "ScriptHandle")
    }
}

/// One answer of a [`ScriptedSource`]: a token, an error or no answer at
/// all, after an optional delay.
///
/// A [`Token`] converts into a step that answers with it. `Debug` never
/// shows the token's value.
#[derive(Clone, Debug)]
pub struct Step {
    answer: Answer,
    delay: Duration,
}

#[derive(Clone, Debug)]
enum Answer {
    Token(Token),
    Error(ErrorClass),
    Hang,
}

impl Step {
    /// Answers with a bearer token `value` that lives `lifetime`.
    pub fn token(value: impl Into<Arc<str>>, lifetime: Duration) -> Self {
        Token::bearer(value).with_lifetime(lifetime).into()
    }

    /// Fails with an error of class `class`: transient, with or without a
    /// `Retry-After`, or permanent.
    pub fn error(class: ErrorClass) -> Self {
        Self::answer(Answer::Error(class))
    }

    /// Fails with a transient error, without `Retry-After`.
    pub fn transient_error() -> Self {
        Self::error(ErrorClass::TRANSIENT)
    }

    /// Fails with a transient error whose provider asked to wait `after`
    /// (`Retry-After`, as a 429 or 503 may carry).
    pub fn retry_after(after: Duration) -> Self {
        Self::error(ErrorClass::Transient {
            retry_after: Some(after),
        })
    }

    /// Fails with a permanent error, as a refused client would.
    pub fn permanent_error() -> Self {
        Self::error(ErrorClass::Permanent)
    }

    /// Never answers: the call hangs until whoever awaits it gives up (the
    /// cache's [`fetch_timeout`](crate::TokenCacheBuilder::fetch_timeout)).
    /// Await it yourself only under a timeout.
    pub fn hang() -> Self {
        Self::answer(Answer::Hang)
    }

    /// Answers `delay` after the call (a `tokio::time::sleep`, so a paused
    /// clock skips it). Defaults to no delay.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn answer(answer: Answer) -> Self {
        Self {
            answer,
            delay: Duration::ZERO,
        }
    }
}

impl From<Token> for Step {
    fn from(token: Token) -> Self {
        Self::answer(Answer::Token(token))
    }
}

/// The error of a [`ScriptedSource`]: a scripted error, or a call that
/// found the script run out (permanent).
///
/// It names the call; it never holds a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedError {
    call: usize,
    cause: Cause,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Scripted(ErrorClass),
    Exhausted,
}

impl ScriptedError {
    /// Which call failed, from 1.
    pub fn call(&self) -> usize {
        self.call
    }

    /// How the cache should retry: the scripted class, or permanent for a
    /// script that has run out.
    pub fn class(&self) -> ErrorClass {
        match self.cause {
            Cause::Scripted(class) => class,
            Cause::Exhausted => ErrorClass::Permanent,
        }
    }

    /// Whether the call found the script run out.
    pub fn is_exhausted(&self) -> bool {
        self.cause == Cause::Exhausted
    }
}

impl fmt::Display for ScriptedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let call = self.call;
        match self.cause {
            Cause::Scripted(ErrorClass::Transient { retry_after: None }) => {
                write!(f, "scripted transient error at call {call}")
            }
            Cause::Scripted(ErrorClass::Transient {
                retry_after: Some(after),
            }) => write!(
                f,
                "scripted transient error at call {call} (Retry-After {after:?})"
            ),
            Cause::Scripted(ErrorClass::Permanent) => {
                write!(f, "scripted permanent error at call {call}")
            }
            Cause::Exhausted => {
                let played = call - 1;
                let plural = if played == 1 { "" } else { "s" };
                write!(
                    f,
                    "script exhausted after {played} call{plural}: call {call} found no step left (add one with ScriptHandle::push)"
                )
            }
        }
    }
}

impl std::error::Error for ScriptedError {}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn errors_name_the_call_and_their_class() {
        let error = |call, class| ScriptedError {
            call,
            cause: Cause::Scripted(class),
        };
        let transient = error(3, ErrorClass::TRANSIENT);
        assert_eq!(transient.to_string(), "scripted transient error at call 3");
        assert_eq!(transient.class(), ErrorClass::TRANSIENT);
        let asked = ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            error(2, asked).to_string(),
            "scripted transient error at call 2 (Retry-After 7s)"
        );
        let permanent = error(1, ErrorClass::Permanent);
        assert_eq!(permanent.to_string(), "scripted permanent error at call 1");
        assert!(!permanent.is_exhausted());

        let exhausted = |call| ScriptedError {
            call,
            cause: Cause::Exhausted,
        };
        assert_eq!(
            exhausted(2).to_string(),
            "script exhausted after 1 call: call 2 found no step left (add one with ScriptHandle::push)"
        );
        assert!(
            exhausted(4)
                .to_string()
                .starts_with("script exhausted after 3 calls: call 4")
        );
        assert!(
            exhausted(1)
                .to_string()
                .starts_with("script exhausted after 0 calls")
        );
        assert_eq!(exhausted(4).class(), ErrorClass::Permanent);
        assert!(exhausted(4).is_exhausted());
    }

    #[test]
    fn debug_shows_counts_never_a_token() {
        let source = ScriptedSource::new()
            .token("s3cr3t-value", MINUTE)
            .then(Token::new("b0und-value", "DPoP"))
            .transient_error();
        let handle = source.handle();
        assert_eq!(
            format!("{source:?}"),
            "ScriptedSource { calls: 0, remaining: 3 }"
        );
        assert_eq!(
            format!("{handle:?}"),
            "ScriptHandle { calls: 0, remaining: 3 }"
        );
        let steps = format!("{:?}", handle.lock().steps.iter().collect::<Vec<_>>());
        assert!(
            !steps.contains("s3cr3t") && !steps.contains("b0und"),
            "{steps}"
        );
        assert!(steps.contains("redacted"), "{steps}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_delay_runs_on_tokios_clock() {
        let source =
            ScriptedSource::new().then(Step::token("t", MINUTE).delay(Duration::from_secs(2)));
        let start = Instant::now();
        let token = source.fetch().await.unwrap();
        assert_eq!(token.access_token().secret(), "t");
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        assert_eq!(source.handle().call_times(), [start]);
    }

    #[test]
    fn a_call_counts_when_it_runs_not_when_it_is_made() {
        let source = ScriptedSource::new().token("t", MINUTE);
        let handle = source.handle();
        let call = source.fetch();
        assert_eq!(handle.calls(), 0);
        drop(call);
        assert_eq!((handle.calls(), handle.remaining()), (0, 1));
    }
}
