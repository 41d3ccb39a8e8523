//! The token endpoint discovered from the issuer
//! ([`ClientCredentials::discover`]), against real servers on loopback: an
//! identity provider that serves OpenID Connect or RFC 8414 metadata beside
//! its token endpoint, a token endpoint that verifies client assertions, and
//! an HTTPS issuer whose mutual-TLS alias binds tokens to the client's
//! certificate.
//!
//! Nothing here waits on a clock to synchronise: slow answers wait on a gate
//! the test opens once every caller is known to wait (their futures polled,
//! each fetch parked on the discovery). The tests of backoff pause Tokio's
//! clock and advance it; it runs only while a request is on the wire (see
//! [`with_clock_running`]).
#![cfg(feature = "client-credentials")]

mod support;

use support::error_chain as chain;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use http::{Method, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::source::client_auth::{AssertionAudience, AuthMethod, PrivateKey};
use tower_bearer::source::client_credentials::BuildError;
use tower_bearer::source::discovery::{DiscoveryError, FIRST_RETRY_DELAY, NoDocument};
use tower_bearer::{
    AuthStyle, BearerAuthLayer, ClientCredentials, ClientCredentialsError, Error, ErrorClass,
    KeyedTokenSource, Token, TokenCache, TokenError, TokenParams, TokenSource,
};

use support::assertion::{AssertionEndpoint, Verifier};
use support::keys::{KeyKind, TestKey};
use support::{TestServer, authorization, echo, respond};

/// The OpenID Connect document, after the issuer's path.
const OPENID: &str = "/.well-known/openid-configuration";
/// The RFC 8414 document, before the issuer's path.
const OAUTH: &str = "/.well-known/oauth-authorization-server";
/// A guard against a hang, never a means of synchronisation.
const GUARD: Duration = Duration::from_secs(10);
/// The client secret: it must never show in an error.
const SECRET: &str = "s3cret-never-shown";
const CLIENT: &str = "svc-client";

/// A gate that answers wait at until the test opens it.
#[derive(Clone)]
struct Gate(Arc<Semaphore>);

impl Gate {
    fn new(open: bool) -> Gate {
        Gate(Arc::new(Semaphore::new(usize::from(open))))
    }

    fn open(&self) {
        self.0.add_permits(1);
    }

    async fn pass(&self) {
        // The permit goes back when dropped: once open, always open.
        drop(self.0.acquire().await.unwrap());
    }
}

/// Waits for `n` permits of `semaphore`, failing the test after [`GUARD`].
async fn take(semaphore: &Semaphore, n: u32, what: &str) {
    tokio::time::timeout(GUARD, semaphore.acquire_many(n))
        .await
        .unwrap_or_else(|_| panic!("{what}: fewer than {n} within {GUARD:?}"))
        .unwrap()
        .forget();
}

/// A token request as the identity provider saw it.
#[derive(Clone, Debug)]
struct TokenRequest {
    path: String,
    authorization: String,
    form: Vec<(String, String)>,
}

impl TokenRequest {
    fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct IdpState {
    /// What a GET to each path answers; 404 for any other.
    documents: Mutex<HashMap<String, (u16, String)>>,
    /// Every GET's path, in order.
    gets: Mutex<Vec<String>>,
    /// Every POST to a path ending in `/token`.
    tokens: Mutex<Vec<TokenRequest>>,
    /// A permit for each GET that has arrived (before its gate).
    arrived: Semaphore,
}

/// An identity provider on loopback: GETs answer with the documents set
/// (once the gate is open), and a POST to any path ending in `/token`
/// issues `tok.<resources joined by +>.<n>` for an hour.
struct Idp {
    server: TestServer,
    state: Arc<IdpState>,
    gate: Gate,
}

impl Idp {
    /// An identity provider whose documents are served at once.
    async fn start() -> Idp {
        Idp::start_with(Gate::new(true)).await
    }

    /// One whose documents wait until [`open`](Self::open).
    async fn start_gated() -> Idp {
        Idp::start_with(Gate::new(false)).await
    }

    async fn start_with(gate: Gate) -> Idp {
        let state = Arc::new(IdpState {
            documents: Mutex::default(),
            gets: Mutex::default(),
            tokens: Mutex::default(),
            arrived: Semaphore::new(0),
        });
        let server = TestServer::start({
            let (state, gate) = (state.clone(), gate.clone());
            move |req: Request<Incoming>| {
                let (state, gate) = (state.clone(), gate.clone());
                async move {
                    let path = req.uri().path().to_owned();
                    if req.method() == Method::GET {
                        state.gets.lock().unwrap().push(path.clone());
                        state.arrived.add_permits(1);
                        gate.pass().await;
                        let document = state.documents.lock().unwrap().get(&path).cloned();
                        return match document {
                            Some((status, body)) => json_response(status, body),
                            None => respond(404, "Not Found"),
                        };
                    }
                    if req.method() != Method::POST || !path.ends_with("/token") {
                        return respond(404, "Not Found");
                    }
                    let authorization = authorization(&req);
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
                    let resources: Vec<&str> = form
                        .iter()
                        .filter(|(n, _)| n == "resource")
                        .map(|(_, v)| v.as_str())
                        .collect();
                    let token = format!("tok.{}", resources.join("+"));
                    let n = {
                        let mut tokens = state.tokens.lock().unwrap();
                        tokens.push(TokenRequest {
                            path,
                            authorization,
                            form: form.clone(),
                        });
                        tokens.len()
                    };
                    json_response(
                        200,
                        json!({"access_token": format!("{token}.{n}"), "token_type": "Bearer", "expires_in": 3600})
                            .to_string(),
                    )
                }
            }
        })
        .await;
        Idp {
            server,
            state,
            gate,
        }
    }

    /// `http://127.0.0.1:PORT`: the issuer, when it has no path.
    fn origin(&self) -> String {
        self.server.origin()
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// Serves `body` with `status` at `path`.
    fn serve(&self, path: &str, status: u16, body: impl ToString) {
        self.state
            .documents
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body.to_string()));
    }

    fn open(&self) {
        self.gate.open();
    }

    /// Every GET's path, in order.
    fn gets(&self) -> Vec<String> {
        self.state.gets.lock().unwrap().clone()
    }

    fn token_requests(&self) -> Vec<TokenRequest> {
        self.state.tokens.lock().unwrap().clone()
    }

    /// Waits until `n` more GETs have arrived at the gate.
    async fn arrived(&self, n: u32) {
        take(&self.state.arrived, n, "metadata requests").await;
    }
}

fn json_response(status: u16, body: String) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let mut response = respond(status, body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A metadata document naming `issuer` and its `token_endpoint`.
fn document(issuer: &str, token_endpoint: &str) -> Value {
    json!({
        "issuer": issuer,
        "token_endpoint": token_endpoint,
        "jwks_uri": format!("{issuer}/jwks"),
        "grant_types_supported": ["client_credentials"],
    })
}

/// The discovery error inside a fetch's error.
fn discovery_error(error: &ClientCredentialsError) -> &DiscoveryError {
    match error {
        ClientCredentialsError::Discovery { source, .. } => source,
        other => panic!("not a discovery error: {other:?}"),
    }
}

/// A source for `issuer` with a client secret sent by HTTP Basic.
fn secret_source(issuer: &str) -> ClientCredentials {
    ClientCredentials::discover(issuer, CLIENT)
        .client_secret(SECRET)
        .build()
        .unwrap()
}

/// The token error of a request through the layer.
fn token_error(result: Outcome) -> TokenError {
    match result {
        Err(Error::Token(error)) => error,
        other => panic!("expected a token error, got {other:?}"),
    }
}

/// A request to the test API, naming `params` when given.
fn api_request(params: Option<TokenParams>) -> Request<String> {
    let mut request = support::request();
    if let Some(params) = params {
        request.extensions_mut().insert(params);
    }
    request
}

type Call<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Awaits `future` with Tokio's clock running, then pauses it again. Under a
/// paused clock a runtime that waits on a socket may jump to its next timer
/// (a fetch's timeout), so requests go out with the clock running; between
/// them the test advances the paused clock.
async fn with_clock_running<T>(future: impl Future<Output = T>) -> T {
    tokio::time::resume();
    let output = future.await;
    tokio::time::pause();
    output
}

/// What a request through the layer over [`echo`] comes to.
type Outcome = Result<http::Response<String>, Error<std::convert::Infallible>>;

/// Polls every call once: each has reached the cache and waits there.
async fn poll_each_once<T>(calls: &mut [Call<T>]) {
    std::future::poll_fn(|cx| {
        for call in calls.iter_mut() {
            assert!(
                call.as_mut().poll(cx).is_pending(),
                "a call finished before the metadata was served"
            );
        }
        Poll::Ready(())
    })
    .await;
}

/// Awaits every call, in order, each within [`GUARD`].
async fn finish<T>(calls: Vec<Call<T>>) -> Vec<T> {
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(
            tokio::time::timeout(GUARD, call)
                .await
                .expect("a call hangs"),
        );
    }
    outcomes
}

/// A client-credentials source whose fetches report once they are parked:
/// after their first poll, if it was pending. A discovering source's first
/// fetch parks on the discovery (or on the token endpoint after it), so the
/// test knows every fetch has joined before it lets the metadata out.
#[derive(Clone)]
struct Parking {
    inner: ClientCredentials,
    parked: Arc<Semaphore>,
}

impl TokenSource for Parking {
    type Error = ClientCredentialsError;

    fn fetch(&self) -> impl Future<Output = Result<Token, ClientCredentialsError>> + Send {
        let parked = self.parked.clone();
        let mut fetch = Box::pin(self.inner.fetch_token());
        let mut first = true;
        std::future::poll_fn(move |cx| {
            let poll = fetch.as_mut().poll(cx);
            if std::mem::take(&mut first) && poll.is_pending() {
                parked.add_permits(1);
            }
            poll
        })
    }

    fn classify(&self, error: &ClientCredentialsError) -> ErrorClass {
        self.inner.classify(error)
    }
}

impl KeyedTokenSource for Parking {
    type Keyed = Parking;

    fn for_params(&self, params: &TokenParams) -> Result<Parking, ClientCredentialsError> {
        Ok(Parking {
            inner: self.inner.for_params(params)?,
            parked: self.parked.clone(),
        })
    }
}

// 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_metadata_names_the_token_endpoint_once_for_many_requests() {
    let idp = Idp::start().await;
    let issuer = idp.origin();
    idp.serve(OPENID, 200, document(&issuer, &idp.url("/oauth2/token")));
    let source = secret_source(&issuer);
    assert_eq!(source.token_url(), None, "nothing is discovered at build");
    assert_eq!(
        source.issuer().map(|u| u.as_str()),
        Some(format!("{issuer}/").as_str())
    );
    assert!(idp.gets().is_empty(), "building sends nothing");

    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(echo());
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let service = service.clone();
        requests.spawn(async move { service.oneshot(api_request(None)).await });
    }
    while let Some(joined) = requests.join_next().await {
        let response = joined.unwrap().unwrap();
        assert_eq!(response.into_body(), "Bearer tok..1");
    }
    // And later requests are served from the cache.
    for _ in 0..10 {
        let response = service.clone().oneshot(api_request(None)).await.unwrap();
        assert_eq!(response.into_body(), "Bearer tok..1");
    }

    assert_eq!(idp.gets(), [OPENID], "the metadata was read once");
    assert_eq!(
        source.token_url().map(|u| u.as_str()),
        Some(idp.url("/oauth2/token").as_str()),
        "the clone in the layer shares what it discovered"
    );
    let tokens = idp.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].path, "/oauth2/token");
    assert_eq!(tokens[0].param("grant_type"), Some("client_credentials"));
    // HTTP Basic, id and secret form-urlencoded (RFC 6749 section 2.3.1).
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{SECRET}"));
    assert_eq!(tokens[0].authorization, format!("Basic {basic}"));

    // An issuer written with the trailing `/` a URL without a path has is
    // the same issuer.
    let idp = Idp::start().await;
    idp.serve(
        OPENID,
        200,
        document(&format!("{}/", idp.origin()), &idp.url("/token")),
    );
    let source = secret_source(&idp.origin());
    source.fetch_token().await.unwrap();
    assert_eq!(idp.gets(), [OPENID]);
}

