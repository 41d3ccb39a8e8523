//! The Redis store and the source that shares tokens through it.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, RedisError, RedisResult, Script};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::key::StoreKey;
use crate::cache::{DEFAULT_LIFETIME, MAX_LIFETIME};
use crate::error::ErrorClass;
use crate::source::TokenSource;
use crate::token::Token;

/// Default for [`RedisStoreBuilder::key_prefix`]: `tower-bearer:`.
pub const DEFAULT_KEY_PREFIX: &str = "tower-bearer:";
/// Default for [`RedisStoreBuilder::operation_timeout`]: 250 milliseconds.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_millis(250);
/// Default for [`RedisStoreBuilder::lease_ttl`]: 15 seconds, comfortably
/// longer than a client-credentials fetch may take (its default timeout is
/// 10 s) plus the Redis operations around it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// Default for [`RedisStoreBuilder::max_wait`]: 20 seconds, longer than
/// [`DEFAULT_LEASE_TTL`] and shorter than the cache's
/// [`DEFAULT_FETCH_TIMEOUT`](crate::cache::DEFAULT_FETCH_TIMEOUT) (30 s).
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(20);
/// Default for [`RedisStoreBuilder::poll_interval`]: 50 milliseconds.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Default for [`RedisStoreBuilder::expiry_margin`]: 30 seconds, as the
/// cache's [`DEFAULT_EXPIRY_MARGIN`](crate::cache::DEFAULT_EXPIRY_MARGIN).
pub const DEFAULT_EXPIRY_MARGIN: Duration = crate::cache::DEFAULT_EXPIRY_MARGIN;

/// The format version written in every stored value.
const FORMAT_VERSION: u32 = 1;
/// A stored value longer than this is garbage: it is never shipped back.
const MAX_VALUE_LEN: usize = 64 * 1024;
/// The marker the read script returns for a value of the wrong type or size.
const GARBAGE_MARKER: &[u8] = b"!";

/// Reads the value, its TTL and the lease's TTL, in one round trip.
/// A value of the wrong type or too long comes back as a marker that fails to
/// parse, so it is treated as garbage without shipping it.
///
/// A lease is always a string with a TTL; anything else under the lease key
/// (no TTL, another type) would make every process wait `max_wait`, so it is
/// deleted here, atomically, and reported as -3.
const READ_SCRIPT: &str = r"
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' then value = '!' end
if value and string.len(value) > tonumber(ARGV[1]) then value = '!' end
local lease = redis.call('PTTL', KEYS[2])
if lease ~= -2 and (lease == -1 or redis.call('TYPE', KEYS[2])['ok'] ~= 'string') then
  redis.call('DEL', KEYS[2])
  lease = -3
end
return {value, redis.call('PTTL', KEYS[1]), lease}
";
/// The lease TTL [`READ_SCRIPT`] reports for a garbage lease it deleted.
const LEASE_CLEARED: i64 = -3;

/// Writes the token, then releases the lease if it is still ours.
const WRITE_AND_RELEASE_SCRIPT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
";

/// Releases the lease only if it is still ours: a holder whose lease expired
/// must not delete the next holder's.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A fleet-wide token store on Redis. Cheap to clone.
///
/// Build it with [`RedisStore::builder`] (from a URL), [`RedisStore::from_client`]
/// or [`RedisStore::from_connection_manager`], then wrap each token source with
/// [`RedisStore::share`]. Building it connects to nothing and needs no
/// runtime: the connection is made on first use, and Redis being down then is
/// a miss, not an error. See the [module docs](super) for the protocol and for
/// who can read the tokens.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    connection: Connection,
    config: StoreConfig,
    read: Script,
    write_and_release: Script,
    release: Script,
}

enum Connection {
    Lazy {
        client: Client,
        manager: OnceLock<ConnectionManager>,
    },
    Ready(ConnectionManager),
}

#[derive(Clone, Debug)]
struct StoreConfig {
    key_prefix: String,
    operation_timeout: Duration,
    lease_ttl: Duration,
    max_wait: Duration,
    poll_interval: Duration,
    expiry_margin: Duration,
    default_lifetime: Duration,
}

