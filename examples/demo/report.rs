//! The report: what happened in plain words, then the closing JSON line.

use http::StatusCode;
use tower_bearer::Stats;
use tower_bearer::dpop::Dpop;

use crate::provider::Counts;
use crate::workload::{Outcome, Tally};

/// Upper bounds of the latency histogram's buckets, in milliseconds.
const BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

/// What a workload run saw, from the workers, the cache and the provider.
pub struct Report<'a> {
    pub outcome: &'a Outcome,
    /// The whole cache's counters: the default token's and every key's.
    pub stats: Stats,
    /// With `--resource` or `--audience`: the fetches whose request named
    /// each, by its name as given (a resource never holds a user name or
    /// password: the flags refuse one).
    pub fetches_by_resource: Option<Vec<(String, u64)>>,
    /// With `--redis`: the fetches that reached the token endpoint rather
    /// than being answered by the shared store.
    pub endpoint_fetches: Option<u64>,
    /// With the embedded provider: what it did.
    pub embedded: Option<Counts>,
    /// With `--dpop`: the run's key and its nonce retries.
    pub dpop: Option<&'a Dpop>,
}

impl Report<'_> {
    /// Prints the report to stdout, what stopped requests to stderr, and the
    /// JSON line last.
    pub fn print(&self) {
        let Report {
            outcome,
            stats,
            fetches_by_resource,
            endpoint_fetches,
            embedded,
            dpop,
        } = self;
        let tally = &outcome.tally;
        println!("Done in {:.2}s.", outcome.elapsed.as_secs_f64());
        let failed = tally.sent() - tally.ok();
        println!(
            "Requests: {} sent, {} answered 2xx, {} failed.",
            tally.sent(),
            tally.ok(),
            failed
        );
        let first_fetches = stats.fetches_started - stats.refreshes_ahead;
        println!(
            "Tokens: {} {} ({} when no usable token was cached, {} ahead of expiry in the background); {} failed.",
            plural(stats.fetches_started, "fetch", "fetches"),
            if endpoint_fetches.is_some() {
                "through the shared store"
            } else {
                "from the token endpoint"
            },
            first_fetches,
            stats.refreshes_ahead,
            stats.fetches_failed,
        );
        if let Some(by_resource) = fetches_by_resource
            && !by_resource.is_empty()
        {
            let each: Vec<String> = by_resource
                .iter()
                .map(|(name, n)| format!("{name}: {}", plural(*n, "fetch", "fetches")))
                .collect();
            println!("Tokens per resource: {}.", each.join("; "));
        }
        if let Some(from_endpoint) = *endpoint_fetches {
            println!(
                "Shared store: {} answered from Redis, {} from the token endpoint.",
                plural(
                    stats.fetches_started.saturating_sub(from_endpoint),
                    "fetch was",
                    "fetches were"
                ),
                from_endpoint,
            );
        }
        println!("{}", self.waiting_line());
        if let Some(dpop) = dpop {
            // Every token the source took was bound: it refuses one that
            // comes back as anything but `DPoP`.
            let key = format!(
                "the {} key with thumbprint {}",
                dpop.key().algorithm(),
                dpop.thumbprint()
            );
            let what = if stats.fetches_started > stats.fetches_failed {
                format!("tokens bound to {key}, proven on every request")
            } else {
                format!("{key}; no token could be had to bind to it")
            };
            println!(
                "DPoP: {what}; {} (a token or API request sent once more with the server's new nonce).",
                plural(dpop.nonce_retries(), "nonce retry", "nonce retries"),
            );
        }
        if let Some(s) = embedded {
            let exchanged = if s.tokens_exchanged > 0 {
                format!(" ({} in exchange for a subject token)", s.tokens_exchanged)
            } else {
                String::new()
            };
            println!(
                "Embedded side: the token endpoint issued {}{exchanged} and refused {}; the API accepted {} and rejected {}.",
                plural(s.tokens_issued, "token", "tokens"),
                plural(s.token_requests_refused(), "request", "requests"),
                plural(s.api_accepted, "request", "requests"),
                s.api_rejected,
            );
            if s.dpop_tokens_issued > 0 || s.nonce_challenges() > 0 || s.proofs_refused() > 0 {
                println!(
                    "Embedded DPoP: {} bound to a key; {} asked for a nonce ({} at the token endpoint, {} at the API); {} refused.",
                    plural(s.dpop_tokens_issued, "token", "tokens"),
                    plural(s.nonce_challenges(), "request was", "requests were"),
                    s.token_nonce_challenges,
                    s.api_nonce_challenges,
                    plural(s.proofs_refused(), "proof", "proofs"),
                );
            }
        }
        let mut sorted = tally.latencies_us.clone();
        sorted.sort_unstable();
        println!(
            "Latency: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms.",
            percentile_ms(&sorted, 50.0),
            percentile_ms(&sorted, 99.0),
            sorted.last().map_or(0.0, |&us| us as f64 / 1000.0)
        );

        // What went wrong, in plain words.
        for (status, n) in &tally.statuses {
            if !(200..300).contains(status) {
                let reason = StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                println!(
                    "Problem: the API answered {} with HTTP {status} {reason}.",
                    plural(*n, "request", "requests")
                );
            }
        }
        if tally.token_failures > 0 {
            println!(
                "Problem: {} not sent because no token could be had.",
                plural(tally.token_failures, "request was", "requests were"),
            );
            println!(
                "  The cache asked the token endpoint {} in all and, while backing off between attempts, failed {} at once without asking it: no fetch storm.",
                plural(stats.fetches_started, "time", "times"),
                plural(stats.failed_fast, "request", "requests"),
            );
        }
        if tally.transport_failures > 0 {
            println!(
                "Problem: {} could not reach the API.",
                plural(tally.transport_failures, "request", "requests")
            );
        }
        // One line per token that could not be had, naming its resource
        // when it has one.
        for (token_for, why) in &outcome.token_errors {
            match token_for {
                Some(token_for) => eprintln!("error: no token could be had for {token_for}: {why}"),
                None => eprintln!("error: no token could be had: {why}"),
            }
        }
        if let Some(why) = &tally.first_transport_error {
            eprintln!("error: the API could not be reached: {why}");
        }

        println!(
            "{}",
            json_line(
                tally,
                stats.fetches_started,
                fetches_by_resource.as_deref(),
                dpop.map(Dpop::nonce_retries),
            )
        );
    }

    /// Who waited for a token, and why no one did after the first.
    fn waiting_line(&self) -> String {
        let (tally, stats) = (&self.outcome.tally, &self.stats);
        let waited_first = self.outcome.waited_for_first_token;
        let waited_later = stats.waited_for_fetch - waited_first;
        if tally.ok() == 0 {
            format!(
                "Waiting: {} for a token.",
                plural(stats.waited_for_fetch, "request waited", "requests waited")
            )
        } else if waited_later == 0 {
            // Only a token fetched ahead of expiry earns the credit; in a
            // short run the first token may be the only one.
            let why = if stats.refreshes_ahead > 0 {
                " (every later token came ahead of time, in the background)"
            } else {
                ""
            };
            format!(
                "Waiting: {} for the first token; none waited after that{why}.",
                plural(waited_first, "request waited", "requests waited")
            )
        } else {
            format!(
                "Waiting: {} for the first token, and {} for a token later on (a token was missing or rejected).",
                plural(waited_first, "request waited", "requests waited"),
                plural(waited_later, "request waited", "requests waited")
            )
        }
    }
}

