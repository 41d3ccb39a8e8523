//! A seeded, deterministic, randomized property test of the cache and the
//! layer, on tokio's paused clock.
//!
//! Each seed drives one cache through a few hundred random steps (bursts of
//! requests, gaps, revoked tokens, callers giving up, runtime stalls) against
//! a source whose every fetch is slow or fast, succeeds with a random
//! lifetime or fails (transient, permanent, `Retry-After`, hung), and an API
//! that answers 401 to revoked tokens and at random. The source, the API and
//! the driver record what happened; the invariants are checked against those
//! records. The crate's jitter draws from the thread's `fastrand` generator,
//! seeded too, so a seed replays exactly:
//! `PROPERTY_SEED=7 cargo test --all-features --test property`

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fastrand::Rng;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use tokio::task::JoinHandle;
use tokio::time::{Instant, advance, sleep, timeout};
use tower::retry::RetryLayer;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};
use tower_bearer::cache::FreshnessCheck;
use tower_bearer::source::FnSource;
use tower_bearer::{
    Backoff, BearerAuthLayer, Error, ErrorClass, RetryOnUnauthorized, SourceError, Stats, Token,
    TokenCache, TokenSource,
};

const SEEDS: u64 = 40;
const OPS: usize = 300;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long past the fetch timeout a waiter may wait (the documented grace).
const GRACE: Duration = Duration::from_secs(1);
/// The cache's defaults, which the test leaves alone.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
const MS: Duration = Duration::from_millis(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// How long a token that lives `lifetime` is usable, as the module docs say:
/// the margin is clamped to a quarter of the lifetime (at least 1 s) and never
/// more than half of it.
fn usable(lifetime: Duration) -> Duration {
    let margin = EXPIRY_MARGIN.min((lifetime / 4).max(secs(1)));
    lifetime - margin.min(lifetime / 2)
}

/// One fetch's latency and result: `Ok(lifetime)` or its failure's class.
type FetchPlan = (Duration, Result<Option<Duration>, ErrorClass>);

/// How one fetch ended, as the source saw it.
#[derive(Clone, Copy, Debug)]
enum End {
    Token,
    Failed(ErrorClass),
    /// The cache dropped the fetch (its timeout, or an abort).
    Dropped,
}

struct Fetch {
    start: Instant,
    end: Option<(Instant, End)>,
}

/// What the source, the API and the driver observe, shared between them.
struct World {
    name: String,
    t0: Instant,
    /// Fetch plans to play first; then random ones.
    script: Mutex<VecDeque<FetchPlan>>,
    rng: Mutex<Rng>,
    /// Token id -> (issued at = fetch start, real lifetime, returned at).
    issued: Mutex<HashMap<u64, (Instant, Duration, Instant)>>,
    fetches: Mutex<Vec<Fetch>>,
    in_flight: AtomicUsize,
    revoked: Mutex<HashSet<u64>>,
    violations: Mutex<Vec<(&'static str, String)>>,
}

impl World {
    fn new(name: String, seed: u64, script: impl IntoIterator<Item = FetchPlan>) -> Arc<Self> {
        Arc::new(Self {
            name,
            t0: Instant::now(),
            script: Mutex::new(script.into_iter().collect()),
            rng: Mutex::new(Rng::with_seed(seed ^ 0x5eed)),
            issued: Mutex::default(),
            fetches: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            revoked: Mutex::default(),
            violations: Mutex::default(),
        })
    }

    fn violate(&self, invariant: &'static str, detail: String) {
        let message = format!("{}: invariant {invariant}: {detail}", self.name);
        self.violations.lock().unwrap().push((invariant, message));
    }

    fn take_violations(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.violations.lock().unwrap())
    }

    /// Paused-clock time since the world began, for messages.
    fn at(&self, t: Instant) -> Duration {
        t - self.t0
    }

    fn plan_fetch(&self) -> FetchPlan {
        if let Some(plan) = self.script.lock().unwrap().pop_front() {
            return plan;
        }
        let mut rng = self.rng.lock().unwrap();
        let latency = match rng.u32(0..100) {
            0..40 => Duration::ZERO,
            40..70 => ms(rng.u64(1..500)),
            // Often longer than a short token's usable life.
            70..95 => ms(rng.u64(500..4_500)),
            // A hang: only the fetch timeout ends it.
            _ => secs(rng.u64(6..600)),
        };
        let result = match rng.u32(0..100) {
            // Log-uniform from 1 s to 2 h, so that short lives are common.
            0..56 => Ok(Some(ms((1000.0 * 7200f64.powf(rng.f64())) as u64))),
            56..70 => Ok(None),
            70..82 => Err(ErrorClass::TRANSIENT),
            82..90 => Err(ErrorClass::Transient {
                retry_after: Some(secs(rng.u64(1..15))),
            }),
            _ => Err(ErrorClass::Permanent),
        };
        (latency, result)
    }

    /// The API's view of an arriving request: checks invariants 1 and 2 and
    /// says whether the token it carries was revoked.
    fn check_arrival(&self, req: &Request<String>) -> bool {
        let now = Instant::now();
        let at = self.at(now);
        let Some(header) = req.headers().get(AUTHORIZATION) else {
            let detail = format!("a request reached the API at {at:?} without Authorization");
            self.violate("1 (header)", detail);
            return true;
        };
        let value = header.to_str().unwrap().strip_prefix("Bearer tok-");
        let id: u64 = value
            .and_then(|id| id.parse().ok())
            .expect("a token of ours");
        let (issued, lifetime, returned) = self.issued.lock().unwrap()[&id];
        let what = format!(
            "tok-{id} (fetch started at {:?}, returned {:?} later; lives {lifetime:?}, usable {:?}) reached the API at {at:?}",
            self.at(issued),
            returned - issued,
            usable(lifetime),
        );
        if now >= issued + lifetime {
            self.violate("2a (real expiry)", format!("{what}, after it expired"));
        }
        if now >= issued + usable(lifetime) {
            self.violate("2b (usable end)", format!("{what}, after its usable end"));
        }
        self.revoked.lock().unwrap().contains(&id)
    }
}

/// Ends a fetch in the records when the source returns or is dropped.
struct FetchGuard {
    world: Arc<World>,
    index: usize,
    end: End,
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        self.world.in_flight.fetch_sub(1, SeqCst);
        self.world.fetches.lock().unwrap()[self.index].end = Some((Instant::now(), self.end));
    }
}

