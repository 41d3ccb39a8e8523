//! Token sources that count their fetches, or fail.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower_bearer::source::FnSource;
use tower_bearer::{SourceError, Token, TokenSource};

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

/// A source that yields `tokens` in turn (the last one again once they run
/// out), each living an hour, and counts its fetches.
pub fn counting_source(tokens: &[&str]) -> (impl TokenSource + use<>, Arc<AtomicUsize>) {
    let tokens: Vec<String> = tokens.iter().map(|t| (*t).to_owned()).collect();
    let counting = Counting::new(move |n| {
        let token = tokens[(n - 1).min(tokens.len() - 1)].clone();
        std::future::ready(Ok(
            Token::bearer(token).with_lifetime(Duration::from_secs(3600))
        ))
    });
    (counting.source(), counting.fetches)
}

/// A source whose every fetch fails with `error`.
pub fn failing_source(error: SourceError) -> impl TokenSource {
    FnSource::new(move || {
        let error = error.clone();
        async move { Err::<Token, _>(error) }
    })
}