/// Builds a [`RedisStore`]. Every setting has a documented default.
pub struct RedisStoreBuilder {
    connection: Connection,
    config: StoreConfig,
}

impl RedisStore {
    /// A builder for a store at `url` (`redis://[user:password@]host[:port][/db]`,
    /// or `rediss://` for TLS when redis-rs is built with a TLS feature).
    ///
    /// Fails only if the URL cannot be parsed; nothing is connected yet.
    pub fn builder(url: impl IntoConnectionInfo) -> Result<RedisStoreBuilder, RedisError> {
        Ok(Self::from_client(Client::open(url)?))
    }

    /// A builder for a store reached through `client`.
    pub fn from_client(client: Client) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Connection::Lazy {
            client,
            manager: OnceLock::new(),
        })
    }

    /// A builder for a store reached through a connection manager you already
    /// have. Each operation is still bounded by
    /// [`operation_timeout`](RedisStoreBuilder::operation_timeout).
    pub fn from_connection_manager(manager: ConnectionManager) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Connection::Ready(manager))
    }

    /// Wraps `source` so that the processes sharing this Redis and `key`
    /// fetch one token between them.
    ///
    /// Put a [`TokenCache`](crate::TokenCache) in front of the result, so
    /// that Redis is asked only on a local miss or refresh.
    pub fn share<S: TokenSource>(&self, source: S, key: StoreKey) -> SharedSource<S> {
        let base = format!("{}{{{}}}", self.inner.config.key_prefix, key.digest());
        SharedSource {
            store: self.clone(),
            source,
            lease_key: format!("{base}:lease"),
            token_key: base,
            last_served: Mutex::new(None),
        }
    }

    /// The prefix of every key this store writes.
    pub fn key_prefix(&self) -> &str {
        &self.inner.config.key_prefix
    }

    fn manager(&self) -> Result<ConnectionManager, Unavailable> {
        match &self.inner.connection {
            Connection::Ready(manager) => Ok(manager.clone()),
            Connection::Lazy { client, manager } => {
                if let Some(manager) = manager.get() {
                    return Ok(manager.clone());
                }
                let timeout = self.inner.config.operation_timeout;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    // Each operation is bounded anyway; a failed connection is
                    // retried by the next operation.
                    .set_number_of_retries(1);
                let created = ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map_err(Unavailable::Redis)?;
                Ok(manager.get_or_init(|| created).clone())
            }
        }
    }

    /// Runs one Redis operation within the operation timeout.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, Unavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let manager = self.manager()?;
        match tokio::time::timeout(self.inner.config.operation_timeout, op(manager)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Unavailable::Redis(error)),
            Err(_) => Err(Unavailable::Timeout),
        }
    }

    async fn read(&self, token_key: &str, lease_key: &str) -> Result<Read, Unavailable> {
        let (value, pttl, lease_pttl): (Option<Vec<u8>>, i64, i64) = self
            .run(|mut conn| async move {
                self.inner
                    .read
                    .key(token_key)
                    .key(lease_key)
                    .arg(MAX_VALUE_LEN)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        if lease_pttl == LEASE_CLEARED {
            tracing::debug!(
                key = lease_key,
                "deleted a lease without a TTL or of the wrong type"
            );
        }
        // PTTL is -2 for a missing key; a live lease has 0 or more left.
        let lease_held = lease_pttl >= 0;
        let Some(value) = value else {
            return Ok(Read::Missing { lease_held });
        };
        match StoredToken::decode(&value, pttl, self.inner.config.expiry_margin) {
            Some(shared) => Ok(Read::Found { shared, lease_held }),
            None => Ok(Read::Garbage { lease_held }),
        }
    }

    async fn try_lease(&self, lease_key: &str, lease_value: &str) -> Result<bool, Unavailable> {
        let ttl_ms = millis(self.inner.config.lease_ttl).max(1);
        let reply: Option<String> = self
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(lease_key)
                    .arg(lease_value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(reply.is_some())
    }

    async fn release(&self, lease_key: &str, lease_value: &str) -> Result<(), Unavailable> {
        let _: i64 = self
            .run(|mut conn| async move {
                self.inner
                    .release
                    .key(lease_key)
                    .arg(lease_value)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(())
    }

    /// Writes `value` with a TTL of `ttl_ms`, and releases the lease if one
    /// is given and still ours.
    async fn write(
        &self,
        token_key: &str,
        value: &str,
        ttl_ms: u64,
        lease: Option<(&str, &str)>,
    ) -> Result<(), Unavailable> {
        match lease {
            Some((lease_key, lease_value)) => {
                let _: i64 = self
                    .run(|mut conn| async move {
                        self.inner
                            .write_and_release
                            .key(token_key)
                            .key(lease_key)
                            .arg(value)
                            .arg(ttl_ms)
                            .arg(lease_value)
                            .invoke_async(&mut conn)
                            .await
                    })
                    .await?;
            }
            None => {
                let _: () = self
                    .run(|mut conn| async move {
                        redis::cmd("SET")
                            .arg(token_key)
                            .arg(value)
                            .arg("PX")
                            .arg(ttl_ms)
                            .query_async(&mut conn)
                            .await
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for RedisStore {
    // The connection details stay out: a Redis URL may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    fn new(connection: Connection) -> Self {
        Self {
            connection,
            config: StoreConfig {
                key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
                operation_timeout: DEFAULT_OPERATION_TIMEOUT,
                lease_ttl: DEFAULT_LEASE_TTL,
                max_wait: DEFAULT_MAX_WAIT,
                poll_interval: DEFAULT_POLL_INTERVAL,
                expiry_margin: DEFAULT_EXPIRY_MARGIN,
                default_lifetime: DEFAULT_LIFETIME,
            },
        }
    }

    /// The prefix of every key, so that a Redis ACL can confine the store to
    /// its own keys (`~<prefix>*`).
    ///
    /// Defaults to [`DEFAULT_KEY_PREFIX`] (`tower-bearer:`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// How long one Redis operation may take before Redis counts as
    /// unavailable for this fetch, which is then served directly by the
    /// wrapped source.
    ///
    /// Defaults to [`DEFAULT_OPERATION_TIMEOUT`] (250 ms).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.config.operation_timeout = timeout.min(MAX_LIFETIME);
        self
    }

    /// How long a lease lasts: a process that takes it and dies blocks the
    /// others this long. Make it comfortably longer than the wrapped source's
    /// timeout plus a few Redis operations: a fetch that outlives its lease
    /// lets a waiter fetch a second token.
    ///
    /// Defaults to [`DEFAULT_LEASE_TTL`] (15 s).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = ttl.min(MAX_LIFETIME);
        self
    }

    /// How long a process waits for another's fetch before fetching on its
    /// own. Longer than [`lease_ttl`](Self::lease_ttl), so that a dead
    /// holder's lease expires and a waiter takes over before anyone gives up;
    /// shorter than the cache's
    /// [`fetch_timeout`](crate::TokenCacheBuilder::fetch_timeout), which
    /// bounds the whole fetch.
    ///
    /// Defaults to [`DEFAULT_MAX_WAIT`] (20 s).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.config.max_wait = wait.min(MAX_LIFETIME);
        self
    }

    /// How often a waiting process looks for the token.
    ///
    /// Defaults to [`DEFAULT_POLL_INTERVAL`] (50 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval.clamp(Duration::from_millis(1), MAX_LIFETIME);
        self
    }

    /// How long before a token expires Redis drops it. Clamped for short
    /// lifetimes as the cache clamps its own margin (a quarter of the
    /// lifetime, at least one second, at most half).
    ///
    /// Defaults to [`DEFAULT_EXPIRY_MARGIN`] (30 s).
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.config.expiry_margin = margin.min(MAX_LIFETIME);
        self
    }

    /// The lifetime assumed for a token whose source did not say. Match the
    /// cache's [`default_lifetime`](crate::TokenCacheBuilder::default_lifetime).
    ///
    /// Defaults to the cache's [`DEFAULT_LIFETIME`] (5 minutes).
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.default_lifetime = lifetime.min(MAX_LIFETIME);
        self
    }

    /// Builds the store. Connects to nothing.
    pub fn build(self) -> RedisStore {
        RedisStore {
            inner: Arc::new(StoreInner {
                connection: self.connection,
                config: self.config,
                read: Script::new(READ_SCRIPT),
                write_and_release: Script::new(WRITE_AND_RELEASE_SCRIPT),
                release: Script::new(RELEASE_SCRIPT),
            }),
        }
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A token source shared by every process that uses the same Redis and
/// [`StoreKey`]: made by [`RedisStore::share`].
///
/// Its errors, [`classify`](TokenSource::classify) and
/// [`kind`](TokenSource::kind) are the wrapped source's: Redis trouble is
/// never an error, only a direct fetch.
pub struct SharedSource<S> {
    store: RedisStore,
    source: S,
    token_key: String,
    lease_key: String,
    // The id of the stored token last handed to this source's cache: when
    // Redis still holds it, the cache is asking for a newer one.
    last_served: Mutex<Option<String>>,
}

impl<S> SharedSource<S> {
    /// The wrapped source.
    pub fn get_ref(&self) -> &S {
        &self.source
    }

    /// The store.
    pub fn store(&self) -> &RedisStore {
        &self.store
    }

    /// The Redis key the token is stored under.
    pub fn redis_key(&self) -> &str {
        &self.token_key
    }

    fn last_served(&self) -> Option<String> {
        self.last_served
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_last_served(&self, id: String) {
        *self
            .last_served
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(id);
    }

    /// A stored token this source's cache has not had yet.
    fn usable(&self, read: Read, served: Option<&str>) -> Result<Shared, Read> {
        match read {
            Read::Found { shared, .. } if Some(shared.id.as_str()) != served => Ok(shared),
            other => Err(other),
        }
    }
}

impl<S: TokenSource> SharedSource<S> {
    async fn fetch_shared(&self) -> Result<Token, S::Error> {
        let config = &self.store.inner.config;
        let served = self.last_served();
        let served = served.as_deref();
        // The builder caps max_wait, but an Instant overflow must never panic.
        let now = Instant::now();
        let deadline = now.checked_add(config.max_wait).unwrap_or(now);
        let key = self.token_key.as_str();
        loop {
            let read = match self.store.read(key, &self.lease_key).await {
                Ok(read) => read,
                Err(error) => return self.fetch_direct("read failed", &error, false).await,
            };
            let read = match self.usable(read, served) {
                Ok(shared) => return Ok(self.hit(shared, "hit")),
                Err(read) => read,
            };
            tracing::debug!(key, state = read.describe(), "shared token miss");

            let lease_value = random_id();
            match self.store.try_lease(&self.lease_key, &lease_value).await {
                Ok(true) => return self.fetch_with_lease(lease_value, served, true).await,
                Ok(false) => {}
                Err(error) => {
                    // The SET may have run on Redis though its reply never
                    // came: act as the holder, so the token is shared and the
                    // lease released instead of stalling the fleet.
                    tracing::debug!(key, error = %error, "lease outcome unknown; treating it as ours");
                    return self.fetch_with_lease(lease_value, served, false).await;
                }
            }
            tracing::debug!(
                key,
                "another process holds the lease; waiting for its token"
            );

            // Wait for the holder's token, or for its lease to go.
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return self
                        .fetch_direct("waited too long", &Unavailable::Timeout, true)
                        .await;
                }
                tokio::time::sleep(config.poll_interval.min(deadline - now)).await;
                let read = match self.store.read(key, &self.lease_key).await {
                    Ok(read) => read,
                    Err(error) => return self.fetch_direct("read failed", &error, false).await,
                };
                match self.usable(read, served) {
                    Ok(shared) => return Ok(self.hit(shared, "appeared")),
                    Err(read) if !read.lease_held() => {
                        tracing::debug!(key, "lease released or expired without a new token");
                        break;
                    }
                    Err(_) => {}
                }
            }
        }
    }

    fn hit(&self, shared: Shared, how: &'static str) -> Token {
        tracing::debug!(
            key = self.token_key.as_str(),
            how,
            remaining_ms = millis(shared.remaining),
            "shared token hit"
        );
        self.set_last_served(shared.id);
        shared.token
    }

    /// Fetches under a lease that is ours (`confirmed`) or may be (its SET
    /// got no reply in time), then writes the token and releases the lease.
    async fn fetch_with_lease(
        &self,
        lease_value: String,
        served: Option<&str>,
        confirmed: bool,
    ) -> Result<Token, S::Error> {
        let key = self.token_key.as_str();
        tracing::debug!(key, confirmed, "lease taken");
        let mut guard = LeaseGuard {
            store: self.store.clone(),
            lease_key: self.lease_key.clone(),
            lease_value: Some(lease_value),
        };
        // The token may have landed between the miss and the lease. Redis
        // just failed to answer in time when unconfirmed: skip the re-read.
        if confirmed
            && let Ok(read) = self.store.read(key, &self.lease_key).await
            && let Ok(shared) = self.usable(read, served)
        {
            guard.release().await;
            return Ok(self.hit(shared, "landed before the lease"));
        }
        let started = Instant::now();
        let token = match self.source.fetch().await {
            Ok(token) => token,
            Err(error) => {
                guard.release().await;
                return Err(error);
            }
        };
        // The guard keeps the lease until the write has finished: a future
        // dropped mid-write, or a failed write, still releases it.
        let lease = guard
            .lease_value
            .as_deref()
            .map(|value| (self.lease_key.as_str(), value));
        if self.store_token(&token, started, lease).await {
            guard.lease_value = None;
        }
        Ok(token)
    }

    async fn fetch_direct(
        &self,
        why: &'static str,
        error: &Unavailable,
        write: bool,
    ) -> Result<Token, S::Error> {
        tracing::debug!(
            key = self.token_key.as_str(),
            why,
            error = %error,
            "fetching directly from the source"
        );
        let started = Instant::now();
        let token = self.source.fetch().await?;
        if write {
            self.store_token(&token, started, None).await;
        }
        Ok(token)
    }

    /// Writes `token` (best effort), releasing `lease` if given. True when
    /// Redis confirmed the write (and the release).
    async fn store_token(
        &self,
        token: &Token,
        started: Instant,
        lease: Option<(&str, &str)>,
    ) -> bool {
        let key = self.token_key.as_str();
        let config = &self.store.inner.config;
        let stored = StoredToken::encode(token, started.elapsed(), config);
        let result = match &stored {
            Some((value, id, ttl_ms)) => {
                let result = self.store.write(key, value, *ttl_ms, lease).await;
                if result.is_ok() {
                    self.set_last_served(id.clone());
                }
                result
            }
            // Too short-lived to share: just let the lease go.
            None => match lease {
                Some((lease_key, lease_value)) => self.store.release(lease_key, lease_value).await,
                None => Ok(()),
            },
        };
        match result {
            Ok(()) => {
                tracing::debug!(key, stored = stored.is_some(), "shared token written");
                true
            }
            Err(error) => {
                tracing::debug!(key, error = %error, "shared token not written");
                false
            }
        }
    }
}

impl<S: TokenSource> TokenSource for SharedSource<S> {
    type Error = S::Error;

    fn fetch(&self) -> impl Future<Output = Result<Token, S::Error>> + Send {
        self.fetch_shared()
    }

    fn classify(&self, error: &S::Error) -> ErrorClass {
        self.source.classify(error)
    }

    fn kind(&self) -> &'static str {
        self.source.kind()
    }
}

impl<S> fmt::Debug for SharedSource<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSource")
            .field("redis_key", &self.token_key)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Releases a lease when the fetch holding it ends early (an error, or the
/// cache dropping the fetch), instead of leaving others to wait out its TTL.
struct LeaseGuard {
    store: RedisStore,
    lease_key: String,
    lease_value: Option<String>,
}

impl LeaseGuard {
    async fn release(&mut self) {
        if let Some(value) = self.lease_value.take()
            && let Err(error) = self.store.release(&self.lease_key, &value).await
        {
            tracing::debug!(key = self.lease_key.as_str(), error = %error, "lease not released");
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some(value) = self.lease_value.take() else {
            return;
        };
        // Dropped mid-fetch: release on the side if a runtime is still there;
        // otherwise the lease expires on its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let lease_key = std::mem::take(&mut self.lease_key);
            runtime.spawn(async move {
                let _ = store.release(&lease_key, &value).await;
            });
        }
    }
}

/// What a read found under the key.
enum Read {
    Found { shared: Shared, lease_held: bool },
    Missing { lease_held: bool },
    Garbage { lease_held: bool },
}

impl Read {
    fn lease_held(&self) -> bool {
        match self {
            Read::Found { lease_held, .. }
            | Read::Missing { lease_held }
            | Read::Garbage { lease_held } => *lease_held,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Read::Found { .. } => "already served (a newer token is wanted)",
            Read::Missing { .. } => "missing",
            Read::Garbage { .. } => "unreadable",
        }
    }
}

/// A token read from Redis.
struct Shared {
    token: Token,
    id: String,
    remaining: Duration,
}

/// The stored value. Its fields are public knowledge: anyone reading Redis
/// sees them.
#[derive(Serialize, Deserialize)]
struct StoredToken {
    v: u32,
    /// Identifies this write, so a process can tell a token it has already
    /// served from a newer one.
    id: String,
    access_token: String,
    token_type: String,
    /// The margin subtracted from the token's life for the key's TTL: the
    /// remaining life is the TTL plus this.
    margin_ms: u64,
}

impl StoredToken {
    /// The value to write, its id and the key's TTL in milliseconds; `None`
    /// when the token is too short-lived to share.
    fn encode(
        token: &Token,
        elapsed: Duration,
        config: &StoreConfig,
    ) -> Option<(String, String, u64)> {
        let lifetime = token
            .lifetime()
            .unwrap_or(config.default_lifetime)
            .min(MAX_LIFETIME);
        let margin = crate::cache::clamped_margin(config.expiry_margin, lifetime);
        let ttl = lifetime.checked_sub(elapsed)?.checked_sub(margin)?;
        let ttl_ms = millis(ttl);
        if ttl_ms == 0 {
            return None;
        }
        let id = random_id();
        let stored = StoredToken {
            v: FORMAT_VERSION,
            id: id.clone(),
            access_token: token.access_token().secret().to_owned(),
            token_type: token.token_type().to_owned(),
            margin_ms: millis(margin),
        };
        let value = serde_json::to_string(&stored).ok()?;
        Some((value, id, ttl_ms))
    }

    /// A usable token from a stored value and its key's TTL, or `None` for
    /// garbage: bad JSON, another version, a token that is not a valid header
    /// value, a key without a TTL.
    ///
    /// The token is handed to the cache with its full remaining life when the
    /// cache's margin on that life (taken to be `margin`, this store's
    /// [`expiry_margin`](RedisStoreBuilder::expiry_margin)) is at least the
    /// writer's. Near the end of its life the cache would clamp its margin
    /// below the writer's, so it gets the life Redis keeps it instead (the
    /// TTL, the remaining life less the writer's margin): a little earlier
    /// than needed, never later than the writer's policy allows.
    fn decode(value: &[u8], pttl_ms: i64, margin: Duration) -> Option<Shared> {
        if value == GARBAGE_MARKER || value.len() > MAX_VALUE_LEN {
            return None;
        }
        let stored: StoredToken = serde_json::from_slice(value).ok()?;
        let visible = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        let valid = stored.v == FORMAT_VERSION
            && visible(&stored.access_token)
            && visible(&stored.token_type)
            && !stored.id.is_empty()
            && stored.id.len() <= 64
            && pttl_ms > 0;
        if !valid {
            return None;
        }
        let kept = Duration::from_millis(pttl_ms.unsigned_abs()).min(MAX_LIFETIME);
        let writer_margin = Duration::from_millis(stored.margin_ms.min(millis(MAX_LIFETIME)));
        let remaining = (kept + writer_margin).min(MAX_LIFETIME);
        let lifetime = if crate::cache::clamped_margin(margin, remaining) >= writer_margin {
            remaining
        } else {
            kept
        };
        Some(Shared {
            token: Token::new(stored.access_token, &stored.token_type).with_lifetime(lifetime),
            id: stored.id,
            remaining,
        })
    }
}

/// Why Redis could not be used for this fetch.
enum Unavailable {
    Redis(RedisError),
    Timeout,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Redis(error) => write!(f, "redis error: {error}"),
            Unavailable::Timeout => f.write_str("redis did not answer in time"),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// 128 random bits in hex: a lease value or a stored token's id. Only
/// uniqueness matters; neither is a secret.
fn random_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StoreConfig {
        StoreConfig {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            lease_ttl: DEFAULT_LEASE_TTL,
            max_wait: DEFAULT_MAX_WAIT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            expiry_margin: DEFAULT_EXPIRY_MARGIN,
            default_lifetime: DEFAULT_LIFETIME,
        }
    }

    #[test]
    fn stored_token_round_trips_with_its_remaining_life() {
        let token = Token::bearer("abc.def").with_lifetime(Duration::from_secs(3600));
        let (value, id, ttl_ms) =
            StoredToken::encode(&token, Duration::from_secs(2), &config()).unwrap();
        // Lifetime less the time the fetch took, less the margin.
        assert_eq!(ttl_ms, (3600 - 2 - 30) * 1000);
        let shared =
            StoredToken::decode(value.as_bytes(), 1_000_000, DEFAULT_EXPIRY_MARGIN).unwrap();
        assert_eq!(shared.token.access_token().secret(), "abc.def");
        assert_eq!(shared.token.token_type(), "Bearer");
        assert_eq!(shared.id, id);
        assert_eq!(shared.remaining, Duration::from_secs(1_030));
        assert_eq!(shared.token.lifetime(), Some(Duration::from_secs(1_030)));
    }

    #[test]
    fn a_token_near_the_end_of_its_life_keeps_the_writers_margin() {
        let token = Token::bearer("t").with_lifetime(Duration::from_secs(3600));
        let (value, _, _) = StoredToken::encode(&token, Duration::ZERO, &config()).unwrap();
        let cache_usable = |lifetime: Duration| {
            lifetime - crate::cache::clamped_margin(DEFAULT_EXPIRY_MARGIN, lifetime)
        };
        // 40 s left, 10 s of it in Redis: the cache must stop using the token
        // no later than the writer's 30 s margin before its end, i.e. within
        // 10 s; with 40 s it would clamp its margin to 10 s and use it for 30.
        let shared = StoredToken::decode(value.as_bytes(), 10_000, DEFAULT_EXPIRY_MARGIN).unwrap();
        assert_eq!(shared.remaining, Duration::from_secs(40));
        let lifetime = shared.token.lifetime().unwrap();
        assert_eq!(lifetime, Duration::from_secs(10));
        assert!(cache_usable(lifetime) <= Duration::from_secs(10));
        // Far from its end: the full remaining life, and the cache's own
        // margin equals the writer's.
        let shared =
            StoredToken::decode(value.as_bytes(), 1_000_000, DEFAULT_EXPIRY_MARGIN).unwrap();
        let lifetime = shared.token.lifetime().unwrap();
        assert_eq!(cache_usable(lifetime), Duration::from_secs(1_000));
    }

    #[test]
    fn default_timings_nest() {
        // A fetch that outlives its lease lets a waiter fetch a second token;
        // a wait that outlives the cache's fetch timeout fails the fetch.
        #[cfg(feature = "client-credentials")]
        let fetch = crate::source::client_credentials::DEFAULT_TIMEOUT;
        #[cfg(not(feature = "client-credentials"))]
        let fetch = Duration::from_secs(10);
        assert!(
            DEFAULT_LEASE_TTL >= fetch + 4 * DEFAULT_OPERATION_TIMEOUT + Duration::from_secs(3)
        );
        assert!(DEFAULT_MAX_WAIT > DEFAULT_LEASE_TTL);
        assert!(crate::cache::DEFAULT_FETCH_TIMEOUT > DEFAULT_MAX_WAIT);
    }

    #[test]
    fn huge_settings_are_capped() {
        let store = RedisStore::builder("redis://127.0.0.1:1/")
            .unwrap()
            .operation_timeout(Duration::MAX)
            .lease_ttl(Duration::MAX)
            .max_wait(Duration::MAX)
            .poll_interval(Duration::MAX)
            .expiry_margin(Duration::MAX)
            .default_lifetime(Duration::MAX)
            .build();
        let config = &store.inner.config;
        for setting in [
            config.operation_timeout,
            config.lease_ttl,
            config.max_wait,
            config.poll_interval,
            config.expiry_margin,
            config.default_lifetime,
        ] {
            assert!(setting <= MAX_LIFETIME);
        }
        assert!(Instant::now().checked_add(config.max_wait).is_some());
    }

    #[test]
    fn short_and_unknown_lifetimes() {
        // A 3 s token keeps a 1 s margin, as the cache's own clamp does.
        let short = Token::bearer("t").with_lifetime(Duration::from_secs(3));
        let (_, _, ttl_ms) = StoredToken::encode(&short, Duration::ZERO, &config()).unwrap();
        assert_eq!(ttl_ms, 2_000);
        // Too short-lived to be worth sharing.
        let gone = Token::bearer("t").with_lifetime(Duration::from_millis(500));
        assert!(StoredToken::encode(&gone, Duration::from_secs(1), &config()).is_none());
        // No lifetime: the default lifetime.
        let unknown = Token::bearer("t");
        let (_, _, ttl_ms) = StoredToken::encode(&unknown, Duration::ZERO, &config()).unwrap();
        assert_eq!(ttl_ms, (300 - 30) * 1000);
    }

    #[test]
    fn garbage_is_rejected() {
        let good = |token: &str, ty: &str| {
            format!(
                r#"{{"v":1,"id":"ab","access_token":"{token}","token_type":"{ty}","margin_ms":5}}"#
            )
        };
        let margin = DEFAULT_EXPIRY_MARGIN;
        assert!(StoredToken::decode(good("t", "Bearer").as_bytes(), 10, margin).is_some());
        let bad: Vec<(Vec<u8>, i64)> = vec![
            (b"!".to_vec(), 10),
            (b"not json".to_vec(), 10),
            (b"{}".to_vec(), 10),
            (vec![0xff, 0xfe], 10),
            (
                good("t", "Bearer")
                    .replace("\"v\":1", "\"v\":2")
                    .into_bytes(),
                10,
            ),
            (good("a\\r\\nx: y", "Bearer").into_bytes(), 10),
            (good("", "Bearer").into_bytes(), 10),
            (good("t", "Bear er").into_bytes(), 10),
            (
                good("t", "Bearer").replace("\"ab\"", "\"\"").into_bytes(),
                10,
            ),
            // No TTL, or the key just expired.
            (good("t", "Bearer").into_bytes(), -1),
            (good("t", "Bearer").into_bytes(), -2),
        ];
        for (value, pttl) in bad {
            assert!(
                StoredToken::decode(&value, pttl, margin).is_none(),
                "{:?}",
                String::from_utf8_lossy(&value)
            );
        }
    }

    #[test]
    fn debug_shows_no_connection_details() {
        let store = RedisStore::builder("redis://user:hunter2@127.0.0.1:1/0")
            .unwrap()
            .build();
        let printed = format!("{store:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        let source = store.share(
            crate::source::StaticSource::new(Token::bearer("secret-token")),
            StoreKey::builder().client_id("svc").build(),
        );
        let printed = format!("{source:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("secret-token"));
        assert!(source.redis_key().starts_with("tower-bearer:{"));
        assert!(source.redis_key().ends_with('}'));
    }
}
