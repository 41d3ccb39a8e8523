//! The shared token store on a real three-node Redis Cluster that each test
//! starts on free loopback ports.
//!
//! Without `redis-server` and `redis-cli` on the PATH these tests print a
//! skip message and pass, unless the `CI` environment variable is set: then
//! they fail.
#![cfg(feature = "redis")]

mod support;

use support::Counting;
use support::processes::RedisCluster;
use support::store::*;

use std::sync::Arc;
use std::time::Duration;

use tower_bearer::store::{RedisStore, StoreKey};
use tower_bearer::{Token, TokenCache};

/// A store on `cluster`, with test-friendly timings.
fn store(cluster: &RedisCluster) -> RedisStore {
    RedisStore::cluster(cluster.urls.iter().map(String::as_str))
        .expect("valid urls")
        .poll_interval(Duration::from_millis(20))
        .build()
}

/// The words of the `ACL SETUSER` line the store's docs give for a cluster,
/// after `ACL`.
fn documented_cluster_acl() -> Vec<String> {
    let docs = include_str!("../src/store/mod.rs");
    let line = docs
        .lines()
        .map(|line| line.trim_start_matches("//!").trim())
        .find(|line| line.starts_with("ACL SETUSER ") && line.contains("+cluster|slots"))
        .expect("the store's docs give an ACL SETUSER line for a cluster");
    line.split_whitespace().skip(1).map(str::to_owned).collect()
}

/// Creates the user `acl` (the words after `ACL`) describes on every node:
/// a cluster does not share users.
async fn create_user_on_every_node(cluster: &RedisCluster, acl: &[String]) {
    for node in 0..cluster.urls.len() {
        let _: () = cluster
            .query(node, redis::cmd("ACL").arg(acl).clone())
            .await
            .unwrap();
    }
}

/// The seed URLs, logging in as `user`.
fn urls_as(cluster: &RedisCluster, user: &str) -> Vec<String> {
    cluster
        .urls
        .iter()
        .map(|url| url.replace("redis://", &format!("redis://{user}@")))
        .collect()
}

