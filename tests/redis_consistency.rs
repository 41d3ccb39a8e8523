//! The fleet store's consistency rules against a real `redis-server` (each
//! test starts its own on a free loopback port): the documented ACL is
//! enough, an older token never replaces a newer one, a token a cache has
//! had is never handed back to it, a zero lifetime means "unknown" to the
//! store as to the cache, and a slow lease holder does not set off a burst.
//!
//! Without `redis-server` on the PATH these tests print a skip message and
//! pass, unless the `CI` environment variable is set: then they fail.
#![cfg(feature = "redis")]

mod support;

use support::processes::RedisServer;
use support::store::*;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::source::FnSource;
use tower_bearer::store::RedisStore;
use tower_bearer::{BearerAuthLayer, Token, TokenCache, TokenSource};

/// The `ACL SETUSER` line the store's docs recommend, word for word.
fn documented_acl() -> Vec<String> {
    let docs = include_str!("../src/store/mod.rs");
    let line = docs
        .lines()
        .map(|line| line.trim_start_matches("//!").trim())
        .find(|line| line.starts_with("ACL SETUSER "))
        .expect("the store's docs give an ACL SETUSER line");
    line.split_whitespace().skip(1).map(str::to_owned).collect()
}

/// Creates the documented user on `redis` and returns a store that logs in
/// as it, with the documented key prefix.
async fn store_as_documented_user(redis: &RedisServer) -> impl Fn() -> RedisStore {
    let acl = documented_acl();
    assert_eq!(acl[..2], ["SETUSER", "billing"], "{acl:?}");
    let password = acl
        .iter()
        .find_map(|word| word.strip_prefix('>'))
        .expect("a password")
        .to_owned();
    let prefix = acl
        .iter()
        .find_map(|word| word.strip_prefix('~'))
        .expect("a key pattern")
        .trim_end_matches('*')
        .to_owned();
    let mut admin = redis.connect().await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&acl)
        .query_async(&mut admin)
        .await
        .unwrap();
    let url = redis
        .url
        .replace("redis://", &format!("redis://billing:{password}@"));
    move || {
        RedisStore::builder(url.as_str())
            .unwrap()
            .key_prefix(prefix.as_str())
            .poll_interval(Duration::from_millis(20))
            // Eight cold connections on a busy machine: a slow answer must
            // not count as Redis being down.
            .operation_timeout(Duration::from_secs(1))
            .build()
    }
}

/// `processes` caches, each with its own store and connection, ask for a
/// token at once; returns the headers they sent.
async fn fleet_requests(processes: usize, shared: impl Fn() -> TokenCache) -> Vec<String> {
    let barrier = Arc::new(tokio::sync::Barrier::new(processes));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..processes {
        let cache = shared();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            authorization(&cache).await
        });
    }
    with_deadline(tasks.join_all()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_acl_shares_one_token_cold_and_under_contention() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let store = store_as_documented_user(&redis).await;
    let source = CountingSource::default();

    // A fresh server: no script is loaded yet.
    let headers = fleet_requests(8, || TokenCache::new(store().share(source.clone(), key()))).await;
    assert_eq!(source.calls(), 1, "one fetch for eight processes, cold");
    assert!(headers.iter().all(|h| h == "Bearer token-1"), "{headers:?}");

    // The scripts are loaded now; the token is gone, so eight processes
    // contend for the lease again.
    let token_key = store().share(source.clone(), key()).redis_key().to_owned();
    let mut admin = redis.connect().await.unwrap();
    let _: () = admin.del(&token_key).await.unwrap();
    let headers = fleet_requests(8, || TokenCache::new(store().share(source.clone(), key()))).await;
    assert_eq!(source.calls(), 2, "one fetch for eight processes, warm");
    assert!(headers.iter().all(|h| h == "Bearer token-2"), "{headers:?}");
}

#[tokio::test]
async fn a_denied_command_is_reported_once_at_warn_level() {
    let logs = CapturedLogs::default();
    let _logging = logs.install();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // Everything but EVALSHA and EVAL: no script can run.
    let url = create_user(&redis, "narrow", "-@all +get +set +pttl +del").await;
    let source = CountingSource::default();
    let store = RedisStore::builder(url.as_str()).unwrap().build();
    let cache = TokenCache::new(store.share(source.clone(), key()));
    for expected in 1..=3 {
        // Each fetch goes to the source directly: requests are still served.
        assert_eq!(
            with_deadline(authorization(&cache)).await,
            format!("Bearer token-{expected}")
        );
        cache.invalidate();
    }
    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 1, "{}", logs.text());
    assert!(
        warnings[0].contains("'evalsha'"),
        "names the command: {warnings:?}"
    );
    let text = logs.text();
    assert!(text.contains("DEBUG"), "every level is captured");
    assert!(!text.contains("token-"), "no token in the logs: {text}");
}

