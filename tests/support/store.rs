//! What the Redis store's tests share: sources that count, wait or fail,
//! the key and store settings, a request through the layer, and a proxy in
//! front of Redis that holds back one reply.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::{Instant, timeout};
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::store::{RedisStore, StoreKey};
use tower_bearer::{BearerAuthLayer, Token, TokenCache, TokenSource};

use super::processes::RedisServer;

pub const CLIENT_SECRET: &str = "client-secret-must-never-reach-redis";
pub const FETCH_LATENCY: Duration = Duration::from_millis(100);

/// A store with its own connection, and test-friendly timings.
pub fn store(server: &RedisServer) -> RedisStore {
    RedisStore::builder(server.url.as_str())
        .expect("valid url")
        .poll_interval(Duration::from_millis(20))
        .build()
}

/// A source that counts its calls, takes a while, and yields
/// `token-<n>` for the `n`th call.
#[derive(Clone, Default)]
pub struct CountingSource {
    pub calls: Arc<AtomicUsize>,
}

impl CountingSource {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl TokenSource for CountingSource {
    type Error = Infallible;

    async fn fetch(&self) -> Result<Token, Infallible> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(FETCH_LATENCY).await;
        Ok(Token::bearer(format!("token-{n}")).with_lifetime(Duration::from_secs(3600)))
    }
}

/// A source whose fetch never finishes: a process that stops mid-fetch.
#[derive(Clone, Default)]
pub struct StuckSource {
    pub calls: Arc<AtomicUsize>,
}

impl TokenSource for StuckSource {
    type Error = Infallible;

    async fn fetch(&self) -> Result<Token, Infallible> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }
}

/// A source whose `n`th fetch yields `token-<n>` (living `lifetime`) only
/// once the test opens gate `n` (counted from 1).
#[derive(Clone)]
pub struct GatedSource {
    pub calls: Arc<AtomicUsize>,
    gates: Arc<Vec<tokio::sync::Semaphore>>,
    lifetime: Duration,
}

impl GatedSource {
    pub fn new(gates: usize, lifetime: Duration) -> Self {
        Self {
            calls: Arc::default(),
            gates: Arc::new((0..gates).map(|_| tokio::sync::Semaphore::new(0)).collect()),
            lifetime,
        }
    }

    pub fn open(&self, n: usize) {
        self.gates[n - 1].add_permits(1);
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl TokenSource for GatedSource {
    type Error = Infallible;

    async fn fetch(&self) -> Result<Token, Infallible> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.gates[n - 1]
            .acquire()
            .await
            .expect("gates are never closed")
            .forget();
        Ok(Token::bearer(format!("token-{n}")).with_lifetime(self.lifetime))
    }
}

pub fn key() -> StoreKey {
    StoreKey::builder()
        .token_url("https://idp.example.com/oauth2/token")
        .client_id("billing-service")
        .scopes(["invoices.read", "invoices.write"])
        .param("audience", "https://api.example.com")
        // Ignored by the builder: credentials never identify a token.
        .param("client_secret", CLIENT_SECRET)
        .build()
}

/// Sends one request through a layer over `cache`; the response body is
/// the `Authorization` header the request carried.
pub async fn authorization(cache: &TokenCache) -> String {
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service_fn(|req: http::Request<()>| async move {
            let value = req.headers()["authorization"].to_str().unwrap().to_owned();
            Ok::<_, Infallible>(http::Response::new(value))
        });
    let response = service
        .oneshot(http::Request::new(()))
        .await
        .expect("request served");
    response.into_body()
}

/// The header a request gets, asserting that it came promptly: well under
/// the lease, wait and timeout settings that a stall would run into.
pub async fn authorization_promptly(cache: &TokenCache) -> String {
    let started = Instant::now();
    let value = with_deadline(authorization(cache)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    value
}

pub async fn with_deadline<F: std::future::Future>(future: F) -> F::Output {
    timeout(Duration::from_secs(8), future)
        .await
        .expect("finished well within the deadline: nothing hangs")
}

/// Polls Redis until `key` exists.
pub async fn wait_for_key(redis: &RedisServer, key: &str) {
    use redis::AsyncCommands;
    let mut conn = redis.connect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let exists: bool = conn.exists(key).await.unwrap();
        if exists {
            return;
        }
        assert!(Instant::now() < deadline, "{key} never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a proxy does to the reply it holds back.
#[derive(Clone, Copy)]
pub enum LostReply {
    /// Sends it, and every reply after it, this late.
    Late(Duration),
    /// Closes the client's connection instead of sending it.
    Dropped,
}

/// A proxy in front of Redis that holds back the reply to the first command
/// whose bytes contain `marker`: Redis runs the command, the client never
/// gets its answer in time. Returns the proxy's URL.
pub async fn reply_losing_proxy(
    redis: &RedisServer,
    marker: &'static [u8],
    lost: LostReply,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    let upstream = redis
        .url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lost_once = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let hold = Arc::new(AtomicBool::new(false));
            let (hold_up, lost_once) = (hold.clone(), lost_once.clone());
            tokio::spawn(async move {
                let mut buf = vec![0; 65536];
                while let Ok(n) = client_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if buf[..n].windows(marker.len()).any(|w| w == marker)
                        && !lost_once.swap(true, Ordering::SeqCst)
                    {
                        hold_up.store(true, Ordering::SeqCst);
                    }
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0; 65536];
                while let Ok(n) = server_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if hold.swap(false, Ordering::SeqCst) {
                        match lost {
                            LostReply::Late(delay) => tokio::time::sleep(delay).await,
                            LostReply::Dropped => break,
                        }
                    }
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                // Dropping both halves closes the client's connection.
            });
        }
    });
    format!("redis://{addr}/")
}

