//! One token per lifetime across a whole fleet: a token store shared through
//! Redis (feature `redis`).
//!
//! When a service runs as many replicas, each replica's [`TokenCache`] fetches
//! its own token: N processes, N tokens per lifetime, and identity providers
//! rate-limit or bill per token. A [`SharedSource`] wraps any
//! [`TokenSource`](crate::TokenSource) so that the fleet fetches one token
//! between them and shares it through Redis.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_bearer::{BearerAuthLayer, Token, TokenCache, source::FnSource};
//! use tower_bearer::store::{Encryption, EncryptionKey, RedisStore, StoreKey};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let source = FnSource::new(|| async {
//!     // Ask the identity provider here.
//!     Ok::<_, std::io::Error>(Token::bearer("eyJhbGciOi").with_lifetime(Duration::from_secs(3600)))
//! });
//!
//! // What identifies the token: never the client secret.
//! let key = StoreKey::builder()
//!     .token_url("https://idp.example.com/oauth2/token")
//!     .client_id("billing-service")
//!     .scopes(["invoices.read", "invoices.write"])
//!     .build();
//!
//! // Sealed at rest with a key the fleet shares (32 bytes, base64).
//! let sealing = EncryptionKey::from_base64("2026-11", &std::env::var("TOKEN_STORE_KEY")?)?;
//! let store = RedisStore::builder("redis://127.0.0.1:6379/3")?
//!     .key_prefix("billing:tower-bearer:")
//!     .encryption(Encryption::new(sealing))
//!     .build();
//!
//! // The local cache stays in front: Redis is asked only on a local miss or
//! // refresh, never on the hot path.
//! let cache = TokenCache::new(store.share(source, key));
//! let service = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::with_cache(cache))
//!     .service_fn(|_req: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     });
//! # drop(service);
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! On a local fetch, a [`SharedSource`]:
//!
//! 1. reads the token under its key. A token is kept with a Redis TTL equal to
//!    its remaining life less a margin
//!    ([`expiry_margin`](RedisStoreBuilder::expiry_margin)), so Redis drops it
//!    before it dies; its remaining life is computed from that TTL, on the
//!    Redis server's clock, so clock skew between hosts does not matter. A
//!    token without a lifetime, or with a zero one, is kept for the default
//!    lifetime: the cache's rule;
//! 2. on a miss, takes a short lease (`SET <key>:lease <random> NX PX`), one
//!    process at a time. The holder reads again (the token may have landed
//!    meanwhile), asks the wrapped source, writes the token and releases the
//!    lease by compare-and-delete, so it never deletes another holder's lease.
//!    When the lease `SET` gets no answer in time it may still have run, so
//!    the process acts as the holder all the same: it fetches, writes and
//!    releases, rather than leave an orphan lease that stalls the others;
//! 3. without the lease, follows it to its outcome: it polls
//!    ([`poll_interval`](RedisStoreBuilder::poll_interval)) until the
//!    holder's token appears, or the lease is released or expires
//!    ([`lease_ttl`](RedisStoreBuilder::lease_ttl), 15 s by default, longer
//!    than a client-credentials fetch may take), and then races for the next
//!    lease. It never fetches beside a live lease: a holder that fails
//!    slowly is most often waiting on a provider that is timing out, and the
//!    fleet then sends that provider one request at a time, not one per
//!    process. The cache's
//!    [`fetch_timeout`](crate::TokenCacheBuilder::fetch_timeout) bounds the
//!    wait. Anything under the lease key that no holder could have written
//!    (no TTL, not a string) is deleted on the next read.
//!
//! A token read from Redis reaches the local cache with its remaining life,
//! measured by the key's TTL. Near the end of that life the cache would clamp
//! its own margin below the writer's (to a quarter of the remaining life), so
//! there it gets the life Redis keeps it (the remaining life less the writer's
//! margin) and never uses the token later than the writer's cache would.
//!
//! # Which token wins
//!
//! A holder whose fetch outlives its lease is overtaken: another process
//! takes the lease and fetches a newer token. Whichever finishes last, the
//! fleet keeps the newer one. A write never replaces a stored token that
//! ends at least as late as the one written (each token's end being its
//! key's TTL plus its writer's margin), unless the writer is refreshing that
//! very token (its cache has had it) or could not read it (sealed with a key
//! it does not have, or moved, or altered). A value that is not well formed
//! is garbage and always overwritten. The check and the write
//! are one script, atomic on the server. A writer whose token was refused
//! hands its cache the stored one instead, so the whole fleet uses one token,
//! and an older token, which providers that revoke on issue may already have
//! revoked, is not spread.
//!
//! # Refresh ahead without a stampede
//!
//! The local cache refreshes a token ahead of its expiry and, after a 401,
//! asks for a new one. Re-reading Redis must not hand back the very token the
//! cache is trying to replace. So each [`SharedSource`] remembers the tokens
//! it has handed to its cache, recorded before the write that shares one is
//! sent (the write may happen though its reply is lost): when Redis still
//! holds one of them, the cache asked again because it wants a newer token,
//! and the store treats it as a miss (lease, fetch, write). The first process
//! of the fleet whose cache refreshes fetches the new token; every other
//! process finds that new token when its own cache refreshes, and keeps using
//! its current token until then. Refresh jitter in the cache spreads these
//! refreshes out.
//!
//! # Redis is an accelerator, not a dependency
//!
//! Every Redis operation is bounded by
//! [`operation_timeout`](RedisStoreBuilder::operation_timeout) (250 ms by
//! default). Redis down, slow, or holding garbage under the key is a miss:
//! the token is then fetched directly from the wrapped source, and a garbage
//! value is overwritten. A fetch never fails because of Redis, and the wrapped
//! source's errors, [`classify`](crate::TokenSource::classify) and
//! [`kind`](crate::TokenSource::kind) pass through unchanged.
//!
//! If the lease holder's fetch fails, it releases the lease without writing,
//! and the next waiter tries in turn; each process's cache then backs off as
//! usual.
//!
//! # The Redis user: an ACL that is enough
//!
//! Give the store its own key prefix
//! ([`key_prefix`](RedisStoreBuilder::key_prefix)) and a Redis user limited
//! to it and to the commands it runs ([`ACL_COMMANDS`]). Scripts run by hash
//! and are sent whole only when Redis lacks them (`EVALSHA`, then `EVAL`), so
//! no `SCRIPT LOAD` is needed. For the prefix `billing:tower-bearer:`, word
//! for word as the tests create it:
//!
//! ```text
//! ACL SETUSER billing on >password resetkeys ~billing:tower-bearer:* resetchannels -@all +get +set +pttl +del +eval +evalsha
//! ```
//!
//! Add `+select` when the URL names a database other than 0. If Redis
//! refuses the store a command, the store says so once, at warn level, naming
//! the command; each process then fetches its own token, as without Redis.
//!
//! # Redis Cluster
//!
//! The store works the same on a Redis Cluster, a Valkey cluster or a
//! managed service in cluster mode. Build it from a few seed nodes, from
//! which the client learns the others, with [`RedisStore::cluster`], or from
//! a client of your own with [`RedisStore::from_cluster_client`]:
//!
//! ```no_run
//! use tower_bearer::store::RedisStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::cluster([
//!     "redis://billing:password@10.0.1.11:6379",
//!     "redis://billing:password@10.0.2.11:6379",
//! ])?
//! .key_prefix("billing:tower-bearer:")
//! .build();
//! # drop(store);
//! # Ok(()) }
//! ```
//!
//! A cluster runs a script only on keys of one slot, and each operation
//! uses a token's key and its lease's key together. The two keys share the
//! hash tag `{<digest>}` (`<prefix>{<digest>}` and
//! `<prefix>{<digest>}:lease`), so they always land in one slot, and
//! different tokens spread over the nodes. A prefix with a tag of its own
//! (`app{billing}:`) makes that the tag instead: every token then lands in
//! one slot, which suits the few tokens a fleet has. Only a prefix whose
//! first `{` is directly followed by `}` does not work: Redis then hashes
//! each key whole, the two keys fall apart, and building the store warns.
//!
//! The ACL is the one above plus two commands the cluster client sends:
//! `CLUSTER SLOTS`, to learn which node holds which slot (without it the
//! client cannot connect), and `PING`, to check its connections. Redis
//! Cluster does not share users between nodes: create the user on every
//! node (managed services do so from their own user settings).
//!
//! ```text
//! ACL SETUSER billing on >password resetkeys ~billing:tower-bearer:* resetchannels -@all +get +set +pttl +del +eval +evalsha +cluster|slots +ping
//! ```
//!
//! The connection is made on first use, in a few round trips (the seeds,
//! the slot map, every node), on a task of its own: an operation that gives
//! up waiting for it does not abort it. Each operation, the wait included,
//! is still bounded by the
//! [`operation_timeout`](RedisStoreBuilder::operation_timeout), and a cluster
//! that is down or slow is a miss, as a single Redis is. Each node is sent a
//! script whole the first time it lacks it.
//!
//! # Security: tokens at rest
//!
//! Without encryption the access token is stored **in the clear**: anyone who
//! can read the key can use the token until it expires. Turn on
//! [`encryption`](RedisStoreBuilder::encryption) (recommended): each value is
//! sealed with AES-256-GCM under a key the fleet shares, rotated by id (one
//! key writes, older ones still read; see [`Encryption`]). The key id, the
//! Redis key and the token's end (on the writer's clock) are bound into each
//! value, so a value copied to another key or altered is a miss, never a
//! token, and no value is opened more than a minute (the allowance for clock
//! differences) past its end, whatever TTL its key is given. A store with
//! encryption reads no value in the clear.
//!
//! Whoever can write the keys can still delete them, block sharing with
//! values that do not open (each process then fetches its own token), or put
//! back a sealed value seen earlier under the same key before its end: a
//! token that was revoked meanwhile then costs one 401 and a refetch. Scope
//! access with the ACL above, a separate logical database (`redis://host/3`)
//! or a separate Redis instance, and use TLS (`rediss://`) when Redis is not
//! on a trusted network.
//!
//! The client secret never reaches Redis: keys are a SHA-256 of the token's
//! identity (see [`StoreKey`]), and values hold only the token, its type and
//! bookkeeping. Nothing the store logs holds a token.
//!
//! [`TokenCache`]: crate::TokenCache

mod cluster;
mod encryption;
mod key;
mod redis;
mod scripts;
mod shared;
mod value;

pub use self::encryption::{Encryption, EncryptionKey, EncryptionKeyError, KEY_LEN};
pub use self::key::{StoreKey, StoreKeyBuilder};
pub use self::redis::{
    DEFAULT_EXPIRY_MARGIN, DEFAULT_KEY_PREFIX, DEFAULT_LEASE_TTL, DEFAULT_OPERATION_TIMEOUT,
    DEFAULT_POLL_INTERVAL, RedisStore, RedisStoreBuilder,
};
pub use self::scripts::ACL_COMMANDS;
pub use self::shared::SharedSource;