// 2.
#[tokio::test]
async fn rfc_8414_metadata_is_read_when_there_is_no_openid_document() {
    let idp = Idp::start().await;
    let issuer = idp.url("/tenant-a");
    // No OpenID Connect document at /tenant-a/.well-known/openid-configuration.
    idp.serve(
        &format!("{OAUTH}/tenant-a"),
        200,
        document(&issuer, &idp.url("/tenant-a/token")),
    );
    let source = secret_source(&issuer);
    let token = source.fetch_token().await.unwrap();
    assert_eq!(token.access_token().secret(), "tok..1");
    assert_eq!(
        idp.gets(),
        [format!("/tenant-a{OPENID}"), format!("{OAUTH}/tenant-a")]
    );
    assert_eq!(
        source.token_url().map(|u| u.as_str()),
        Some(idp.url("/tenant-a/token").as_str())
    );
    assert_eq!(idp.token_requests()[0].path, "/tenant-a/token");

    // Found for good: the next fetch goes straight to the token endpoint.
    let token = source.fetch_token().await.unwrap();
    assert_eq!(token.access_token().secret(), "tok..2");
    assert_eq!(idp.gets().len(), 2);

    // A trailing `/` on the issuer is dropped from both well-known URLs
    // (RFC 8414 section 3.1), and the document must name the issuer with it.
    let idp = Idp::start().await;
    let issuer = idp.url("/tenant-b/");
    idp.serve(
        &format!("{OAUTH}/tenant-b"),
        200,
        document(&issuer, &idp.url("/tenant-b/token")),
    );
    secret_source(&issuer).fetch_token().await.unwrap();
    assert_eq!(
        idp.gets(),
        [format!("/tenant-b{OPENID}"), format!("{OAUTH}/tenant-b")]
    );
}