/// Log lines, captured: a writer for `tracing_subscriber`.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Captures every event of this thread, at every level, until the
    /// guard drops.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The lines at warn level.
    pub fn warnings(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains(" WARN "))
            .map(str::to_owned)
            .collect()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A keyed source that counts its fetches per resource and yields
/// `<resource>-<n>`.
#[derive(Clone, Default)]
pub struct PerResource {
    resource: String,
    pub calls: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

impl TokenSource for PerResource {
    type Error = std::convert::Infallible;

    async fn fetch(&self) -> Result<Token, Self::Error> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(self.resource.clone()).or_default();
            *n += 1;
            *n
        };
        tokio::time::sleep(FETCH_LATENCY).await;
        Ok(
            Token::bearer(format!("{}-{n}", self.resource))
                .with_lifetime(Duration::from_secs(3600)),
        )
    }
}

impl tower_bearer::KeyedTokenSource for PerResource {
    type Keyed = PerResource;

    fn for_params(&self, params: &tower_bearer::TokenParams) -> Result<Self, Self::Error> {
        Ok(PerResource {
            resource: params.resources().join(" "),
            calls: self.calls.clone(),
        })
    }
}

/// Six "processes" (each its own store and keyed cache) ask for two
/// resources at once: the source is asked twice in all, once per resource,
/// and every process gets each resource's one token.
pub async fn six_processes_two_resources_two_fetches(store: impl Fn() -> RedisStore) {
    let source = PerResource::default();
    let resources = ["https://orders.example.com", "https://billing.example.com"];
    let barrier = Arc::new(tokio::sync::Barrier::new(12));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let cache = TokenCache::keyed(store().share(source.clone(), key()));
        for resource in resources {
            let cache = cache.clone();
            let barrier = barrier.clone();
            tasks.spawn(async move {
                barrier.wait().await;
                let params = tower_bearer::TokenParams::for_resource(resource);
                let key = cache.for_params(&params).unwrap();
                (resource, authorization(&key).await)
            });
        }
    }
    for (resource, header) in with_deadline(tasks.join_all()).await {
        assert_eq!(header, format!("Bearer {resource}-1"));
    }
    let calls = source.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.values().all(|n| *n == 1), "{calls:?}");
}

/// Eight caches, each over its own shared source from `store`, asked at
/// once: the source is asked once, and every cache gets its token.
pub async fn eight_caches_make_one_fetch(store: impl Fn() -> RedisStore) {
    let source = CountingSource::default();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let cache = TokenCache::new(store().share(source.clone(), key()));
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let header = authorization(&cache).await;
            (header, cache.stats().fetches_started)
        });
    }
    let results = with_deadline(tasks.join_all()).await;
    assert_eq!(
        source.calls(),
        1,
        "one source fetch across all eight caches"
    );
    for (header, local_fetches) in results {
        assert_eq!(header, "Bearer token-1");
        assert_eq!(local_fetches, 1);
    }
}
