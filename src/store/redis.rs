//! The Redis store: its settings, its connection and the few operations the
//! sharing protocol needs, each one round trip within a timeout.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{
    Client, ErrorKind, FromRedisValue, IntoConnectionInfo, RedisError, RedisResult, ServerErrorKind,
};

use super::cluster::{ClusterLink, Conn};
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

/// The commands the cluster client sends besides the store's own
/// ([`ACL_COMMANDS`]), as Redis ACL rules: `CLUSTER SLOTS` to learn which
/// node holds which slot, and `PING` to check its connections.
const CLUSTER_ACL_COMMANDS: &str = "+cluster|slots +ping";
/// How often the cluster client of [`RedisStore::cluster`] retries a
/// command: enough to follow a redirect after a resharding or to reconnect
/// to a node. More would not fit in an operation timeout.
const CLUSTER_RETRIES: u32 = 2;
/// The cluster client's wait before retrying a command that the cluster
/// asked to retry later (`TRYAGAIN`, `CLUSTERDOWN`), least and most, in
/// milliseconds: short enough to fit in an operation timeout. Its own
/// default starts above a second.
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (10, 100);
/// A fleet-wide token store on Redis. Cheap to clone.
///
/// Build it with [`RedisStore::builder`] (from a URL), [`RedisStore::from_client`]
/// or [`RedisStore::from_connection_manager`], or for a Redis Cluster with
/// [`RedisStore::cluster`] or [`RedisStore::from_cluster_client`], then wrap
/// each token source with [`RedisStore::share`]. Building it connects to
/// nothing and needs no runtime: the connection is made on first use, and
/// Redis being down then is a miss, not an error. See the
/// [module docs](super) for the protocol, the ACL it needs and who can read
/// the tokens.
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
    Cluster(Arc<ClusterLink>),
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

    /// A builder for a store on a Redis Cluster (or a Valkey cluster, or a
    /// managed service in cluster mode) found through `nodes`: one or more
    /// seed nodes (`redis://[user:password@]host:port`, or `rediss://` for
    /// TLS when redis-rs is built with a TLS feature), from which the client
    /// learns the others. See [Redis Cluster](super#redis-cluster).
    ///
    /// The client retries a command at most twice (a redirect after a
    /// resharding, a reconnect), and its connection and response timeouts
    /// are the [`operation_timeout`](RedisStoreBuilder::operation_timeout).
    ///
    /// Fails only if a URL cannot be parsed, or if the seeds cannot make one
    /// cluster client: none given, or a seed whose TLS mode or protocol, or
    /// whose user name or password where the first seed has one, differs
    /// from the first seed's. Nothing is connected yet: the connection is made on first
    /// use, and the cluster being down then is a miss, not an error.
    pub fn cluster(
        nodes: impl IntoIterator<Item = impl IntoConnectionInfo>,
    ) -> Result<RedisStoreBuilder, RedisError> {
        let (least_wait, most_wait) = CLUSTER_RETRY_WAIT_MS;
        let client = ClusterClientBuilder::new(nodes)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(least_wait)
            .max_retry_wait(most_wait)
            .build()?;
        Ok(Self::from_cluster_client(client))
    }

    /// A builder for a store on a Redis Cluster reached through `client`.
    ///
    /// Its connection and response timeouts are replaced by the
    /// [`operation_timeout`](RedisStoreBuilder::operation_timeout); its
    /// retries are its own. Keep them few and their waits short
    /// ([`ClusterClientBuilder::retries`],
    /// [`max_retry_wait`](ClusterClientBuilder::max_retry_wait)): an
    /// operation gives up at the operation timeout whatever the client
    /// still means to try. Nothing is connected yet.
    pub fn from_cluster_client(client: ClusterClient) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Connection::Cluster(Arc::new(ClusterLink::new(client))))
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

    /// The connection to run an operation on: for a cluster, once connected.
    async fn connection(&self) -> RedisResult<Conn> {
        let timeout = self.inner.config.operation_timeout;
        match &self.inner.connection {
            Connection::Ready(manager) => Ok(Conn::Single(manager.clone())),
            Connection::Lazy { client, manager } => {
                if let Some(manager) = manager.get() {
                    return Ok(Conn::Single(manager.clone()));
                }
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    // Each operation is bounded anyway; a failed connection is
                    // retried by the next operation.
                    .set_number_of_retries(1);
                let created = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
                Ok(Conn::Single(manager.get_or_init(|| created).clone()))
            }
            Connection::Cluster(link) => link.connection(timeout).await.map(Conn::Cluster),
        }
    }

    /// Runs one Redis operation (`what`, for the permission warning) within
    /// the operation timeout, connecting first if need be.
    async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, Unavailable>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let operation = async { op(self.connection().await?).await };
        match tokio::time::timeout(self.inner.config.operation_timeout, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.report_if_denied(what, &error);
                if let Connection::Cluster(link) = &self.inner.connection
                    && (error.is_unrecoverable_error() || error.is_connection_dropped())
                {
                    // The connection's driver task is gone (its runtime shut
                    // down) or the link broke: connect afresh next time,
                    // rather than stay a miss for good.
                    link.forget_connection();
                }
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
        let needed = match self.inner.connection {
            Connection::Cluster(_) => format!("{ACL_COMMANDS} {CLUSTER_ACL_COMMANDS}"),
            _ => ACL_COMMANDS.to_owned(),
        };
        tracing::warn!(
            denied = %denied,
            needed = needed.as_str(),
            "Redis refused the token store's '{denied}' command for lack of permission: \
             tokens are not shared and each process fetches its own; give the store's Redis \
             user the ACL in the tower_bearer::store docs"
        );
    }

    /// Runs `script`: by hash, and whole when Redis does not have it yet. On
    /// a cluster each node keeps its own scripts; both commands go to the
    /// node of the first key.
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