/// Nearest-rank percentile of sorted samples, in milliseconds.
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil().max(1.0) as usize;
    sorted_us[rank.min(sorted_us.len()) - 1] as f64 / 1000.0
}

fn histogram(latencies_us: &[u64]) -> Vec<(String, u64)> {
    let mut counts = [0u64; BUCKETS_MS.len() + 1];
    for &us in latencies_us {
        let bucket = BUCKETS_MS
            .iter()
            .position(|&ms| us <= ms * 1000)
            .unwrap_or(BUCKETS_MS.len());
        counts[bucket] += 1;
    }
    BUCKETS_MS
        .iter()
        .map(|ms| ms.to_string())
        .chain(std::iter::once("inf".to_owned()))
        .zip(counts)
        .collect()
}

/// The closing JSON line, keys in the documented order;
/// `token_fetches_by_resource` after `token_fetches`, when given, then
/// `dpop_nonce_retries`, when given (with `--dpop`).
fn json_line(
    tally: &Tally,
    token_fetches: u64,
    fetches_by_resource: Option<&[(String, u64)]>,
    dpop_nonce_retries: Option<u64>,
) -> String {
    let mut sorted = tally.latencies_us.clone();
    sorted.sort_unstable();
    let statuses: Vec<String> = tally
        .statuses
        .iter()
        .map(|(s, n)| format!("\"{s}\":{n}"))
        .collect();
    let buckets: Vec<String> = histogram(&tally.latencies_us)
        .into_iter()
        .map(|(k, n)| format!("\"{k}\":{n}"))
        .collect();
    let by_resource = fetches_by_resource.map_or_else(String::new, |by_resource| {
        let each: Vec<String> = by_resource
            .iter()
            .map(|(name, n)| format!("{}:{n}", serde_json::Value::from(name.as_str())))
            .collect();
        format!(",\"token_fetches_by_resource\":{{{}}}", each.join(","))
    });
    let nonce_retries =
        dpop_nonce_retries.map_or_else(String::new, |n| format!(",\"dpop_nonce_retries\":{n}"));
    format!(
        "{{\"requests\":{},\"ok\":{},\"failed\":{},\"status\":{{{}}},\"token_fetches\":{}{}{},\
         \"latency_ms\":{{\"p50\":{:.3},\"p99\":{:.3},\"max\":{:.3}}},\
         \"latency_histogram_ms\":{{{}}}}}",
        tally.sent(),
        tally.ok(),
        tally.sent() - tally.ok(),
        statuses.join(","),
        token_fetches,
        by_resource,
        nonce_retries,
        percentile_ms(&sorted, 50.0),
        percentile_ms(&sorted, 99.0),
        sorted.last().map_or(0.0, |&us| us as f64 / 1000.0),
        buckets.join(","),
    )
}

pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