// 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_for_many_keys_share_one_discovery() {
    const KEYS: usize = 10;
    const PER_KEY: usize = 5;
    let idp = Idp::start_gated().await;
    let issuer = idp.origin();
    idp.serve(OPENID, 200, document(&issuer, &idp.url("/token")));
    let parked = Arc::new(Semaphore::new(0));
    let source = Parking {
        inner: ClientCredentials::discover(&issuer, CLIENT)
            .client_secret(SECRET)
            .auth_style(AuthStyle::RequestBody)
            .build()
            .unwrap(),
        parked: parked.clone(),
    };
    let base = source.inner.clone();
    let cache = TokenCache::keyed(source);
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service(echo());

    let resource = |k: usize| format!("https://api-{k}.test/");
    let mut calls: Vec<Call<Outcome>> = Vec::new();
    let mut wanted = Vec::new();
    for _ in 0..PER_KEY {
        for k in 0..KEYS {
            let request = api_request(Some(TokenParams::for_resource(resource(k))));
            calls.push(Box::pin(service.clone().oneshot(request)));
            wanted.push(resource(k));
        }
    }
    // Every request waits in the cache, and every key's fetch waits on the
    // one discovery, whose metadata request waits at the gate.
    poll_each_once(&mut calls).await;
    take(&parked, KEYS as u32, "fetches parked on the discovery").await;
    idp.arrived(1).await;
    assert_eq!(idp.gets(), [OPENID]);
    idp.open();

    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for (resource, outcome) in wanted.into_iter().zip(finish(calls).await) {
        let seen = outcome.unwrap().into_body();
        assert!(
            seen.starts_with(&format!("Bearer tok.{resource}.")),
            "{resource} got {seen}"
        );
        by_key.entry(resource).or_default().push(seen);
    }
    assert_eq!(by_key.len(), KEYS);
    for (resource, seen) in &by_key {
        assert_eq!(seen.len(), PER_KEY);
        assert!(seen.iter().all(|s| s == &seen[0]), "{resource}: {seen:?}");
    }

    assert_eq!(idp.gets(), [OPENID], "exactly one metadata request");
    let tokens = idp.token_requests();
    assert_eq!(tokens.len(), KEYS, "one token fetch per key");
    let mut resources: Vec<&str> = tokens
        .iter()
        .map(|t| t.param("resource").unwrap())
        .collect();
    resources.sort_unstable();
    resources.dedup();
    assert_eq!(resources.len(), KEYS);
    assert!(
        tokens
            .iter()
            .all(|t| t.param("client_secret") == Some(SECRET))
    );
    assert_eq!(cache.key_count(), KEYS);
    for (_, key) in cache.keys() {
        assert_eq!(key.stats().fetches_started, 1);
        assert_eq!(key.stats().fetches_failed, 0);
    }
    assert_eq!(cache.stats().fetches_started, 0, "no default token");
    // The base source never fetched, so it has not resolved its own request;
    // the metadata the keys' fetches found is its own already, and a fetch
    // now resolves the request from it, with no request for metadata.
    assert_eq!(base.token_url(), None);
    let metadata = base.provider_metadata().expect("found through the keys");
    assert_eq!(metadata.token_endpoint().as_str(), idp.url("/token"));
    base.fetch_token().await.unwrap();
    assert_eq!(
        base.token_url().map(|u| u.as_str()),
        Some(idp.url("/token").as_str())
    );
    assert_eq!(idp.gets(), [OPENID]);
}