/// A source that plays `plan_fetch`, counts fetches in flight (invariant 3)
/// and records each token's issue time and real lifetime.
fn source(world: Arc<World>) -> impl TokenSource {
    FnSource::new(move || {
        let world = world.clone();
        async move {
            let start = Instant::now();
            let in_flight = world.in_flight.fetch_add(1, SeqCst) + 1;
            if in_flight > 1 {
                let detail = format!("{in_flight} fetches in flight at {:?}", world.at(start));
                world.violate("3 (single flight)", detail);
            }
            let index = {
                let mut fetches = world.fetches.lock().unwrap();
                fetches.push(Fetch { start, end: None });
                fetches.len() - 1
            };
            let mut guard = FetchGuard {
                world: world.clone(),
                index,
                end: End::Dropped,
            };
            let (latency, result) = world.plan_fetch();
            sleep(latency).await;
            let lifetime = result.inspect_err(|class| guard.end = End::Failed(*class));
            let lifetime = lifetime.map_err(|class| SourceError::new("provider failed", class))?;
            let real = (start, lifetime.unwrap_or(DEFAULT_LIFETIME), Instant::now());
            world.issued.lock().unwrap().insert(index as u64, real);
            guard.end = End::Token;
            let token = Token::bearer(format!("tok-{index}"));
            Ok::<_, SourceError>(match lifetime {
                Some(lifetime) => token.with_lifetime(lifetime),
                None => token,
            })
        }
    })
}

/// What the driver asks of the API for one request.
#[derive(Clone, Copy, Debug, Default)]
struct Plan {
    latency: Duration,
    reject: bool,
}

type Client = BoxCloneService<Request<String>, Response<String>, Error<Infallible>>;

/// The cache over the world's source, and the layer over the world's API,
/// which answers 401 to revoked tokens and to requests planned to be rejected.
fn stack(
    world: &Arc<World>,
    backoff: Backoff,
    retry: bool,
    freshness: FreshnessCheck,
) -> (TokenCache, Client) {
    let cache = TokenCache::builder(source(world.clone()))
        .fetch_timeout(FETCH_TIMEOUT)
        .backoff(backoff)
        .freshness_check(freshness)
        .build();
    let world = world.clone();
    let api = tower::service_fn(move |req: Request<String>| {
        let plan = req.extensions().get::<Plan>().copied().unwrap_or_default();
        let rejected = world.check_arrival(&req) || plan.reject;
        async move {
            sleep(plan.latency).await;
            let mut res = Response::new(String::new());
            if rejected {
                *res.status_mut() = StatusCode::UNAUTHORIZED;
            }
            Ok::<_, Infallible>(res)
        }
    });
    let bearer = BearerAuthLayer::with_cache(cache.clone()).layer(api);
    let client = match retry {
        true => Client::new(RetryLayer::new(RetryOnUnauthorized::default()).layer(bearer)),
        false => Client::new(bearer),
    };
    (cache, client)
}

