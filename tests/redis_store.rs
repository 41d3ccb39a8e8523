//! The shared token store against a real `redis-server` that each test starts
//! on a free loopback port.
//!
//! Without `redis-server` on the PATH these tests print a skip message and
//! pass, unless the `CI` environment variable is set: then they fail.
#![cfg(feature = "redis")]

mod support;

use support::processes::RedisServer;
use support::store::*;

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::AsyncCommands;
use tokio::time::Instant;
use tower_bearer::store::RedisStore;
use tower_bearer::{ErrorClass, Token, TokenCache, TokenSource};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_independent_caches_make_one_fetch() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    eight_caches_make_one_fetch(|| store(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_that_stops_mid_fetch_is_taken_over() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let lease_ttl = Duration::from_millis(600);
    let store = || {
        RedisStore::builder(redis.url.as_str())
            .unwrap()
            .lease_ttl(lease_ttl)
            .poll_interval(Duration::from_millis(20))
            .build()
    };

    // Process A takes the lease and never finishes its fetch.
    let stuck = StuckSource::default();
    let shared_a = store().share(stuck.clone(), key());
    let lease_key = format!("{}:lease", shared_a.redis_key());
    let cache_a = TokenCache::new(shared_a);
    let a = tokio::spawn({
        let cache_a = cache_a.clone();
        async move { authorization(&cache_a).await }
    });
    wait_for_key(&redis, &lease_key).await;
    let lease_seen = Instant::now();

    // Process B waits for A's lease to expire, then fetches itself.
    let source_b = CountingSource::default();
    let cache_b = TokenCache::new(store().share(source_b.clone(), key()));
    let header = with_deadline(authorization(&cache_b)).await;
    let waited = lease_seen.elapsed();

    assert_eq!(header, "Bearer token-1");
    assert_eq!(source_b.calls(), 1);
    assert_eq!(stuck.calls.load(Ordering::SeqCst), 1);
    assert!(
        waited >= lease_ttl / 2,
        "B took over only once A's lease expired (waited {waited:?})"
    );
    assert!(
        waited < Duration::from_secs(3),
        "B took over as soon as the lease expired ({waited:?})"
    );
    assert!(!a.is_finished(), "A is still stuck");

    // B's token is now shared: a third process makes no fetch.
    let source_c = CountingSource::default();
    let cache_c = TokenCache::new(store().share(source_c.clone(), key()));
    assert_eq!(
        with_deadline(authorization(&cache_c)).await,
        "Bearer token-1"
    );
    assert_eq!(source_c.calls(), 0);
    a.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_served_when_redis_dies_mid_run() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let source = CountingSource::default();
    let cache = TokenCache::new(store(&redis).share(source.clone(), key()));
    assert_eq!(with_deadline(authorization(&cache)).await, "Bearer token-1");

    redis.kill();

    // The running process: its next fetch goes straight to the source.
    cache.invalidate();
    assert_eq!(authorization_promptly(&cache).await, "Bearer token-2");

    // A process that starts while Redis is down.
    let cache = TokenCache::new(store(&redis).share(source.clone(), key()));
    assert_eq!(authorization_promptly(&cache).await, "Bearer token-3");
    assert_eq!(source.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answers_costs_one_short_timeout() {
    // Accepts connections and never replies: a hung or overloaded Redis.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    let source = CountingSource::default();
    let store = RedisStore::builder(url.as_str())
        .unwrap()
        .operation_timeout(Duration::from_millis(200))
        .build();
    let cache = TokenCache::new(store.share(source.clone(), key()));
    assert_eq!(authorization_promptly(&cache).await, "Bearer token-1");
    assert_eq!(source.calls(), 1);
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_speaks_garbage_is_a_miss() {
    // Answers every connection with bytes that are not the Redis protocol.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    let garbage = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n\xff\x00")
                .await;
        }
    });

    let source = CountingSource::default();
    let cache = TokenCache::new(
        RedisStore::builder(url.as_str())
            .unwrap()
            .build()
            .share(source.clone(), key()),
    );
    assert_eq!(authorization_promptly(&cache).await, "Bearer token-1");
    assert_eq!(source.calls(), 1);
    garbage.abort();
}

/// A source that always fails, permanently.
#[derive(Clone, Default)]
struct RejectedSource;

impl TokenSource for RejectedSource {
    type Error = std::io::Error;

    async fn fetch(&self) -> Result<Token, std::io::Error> {
        Err(std::io::Error::other("invalid_client"))
    }

    fn classify(&self, _error: &std::io::Error) -> ErrorClass {
        ErrorClass::Permanent
    }

    fn kind(&self) -> &'static str {
        "rejected"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_releases_the_lease_and_keeps_its_class() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // The default lease lasts 15 s: only a prompt release lets B in quickly.
    let shared = store(&redis).share(RejectedSource, key());
    assert_eq!(shared.kind(), "rejected");
    let lease_key = format!("{}:lease", shared.redis_key());
    let cache_a = TokenCache::new(shared);
    let error = with_deadline(cache_a.refresh()).await.unwrap_err();
    assert!(
        !error.is_transient(),
        "the wrapped source's class passes through"
    );
    assert!(
        error
            .source_error()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .is_some()
    );

    let mut conn = redis.connect().await.unwrap();
    let held: bool = conn.exists(&lease_key).await.unwrap();
    assert!(!held, "the lease was released");

    let source_b = CountingSource::default();
    let cache_b = TokenCache::new(store(&redis).share(source_b.clone(), key()));
    assert_eq!(authorization_promptly(&cache_b).await, "Bearer token-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_value_is_a_miss_and_is_overwritten() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mut conn = redis.connect().await.unwrap();
    let source = CountingSource::default();

    let shared = store(&redis).share(source.clone(), key());
    let redis_key = shared.redis_key().to_owned();
    let cache = TokenCache::new(shared);
    let _: () = conn
        .set(&redis_key, "{\"v\":1,\"access_token\":")
        .await
        .unwrap();
    assert_eq!(with_deadline(authorization(&cache)).await, "Bearer token-1");
    assert_eq!(source.calls(), 1);
    let stored: String = conn.get(&redis_key).await.unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).expect("overwritten with JSON");
    assert_eq!(stored["access_token"], "token-1");

    // A value of the wrong type is garbage too.
    let _: () = conn.del(&redis_key).await.unwrap();
    let _: () = conn.hset(&redis_key, "field", "value").await.unwrap();
    let cache = TokenCache::new(store(&redis).share(source.clone(), key()));
    assert_eq!(with_deadline(authorization(&cache)).await, "Bearer token-2");
    assert_eq!(source.calls(), 2);
    let stored: String = conn.get(&redis_key).await.unwrap();
    assert!(stored.contains("token-2"));

    // Junk with an id, and a value that looks well-formed but holds no
    // token, each with a long TTL: overwritten, not kept for an hour.
    for junk in [r#"{"id":"abc"}"#, r#"{"v":1,"id":"abcd","margin_ms":5}"#] {
        let _: () = conn.set_ex(&redis_key, junk, 3600).await.unwrap();
        let before = source.calls();
        for _ in 0..3 {
            let cache = TokenCache::new(store(&redis).share(source.clone(), key()));
            with_deadline(authorization(&cache)).await;
        }
        assert_eq!(source.calls(), before + 1, "{junk} was overwritten once");
    }

    // A well-formed value holding a token that is not a valid header value.
    let injected =
        r#"{"v":1,"id":"x","access_token":"a\r\nx-evil: 1","token_type":"Bearer","margin_ms":0}"#;
    let _: () = conn.set_ex(&redis_key, injected, 600).await.unwrap();
    let cache = TokenCache::new(store(&redis).share(source.clone(), key()));
    assert_eq!(with_deadline(authorization(&cache)).await, "Bearer token-5");
    assert_eq!(source.calls(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_key_or_value() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let source = CountingSource::default();
    let cache = TokenCache::new(store(&redis).share(source.clone(), key()));
    let header = with_deadline(authorization(&cache)).await;
    let token_value = header.strip_prefix("Bearer ").unwrap().to_owned();

    let mut conn = redis.connect().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        keys.len(),
        1,
        "one token key, and the lease released: {keys:?}"
    );
    for key in &keys {
        assert!(key.starts_with("tower-bearer:{"), "{key}");
        assert!(!key.contains(CLIENT_SECRET), "{key}");
        assert!(
            !key.contains(&token_value),
            "the token is not in the key: {key}"
        );
        assert!(
            !key.contains("billing-service"),
            "identity parts are hashed: {key}"
        );
        let value: String = conn.get(key).await.unwrap();
        assert!(!value.contains(CLIENT_SECRET), "{value}");
        let ttl_ms: i64 = conn.pttl(key).await.unwrap();
        assert!(
            ttl_ms > 0 && ttl_ms <= (3600 - 30) * 1000,
            "the key expires before the token: {ttl_ms} ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_asks_again_gets_a_newer_token_once_per_fleet() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let source = CountingSource::default();
    let cache_a = TokenCache::new(store(&redis).share(source.clone(), key()));
    let cache_b = TokenCache::new(store(&redis).share(source.clone(), key()));
    assert_eq!(
        with_deadline(authorization(&cache_a)).await,
        "Bearer token-1"
    );
    assert_eq!(
        with_deadline(authorization(&cache_b)).await,
        "Bearer token-1"
    );
    assert_eq!(source.calls(), 1);

    // A refreshes (as after a 401, or ahead of expiry): Redis still holds the
    // token A has, so A fetches a newer one instead of re-reading it.
    cache_a.invalidate();
    assert_eq!(
        with_deadline(authorization(&cache_a)).await,
        "Bearer token-2"
    );
    assert_eq!(source.calls(), 2);

    // B refreshes later and finds A's newer token: no fetch.
    cache_b.invalidate();
    assert_eq!(
        with_deadline(authorization(&cache_b)).await,
        "Bearer token-2"
    );
    assert_eq!(source.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_reply_came_too_late_is_released_and_the_token_shared() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // The lease SET's reply comes 800 ms late, past A's 500 ms timeout; A's
    // later commands are answered in time.
    let proxied =
        reply_losing_proxy(&redis, b"NX", LostReply::Late(Duration::from_millis(800))).await;
    let source = CountingSource::default();
    let shared_a = RedisStore::builder(proxied.as_str())
        .unwrap()
        .operation_timeout(Duration::from_millis(500))
        .build()
        .share(source.clone(), key());
    let lease_key = format!("{}:lease", shared_a.redis_key());
    let token = with_deadline(shared_a.fetch()).await.unwrap();
    assert_eq!(token.access_token().secret(), "token-1");

    // A wrote its token and released the lease its SET did take.
    let mut conn = redis.connect().await.unwrap();
    let held: bool = conn.exists(&lease_key).await.unwrap();
    assert!(!held, "no orphan lease");

    // B, just after, is served A's token at once: no wait, no second fetch.
    let cache_b = TokenCache::new(store(&redis).share(source.clone(), key()));
    assert_eq!(authorization_promptly(&cache_b).await, "Bearer token-1");
    assert_eq!(source.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_without_ttl_or_of_the_wrong_type_is_cleared() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mut conn = redis.connect().await.unwrap();
    let source = CountingSource::default();
    let lease_key = format!(
        "{}:lease",
        store(&redis).share(source.clone(), key()).redis_key()
    );
    let redis_key = lease_key.trim_end_matches(":lease").to_owned();

    // Set by hand, with no TTL: it would never expire on its own.
    let _: () = conn.set(&lease_key, "stray").await.unwrap();
    let cache = TokenCache::new(store(&redis).share(source.clone(), key()));
    // Served promptly, not after the cache gives up.
    assert_eq!(authorization_promptly(&cache).await, "Bearer token-1");
    assert_eq!(source.calls(), 1);
    let held: bool = conn.exists(&lease_key).await.unwrap();
    assert!(!held);

    // Of the wrong type.
    let _: () = conn.del(&redis_key).await.unwrap();
    let _: () = conn.hset(&lease_key, "field", "value").await.unwrap();
    let cache = TokenCache::new(store(&redis).share(source.clone(), key()));
    assert_eq!(authorization_promptly(&cache).await, "Bearer token-2");
    assert_eq!(source.calls(), 2);

    // A live lease with a TTL is left alone: the reader never fetches beside
    // it. Its cache's fetch timeout ends the wait...
    let _: () = conn.del(&redis_key).await.unwrap();
    let _: () = conn
        .pset_ex(&lease_key, "another-holder", 60_000)
        .await
        .unwrap();
    let cache = TokenCache::builder(store(&redis).share(source.clone(), key()))
        .fetch_timeout(Duration::from_millis(300))
        .build();
    let error = with_deadline(cache.refresh()).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(source.calls(), 2);
    let holder: String = conn.get(&lease_key).await.unwrap();
    assert_eq!(holder, "another-holder");

    // ... or the lease's end, after which the reader takes the next lease.
    let _: () = conn
        .pset_ex(&lease_key, "another-holder", 500)
        .await
        .unwrap();
    let cache = TokenCache::new(store(&redis).share(source.clone(), key()));
    let started = Instant::now();
    assert_eq!(with_deadline(authorization(&cache)).await, "Bearer token-3");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(source.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_settings_do_not_panic() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let source = CountingSource::default();
    let huge = || {
        RedisStore::builder(redis.url.as_str())
            .unwrap()
            .lease_ttl(Duration::MAX)
            .expiry_margin(Duration::MAX)
            .default_lifetime(Duration::MAX)
            .build()
    };
    let shared = huge().share(source.clone(), key());
    let token = with_deadline(shared.fetch()).await.unwrap();
    assert_eq!(token.access_token().secret(), "token-1");
    // Redis down too: a direct fetch, no panic.
    let down = RedisStore::builder("redis://127.0.0.1:1/")
        .unwrap()
        .operation_timeout(Duration::MAX)
        .build()
        .share(source.clone(), key());
    let token = with_deadline(down.fetch()).await.unwrap();
    assert_eq!(token.access_token().secret(), "token-2");
}

/// Six processes, two resources each: two fetches in all, one per
/// resource, and every process gets each resource's one token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_keyed_caches_with_two_resources_make_two_fetches() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    six_processes_two_resources_two_fetches(|| store(&redis)).await;
}

/// A DPoP-bound token is useless to any other process: it is never
/// written, and once the source has returned one, fetches skip Redis.
#[cfg(feature = "client-credentials")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_bound_to_a_dpop_key_is_never_shared() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use tower_bearer::dpop::Dpop;
    use tower_bearer::source::FnSource;

    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let dpop = Dpop::generate().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    let bound = FnSource::new(move || {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let token = Token::new(format!("bound-{n}"), "DPoP")
            .with_lifetime(Duration::from_secs(3600))
            .with_dpop(dpop.clone());
        async move { Ok::<_, std::io::Error>(token) }
    });
    let shared = store(&redis).share(bound, key());
    let (redis_key, lease_key) = (
        shared.redis_key().to_owned(),
        format!("{}:lease", shared.redis_key()),
    );
    let shared = Arc::new(shared);
    let token = with_deadline(shared.fetch()).await.unwrap();
    assert_eq!(token.access_token().secret(), "bound-1");
    assert!(token.dpop().is_some());
    let mut conn = redis.connect().await.unwrap();
    let stored: bool = conn.exists(&redis_key).await.unwrap();
    assert!(!stored, "a bound token is not written");

    // Another process holds the lease for a long while: a bound source no
    // longer waits on it, nor reads what Redis holds.
    let _: () = conn.set_ex(&lease_key, "someone-else", 60).await.unwrap();
    let _: () = conn
        .set_ex(
            &redis_key,
            r#"{"v":1,"id":"x","access_token":"bearer-from-elsewhere","token_type":"Bearer","margin_ms":0}"#,
            600,
        )
        .await
        .unwrap();
    let started = Instant::now();
    let token = with_deadline(shared.fetch()).await.unwrap();
    assert_eq!(token.access_token().secret(), "bound-2");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // A source that says it binds its tokens is never handed the bearer
    // token Redis holds, not even on its first fetch.
    let static_bound = tower_bearer::source::StaticSource::new(
        Token::new("bound-static", "DPoP").with_dpop(Dpop::generate().unwrap()),
    );
    let shared = store(&redis).share(static_bound, key());
    assert!(shared.binds_tokens());
    let token = with_deadline(shared.fetch()).await.unwrap();
    assert_eq!(token.access_token().secret(), "bound-static");
}