/// A source whose `n`th fetch yields `<label>-<n>`, living an hour.
fn labelled_source(label: String) -> Counting {
    Counting::new(move |n| {
        let token = format!("{label}-{n}");
        async move {
            tokio::time::sleep(FETCH_LATENCY).await;
            Ok(Token::bearer(token).with_lifetime(Duration::from_secs(3600)))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_over_one_cluster_store_make_one_fetch() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let store = store(&cluster);
    eight_caches_make_one_fetch(|| store.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_spread_over_the_nodes_each_make_one_fetch() {
    const KEYS: usize = 16;
    const PROCESSES: usize = 3;
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    // Each "process" its own store (and cluster connection), with a cache
    // per key.
    let stores: Vec<RedisStore> = (0..PROCESSES).map(|_| store(&cluster)).collect();
    let sources: Vec<Counting> = (0..KEYS)
        .map(|i| labelled_source(format!("key{i}")))
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(KEYS * PROCESSES));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, source) in sources.iter().enumerate() {
        let key = StoreKey::builder()
            .token_url("https://idp.example.com/oauth2/token")
            .client_id(format!("service-{i}"))
            .build();
        for store in &stores {
            let cache = TokenCache::new(store.share(source.source(), key.clone()));
            let barrier = barrier.clone();
            tasks.spawn(async move {
                barrier.wait().await;
                (i, authorization(&cache).await)
            });
        }
    }
    let results = with_deadline(tasks.join_all()).await;

    for (i, source) in sources.iter().enumerate() {
        assert_eq!(
            source.count(),
            1,
            "one fetch for key {i}, shared by every process"
        );
    }
    for (i, header) in results {
        assert_eq!(header, format!("Bearer key{i}-1"));
    }
    // The tokens are on more than one node: the cluster, not one node of it,
    // did the sharing.
    let mut nodes_with_tokens = 0;
    for node in 0..cluster.urls.len() {
        let keys: usize = cluster.query(node, redis::cmd("DBSIZE")).await.unwrap();
        if keys > 0 {
            nodes_with_tokens += 1;
        }
    }
    assert!(
        nodes_with_tokens >= 2,
        "tokens on {nodes_with_tokens} node(s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_is_down_is_a_miss() {
    // A seed on a port nobody listens on.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let source = CountingSource::default();
    let store = RedisStore::cluster([format!("redis://127.0.0.1:{port}/")])
        .unwrap()
        .build();
    let cache = TokenCache::new(store.share(source.clone(), key()));
    assert_eq!(authorization_promptly(&cache).await, "Bearer token-1");

    // And again: each fetch tries to connect anew, and misses as promptly.
    cache.invalidate();
    assert_eq!(authorization_promptly(&cache).await, "Bearer token-2");
    assert_eq!(source.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_never_answers_costs_one_short_timeout() {
    // Accepts connections and never replies: a hung or overloaded node.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    let source = CountingSource::default();
    let store = RedisStore::cluster([url])
        .unwrap()
        .operation_timeout(Duration::from_millis(200))
        .build();
    let cache = TokenCache::new(store.share(source.clone(), key()));
    assert_eq!(authorization_promptly(&cache).await, "Bearer token-1");
    assert_eq!(source.calls(), 1);
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_served_when_the_cluster_dies_mid_run() {
    let Some(mut cluster) = RedisCluster::start().await else {
        return;
    };
    let source = CountingSource::default();
    let cache = TokenCache::new(store(&cluster).share(source.clone(), key()));
    assert_eq!(with_deadline(authorization(&cache)).await, "Bearer token-1");

    cluster.kill();

    // The running process: its next fetch goes straight to the source.
    cache.invalidate();
    assert_eq!(authorization_promptly(&cache).await, "Bearer token-2");
    assert_eq!(source.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_cluster_acl_shares_one_token() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let acl = documented_cluster_acl();
    assert_eq!(acl[..2], ["SETUSER", "billing"], "{acl:?}");
    let password = acl
        .iter()
        .find_map(|word| word.strip_prefix('>'))
        .expect("a password");
    let prefix = acl
        .iter()
        .find_map(|word| word.strip_prefix('~'))
        .expect("a key pattern")
        .trim_end_matches('*');
    create_user_on_every_node(&cluster, &acl).await;
    let urls = urls_as(&cluster, &format!("billing:{password}"));

    let source = CountingSource::default();
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        // Each "process" its own store, logged in as the documented user.
        let store = RedisStore::cluster(urls.iter().map(String::as_str))
            .unwrap()
            .key_prefix(prefix)
            .poll_interval(Duration::from_millis(20))
            .build();
        let cache = TokenCache::new(store.share(source.clone(), key()));
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            authorization(&cache).await
        });
    }
    let headers = with_deadline(tasks.join_all()).await;
    assert_eq!(source.calls(), 1, "one fetch for four processes");
    assert!(headers.iter().all(|h| h == "Bearer token-1"), "{headers:?}");
}

#[tokio::test]
async fn a_user_without_the_cluster_commands_is_reported_once() {
    let logs = CapturedLogs::default();
    let _logging = logs.install();
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    // The single node's ACL: the client cannot read the slot map.
    let acl: Vec<String> = "SETUSER narrow on >hunter2 resetkeys ~tower-bearer:* resetchannels \
                            -@all +get +set +pttl +del +eval +evalsha"
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    create_user_on_every_node(&cluster, &acl).await;
    let store = RedisStore::cluster(urls_as(&cluster, "narrow:hunter2"))
        .unwrap()
        .build();
    let source = CountingSource::default();
    let cache = TokenCache::new(store.share(source.clone(), key()));
    for expected in 1..=3 {
        // Each fetch goes to the source directly: requests are still served.
        assert_eq!(
            authorization_promptly(&cache).await,
            format!("Bearer token-{expected}")
        );
        cache.invalidate();
    }
    let warnings = logs.warnings();
    assert_eq!(warnings.len(), 1, "{}", logs.text());
    assert!(
        warnings[0].contains("'cluster|slots'") && warnings[0].contains("+cluster|slots"),
        "names the command and the ACL that has it: {warnings:?}"
    );
    let text = logs.text();
    assert!(
        !text.contains("token-") && !text.contains("hunter2"),
        "no token or password in the logs: {text}"
    );
}

/// Six processes, two resources each, on a cluster: two fetches in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_keyed_caches_with_two_resources_make_two_fetches() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    six_processes_two_resources_two_fetches(|| store(&cluster)).await;
}

/// A cluster connection lives on the runtime it was made on. When that
/// runtime is gone, the store connects again instead of missing for good.
#[test]
fn the_store_connects_again_after_its_runtime_is_gone() {
    let setup = tokio::runtime::Runtime::new().unwrap();
    let Some(cluster) = setup.block_on(RedisCluster::start()) else {
        return;
    };
    let store = store(&cluster);
    let source = labelled_source("t".into());
    // Each cache asks once; a round stops at the first that reads `wanted`
    // from Redis, or after `most` caches.
    let on_a_new_runtime = |most: usize, wanted: &str| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let headers: Vec<String> = runtime.block_on(async {
            let mut headers = Vec::new();
            while headers.len() < most && headers.last().is_none_or(|h| h != wanted) {
                let cache = TokenCache::new(store.share(source.source(), key()));
                headers.push(authorization_promptly(&cache).await);
            }
            headers
        });
        drop(runtime);
        headers
    };
    assert_eq!(on_a_new_runtime(1, ""), ["Bearer t-1"]);
    // On a new runtime the old connection is dead: the first fetches go
    // straight to the source while the store connects again (a cluster
    // connect may outlast one operation's timeout, longer on a loaded
    // machine), then the shared token is read. Without reconnecting, it
    // never would be.
    let headers = on_a_new_runtime(30, "Bearer t-1");
    assert_eq!(
        headers.last().map(String::as_str),
        Some("Bearer t-1"),
        "{headers:?}"
    );
    drop(setup);
}