// 4.
#[tokio::test]
async fn a_metadata_outage_is_transient_and_a_later_fetch_discovers() {
    // The source alone: its error, and its class.
    let idp = Idp::start().await;
    let issuer = idp.origin();
    idp.serve(OPENID, 503, "upstream unavailable");
    idp.serve(OAUTH, 200, document(&issuer, &idp.url("/token")));
    let source = secret_source(&issuer);
    tokio::time::pause();
    let error = with_clock_running(source.fetch_token()).await.unwrap_err();
    assert!(source.classify(&error).is_transient(), "{error:?}");
    match discovery_error(&error) {
        DiscoveryError::HttpStatus { url, status } => {
            assert_eq!(status.as_u16(), 503);
            assert_eq!(url, &idp.url(OPENID));
        }
        other => panic!("{other:?}"),
    }
    let text = chain(&error);
    assert!(text.contains("503") && text.contains(OPENID), "{text}");
    assert_eq!(idp.gets(), [OPENID], "a 5xx does not fall back to RFC 8414");
    assert_eq!(source.token_url(), None);

    // Until discovery's retry time, a fetch gets the same failure without a
    // request, even though the provider is back.
    idp.serve(OPENID, 200, document(&issuer, &idp.url("/token")));
    let again = source.fetch_token().await.unwrap_err();
    assert_eq!(
        format!("{:?}", discovery_error(&again)),
        format!("{:?}", discovery_error(&error))
    );
    assert_eq!(idp.gets(), [OPENID]);
    tokio::time::advance(FIRST_RETRY_DELAY).await;
    with_clock_running(source.fetch_token()).await.unwrap();
    assert_eq!(idp.gets(), [OPENID, OPENID]);
    assert!(source.token_url().is_some());

    // Through the layer: the cache's backoff (300 ms) ends before
    // discovery's retry time (1 s), so its next fetch gets the remembered
    // failure at once; the fetch after the retry time discovers.
    let idp = Idp::start().await;
    let issuer = idp.origin();
    idp.serve(OPENID, 503, "upstream unavailable");
    let backoff = support::no_jitter()
        .initial(Duration::from_millis(300))
        .max(Duration::from_millis(300));
    let cache = TokenCache::builder(secret_source(&issuer))
        .backoff(backoff)
        .build();
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service(echo());

    let first = token_error(with_clock_running(service.clone().oneshot(api_request(None))).await);
    assert!(first.is_transient(), "{first}");
    assert_eq!(first.backoff_remaining(), None, "this request fetched");
    let cause = first
        .source_error()
        .and_then(|e| e.downcast_ref::<ClientCredentialsError>())
        .expect("the source's error");
    assert!(matches!(
        discovery_error(cause),
        DiscoveryError::HttpStatus { .. }
    ));
    // At once: the cache is backing off, for as long as discovery
    // remembers its failure (the error's retry_after), not its own 300 ms.
    let second = token_error(service.clone().oneshot(api_request(None)).await);
    assert!(second.same_failure(&first));
    let remaining = second
        .backoff_remaining()
        .expect("failed fast while backing off");
    assert!(
        remaining > Duration::from_millis(300) && remaining <= FIRST_RETRY_DELAY,
        "{remaining:?}"
    );
    assert_eq!(idp.gets(), [OPENID]);

    // Past it, the next request discovers: no fetch was spent on the
    // remembered failure.
    idp.serve(OPENID, 200, document(&issuer, &idp.url("/token")));
    tokio::time::advance(remaining + Duration::from_millis(1)).await;
    let response = with_clock_running(service.clone().oneshot(api_request(None)))
        .await
        .unwrap();
    assert_eq!(response.into_body(), "Bearer tok..1");
    assert_eq!(idp.gets(), [OPENID, OPENID], "two metadata requests in all");
    let stats = cache.stats();
    assert_eq!((stats.fetches_started, stats.fetches_failed), (2, 1));
    assert_eq!(stats.failed_fast, 1);
}

