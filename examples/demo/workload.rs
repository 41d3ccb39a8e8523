//! The workload: workers sending requests through the layer until the count
//! or the time runs out, round-robin over the URLs, and what they saw.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderMap, Method};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_bearer::{Error, TokenCache};

/// How many requests to send, and how.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Ignored when `duration` is set.
    pub requests: u64,
    pub duration: Option<Duration>,
    pub concurrency: usize,
}

/// Where requests go: a URL, and what its token is for.
pub struct Endpoint {
    pub url: reqwest::Url,
    /// How messages name its token: `resource https://...`, `audience A`
    /// or both, `resource R, audience A`; for the default token, what its
    /// request names, if anything.
    pub token_for: Option<String>,
    /// The cache of its token (the default token's or a key's; `None` when
    /// the key could not be made, which fails its requests), and that
    /// token's number: endpoints with the same token share both.
    pub cache: Option<TokenCache>,
    pub token: usize,
}

/// What the workers saw, together or one of them.
#[derive(Default)]
pub struct Tally {
    pub latencies_us: Vec<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub token_failures: u64,
    pub transport_failures: u64,
    /// The first token error of each endpoint that had one, by its index.
    pub first_token_errors: BTreeMap<usize, String>,
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
        for (endpoint, error) in other.first_token_errors {
            self.first_token_errors.entry(endpoint).or_insert(error);
        }
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
    /// Why no token could be had, once per token that could not (the
    /// endpoints' `token_for`, `None` for the default token), in the order
    /// of the URLs.
    pub token_errors: Vec<(Option<String>, String)>,
}

/// Shared by the workers.
struct Run {
    workload: Workload,
    deadline: Option<Instant>,
    endpoints: Vec<Endpoint>,
    headers: HeaderMap,
    tickets: AtomicU64,
    // For each token, its cache's `waited_for_fetch` when the first answer
    // to a request with it came: the requests that waited for its first
    // token.
    waited_for_first_token: Vec<OnceLock<u64>>,
}

impl Run {
    /// The next request's endpoint, by index, round-robin; `None` when the
    /// count or the time has run out.
    fn next(&self) -> Option<usize> {
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let more = match self.deadline {
            Some(deadline) => Instant::now() < deadline,
            None => ticket < self.workload.requests,
        };
        more.then(|| (ticket % self.endpoints.len() as u64) as usize)
    }
}

/// Sends the workload round-robin to `endpoints` (at least one) through
/// `client`: the bearer layer over reqwest, whose caches are the
/// endpoints', alone or under more layers (a retry, with DPoP).
pub async fn send_requests<S>(
    workload: Workload,
    client: S,
    endpoints: Vec<Endpoint>,
    headers: HeaderMap,
) -> Result<Outcome, String>
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error<reqwest::Error>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    assert!(!endpoints.is_empty(), "at least one URL");
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
    let tokens = endpoints.iter().map(|e| e.token + 1).max().unwrap_or(0);
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
        endpoints,
        headers,
        tickets: AtomicU64::new(0),
        waited_for_first_token: (0..tokens).map(|_| OnceLock::new()).collect(),
    });
    let mut workers = JoinSet::new();
    for _ in 0..workload.concurrency {
        workers.spawn(worker(Arc::clone(&run), client.clone()));
    }
    let mut tally = Tally::default();
    while let Some(result) = workers.join_next().await {
        tally.merge(result.map_err(|e| format!("a worker failed: {e}"))?);
    }
    let mut token_errors: Vec<(Option<String>, String)> = Vec::new();
    for (&index, why) in &tally.first_token_errors {
        let token_for = &run.endpoints[index].token_for;
        if !token_errors.iter().any(|(named, _)| named == token_for) {
            token_errors.push((token_for.clone(), why.clone()));
        }
    }
    Ok(Outcome {
        tally,
        elapsed: started.elapsed(),
        waited_for_first_token: run
            .waited_for_first_token
            .iter()
            .filter_map(|waited| waited.get())
            .sum(),
        token_errors,
    })
}

async fn worker<S>(run: Arc<Run>, mut client: S) -> Tally
where
    S: Service<reqwest::Request, Response = reqwest::Response, Error = Error<reqwest::Error>>,
{
    let mut tally = Tally::default();
    // In a timed run, when each endpoint's token may be asked for again:
    // while an endpoint's token backs off, its turn goes to the next
    // endpoint that is not blocked, so that the others keep going and no
    // worker spins on instant failures; when all are, the worker waits.
    let mut blocked_until: Vec<Option<Instant>> = vec![None; run.endpoints.len()];
    while let Some(mut index) = run.next() {
        if let Some(deadline) = run.deadline {
            let now = Instant::now();
            let open = |i: usize| blocked_until[i].is_none_or(|until| until <= now);
            let count = blocked_until.len();
            match (0..count).map(|k| (index + k) % count).find(|&i| open(i)) {
                Some(i) => index = i,
                None => {
                    let earliest = blocked_until.iter().flatten().min().copied();
                    tokio::time::sleep_until(earliest.map_or(deadline, |t| deadline.min(t))).await;
                    continue;
                }
            }
        }
        let endpoint = &run.endpoints[index];
        let mut request = reqwest::Request::new(Method::GET, endpoint.url.clone());
        *request.headers_mut() = run.headers.clone();
        let started = Instant::now();
        let result = match client.ready().await {
            Ok(ready) => ready.call(request).await,
            Err(e) => Err(e),
        };
        tally
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
        if let Some(cache) = &endpoint.cache {
            run.waited_for_first_token[endpoint.token]
                .get_or_init(|| cache.stats().waited_for_fetch);
        }
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
                tally.first_token_errors.entry(index).or_insert_with(|| {
                    // The source's error and its causes, each once.
                    error
                        .source_error()
                        .map_or_else(|| error.to_string(), |e| error_chain(e))
                });
                // The cache fails requests at once while it backs off, with
                // no call to the token endpoint; a timed run waits with it
                // rather than spin (passing this endpoint over, above).
                if let (Some(deadline), Some(wait)) = (run.deadline, error.backoff_remaining()) {
                    let until = Instant::now()
                        .checked_add(wait)
                        .map_or(deadline, |t| deadline.min(t));
                    blocked_until[index] = Some(until);
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
