//! The workload: workers sending requests through the layer until the count
//! or the time runs out, and what they saw.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderMap, Method};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_bearer::{BearerAuth, Error, TokenCache};

/// How many requests to send, and how.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Ignored when `duration` is set.
    pub requests: u64,
    pub duration: Option<Duration>,
    pub concurrency: usize,
}

/// What the workers saw, together or one of them.
#[derive(Default)]
pub struct Tally {
    pub latencies_us: Vec<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub token_failures: u64,
    pub transport_failures: u64,
    pub first_token_error: Option<String>,
    pub first_transport_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.token_failures += other.token_failures;
        self.transport_failures += other.transport_failures;
        self.first_token_error = self.first_token_error.take().or(other.first_token_error);
        self.first_transport_error = self
            .first_transport_error
            .take()
            .or(other.first_transport_error);
    }

    pub fn sent(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    pub fn ok(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }
}

/// What the whole workload saw.
pub struct Outcome {
    pub tally: Tally,
    pub elapsed: Duration,
    /// The requests that waited for the first token, told apart from those
    /// that waited later on.
    pub waited_for_first_token: u64,
}

/// Shared by the workers.
struct Run {
    workload: Workload,
    deadline: Option<Instant>,
    tickets: AtomicU64,
    cache: TokenCache,
    // `waited_for_fetch` when the first answer came: the requests that
    // waited for the first token.
    waited_for_first_token: OnceLock<u64>,
}

impl Run {
    fn next(&self) -> bool {
        match self.deadline {
            Some(deadline) => Instant::now() < deadline,
            None => self.tickets.fetch_add(1, Ordering::Relaxed) < self.workload.requests,
        }
    }
}

/// Sends the workload to `url` through `client`, whose layer uses `cache`.
pub async fn send_requests(
    workload: Workload,
    cache: &TokenCache,
    client: BearerAuth<reqwest::Client>,
    url: reqwest::Url,
    headers: HeaderMap,
) -> Result<Outcome, String> {
    match workload.duration {
        Some(d) => println!(
            "Sending requests for {}s, {} at a time, through BearerAuthLayer over reqwest...",
            d.as_secs(),
            workload.concurrency
        ),
        None => println!(
            "Sending {} requests, {} at a time, through BearerAuthLayer over reqwest...",
            workload.requests, workload.concurrency
        ),
    }
    let started = Instant::now();
    let run = Arc::new(Run {
        workload,
        deadline: match workload.duration {
            Some(d) => Some(
                started
                    .checked_add(d)
                    .ok_or("--duration is too long for this clock")?,
            ),
            None => None,
        },
        tickets: AtomicU64::new(0),
        cache: cache.clone(),
        waited_for_first_token: OnceLock::new(),
    });
    let mut workers = JoinSet::new();
    for _ in 0..workload.concurrency {
        workers.spawn(worker(
            Arc::clone(&run),
            client.clone(),
            url.clone(),
            headers.clone(),
        ));
    }
    let mut tally = Tally::default();
    while let Some(result) = workers.join_next().await {
        tally.merge(result.map_err(|e| format!("a worker failed: {e}"))?);
    }
    Ok(Outcome {
        tally,
        elapsed: started.elapsed(),
        waited_for_first_token: run.waited_for_first_token.get().copied().unwrap_or(0),
    })
}

async fn worker(
    run: Arc<Run>,
    mut client: BearerAuth<reqwest::Client>,
    url: reqwest::Url,
    headers: HeaderMap,
) -> Tally {
    let mut tally = Tally::default();
    while run.next() {
        let mut request = reqwest::Request::new(Method::GET, url.clone());
        *request.headers_mut() = headers.clone();
        let started = Instant::now();
        let result = match client.ready().await {
            Ok(ready) => ready.call(request).await,
            Err(e) => Err(e),
        };
        tally
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
        run.waited_for_first_token
            .get_or_init(|| run.cache.stats().waited_for_fetch);
        match result {
            Ok(response) => {
                *tally
                    .statuses
                    .entry(response.status().as_u16())
                    .or_default() += 1;
                // Read the body so the connection is reused.
                let _ = response.bytes().await;
            }
            Err(Error::Token(error)) => {
                tally.token_failures += 1;
                if tally.first_token_error.is_none() {
                    // The source's error and its causes, each once.
                    let why = error
                        .source_error()
                        .map_or_else(|| error.to_string(), |e| error_chain(e));
                    tally.first_token_error = Some(why);
                }
                // The cache fails requests at once while it backs off, with
                // no call to the token endpoint; a timed run waits with it
                // rather than spin.
                if let (Some(deadline), Some(wait)) = (run.deadline, error.backoff_remaining()) {
                    let until = Instant::now()
                        .checked_add(wait)
                        .map_or(deadline, |t| deadline.min(t));
                    tokio::time::sleep_until(until).await;
                }
            }
            Err(Error::Service(error)) => {
                tally.transport_failures += 1;
                if tally.first_transport_error.is_none() {
                    // reqwest's Display appends the URL, query and all.
                    tally.first_transport_error = Some(error_chain(&error.without_url()));
                }
            }
        }
    }
    tally
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