// 4b.
#[tokio::test]
async fn an_outage_costs_one_metadata_request_per_retry_time_whatever_the_keys() {
    // The case discovery's own backoff is for: a keyed cache whose keys
    // each back off on their own (here 150 ms), far sooner than discovery.
    const KEYS: usize = 10;
    let idp = Idp::start().await;
    let issuer = idp.origin();
    idp.serve(OPENID, 503, "upstream unavailable");
    let step = Duration::from_millis(150);
    let cache = TokenCache::keyed_builder(secret_source(&issuer))
        .backoff(support::no_jitter().initial(step).max(step))
        .build();
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service(echo());
    let resource = |k: usize| format!("https://api-{k}.test/");
    let request = |k: usize| api_request(Some(TokenParams::for_resource(resource(k))));
    let fetches = |cache: &TokenCache| -> u64 {
        cache
            .keys()
            .iter()
            .map(|(_, key)| key.stats().fetches_started)
            .sum()
    };
    tokio::time::pause();

    // The first key's fetch discovers, and fails; every other key's fetch
    // gets that failure without a request.
    let error = token_error(with_clock_running(service.clone().oneshot(request(0))).await);
    assert!(error.is_transient(), "{error}");
    for k in 1..KEYS {
        let error = token_error(service.clone().oneshot(request(k)).await);
        assert_eq!(error.backoff_remaining(), None, "key {k} fetched");
    }
    assert_eq!(idp.gets(), [OPENID]);
    assert_eq!(fetches(&cache), KEYS as u64);

    // Each key backs off until discovery's retry time, not for its own
    // 150 ms: no key fetches meanwhile, and no request goes out.
    for _ in 0..3 {
        tokio::time::advance(step + Duration::from_millis(1)).await;
        for k in 0..KEYS {
            let error = token_error(service.clone().oneshot(request(k)).await);
            assert!(error.backoff_remaining().is_some(), "key {k} fetched");
        }
    }
    assert_eq!(fetches(&cache), KEYS as u64);
    assert_eq!(idp.gets(), [OPENID]);

    // After the retry time, one fetch asks again (and fails: now 2 s), and
    // the other keys' fetches get that failure without a request.
    tokio::time::advance(FIRST_RETRY_DELAY).await;
    token_error(with_clock_running(service.clone().oneshot(request(0))).await);
    for k in 1..KEYS {
        token_error(service.clone().oneshot(request(k)).await);
    }
    assert_eq!(idp.gets(), [OPENID, OPENID]);
    assert_eq!(fetches(&cache), 2 * KEYS as u64);

    // The provider is back; after the 2 s one discovery serves every key.
    idp.serve(OPENID, 200, document(&issuer, &idp.url("/token")));
    tokio::time::advance(2 * FIRST_RETRY_DELAY + Duration::from_millis(1)).await;
    for k in 0..KEYS {
        let response = with_clock_running(service.clone().oneshot(request(k)))
            .await
            .unwrap();
        let seen = response.into_body();
        assert!(
            seen.starts_with(&format!("Bearer tok.{}.", resource(k))),
            "{seen}"
        );
    }
    assert_eq!(idp.gets(), [OPENID, OPENID, OPENID]);
    assert_eq!(idp.token_requests().len(), KEYS);
}

// 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_issuer_in_the_metadata_is_permanent_and_asked_once() {
    const EVIL: &str = "https://evil.example.com";
    let idp = Idp::start().await;
    let issuer = idp.origin();
    idp.serve(OPENID, 200, document(EVIL, &idp.url("/token")));
    idp.serve(OAUTH, 200, document(&issuer, &idp.url("/token")));
    let source = secret_source(&issuer);
    let error = source.fetch_token().await.unwrap_err();
    assert_eq!(source.classify(&error), ErrorClass::Permanent);
    let DiscoveryError::IssuerMismatch {
        expected, found, ..
    } = discovery_error(&error)
    else {
        panic!("{error:?}");
    };
    assert_eq!(found, EVIL);
    assert!(expected.starts_with(&issuer), "{expected}");
    let text = chain(&error);
    assert!(
        text.contains(EVIL) && text.contains(&issuer),
        "names both: {text}"
    );
    let debug = format!("{error:?}");
    for shown in [&text, &debug] {
        assert!(!shown.contains(SECRET), "{shown}");
    }
    assert_eq!(
        idp.gets(),
        [OPENID],
        "a wrong document is no cue to fall back"
    );
    assert!(
        idp.token_requests().is_empty(),
        "no credentials went anywhere"
    );

    // Through the layer: twenty requests at once, one metadata request.
    let idp = Idp::start_gated().await;
    let issuer = idp.origin();
    idp.serve(OPENID, 200, document(EVIL, &idp.url("/token")));
    let layer = BearerAuthLayer::new(secret_source(&issuer));
    let cache = layer.cache().clone();
    let service = ServiceBuilder::new().layer(layer).service(echo());
    let mut calls: Vec<Call<Outcome>> = (0..20)
        .map(|_| Box::pin(service.clone().oneshot(api_request(None))) as Call<Outcome>)
        .collect();
    poll_each_once(&mut calls).await;
    idp.arrived(1).await;
    idp.open();
    let errors: Vec<TokenError> = finish(calls).await.into_iter().map(token_error).collect();
    for error in &errors {
        assert!(!error.is_transient(), "{error}");
        assert!(error.same_failure(&errors[0]), "one failure for all");
        let text = chain(error);
        assert!(text.contains(EVIL) && text.contains(&issuer), "{text}");
        assert!(!text.contains(SECRET) && !format!("{error:?}").contains(SECRET));
    }
    // Later requests fail fast: a permanent failure waits out the backoff.
    for _ in 0..5 {
        let error = token_error(service.clone().oneshot(api_request(None)).await);
        assert!(error.backoff_remaining().is_some());
    }
    assert_eq!(idp.gets(), [OPENID], "no storm");
    assert!(idp.token_requests().is_empty());
    assert_eq!(cache.stats().fetches_started, 1);
}