#[tokio::test]
async fn a_command_denied_inside_a_script_is_reported_and_never_taken_for_garbage() {
    let logs = CapturedLogs::default();
    let _logging = logs.install();
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // The scripts run, but GET inside them is refused.
    let url = create_user(&redis, "noget", "-@all +set +pttl +del +eval +evalsha").await;
    let source = CountingSource::default();
    let shared = RedisStore::builder(url.as_str())
        .unwrap()
        .build()
        .share(source.clone(), key());
    let lease_key = format!("{}:lease", shared.redis_key());
    // Another process's live lease: a read that took the refusal for a
    // lease of the wrong type would delete it.
    let mut admin = redis.connect().await.unwrap();
    let _: () = admin
        .pset_ex(&lease_key, "another-holder", 60_000)
        .await
        .unwrap();
    let cache = TokenCache::new(shared);
    assert_eq!(with_deadline(authorization(&cache)).await, "Bearer token-1");
    let holder: Option<String> = admin.get(&lease_key).await.unwrap();
    assert_eq!(holder.as_deref(), Some("another-holder"));
    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 1, "{}", logs.text());
    assert!(warnings[0].contains("read script"), "{warnings:?}");
}

/// Creates a user with `rules` on all of the store's default keys; returns
/// a URL that logs in as it.
async fn create_user(redis: &RedisServer, name: &str, rules: &str) -> String {
    let mut admin = redis.connect().await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(name)
        .arg("on")
        .arg(">pw")
        .arg("~tower-bearer:*")
        .arg(rules.split(' ').collect::<Vec<_>>())
        .query_async(&mut admin)
        .await
        .unwrap();
    redis
        .url
        .replace("redis://", &format!("redis://{name}:pw@"))
}

/// The token a fresh process gets from Redis.
async fn shared_token(redis: &RedisServer) -> String {
    let reader = CountingSource::default();
    let header = with_deadline(authorization(&TokenCache::new(
        store(redis).share(reader.clone(), key()),
    )))
    .await;
    assert_eq!(reader.calls(), 0, "served from Redis");
    header
}