/// The least delay the documented backoff allows after the `failures`th
/// failure in a row of class `class`: jitter only shortens a delay, by at most
/// its fraction, and a `Retry-After` (capped) is a floor.
fn least_delay(backoff: &Backoff, failures: u32, class: ErrorClass) -> Duration {
    let base = match class {
        ErrorClass::Permanent => backoff.max,
        ErrorClass::Transient { .. } => {
            let growth = backoff.multiplier.powi(failures.min(30) as i32 - 1);
            backoff.initial.mul_f64(growth).min(backoff.max)
        }
    };
    let least = base.mul_f64(1.0 - backoff.jitter);
    match class {
        ErrorClass::Transient {
            retry_after: Some(after),
        } => least.max(after.min(backoff.max_retry_after)),
        _ => least,
    }
}

/// Invariant 5. The cache stamps `retry_at = failure time + delay` and every
/// path that starts a fetch honours it (no usable token: fail fast;
/// refresh-ahead waits; a 401 invalidates but does not fetch while backing
/// off); only `TokenCache::refresh`, never called here, ignores it. So after
/// a failed fetch the next cannot start before its end plus the least delay.
///
/// Skipped: a fetch dropped later than the fetch timeout after its start. Only
/// a stall does that: the cache gave up on it (`reap_stalled`) without seeing
/// it fail, so there is nothing to back off from (invariants 3 and 4 cover
/// that path). Nor is it counted as a failure: fewer failures only lower the
/// least delay, so the check holds either way. Overlaps are invariant 3's.
fn check_backoff(world: &World, backoff: &Backoff) {
    let fetches = world.fetches.lock().unwrap();
    let mut failures = 0;
    for pair in fetches.windows(2) {
        let (start, Some((end, how))) = (pair[0].start, pair[0].end) else {
            continue;
        };
        let class = match how {
            End::Token => {
                failures = 0;
                continue;
            }
            End::Failed(class) => class,
            End::Dropped if end - start > FETCH_TIMEOUT => continue,
            // The cache timed it out: a transient failure.
            End::Dropped => ErrorClass::TRANSIENT,
        };
        failures += 1;
        let next = pair[1].start;
        let least = least_delay(backoff, failures, class);
        // 1 ms: the backoff is computed in f64 seconds.
        if next >= end && next - end + MS < least {
            let (at, took, gap) = (world.at(end), end - start, next - end);
            let detail = format!(
                "failure #{failures} ({how:?}, after {took:?}) ended at {at:?}; the next fetch started {gap:?} later, before the least delay {least:?}"
            );
            world.violate("5 (backoff)", detail);
        }
    }
}

struct Driver {
    rng: Rng,
    world: Arc<World>,
    client: Client,
    attempts: u32,
    pending: Vec<JoinHandle<()>>,
    // Whether the runtime runs due timers before the requests a stall held
    // back (the freshness timer's contract); the clock needs no such help.
    timers_first: bool,
}

impl Driver {
    /// Sends one request. `call` runs here, on the driver's task, so that a
    /// request right after a stall meets the cache before any woken task
    /// runs; the response future goes on its own task.
    async fn send(&mut self, give_up_at_once: bool) {
        let rng = &mut self.rng;
        let latency = ms(rng.u64(1..300) * u64::from(rng.u32(0..100) < 30));
        let plan = Plan {
            latency,
            reject: rng.u32(0..100) < 3,
        };
        // Some callers give up: their response future is dropped.
        let give_up = match give_up_at_once || rng.u32(0..100) < 10 {
            true if give_up_at_once => Some(Duration::ZERO),
            true => Some(ms(rng.u64(0..3_000))),
            false => None,
        };
        // Invariant 4: a wait for a fetch ends within the fetch timeout plus
        // the grace, then the API answers; a retry after a 401 may do it twice.
        let bound = (FETCH_TIMEOUT + GRACE + latency) * self.attempts;
        let mut req = Request::new(String::new());
        req.extensions_mut().insert(plan);
        let sent = Instant::now();
        let fut = self.client.ready().await.expect("always ready").call(req);
        let world = self.world.clone();
        self.pending.push(tokio::spawn(async move {
            if let Some(limit) = give_up {
                let _ = timeout(limit, fut).await;
                return;
            }
            let at = world.at(sent);
            let detail = match timeout(bound + GRACE, fut).await {
                Err(_) => format!("a request sent at {at:?} never completed"),
                Ok(_) if sent.elapsed() > bound => {
                    let took = sent.elapsed();
                    format!("a request sent at {at:?} took {took:?}, more than {bound:?}")
                }
                Ok(_) => return,
            };
            world.violate("4 (completion)", detail);
        }));
    }