// 6.
#[tokio::test]
async fn documents_that_are_no_metadata_fail_clearly() {
    // What the OpenID Connect URL answers, what the RFC 8414 one answers,
    // and what must come of it: the error's variant, its class.
    type Answer = (u16, String);
    type Case = (
        &'static str,
        Answer,
        Option<Answer>,
        fn(&DiscoveryError) -> bool,
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            "an HTML page, then nothing: a portal may have answered",
            (200, "<html><body>Sign in to the Wi-Fi</body></html>".into()),
            None,
            |e| {
                matches!(
                    e,
                    DiscoveryError::NotFound {
                        openid_answer: NoDocument::NotJson,
                        oauth_answer: NoDocument::Status(s),
                        ..
                    } if s.as_u16() == 404
                )
            },
            true,
        ),
        (
            "nothing at either URL",
            (404, "no".into()),
            Some((410, "gone".into())),
            |e| {
                matches!(
                    e,
                    DiscoveryError::NotFound {
                        openid_answer: NoDocument::Status(_),
                        oauth_answer: NoDocument::Status(_),
                        ..
                    }
                )
            },
            false,
        ),
        (
            "JSON that is not an object, then nothing",
            (200, "[1, 2]".into()),
            None,
            |e| {
                matches!(
                    e,
                    DiscoveryError::NotFound {
                        openid_answer: NoDocument::NotAnObject,
                        ..
                    }
                )
            },
            true,
        ),
        (
            "no token_endpoint",
            (200, json!({"issuer": "ISSUER"}).to_string()),
            None,
            |e| {
                matches!(
                    e,
                    DiscoveryError::MissingField {
                        field: "token_endpoint",
                        ..
                    }
                )
            },
            false,
        ),
        (
            "a null token_endpoint",
            (
                200,
                json!({"issuer": "ISSUER", "token_endpoint": null}).to_string(),
            ),
            None,
            |e| {
                matches!(
                    e,
                    DiscoveryError::MissingField {
                        field: "token_endpoint",
                        ..
                    }
                )
            },
            false,
        ),
        (
            "no issuer",
            (200, json!({"token_endpoint": "TOKEN"}).to_string()),
            None,
            |e| {
                matches!(
                    e,
                    DiscoveryError::MissingField {
                        field: "issuer",
                        ..
                    }
                )
            },
            false,
        ),
        (
            "a token_endpoint that is not a URL",
            (
                200,
                json!({"issuer": "ISSUER", "token_endpoint": "/token"}).to_string(),
            ),
            None,
            |e| {
                matches!(
                    e,
                    DiscoveryError::InvalidField {
                        field: "token_endpoint",
                        ..
                    }
                )
            },
            false,
        ),
        (
            "a token_endpoint that is not a string",
            (
                200,
                json!({"issuer": "ISSUER", "token_endpoint": 42}).to_string(),
            ),
            None,
            |e| {
                matches!(
                    e,
                    DiscoveryError::InvalidField {
                        field: "token_endpoint",
                        ..
                    }
                )
            },
            false,
        ),
        (
            "a truncated object",
            (200, r#"{"issuer": "ISSUER", "token_endpoint": "#.into()),
            None,
            |e| {
                matches!(
                    e,
                    DiscoveryError::NotFound {
                        openid_answer: NoDocument::NotJson,
                        ..
                    }
                )
            },
            true,
        ),
    ];
    for (what, openid, oauth, expected, transient) in cases {
        let idp = Idp::start().await;
        let issuer = idp.origin();
        let fill = |body: String| {
            body.replace("ISSUER", &issuer)
                .replace("TOKEN", &idp.url("/token"))
        };
        idp.serve(OPENID, openid.0, fill(openid.1));
        if let Some((status, body)) = oauth {
            idp.serve(OAUTH, status, fill(body));
        }
        let source = secret_source(&issuer);
        tokio::time::pause();
        let error = with_clock_running(source.fetch_token()).await.unwrap_err();
        let discovery = discovery_error(&error);
        assert!(expected(discovery), "{what}: {discovery:?}");
        assert_eq!(discovery.is_transient(), transient, "{what}: {discovery}");
        assert_eq!(
            source.classify(&error).is_transient(),
            transient,
            "{what}: {discovery}"
        );
        let text = chain(&error);
        assert!(text.contains(OPENID), "{what}: the URL is named: {text}");
        assert!(!text.contains("Wi-Fi"), "{what}: no body is shown: {text}");
        assert!(idp.token_requests().is_empty(), "{what}");
        // A failure is remembered, transient or not: until discovery's
        // retry time a fetch gets it without a request; after it, the next
        // fetch asks again.
        let asked = idp.gets().len();
        let again = source.fetch_token().await.unwrap_err();
        assert_eq!(
            format!("{:?}", discovery_error(&again)),
            format!("{discovery:?}"),
            "{what}"
        );
        assert_eq!(idp.gets().len(), asked, "{what}");
        tokio::time::advance(FIRST_RETRY_DELAY).await;
        with_clock_running(source.fetch_token()).await.unwrap_err();
        assert_eq!(idp.gets().len(), 2 * asked, "{what}");
        tokio::time::resume();
    }
}

