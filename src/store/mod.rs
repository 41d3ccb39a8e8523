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
//! use tower_bearer::store::{RedisStore, StoreKey};
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
//! let store = RedisStore::builder("redis://127.0.0.1:6379/3")?
//!     .key_prefix("billing:tower-bearer:")
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
//!    Redis server's clock, so clock skew between hosts does not matter;
//! 2. on a miss, takes a short lease (`SET <key>:lease <random> NX PX`), one
//!    process at a time. The holder reads again (the token may have landed
//!    meanwhile), asks the wrapped source, writes the token and releases the
//!    lease by compare-and-delete, so it never deletes another holder's lease.
//!    When the lease `SET` gets no answer in time it may still have run, so
//!    the process acts as the holder all the same: it fetches, writes and
//!    releases, rather than leave an orphan lease that stalls the others;
//! 3. without the lease, polls for the token to appear
//!    ([`poll_interval`](RedisStoreBuilder::poll_interval), up to
//!    [`max_wait`](RedisStoreBuilder::max_wait), 20 s by default). A holder
//!    that dies lets its lease expire
//!    ([`lease_ttl`](RedisStoreBuilder::lease_ttl), 15 s by default, longer
//!    than a client-credentials fetch may take) and a waiter takes over; past
//!    the wait, the process fetches on its own. Anything under the lease key
//!    that no holder could have written (no TTL, not a string) is deleted on
//!    the next read.
//!
//! A token read from Redis reaches the local cache with its remaining life,
//! measured by the key's TTL. Near the end of that life the cache would clamp
//! its own margin below the writer's (to a quarter of the remaining life), so
//! there it gets the life Redis keeps it (the remaining life less the writer's
//! margin) and never uses the token later than the writer's cache would.
//!
//! # Refresh ahead without a stampede
//!
//! The local cache refreshes a token ahead of its expiry and, after a 401,
//! asks for a new one. Re-reading Redis must not hand back the very token the
//! cache is trying to replace. So each [`SharedSource`] remembers the token
//! it last handed to its cache: when Redis still holds that one, the cache
//! asked again because it wants a newer token, and the store treats it as a
//! miss (lease, fetch, write). The first process of the fleet whose cache
//! refreshes fetches the new token; every other process finds that new token
//! when its own cache refreshes, and keeps using its current token until then.
//! Refresh jitter in the cache spreads these refreshes out.
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
//! # Security: who can read Redis can read the token
//!
//! The access token is stored in Redis **in the clear**: anyone who can read
//! the key can use the token until it expires, and anyone who can write it can
//! choose the token your processes send. Scope that access:
//!
//! - give the store its own key prefix
//!   ([`key_prefix`](RedisStoreBuilder::key_prefix)) and a Redis ACL user
//!   limited to it, e.g.
//!   `ACL SETUSER billing on >password ~billing:tower-bearer:* +get +set +pttl +exists +del +eval +evalsha`;
//! - or a separate logical database (`redis://host/3`) or a separate Redis
//!   instance for tokens;
//! - use TLS (`rediss://`) when Redis is not on a trusted network.
//!
//! The client secret never reaches Redis: keys are a SHA-256 of the token's
//! identity (see [`StoreKey`]), and values hold only the token, its type and
//! bookkeeping. Nothing the store logs holds a token.
//!
//! [`TokenCache`]: crate::TokenCache

mod key;
mod redis;

pub use self::key::{StoreKey, StoreKeyBuilder};
pub use self::redis::{
    DEFAULT_EXPIRY_MARGIN, DEFAULT_KEY_PREFIX, DEFAULT_LEASE_TTL, DEFAULT_MAX_WAIT,
    DEFAULT_OPERATION_TIMEOUT, DEFAULT_POLL_INTERVAL, RedisStore, RedisStoreBuilder, SharedSource,
};
