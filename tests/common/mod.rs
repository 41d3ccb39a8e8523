//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::mpsc::{self, RecvTimeoutError};

use http::Request;
use tokio::time::Instant;
use tower_bearer::source::FnSource;
use tower_bearer::{Backoff, SourceError, Token, TokenSource};

/// A request to the test API.
pub fn request() -> Request<String> {
    Request::get("http://api.test/v1")
        .body(String::new())
        .unwrap()
}

/// The default backoff without its random part: delays are exact.
pub fn no_jitter() -> Backoff {
    Backoff::default().jitter(0.0)
}

/// Runs `f` on its own thread and fails the test if it does not finish in
/// time, instead of hanging the test run. A panic in `f` is re-raised here,
/// so that its assertion message is what the test reports.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => panic!("hung: did not finish within {limit:?}"),
        Err(RecvTimeoutError::Disconnected) => std::panic::resume_unwind(
            worker
                .join()
                .expect_err("the worker neither answered nor panicked"),
        ),
    }
}

type Step = Box<
    dyn Fn(usize) -> Pin<Box<dyn Future<Output = Result<Token, SourceError>> + Send>> + Send + Sync,
>;

/// A source that counts its fetches and records when each started; fetch
/// `n` (from 1) does whatever `step(n)` says.
#[derive(Clone)]
pub struct Counting {
    pub fetches: Arc<AtomicUsize>,
    pub started_at: Arc<Mutex<Vec<Instant>>>,
    step: Arc<Step>,
}

impl Counting {
    pub fn new<F, Fut>(step: F) -> Self
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Token, SourceError>> + Send + 'static,
    {
        Self {
            fetches: Arc::new(AtomicUsize::new(0)),
            started_at: Arc::new(Mutex::new(Vec::new())),
            step: Arc::new(Box::new(move |n| Box::pin(step(n)))),
        }
    }

    /// Fetch `n` yields `token-n`, living `lifetime`, after `delay`.
    pub fn tokens(delay: Duration, lifetime: Option<Duration>) -> Self {
        Self::new(move |n| async move {
            tokio::time::sleep(delay).await;
            let token = Token::bearer(format!("token-{n}"));
            Ok(match lifetime {
                Some(l) => token.with_lifetime(l),
                None => token,
            })
        })
    }

    pub fn count(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub fn start_times(&self) -> Vec<Instant> {
        self.started_at.lock().unwrap().clone()
    }

    pub fn source(&self) -> impl TokenSource + use<> {
        let this = self.clone();
        FnSource::new(move || {
            let n = this.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            this.started_at.lock().unwrap().push(Instant::now());
            (this.step)(n)
        })
    }
}

/// An inner service that answers with the authorization header it saw, or
/// `-` when there was none.
pub fn echo<B: Send + 'static>() -> impl tower::Service<
    http::Request<B>,
    Response = http::Response<String>,
    Error = Infallible,
    Future: Send,
> + Clone {
    tower::service_fn(|req: http::Request<B>| async move {
        let seen = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| "-".to_owned());
        Ok::<_, Infallible>(http::Response::new(seen))
    })
}

/// Sends a request through `svc` on a current-thread runtime that is then
/// never driven again: the fetch the request starts is stranded, its task
/// never runs. Returns that runtime, for the test to drop when it chooses.
pub fn strand_a_fetch<S>(svc: &S) -> tokio::runtime::Runtime
where
    S: tower::Service<Request<String>> + Clone + Send + 'static,
    S::Future: Send,
{
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    idle.block_on(async {
        let mut first = tokio_test::task::spawn(tower::ServiceExt::oneshot(svc.clone(), request()));
        assert!(
            first.poll().is_pending(),
            "the request waits for the stranded fetch"
        );
    });
    idle
}