// 7.
#[tokio::test]
async fn a_method_the_metadata_does_not_list_is_refused_before_anything_is_sent() {
    let idp = Idp::start().await;
    let issuer = idp.origin();
    let mut metadata = document(&issuer, &idp.url("/token"));
    metadata["token_endpoint_auth_methods_supported"] = json!(["private_key_jwt"]);
    idp.serve(OPENID, 200, &metadata);

    for (style, method) in [
        (AuthStyle::Basic, AuthMethod::ClientSecretBasic),
        (AuthStyle::RequestBody, AuthMethod::ClientSecretPost),
    ] {
        let source = ClientCredentials::discover(&issuer, CLIENT)
            .client_secret(SECRET)
            .auth_style(style)
            .build()
            .unwrap();
        let error = source.fetch_token().await.unwrap_err();
        match &error {
            ClientCredentialsError::AuthMethodNotSupported {
                method: got,
                supported,
                more,
            } => {
                assert_eq!(*more, 0);
                assert_eq!(*got, method);
                assert_eq!(supported, &["private_key_jwt".to_owned()]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(source.classify(&error), ErrorClass::Permanent);
        let text = error.to_string();
        assert!(
            text.contains(method.as_str()) && text.contains("private_key_jwt"),
            "names both: {text}"
        );
        assert!(!chain(&error).contains(SECRET));
        assert_eq!(source.token_url(), None);
    }
    assert!(idp.token_requests().is_empty(), "no credentials were sent");
    // A public client (no secret at all) may carry an assertion of its own
    // in the parameters (a federated workload token): not judged here, the
    // token endpoint decides.
    let public = ClientCredentials::discover(&issuer, CLIENT)
        .param(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .param("client_assertion", "a-workload-token")
        .build()
        .unwrap();
    public.fetch_token().await.unwrap();
    assert_eq!(idp.token_requests().len(), 1);
}

// 7.
#[tokio::test]
async fn private_key_jwt_signs_for_the_discovered_token_endpoint() {
    let key = TestKey::shared(KeyKind::EcP256);
    let endpoint = AssertionEndpoint::start(
        CLIENT,
        Verifier::for_key(key, KeyKind::EcP256.default_algorithm()),
    )
    .await;
    // The metadata on one server, the token endpoint on another.
    let idp = Idp::start().await;
    let issuer = idp.origin();
    let mut metadata = document(&issuer, &endpoint.token_url());
    metadata["token_endpoint_auth_methods_supported"] =
        json!(["private_key_jwt", "client_secret_basic"]);
    idp.serve(OPENID, 200, &metadata);

    let source = ClientCredentials::discover(&issuer, CLIENT)
        .private_key_jwt(PrivateKey::from_pem(key.pkcs8_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    assert_eq!(source.auth_method(), AuthMethod::PrivateKeyJwt);
    for n in 1..=2 {
        let token = source
            .fetch_token()
            .await
            .unwrap_or_else(|e| panic!("{}; {:?}", chain(&e), endpoint.refusals()));
        assert_eq!(
            token.access_token().secret(),
            format!("assertion-token-{n}")
        );
    }
    assert_eq!(endpoint.issued(), 2);
    assert_eq!(
        endpoint.audiences(),
        vec![json!(endpoint.token_url()); 2],
        "aud is the discovered token endpoint"
    );
    assert_eq!(
        source.token_url().map(|u| u.as_str()),
        Some(endpoint.token_url().as_str())
    );
    assert_eq!(idp.gets(), [OPENID]);
    assert!(idp.token_requests().is_empty());
}

// 7, with the issuer as the audience.
#[tokio::test]
async fn an_issuer_audience_is_the_issuer_as_the_provider_names_it() {
    let key = TestKey::shared(KeyKind::EcP256);
    let endpoint = AssertionEndpoint::start(
        CLIENT,
        Verifier::for_key(key, KeyKind::EcP256.default_algorithm()),
    )
    .await;
    for path in ["", "/realms/prod"] {
        let idp = Idp::start().await;
        // As providers write it: no `/` after a bare host (Google's
        // `https://accounts.google.com`), none after a path.
        let issuer = idp.url(path);
        idp.serve(
            &format!("{path}{OPENID}"),
            200,
            document(&issuer, &endpoint.token_url()),
        );
        let source = ClientCredentials::discover(&issuer, CLIENT)
            .private_key_jwt(PrivateKey::from_pem(key.pkcs8_pem().as_bytes()).unwrap())
            .assertion_audience(AssertionAudience::Issuer)
            .build()
            .unwrap();
        // The endpoint wants its token URL as `aud`, so it refuses; what
        // matters is the `aud` it was sent, which it records.
        let error = source.fetch_token().await.unwrap_err();
        assert_eq!(error.oauth_error(), Some("invalid_client"), "{error}");
        assert_eq!(
            endpoint.audiences().last(),
            Some(&json!(issuer)),
            "the issuer, exactly as configured and as the metadata names it"
        );
    }
}

// 8.
#[tokio::test]
async fn a_plain_http_token_endpoint_off_loopback_is_refused_and_not_called() {
    // The named host resolves to a loopback server: had anything been sent,
    // it would have arrived here.
    let target = Idp::start().await;
    let host = "token.idp.test";
    let client = || {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(host, target.server.addr())
            .build()
            .unwrap()
    };
    let token_endpoint = format!("http://{host}:{}/token", target.server.addr().port());

    let idp = Idp::start().await;
    let issuer = idp.origin();
    idp.serve(OPENID, 200, document(&issuer, &token_endpoint));
    let source = ClientCredentials::discover(&issuer, CLIENT)
        .client_secret(SECRET)
        .http_client(client())
        .build()
        .unwrap();
    for _ in 0..2 {
        let error = source.fetch_token().await.unwrap_err();
        match &error {
            ClientCredentialsError::DiscoveredEndpoint {
                source: BuildError::InsecureUrl { host: got },
            } => assert_eq!(got, host),
            other => panic!("{other:?}"),
        }
        assert_eq!(source.classify(&error), ErrorClass::Permanent);
        assert!(chain(&error).contains(host), "{}", chain(&error));
    }
    assert!(target.token_requests().is_empty(), "nothing was sent there");
    assert_eq!(
        idp.gets(),
        [OPENID],
        "the metadata itself was fine, and kept"
    );
    assert_eq!(source.token_url(), None);

    // The control: allowed explicitly, the same endpoint is called.
    let source = ClientCredentials::discover(&issuer, CLIENT)
        .client_secret(SECRET)
        .http_client(client())
        .allow_insecure_http(true)
        .build()
        .unwrap();
    source.fetch_token().await.unwrap();
    assert_eq!(target.token_requests().len(), 1);

    // And with the default client, a public host.
    let idp = Idp::start().await;
    idp.serve(
        OPENID,
        200,
        document(&idp.origin(), "http://example.com/token"),
    );
    let error = secret_source(&idp.origin())
        .fetch_token()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            ClientCredentialsError::DiscoveredEndpoint {
                source: BuildError::InsecureUrl { host }
            } if host == "example.com"
        ),
        "{error:?}"
    );
}

// 9.
#[cfg(feature = "rustls")]
#[tokio::test]
async fn tls_client_auth_uses_the_mtls_alias_of_an_https_issuer() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use support::tls::{BoundTokens, TestPki, TlsServer};

    let pki = TestPki::new();
    let bound = BoundTokens::start(&pki).await;
    // The plain token endpoint, which a tls_client_auth client must not call.
    let plain = Idp::start().await;
    let metadata = Arc::new(Mutex::new(String::new()));
    let reads = Arc::new(AtomicUsize::new(0));
    let issuer_server = TlsServer::start(&pki, {
        let (metadata, reads) = (metadata.clone(), reads.clone());
        move |req, _client| {
            let (metadata, reads) = (metadata.clone(), reads.clone());
            async move {
                if req.uri().path() != OPENID {
                    return respond(404, "Not Found");
                }
                reads.fetch_add(1, Ordering::SeqCst);
                json_response(200, metadata.lock().unwrap().clone())
            }
        }
    })
    .await;
    let issuer = issuer_server.origin();
    *metadata.lock().unwrap() = json!({
        "issuer": issuer,
        "token_endpoint": plain.url("/token"),
        "mtls_endpoint_aliases": {"token_endpoint": bound.token_url()},
        "token_endpoint_auth_methods_supported": ["tls_client_auth", "client_secret_basic"],
    })
    .to_string();
    let ca = || reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap();

    let identity = pki.client_identity("client-a");
    let source = ClientCredentials::discover(&issuer, "client-a")
        .tls_client_auth(identity.clone())
        .add_root_certificate(ca())
        .build()
        .unwrap();
    assert_eq!(source.auth_method(), AuthMethod::TlsClientAuth);
    let token = source
        .fetch_token()
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let token = token.access_token().secret().to_owned();
    assert_eq!(token, "bound-1");
    assert_eq!(
        bound.bound_to(&token).as_deref(),
        Some(identity.certificate_thumbprint()),
        "bound to the client's certificate"
    );
    assert_eq!(
        source.token_url().map(|u| u.as_str()),
        Some(bound.token_url().as_str())
    );
    assert!(
        plain.token_requests().is_empty(),
        "the alias, not token_endpoint"
    );
    assert_eq!(reads.load(Ordering::SeqCst), 1);

    // The control: a client that authenticates with a secret uses the
    // token_endpoint, not the alias.
    let source = ClientCredentials::discover(&issuer, "client-a")
        .client_secret(SECRET)
        .add_root_certificate(ca())
        .build()
        .unwrap();
    source.fetch_token().await.unwrap();
    assert_eq!(plain.token_requests().len(), 1);
    assert_eq!(bound.issued(), 1);
}

// 10.
#[tokio::test]
async fn an_issuer_that_cannot_be_discovered_from_fails_the_build() {
    let idp = Idp::start().await;
    let origin = idp.origin();
    for (issuer, reason) in [
        (format!("{origin}/tenant?x=1"), "query"),
        (format!("{origin}/tenant#top"), "fragment"),
        ("http://idp.example.com/tenant".to_owned(), "https"),
        ("ftp://idp.example.com/tenant".to_owned(), "https"),
        (format!("http://user:{SECRET}@127.0.0.1:1/t"), "password"),
        ("not a url".to_owned(), ""),
    ] {
        let error = ClientCredentials::discover(&issuer, CLIENT)
            .client_secret(SECRET)
            .build()
            .unwrap_err();
        match &error {
            BuildError::InvalidIssuer { reason: got, .. } => {
                assert!(got.contains(reason), "{issuer}: {got}")
            }
            other => panic!("{issuer}: {other:?}"),
        }
        let text = error.to_string();
        assert!(text.contains("issuer"), "{text}");
        assert!(!text.contains(SECRET), "{text}");
    }
    // Allowed explicitly, plain http off loopback builds (and sends nothing
    // until the first fetch).
    ClientCredentials::discover("http://idp.example.com/tenant", CLIENT)
        .allow_insecure_http(true)
        .build()
        .unwrap();
    assert!(idp.gets().is_empty(), "nothing was sent");
}
