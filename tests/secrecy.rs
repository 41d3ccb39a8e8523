//! Nothing secret reaches a log: a whole run captured at TRACE level.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Counting;
use http::{Request, Response, StatusCode};
use tokio::time::advance;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, ErrorClass, SourceError, Token, TokenCache};

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_whole_lifecycle_logs_no_token() {
    let (captured, _guard) = capture();

    // Fetch 2 fails (a refresh-ahead failure), the others succeed; the API
    // rejects the third token.
    let counting =
        Counting::new(|n| async move {
            match n {
                2 => Err(SourceError::new("provider said 503", ErrorClass::TRANSIENT)),
                _ => Ok(Token::bearer(format!("SECRET-TOKEN-{n}"))
                    .with_lifetime(Duration::from_secs(100))),
            }
        });
    let cache = TokenCache::new(counting.source());
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service_fn(|req: Request<()>| async move {
            let mut res = Response::new(());
            if req.headers()["authorization"] == "Bearer SECRET-TOKEN-3" {
                *res.status_mut() = StatusCode::UNAUTHORIZED;
            }
            tracing::trace!(headers = ?req.headers(), "inner service saw the request");
            Ok::<_, std::convert::Infallible>(res)
        });

    for _ in 0..120 {
        let res = svc.clone().oneshot(Request::new(())).await;
        tracing::trace!(?res, "response");
        advance(Duration::from_secs(1)).await;
    }
    tracing::trace!(?cache, "cache at the end");

    let stats = cache.stats();
    assert!(
        stats.refreshes_ahead >= 1 && stats.fetches_failed >= 1 && stats.invalidations >= 1,
        "{stats:?}"
    );
    let log = captured.text();
    for expected in [
        "token fetched",
        "backing off",
        "invalidated",
        "token_fetch",
        "outcome",
        "Sensitive",
    ] {
        assert!(log.contains(expected), "the log lacks {expected:?}:\n{log}");
    }
    assert!(
        !log.contains("SECRET-TOKEN"),
        "a token leaked into the log:\n{log}"
    );
}
