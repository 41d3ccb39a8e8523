//! Requests, inner services and runtimes the cache and layer tests share.

use std::convert::Infallible;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use http::Request;
use tower_bearer::Backoff;

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

/// An error and its causes, as one line: `outer: inner: ...`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Keeps a paused clock still while real I/O runs (a loopback server
/// answering): tokio does not auto-advance a paused clock while a blocking
/// task runs, and this one runs until the hold is dropped. Only
/// `tokio::time::advance` moves the clock meanwhile, so a request in
/// flight never sees its timeout jump at it.
pub struct ClockHold(mpsc::Sender<()>);

/// Holds the (paused) clock of the current runtime until dropped.
pub fn hold_the_clock() -> ClockHold {
    let (tx, rx) = mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        // Returns once the hold, the only sender, is dropped.
        let _ = rx.recv();
    });
    ClockHold(tx)
}