/// Process A takes the lease and fetches slowly; its lease expires and B
/// takes over. Returns the two processes' requests, the source and the
/// store maker, with both fetches started and neither finished.
async fn slow_holder_and_takeover(
    redis: &RedisServer,
) -> (
    tokio::task::JoinHandle<String>,
    tokio::task::JoinHandle<String>,
    GatedSource,
) {
    let source = GatedSource::new(4, Duration::from_secs(3600));
    let store = || {
        RedisStore::builder(redis.url.as_str())
            .unwrap()
            .lease_ttl(Duration::from_millis(400))
            .poll_interval(Duration::from_millis(20))
            .build()
    };
    let shared_a = store().share(source.clone(), key());
    let lease_key = format!("{}:lease", shared_a.redis_key());
    let cache_a = TokenCache::new(shared_a);
    let a = tokio::spawn(async move { authorization(&cache_a).await });
    wait_for_key(redis, &lease_key).await;

    let cache_b = TokenCache::new(store().share(source.clone(), key()));
    let b = tokio::spawn(async move { authorization(&cache_b).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while source.calls() < 2 {
        assert!(Instant::now() < deadline, "B never took over the lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (a, b, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lease_holder_never_overwrites_the_newer_token() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b, source) = slow_holder_and_takeover(&redis).await;
    // B, the newer holder, finishes first and writes token-2.
    source.open(2);
    assert_eq!(with_deadline(b).await.unwrap(), "Bearer token-2");
    assert_eq!(shared_token(&redis).await, "Bearer token-2");
    // A finishes later with the older token-1: the fleet keeps the newer
    // one, and A's process uses it too.
    source.open(1);
    assert_eq!(with_deadline(a).await.unwrap(), "Bearer token-2");
    assert_eq!(shared_token(&redis).await, "Bearer token-2");
    assert_eq!(source.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_holder_replaces_the_older_token_of_a_slow_one() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b, source) = slow_holder_and_takeover(&redis).await;
    // A, the slow holder, finishes first: its token is shared meanwhile.
    source.open(1);
    assert_eq!(with_deadline(a).await.unwrap(), "Bearer token-1");
    assert_eq!(shared_token(&redis).await, "Bearer token-1");
    // B's newer token, which lives longer, replaces it.
    source.open(2);
    assert_eq!(with_deadline(b).await.unwrap(), "Bearer token-2");
    assert_eq!(shared_token(&redis).await, "Bearer token-2");
    assert_eq!(source.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_write_reply_never_brings_a_rejected_token_back() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // The scripts are loaded first, so that the write below runs at once.
    let warm_up = store(&redis).share(
        CountingSource::default(),
        tower_bearer::store::StoreKey::builder()
            .client_id("warm-up")
            .build(),
    );
    with_deadline(warm_up.fetch()).await.unwrap();
    // The write of token-1 reaches Redis; its reply is lost with the
    // connection.
    let proxied = reply_losing_proxy(&redis, b"token-1", LostReply::Dropped).await;
    let source = CountingSource::default();
    let shared = RedisStore::builder(proxied.as_str())
        .unwrap()
        .build()
        .share(source.clone(), key());
    let token_key = shared.redis_key().to_owned();
    let cache = TokenCache::new(shared);
    // The API rejects token-1, as after a revocation.
    let api = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service_fn(|req: http::Request<()>| async move {
            let header = req.headers()["authorization"].to_str().unwrap().to_owned();
            let mut response = http::Response::new(header.clone());
            if header == "Bearer token-1" {
                *response.status_mut() = http::StatusCode::UNAUTHORIZED;
            }
            Ok::<_, Infallible>(response)
        });

    let first = with_deadline(api.clone().oneshot(http::Request::new(())))
        .await
        .unwrap();
    assert_eq!(first.status(), http::StatusCode::UNAUTHORIZED);
    assert_eq!(first.into_body(), "Bearer token-1");
    let mut conn = redis.connect().await.unwrap();
    let stored: String = conn.get(&token_key).await.unwrap();
    assert!(stored.contains("token-1"), "the write did happen");

    // The refetch does not read token-1 back: it fetches token-2.
    let second = with_deadline(api.oneshot(http::Request::new(())))
        .await
        .unwrap();
    assert_eq!(second.into_body(), "Bearer token-2");
    assert_eq!(source.calls(), 2);
    assert_eq!(shared_token(&redis).await, "Bearer token-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_lifetime_is_unknown_to_the_store_as_to_the_cache() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let source = || {
        let calls = calls.clone();
        FnSource::new(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                Ok::<_, Infallible>(
                    Token::bearer(format!("token-{n}")).with_lifetime(Duration::ZERO),
                )
            }
        })
    };
    for _ in 0..3 {
        let cache = TokenCache::new(store(&redis).share(source(), key()));
        assert_eq!(with_deadline(authorization(&cache)).await, "Bearer token-1");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one fetch for three processes"
    );
    let token_key = store(&redis).share(source(), key()).redis_key().to_owned();
    let mut conn = redis.connect().await.unwrap();
    let ttl_ms: i64 = conn.pttl(&token_key).await.unwrap();
    // The cache's default lifetime (5 minutes) less the 30 s margin.
    assert!(
        (260_000..=270_000).contains(&ttl_ms),
        "kept for the default lifetime: {ttl_ms} ms"
    );
}

/// A provider that is timing out: every fetch takes `FAILS_AFTER`, then
/// fails. Records how many fetches ran at once.
#[derive(Clone, Default)]
struct SlowlyFailing {
    calls: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

const FAILS_AFTER: Duration = Duration::from_millis(1000);

impl TokenSource for SlowlyFailing {
    type Error = std::io::Error;

    async fn fetch(&self) -> Result<Token, std::io::Error> {
        struct InFlight(Arc<AtomicUsize>);
        impl Drop for InFlight {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let _in_flight = InFlight(self.in_flight.clone());
        tokio::time::sleep(FAILS_AFTER).await;
        Err(std::io::Error::other("the provider timed out"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowly_failing_holder_sets_off_no_burst() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    const PROCESSES: usize = 10;
    let source = SlowlyFailing::default();
    // Scaled from the defaults (a 10 s source timeout, a 15 s lease, a 30 s
    // fetch timeout): a lease outlives a fetch, the cache gives up later.
    let cache = || {
        let store = RedisStore::builder(redis.url.as_str())
            .unwrap()
            .lease_ttl(Duration::from_millis(2500))
            .poll_interval(Duration::from_millis(20))
            .build();
        TokenCache::builder(store.share(source.clone(), key()))
            .fetch_timeout(Duration::from_millis(3500))
            .build()
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(PROCESSES));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..PROCESSES {
        let (cache, barrier) = (cache(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            cache.refresh().await
        });
    }
    let results = with_deadline(tasks.join_all()).await;
    assert!(results.iter().all(Result::is_err));
    let most = source.most_in_flight.load(Ordering::SeqCst);
    let calls = source.calls.load(Ordering::SeqCst);
    eprintln!("{PROCESSES} processes: {calls} fetches, at most {most} at once");
    assert_eq!(most, 1, "one fetch at a time against a failing provider");
    assert!(calls <= 4, "{calls} fetches in 3.5 s of 1 s failures");
}
