//! What `BearerAuth` costs, side by side with the floor and with peer designs.
//!
//! Run: `cargo bench --bench overhead` (a few minutes), or
//! `cargo bench --bench overhead -- --quick` (or `TOWER_BEARER_BENCH_QUICK=1`)
//! for a short run. Name sections to run only those: `hot`, `contention`,
//! `size`, `storm`, `refresh`, `outage`, `economy`, `dpop`, `metrics` (e.g.
//! `-- --quick hot`; `metrics` needs `--features metrics`).
//!
//! Variants compared:
//!
//! - `bare`: a no-op inner service, nothing added.
//! - `tower_http`: tower-http's `AddAuthorization::bearer`, a static header:
//!   the floor for attaching a bearer token.
//! - `bearer`: `BearerAuth` over a warm `TokenCache`.
//! - `naive`: a `tokio::sync::Mutex<Option<token>>` locked on every request,
//!   with the fetch under the lock (the design of Go's x/oauth2
//!   `ReuseTokenSource`), written here as a tiny tower service.
//! - `dpop_es256`, `dpop_eddsa`: `BearerAuth` over a warm cache whose token
//!   is bound to a DPoP key: a fresh proof (one signature) per request.
//! - `bearer_metrics`: `BearerAuth` over a warm cache reporting to a
//!   Prometheus recorder (feature `metrics`), beside `bearer` whose handles
//!   are no-ops.
//!
//! Wall-time figures (hot path, contention, clone) interleave the variants in
//! rounds and take medians, and ratios are medians of per-round ratios, so
//! that noise on a shared machine hits every variant alike. Figures in
//! simulated time (cold storm, refresh window, outage) use tokio's paused
//! clock and are exact.
//!
//! The output ends with one line per figure, `ratio <name> <value>` or
//! `figure <name> <value> <unit>`, for scripts.

use std::time::Duration;

mod dpop;
#[cfg(feature = "metrics")]
mod metrics;
mod paused_clock;
mod services;
mod stats;
mod wall_clock;

use paused_clock::{cold_storm, economy, outage, refresh_window};
use wall_clock::{contention, hot_path, size_and_clone};

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.bench-token-value.c2lnbmF0dXJl";
const URI: &str = "https://api.example.com/v1/items";

/// How long the benchmark runs.
struct Plan {
    quick: bool,
    /// Sections named on the command line; all when empty.
    only: Vec<String>,
    hot_rounds: usize,
    hot_iters: u64,
    contention_rounds: usize,
    contention_span: Duration,
    contention_tasks: usize,
    clone_iters: u64,
    dpop_rounds: usize,
    dpop_iters: u64,
}

impl Plan {
    fn from_env() -> Self {
        let quick = std::env::args().any(|a| a == "--quick")
            || std::env::var_os("TOWER_BEARER_BENCH_QUICK").is_some_and(|v| v != "0");
        // `cargo bench` passes `--bench`; other flags are ours.
        let only = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with("--"))
            .collect();
        if quick {
            Self {
                quick,
                only,
                hot_rounds: 9,
                hot_iters: 50_000,
                contention_rounds: 5,
                contention_span: Duration::from_millis(100),
                contention_tasks: 64,
                clone_iters: 100_000,
                dpop_rounds: 9,
                dpop_iters: 500,
            }
        } else {
            Self {
                quick,
                only,
                hot_rounds: 61,
                hot_iters: 1_000_000,
                contention_rounds: 31,
                contention_span: Duration::from_millis(500),
                contention_tasks: 64,
                clone_iters: 1_000_000,
                dpop_rounds: 31,
                dpop_iters: 5_000,
            }
        }
    }
}

impl Plan {
    fn runs(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

/// The lines a script reads at the end.
#[derive(Default)]
struct Summary(Vec<String>);

impl Summary {
    fn ratio(&mut self, name: &str, value: f64) {
        self.0.push(format!("ratio {name} {value:.3}"));
    }

    fn figure(&mut self, name: &str, value: impl std::fmt::Display, unit: &str) {
        self.0.push(format!("figure {name} {value} {unit}"));
    }
}

fn main() {
    let plan = Plan::from_env();
    println!(
        "tower-bearer overhead benchmark ({} run, {} CPUs)",
        if plan.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut summary = Summary::default();

    // Wall-time figures first: once any runtime pauses its clock, tokio's
    // `Instant::now()` (with the `test-util` feature the dev-dependencies
    // enable) reads the runtime's clock through a lock for the rest of the
    // process, which would inflate every later wall-time figure.
    if plan.runs("hot") {
        hot_path(&plan, &mut summary);
    }
    if plan.runs("contention") {
        contention(&plan, &mut summary);
    }
    if plan.runs("size") {
        size_and_clone(&plan, &mut summary);
    }
    if plan.runs("dpop") {
        dpop::dpop_hot_path(&plan, &mut summary);
    }
    if plan.runs("metrics") {
        #[cfg(feature = "metrics")]
        metrics::metrics_hot_path(&plan, &mut summary);
        #[cfg(not(feature = "metrics"))]
        println!("\n## 9. metrics: skipped (run with `--features metrics`)");
    }
    if plan.runs("storm") {
        cold_storm(&mut summary);
    }
    if plan.runs("refresh") {
        refresh_window(&mut summary);
    }
    if plan.runs("outage") {
        outage(&mut summary);
    }
    if plan.runs("economy") {
        economy(&mut summary);
    }

    println!("\n# figures");
    for line in &summary.0 {
        println!("{line}");
    }
}
