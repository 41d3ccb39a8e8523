//! The Redis store: its settings, its connection and the few operations the
//! sharing protocol needs, each one round trip within a timeout.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{
    Client, ErrorKind, FromRedisValue, IntoConnectionInfo, RedisError, RedisResult, ServerErrorKind,
};

use super::encryption::Encryption;
use super::key::StoreKey;
use super::scripts::{ACL_COMMANDS, LEASE_CLEARED, LuaScript, Scripts};
use super::shared::SharedSource;
use super::value::{Encoded, Format, MAX_VALUE_LEN, Shared, Unreadable, millis};
use crate::cache::{DEFAULT_LIFETIME, MAX_LIFETIME, default_lifetime};
use crate::source::TokenSource;

/// Default for [`RedisStoreBuilder::key_prefix`]: `tower-bearer:`.
pub const DEFAULT_KEY_PREFIX: &str = "tower-bearer:";
/// Default for [`RedisStoreBuilder::operation_timeout`]: 250 milliseconds.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_millis(250);
/// Default for [`RedisStoreBuilder::lease_ttl`]: 15 seconds, comfortably
/// longer than a client-credentials fetch may take (its default timeout is
/// 10 s) plus the Redis operations around it, and shorter than the cache's
/// [`DEFAULT_FETCH_TIMEOUT`](crate::cache::DEFAULT_FETCH_TIMEOUT) (30 s).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// Default for [`RedisStoreBuilder::poll_interval`]: 50 milliseconds.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Default for [`RedisStoreBuilder::expiry_margin`]: 30 seconds, as the
/// cache's [`DEFAULT_EXPIRY_MARGIN`](crate::cache::DEFAULT_EXPIRY_MARGIN).
pub const DEFAULT_EXPIRY_MARGIN: Duration = crate::cache::DEFAULT_EXPIRY_MARGIN;