    async fn settle(&mut self) {
        for handle in self.pending.drain(..) {
            let _ = handle.await;
        }
    }

    async fn step(&mut self) {
        match self.rng.u32(0..100) {
            0..50 => {
                let most = if self.rng.bool() { 3 } else { 20 };
                for _ in 0..self.rng.usize(1..=most) {
                    self.send(false).await;
                }
            }
            50..88 => {
                let gap = match self.rng.u32(0..100) {
                    0..50 => ms(self.rng.u64(0..50)),
                    50..80 => ms(self.rng.u64(50..2_000)),
                    80..95 => ms(self.rng.u64(2_000..60_000)),
                    _ => secs(self.rng.u64(60..1_800)),
                };
                sleep(gap).await;
            }
            // The provider revokes the newest token: the API answers 401 to it.
            88..94 => {
                let newest = self.world.issued.lock().unwrap().keys().max().copied();
                self.world.revoked.lock().unwrap().extend(newest);
            }
            // A caller's task is aborted mid-request.
            94..97 => {
                if !self.pending.is_empty() {
                    let i = self.rng.usize(..self.pending.len());
                    self.pending[i].abort();
                }
            }
            // The runtime stalls past the fetch timeout and grace: the clock
            // jumps and no task runs until requests that queued up meanwhile
            // are called. Only with no request outstanding, so that invariant
            // 4 measures requests, not stalls. A fetch may still run:
            // refresh-ahead, or one whose caller gave up (as here, at once).
            _ => {
                self.settle().await;
                self.send(true).await;
                sleep(MS).await;
                advance(ms(self.rng.u64(6_000..12_000))).await;
                if self.timers_first {
                    // With the freshness timer, the cache's contract is that
                    // the runtime does not fall more than a second behind
                    // its timers (the timer clears the flag at least that
                    // long before the usable end): let it catch up.
                    sleep(MS).await;
                }
                for _ in 0..self.rng.usize(1..=5) {
                    self.send(false).await;
                }
            }
        }
    }
}

/// Runs one seed on its own paused current-thread runtime; returns the
/// violations and the cache's counters.
fn run_seed(seed: u64) -> (Vec<(&'static str, String)>, Stats) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        fastrand::seed(seed);
        let mut rng = Rng::with_seed(seed);
        let backoff = Backoff::default()
            .initial(ms(rng.u64(500..2_000)))
            .max(secs(rng.u64(10..30)))
            .multiplier(2.0)
            .jitter(if rng.bool() { 0.0 } else { 0.2 })
            .max_retry_after(secs(10));
        let world = World::new(format!("seed {seed}"), seed, []);
        let retry = rng.bool();
        // Half the seeds trust the freshness timer (the hot path reads no
        // clock), half read the clock on every request.
        let freshness = if seed.is_multiple_of(2) {
            FreshnessCheck::Timer
        } else {
            FreshnessCheck::Clock
        };
        let (cache, client) = stack(&world, backoff.clone(), retry, freshness);
        let (attempts, pending) = (1 + u32::from(retry), Vec::new());
        let world2 = world.clone();
        let mut driver = Driver {
            rng,
            world: world2,
            client,
            attempts,
            pending,
            timers_first: freshness == FreshnessCheck::Timer,
        };
        for _ in 0..OPS {
            driver.step().await;
        }
        driver.settle().await;
        check_backoff(&world, &backoff);
        (world.take_violations(), cache.stats())
    })
}