/// Whether Redis Cluster hashes every key that starts with `prefix` whole,
/// whatever follows: the prefix's first `{` is directly followed by `}`, an
/// empty hash tag. A token's key and its lease's key then fall in different
/// slots, and no script can use both.
fn prefix_voids_hash_tag(prefix: &str) -> bool {
    prefix
        .find('{')
        .is_some_and(|open| prefix[open + 1..].starts_with('}'))
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
        if matches!(self.connection, Connection::Cluster(_))
            && prefix_voids_hash_tag(&self.config.key_prefix)
        {
            tracing::warn!(
                key_prefix = self.config.key_prefix.as_str(),
                "the token store's key prefix holds an empty hash tag ('{{}}' after its first \
                 '{{'): on a Redis Cluster a token's key and its lease's key then fall in \
                 different slots, tokens are not shared and each process fetches its own"
            );
        }
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

        let builder = RedisStore::cluster([
            "redis://user:hunter2@10.1.2.3:7000/",
            "redis://user:hunter2@10.1.2.4:7001/",
        ])
        .unwrap();
        let printed = format!("{builder:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("10.1.2"));
        let store = builder.build();
        let printed = format!("{store:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("10.1.2"));
        assert!(printed.contains("operation_timeout"), "{printed}");
    }

    #[test]
    fn cluster_seeds_are_parsed_and_nothing_connects() {
        // Unreachable seeds: building neither connects nor needs a runtime.
        let store = RedisStore::cluster(["redis://127.0.0.1:1/", "redis://127.0.0.1:2/"])
            .unwrap()
            .build();
        assert!(matches!(
            &store.inner.connection,
            Connection::Cluster(link) if link.is_idle()
        ));
        assert!(RedisStore::cluster(["not a url"]).is_err());
        let no_seeds: [&str; 0] = [];
        assert!(RedisStore::cluster(no_seeds).is_err());
    }

    /// The token key and the lease key of each prefix, as the store names
    /// them.
    fn keys(prefix: &str) -> (String, String) {
        let store = RedisStore::builder("redis://127.0.0.1:1/")
            .unwrap()
            .key_prefix(prefix)
            .build();
        let source = store.share(
            crate::source::StaticSource::new(crate::token::Token::bearer("t")),
            StoreKey::builder().client_id("svc").build(),
        );
        let token_key = source.redis_key().to_owned();
        // As `SharedSource` names the lease.
        let lease_key = format!("{token_key}:lease");
        (token_key, lease_key)
    }

    #[test]
    fn the_cluster_acl_in_the_docs_adds_the_cluster_commands() {
        let docs = include_str!("mod.rs");
        let lines: Vec<&str> = docs
            .lines()
            .map(|line| line.trim_start_matches("//!").trim())
            .filter(|line| line.starts_with("ACL SETUSER "))
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].ends_with(ACL_COMMANDS), "{}", lines[0]);
        assert_eq!(
            lines[1],
            format!("{} {CLUSTER_ACL_COMMANDS}", lines[0]),
            "the cluster's ACL is the single node's plus the cluster commands"
        );
    }

    #[test]
    fn token_and_lease_keys_share_a_cluster_slot() {
        use redis::cluster_routing::Slot;

        for prefix in [
            DEFAULT_KEY_PREFIX,
            "",
            "billing:tower-bearer:",
            // A tag of the prefix's own: every key on one slot, still
            // both keys of a token together.
            "app{billing}:",
            "{billing}",
            // Braces that make no tag of their own.
            "app{:",
            "a}b{",
            "}{",
            "{",
            "}",
            "x{y{",
        ] {
            let (token_key, lease_key) = keys(prefix);
            assert!(!prefix_voids_hash_tag(prefix), "{prefix}");
            assert_eq!(
                Slot::for_key(&token_key),
                Slot::for_key(&lease_key),
                "prefix {prefix:?}: {token_key} and {lease_key}"
            );
        }

        // Without braces of its own, the tag is the digest: tokens spread
        // over the cluster.
        let (token_key, _) = keys(DEFAULT_KEY_PREFIX);
        let digest = token_key
            .strip_prefix("tower-bearer:{")
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap();
        assert_eq!(Slot::for_key(&token_key), Slot::for_key(digest));

        // An empty tag in the prefix makes Redis hash the whole key: the one
        // prefix the store cannot work with on a cluster, and warns about.
        for prefix in ["{}", "app{}:", "a{}{b}:"] {
            assert!(prefix_voids_hash_tag(prefix), "{prefix}");
            let (token_key, lease_key) = keys(prefix);
            assert_ne!(Slot::for_key(&token_key), Slot::for_key(&lease_key));
        }
    }
}