/// A fleet-wide token store on Redis. Cheap to clone.
///
/// Build it with [`RedisStore::builder`] (from a URL), [`RedisStore::from_client`]
/// or [`RedisStore::from_connection_manager`], then wrap each token source with
/// [`RedisStore::share`]. Building it connects to nothing and needs no
/// runtime: the connection is made on first use, and Redis being down then is
/// a miss, not an error. See the [module docs](super) for the protocol, the
/// ACL it needs and who can read the tokens.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    connection: Connection,
    config: StoreConfig,
    scripts: Scripts,
    /// Set once Redis has refused a command for lack of permission.
    denial_reported: AtomicBool,
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
    poll_interval: Duration,
    expiry_margin: Duration,
    default_lifetime: Duration,
    encryption: Option<Arc<Encryption>>,
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
        // The digest is the hash tag: the token and its lease share a slot
        // on a Redis Cluster.
        let token_key = format!("{}{{{}}}", self.inner.config.key_prefix, key.digest());
        SharedSource::new(self.clone(), source, key, token_key)
    }

    /// The prefix of every key this store writes.
    pub fn key_prefix(&self) -> &str {
        &self.inner.config.key_prefix
    }

    /// How often a waiting process looks for the token.
    pub(super) fn poll_interval(&self) -> Duration {
        self.inner.config.poll_interval
    }

    /// How values under `redis_key` are written and read.
    pub(super) fn format<'a>(&'a self, redis_key: &'a str) -> Format<'a> {
        let config = &self.inner.config;
        Format {
            expiry_margin: config.expiry_margin,
            default_lifetime: config.default_lifetime,
            encryption: config.encryption.as_deref(),
            redis_key,
            unix_now_ms: unix_now_ms(),
        }
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

    /// Runs one Redis operation (`what`, for the permission warning) within
    /// the operation timeout.
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, Unavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let manager = self.manager()?;
        match tokio::time::timeout(self.inner.config.operation_timeout, op(manager)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.report_if_denied(what, &error);
                Err(Unavailable::Redis(error))
            }
            Err(_) => Err(Unavailable::Timeout),
        }
    }

    /// Says once, at warn level, that Redis refuses the store a command:
    /// sharing is then off, and nothing else would tell.
    fn report_if_denied(&self, what: &str, error: &RedisError) {
        let Some(denied) = denied_command(what, error) else {
            return;
        };
        if self.inner.denial_reported.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(
            denied = %denied,
            needed = ACL_COMMANDS,
            "Redis refused the token store's '{denied}' command for lack of permission: \
             tokens are not shared and each process fetches its own; give the store's Redis \
             user the ACL in the tower_bearer::store docs"
        );
    }

    /// Runs `script`: by hash, and whole when Redis does not have it yet.
    async fn eval<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        keys: &[&str],
        args: &[String],
    ) -> Result<T, Unavailable> {
        self.run(script.name, |mut conn| async move {
            let invocation = |verb: &str, body: &str| {
                let mut cmd = redis::cmd(verb);
                cmd.arg(body).arg(keys.len()).arg(keys).arg(args);
                cmd
            };
            match invocation("EVALSHA", &script.hash)
                .query_async(&mut conn)
                .await
            {
                Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    invocation("EVAL", script.source)
                        .query_async(&mut conn)
                        .await
                }
                other => other,
            }
        })
        .await
    }

    /// What is under `token_key` and whether `lease_key` is held.
    pub(super) async fn read(&self, token_key: &str, lease_key: &str) -> Result<Read, Unavailable> {
        let (value, pttl, lease_pttl): (Option<Vec<u8>>, i64, i64) = self
            .eval(
                &self.inner.scripts.read,
                &[token_key, lease_key],
                &[MAX_VALUE_LEN.to_string()],
            )
            .await?;
        if lease_pttl == LEASE_CLEARED {
            tracing::debug!(
                key = lease_key,
                "deleted a lease without a TTL or of the wrong type"
            );
        }
        // PTTL is -2 for a missing key; a live lease has 0 or more left.
        Ok(Read {
            found: self.found(token_key, value, pttl),
            lease_held: lease_pttl >= 0,
        })
    }

    /// Takes the lease if nobody holds it.
    pub(super) async fn try_lease(
        &self,
        lease_key: &str,
        lease_value: &str,
    ) -> Result<bool, Unavailable> {
        let ttl_ms = millis(self.inner.config.lease_ttl).max(1);
        let reply: Option<String> = self
            .run("set", |mut conn| async move {
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

    /// Deletes the lease if it is still `lease_value`.
    pub(super) async fn release(
        &self,
        lease_key: &str,
        lease_value: &str,
    ) -> Result<(), Unavailable> {
        let _: i64 = self
            .eval(
                &self.inner.scripts.release,
                &[lease_key],
                &[lease_value.to_owned()],
            )
            .await?;
        Ok(())
    }

    /// Writes `encoded` unless the stored token ends at least as late and
    /// its id is not in `replaceable`, and releases the lease if it is still
    /// ours. `None` when it wrote; otherwise what it
    /// kept.
    pub(super) async fn write(
        &self,
        token_key: &str,
        (lease_key, lease_value): (&str, &str),
        encoded: Encoded,
        replaceable: impl IntoIterator<Item = String>,
    ) -> Result<Option<Found>, Unavailable> {
        let mut args = vec![
            encoded.value,
            encoded.ttl_ms.to_string(),
            lease_value.to_owned(),
            MAX_VALUE_LEN.to_string(),
            encoded.margin_ms.to_string(),
        ];
        args.extend(replaceable);
        let (written, kept, pttl): (i64, Option<Vec<u8>>, i64) = self
            .eval(&self.inner.scripts.write, &[token_key, lease_key], &args)
            .await?;
        if written == 1 {
            return Ok(None);
        }
        Ok(Some(self.found(token_key, kept, pttl)))
    }

    /// A value read from `token_key`, decoded.
    fn found(&self, token_key: &str, value: Option<Vec<u8>>, pttl: i64) -> Found {
        let Some(value) = value else {
            return Found::Nothing;
        };
        match self.format(token_key).decode(&value, pttl) {
            Ok(shared) => Found::Token(shared),
            Err(unreadable) => Found::Unreadable(unreadable),
        }
    }
}

/// The command a permission error names, if `error` is one; `what` is the
/// operation that got it.
fn denied_command(what: &str, error: &RedisError) -> Option<String> {
    let text = error.to_string();
    // A command refused inside a script: Redis 7.0 does not say which.
    if text.contains("can't run this command") {
        return Some(format!("one of the commands inside the {what}"));
    }
    if error.kind() != ErrorKind::Server(ServerErrorKind::NoPerm) {
        return None;
    }
    // "no permissions to access one of the keys" (7.0), "... a key" (7.2).
    if text.contains("access") {
        return Some(format!("{what}, on a key outside the user's key pattern"));
    }
    // "... no permissions to run the 'evalsha' command"
    let named = text.split('\'').nth(1).filter(|name| !name.is_empty());
    Some(named.unwrap_or(what).to_owned())
}

/// Now, in milliseconds since the Unix epoch; 0 for a clock before it.
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis)
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
                poll_interval: DEFAULT_POLL_INTERVAL,
                expiry_margin: DEFAULT_EXPIRY_MARGIN,
                default_lifetime: DEFAULT_LIFETIME,
                encryption: None,
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
    /// others this long, and the others wait on a live lease rather than
    /// fetch on their own. Make it comfortably longer than the wrapped
    /// source's timeout plus a few Redis operations (a fetch that outlives
    /// its lease lets a waiter fetch a second token), and shorter than the
    /// cache's [`fetch_timeout`](crate::TokenCacheBuilder::fetch_timeout)
    /// (a waiter gives up then).
    ///
    /// Defaults to [`DEFAULT_LEASE_TTL`] (15 s).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = ttl.min(MAX_LIFETIME);
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

    /// The lifetime assumed for a token whose source did not say, or said
    /// zero: the cache's rule. Match the cache's
    /// [`default_lifetime`](crate::TokenCacheBuilder::default_lifetime).
    ///
    /// Defaults to the cache's [`DEFAULT_LIFETIME`] (5 minutes).
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.default_lifetime = default_lifetime(lifetime);
        self
    }

    /// Seals every token written with AES-256-GCM, and reads only sealed
    /// values: see [`Encryption`]. Recommended wherever more than the
    /// fleet itself can read the Redis.
    ///
    /// Defaults to none: tokens are stored in the clear.
    pub fn encryption(mut self, encryption: Encryption) -> Self {
        self.config.encryption = Some(Arc::new(encryption));
        self
    }

    /// Builds the store. Connects to nothing.
    pub fn build(self) -> RedisStore {
        RedisStore {
            inner: Arc::new(StoreInner {
                connection: self.connection,
                config: self.config,
                scripts: Scripts::new(),
                denial_reported: AtomicBool::new(false),
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

/// What a read found under the key.
pub(super) struct Read {
    pub(super) found: Found,
    pub(super) lease_held: bool,
}

/// The value under the key.
pub(super) enum Found {
    Nothing,
    Token(Shared),
    Unreadable(Unreadable),
}

/// Why Redis could not be used for this fetch.
pub(super) enum Unavailable {
    Redis(RedisError),
    Timeout,
}

impl Unavailable {
    /// Whether the command may have run though no answer came: a timeout
    /// or a lost connection, not a refusal.
    pub(super) fn outcome_unknown(&self) -> bool {
        match self {
            Unavailable::Timeout => true,
            Unavailable::Redis(error) => {
                error.is_timeout() || error.is_connection_dropped() || error.is_io_error()
            }
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Redis(error) => write!(f, "redis error: {error}"),
            Unavailable::Timeout => f.write_str("redis did not answer in time"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timings_nest() {
        // A fetch that outlives its lease lets a waiter fetch a second token;
        // a lease that outlives the cache's fetch timeout fails its waiters.
        #[cfg(feature = "client-credentials")]
        let fetch = crate::source::client_credentials::DEFAULT_TIMEOUT;
        #[cfg(not(feature = "client-credentials"))]
        let fetch = Duration::from_secs(10);
        assert!(
            DEFAULT_LEASE_TTL >= fetch + 4 * DEFAULT_OPERATION_TIMEOUT + Duration::from_secs(3)
        );
        assert!(crate::cache::DEFAULT_FETCH_TIMEOUT > DEFAULT_LEASE_TTL);
    }

    #[test]
    fn huge_settings_are_capped() {
        let store = RedisStore::builder("redis://127.0.0.1:1/")
            .unwrap()
            .operation_timeout(Duration::MAX)
            .lease_ttl(Duration::MAX)
            .poll_interval(Duration::MAX)
            .expiry_margin(Duration::MAX)
            .default_lifetime(Duration::MAX)
            .build();
        let config = &store.inner.config;
        for setting in [
            config.operation_timeout,
            config.lease_ttl,
            config.poll_interval,
            config.expiry_margin,
            config.default_lifetime,
        ] {
            assert!(setting <= MAX_LIFETIME);
        }
    }

    #[test]
    fn debug_shows_no_connection_details() {
        use crate::store::{EncryptionKey, StoreKey};
        use crate::token::Token;

        let store = RedisStore::builder("redis://user:hunter2@127.0.0.1:1/0")
            .unwrap()
            .encryption(Encryption::new(
                EncryptionKey::new("k1", &[0x5a; 32]).unwrap(),
            ))
            .build();
        let printed = format!("{store:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("k1") && !printed.contains("90, 90"),
            "{printed}"
        );
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