#[test]
fn random_schedules_keep_the_invariants() {
    let seeds: Vec<u64> = match std::env::var("PROPERTY_SEED") {
        Ok(seed) => vec![seed.parse().expect("PROPERTY_SEED is a number")],
        Err(_) => (1..=SEEDS).collect(),
    };
    let clock = std::time::Instant::now();
    // Invariant -> seed -> (count, first message).
    let mut broken: BTreeMap<&str, BTreeMap<u64, (usize, String)>> = BTreeMap::new();
    let mut all = Vec::new();
    for &seed in &seeds {
        let (violations, stats) = run_seed(seed);
        all.push(stats);
        for (invariant, message) in violations {
            let seeds = broken.entry(invariant).or_default();
            seeds.entry(seed).or_insert((0, message)).0 += 1;
        }
    }
    // What the driver reached, to see that it covers the interesting paths.
    let sum = |field: fn(&Stats) -> u64| all.iter().map(field).sum::<u64>();
    let (fetches, failed) = (sum(|s| s.fetches_started), sum(|s| s.fetches_failed));
    let (ahead, waited, fast) = (
        sum(|s| s.refreshes_ahead),
        sum(|s| s.waited_for_fetch),
        sum(|s| s.failed_fast),
    );
    eprintln!(
        "{} seeds in {:?}: {fetches} fetches ({failed} failed, {ahead} ahead), {waited} waits, {fast} failed fast, {} invalidations",
        seeds.len(),
        clock.elapsed(),
        sum(|s| s.invalidations),
    );
    let mut report = String::new();
    for (invariant, seeds) in &broken {
        let list: Vec<_> = seeds.keys().collect();
        report += &format!("\ninvariant {invariant} broken with seeds {list:?}\n");
        for (count, first) in seeds.values() {
            report += &format!("  {first} ({count} in all)\n");
        }
    }
    assert!(report.is_empty(), "{report}");
}

/// A fetch slower than its token's usable life: no request may carry that
/// token, whoever waited for it.
#[tokio::test(start_paused = true)]
async fn a_token_that_arrives_unusable_is_attached_to_no_request() {
    // A 2 s token is usable for 1 s. Fetch 1 returns it after its usable end
    // (1.5 s), or after its real expiry too (3 s).
    let mut broken = Vec::new();
    for latency in [ms(1_500), ms(3_000)] {
        let script = [
            (latency, Ok(Some(secs(2)))),
            (Duration::ZERO, Ok(Some(secs(3_600)))),
        ];
        let world = World::new(format!("a fetch of {latency:?}"), 0, script);
        let (_cache, client) = stack(&world, Backoff::default(), false, FreshnessCheck::Timer);
        let _ = client.oneshot(Request::default()).await;
        broken.extend(world.take_violations().into_iter().map(|(_, m)| m));
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// A fetch the cache abandoned after a stall must not complete the next one:
/// the next one's waiters get its result, and one fetch runs at a time.
#[tokio::test(start_paused = true)]
async fn a_fetch_abandoned_after_a_stall_does_not_complete_the_next_one() {
    // Fetch 1 outlives the stall, fetch 2 takes 3 s, later ones are instant.
    let hour = Ok(Some(secs(3_600)));
    let script = [(secs(4), hour), (secs(3), hour), (Duration::ZERO, hour)];
    let world = World::new("stall".into(), 0, script);
    let no_jitter = Backoff::default().jitter(0.0);
    let (_cache, mut client) = stack(&world, no_jitter, false, FreshnessCheck::Timer);

    // Fetch 1 starts for a caller that gives up at once; it runs on.
    drop(client.ready().await.unwrap().call(Request::default()));
    tokio::task::yield_now().await;
    // The runtime stalls for 7 s, past the 5 s timeout and 1 s grace: fetch
    // 1's timers fired but its task has not run when request A arrives. A
    // abandons fetch 1 and starts fetch 2.
    advance(secs(7)).await;
    let a = tokio::spawn(client.ready().await.unwrap().call(Request::default()));
    // B arrives while fetch 2 runs (and after a 1 s backoff, were there one).
    sleep(ms(1_500)).await;
    let b = tokio::spawn(client.ready().await.unwrap().call(Request::default()));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let mut broken: Vec<_> = world
        .take_violations()
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    for (name, result) in [("A", a), ("B", b)] {
        if let Err(e) = result {
            let kind = e.as_token_error().map(|e| e.kind());
            broken.push(format!(
                "{name} waited for fetch 2 and failed: {kind:?}: {e}"
            ));
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}
