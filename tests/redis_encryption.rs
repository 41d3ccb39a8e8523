//! Tokens sealed at rest in the fleet store, read straight from a real
//! `redis-server` (each test starts its own on a free loopback port): no
//! token in any value, rotation by key id, and a value moved or altered is
//! a miss.
//!
//! Without `redis-server` on the PATH these tests print a skip message and
//! pass, unless the `CI` environment variable is set: then they fail.
#![cfg(feature = "redis")]

mod support;

use support::processes::RedisServer;
use support::store::*;

use std::time::Duration;

use base64::Engine as _;
use redis::AsyncCommands;
use tower_bearer::store::{Encryption, EncryptionKey, RedisStore, StoreKey};
use tower_bearer::{TokenCache, TokenSource};

fn encryption_key(id: &str, byte: u8) -> EncryptionKey {
    EncryptionKey::new(id, &[byte; 32]).unwrap()
}

fn sealing_store(redis: &RedisServer, encryption: Encryption) -> RedisStore {
    RedisStore::builder(redis.url.as_str())
        .unwrap()
        .poll_interval(Duration::from_millis(20))
        .encryption(encryption)
        .build()
}

/// Every value under the store's prefix, as Redis holds it.
async fn raw_values(redis: &RedisServer) -> Vec<String> {
    let mut conn = redis.connect().await.unwrap();
    let keys: Vec<String> = conn.keys("tower-bearer:*").await.unwrap();
    let mut values = Vec::new();
    for key in keys {
        values.push(conn.get(&key).await.unwrap());
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_tokens_are_shared_and_never_readable_in_redis() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let source = CountingSource::default();
    for _ in 0..4 {
        let store = sealing_store(&redis, Encryption::new(encryption_key("k1", 7)));
        let cache = TokenCache::new(store.share(source.clone(), key()));
        assert_eq!(with_deadline(authorization(&cache)).await, "Bearer token-1");
    }
    assert_eq!(source.calls(), 1, "one fetch for four processes");

    let values = raw_values(&redis).await;
    assert_eq!(values.len(), 1, "{values:?}");
    let base64 = base64::engine::general_purpose::STANDARD.encode("token-1");
    for value in &values {
        assert!(!value.contains("token-1"), "{value}");
        assert!(!value.contains(base64.trim_end_matches('=')), "{value}");
        assert!(!value.contains(CLIENT_SECRET), "{value}");
        let stored: serde_json::Value = serde_json::from_str(value).unwrap();
        assert_eq!(stored["key_id"], "k1");
        assert!(stored.get("access_token").is_none(), "{value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_by_id() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let source = CountingSource::default();
    let old = || Encryption::new(encryption_key("k1", 1));
    let rotated = || Encryption::new(encryption_key("k2", 2)).also_read(encryption_key("k1", 1));

    // A process on the old key writes token-1.
    let cache_a = TokenCache::new(sealing_store(&redis, old()).share(source.clone(), key()));
    assert_eq!(
        with_deadline(authorization(&cache_a)).await,
        "Bearer token-1"
    );
    // A process on the new key still reads it...
    let cache_b = TokenCache::new(sealing_store(&redis, rotated()).share(source.clone(), key()));
    assert_eq!(
        with_deadline(authorization(&cache_b)).await,
        "Bearer token-1"
    );
    assert_eq!(source.calls(), 1);
    // ... and writes its next token with the new key.
    cache_b.invalidate();
    assert_eq!(
        with_deadline(authorization(&cache_b)).await,
        "Bearer token-2"
    );
    let values = raw_values(&redis).await;
    assert!(values[0].contains("\"key_id\":\"k2\""), "{values:?}");

    // A process that has only the old key cannot open it: a miss, then its
    // own token, written over the one it could not read.
    let cache_c = TokenCache::new(sealing_store(&redis, old()).share(source.clone(), key()));
    assert_eq!(
        with_deadline(authorization(&cache_c)).await,
        "Bearer token-3"
    );
    let values = raw_values(&redis).await;
    assert!(values[0].contains("\"key_id\":\"k1\""), "{values:?}");
    // Which the rotated processes read.
    let cache_d = TokenCache::new(sealing_store(&redis, rotated()).share(source.clone(), key()));
    assert_eq!(
        with_deadline(authorization(&cache_d)).await,
        "Bearer token-3"
    );
    assert_eq!(source.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_moved_to_another_key_or_altered_is_a_miss() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let source = CountingSource::default();
    let sealed = || Encryption::new(encryption_key("k1", 9));
    let billing = key();
    let reports = StoreKey::builder()
        .token_url("https://idp.example.com/oauth2/token")
        .client_id("reports-service")
        .build();
    let billing_key = sealing_store(&redis, sealed())
        .share(source.clone(), billing.clone())
        .redis_key()
        .to_owned();
    let reports_key = sealing_store(&redis, sealed())
        .share(source.clone(), reports.clone())
        .redis_key()
        .to_owned();
    let cache = TokenCache::new(sealing_store(&redis, sealed()).share(source.clone(), billing));
    assert_eq!(with_deadline(authorization(&cache)).await, "Bearer token-1");

    // Billing's value copied under the reports key: not reports' token.
    let mut conn = redis.connect().await.unwrap();
    let value: String = conn.get(&billing_key).await.unwrap();
    let _: () = conn.pset_ex(&reports_key, &value, 600_000).await.unwrap();
    let shared = sealing_store(&redis, sealed()).share(source.clone(), reports.clone());
    let token = with_deadline(shared.fetch()).await.unwrap();
    assert_eq!(token.access_token().secret(), "token-2");

    // One character in the middle of the sealed text changed: a miss too.
    let mut stored: serde_json::Value = serde_json::from_str(&value).unwrap();
    let mut text = stored["sealed"].as_str().unwrap().to_owned();
    let middle = text.len() / 2;
    let flipped = if &text[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    text.replace_range(middle..=middle, flipped);
    stored["sealed"] = text.into();
    let _: () = conn
        .pset_ex(&billing_key, stored.to_string(), 600_000)
        .await
        .unwrap();
    let shared = sealing_store(&redis, sealed()).share(source.clone(), key());
    let token = with_deadline(shared.fetch()).await.unwrap();
    assert_eq!(token.access_token().secret(), "token-3");

    // A token in the clear is never read by a store that seals.
    let clear = store(&redis).share(source.clone(), reports.clone());
    let _: () = conn.del(&reports_key).await.unwrap();
    assert_eq!(
        with_deadline(clear.fetch())
            .await
            .unwrap()
            .access_token()
            .secret(),
        "token-4"
    );
    let shared = sealing_store(&redis, sealed()).share(source.clone(), reports);
    let token = with_deadline(shared.fetch()).await.unwrap();
    assert_eq!(token.access_token().secret(), "token-5");
}
