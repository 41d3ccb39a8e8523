//! `cargo run --example demo`: watch the token cache at work.
//!
//! With no arguments it starts, on 127.0.0.1 with free ports, a token
//! endpoint shaped like Avionté's (it wants the `x-api-key` header and the
//! client credentials in the form, and issues opaque tokens that live
//! `--ttl` seconds) and an API that accepts only live tokens it issued. Then
//! it sends a workload through `BearerAuthLayer` over `reqwest::Client` and
//! says what happened: tokens fetched, refreshes ahead of expiry, requests
//! served, what went wrong.
//!
//! The same against any provider and API:
//!
//! ```text
//! cargo run --example demo -- --token-url URL --client-id ID [--client-secret S | env CLIENT_SECRET]
//!     [--scope S]... [--auth basic|post] [--token-header 'Name: value']... [--api-header 'Name: value']...
//!     --url API_URL [--requests N] [--concurrency C] [--duration SECS]
//! ```
//!
//! The last line on stdout is one JSON object with the counts and latencies.
//! Exit status: 0 when every request succeeded, 1 otherwise, 2 for bad
//! arguments.
//!
//! A fleet: `--serve SECS` runs only the embedded token endpoint and API,
//! for many demo processes to share, and `--redis URL` (built with
//! `--features redis`) shares one token between those processes through
//! Redis (`scripts/fleet.sh` runs eight at once, with and without it):
//!
//! ```text
//! CLIENT_SECRET=S cargo run --example demo -- --serve 60 --api-key K
//! CLIENT_SECRET=S cargo run --example demo --features redis -- --redis redis://127.0.0.1:6379/ \
//!     --token-url URL --client-id ID --auth post --token-header 'x-api-key: K' --url API_URL
//! ```

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::source::client_credentials::{AuthStyle, ClientCredentials, redact_url};
#[cfg(feature = "redis")]
use tower_bearer::store::{RedisStore, StoreKey};
use tower_bearer::{BearerAuth, BearerAuthLayer, ClientCredentialsSource, Error, TokenCache};

const USAGE: &str = "\
usage: demo [--ttl SECS] [--requests N | --duration SECS] [--concurrency C]
       demo --token-url URL --client-id ID [--client-secret S | env CLIENT_SECRET]
            [--scope S]... [--auth basic|post] [--token-header 'Name: value']...
            [--api-header 'Name: value']... --url API_URL
            [--requests N | --duration SECS] [--concurrency C] [--redis URL]
       demo --serve SECS [--ttl SECS] [--client-id ID]
            [--client-secret S | env CLIENT_SECRET] [--api-key K | env API_KEY]

Without --token-url, an embedded token endpoint and API run on 127.0.0.1;
--client-id and --client-secret then override the credentials the demo sends
(try a wrong secret to see a refusal).

  --ttl SECS          lifetime of embedded tokens (default 3600)
  --requests N        send N requests (default 200)
  --duration SECS     send requests until SECS have passed, instead of a count
  --concurrency C     requests in flight at once (default 8)
  --auth basic|post   client authentication: HTTP Basic or in the form (default basic)
  --redis URL         share tokens with other processes through Redis, so that
                      they fetch one between them (needs --features redis)
  --serve SECS        only run the embedded token endpoint and API, for other
                      demo processes to use: accepts the given client secret
                      and API key (x-api-key), prints its URLs and client id as
                      one JSON line, and stops after SECS, on SIGTERM or Ctrl-C,
                      or when its standard input is a pipe that closes; its
                      last line is a JSON object with the tokens it issued";

const DEFAULT_REQUESTS: u64 = 200;
const DEFAULT_CONCURRENCY: usize = 8;
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The longest `--duration`, `--ttl` or `--serve`: one year. Larger values
/// overflow when added to the clock.
const MAX_SECS: u64 = 365 * 24 * 60 * 60;
/// The most workers `--concurrency` spawns.
const MAX_CONCURRENCY: u64 = 10_000;
/// Upper bounds of the latency histogram's buckets, in milliseconds.
const BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

// ---------------------------------------------------------------------------
// Arguments: parsed in this one place.

/// Where tokens come from.
enum Provider {
    /// The embedded token endpoint and API.
    Embedded { ttl: Duration },
    /// A real provider and API.
    Remote { token_url: String, api_url: String },
}

/// What to do.
#[derive(Debug)]
enum Command {
    /// Send a workload through the layer.
    Run(Args),
    /// Only serve the embedded token endpoint and API.
    Serve(Serve),
}

struct Args {
    provider: Provider,
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Vec<String>,
    auth: AuthStyle,
    token_headers: Vec<(String, String)>,
    api_headers: Vec<(String, String)>,
    workload: Workload,
    /// The fleet-wide token store, with `--redis`.
    #[cfg(feature = "redis")]
    redis: Option<RedisStore>,
}

// The URLs may hold credentials and the secret and header values are
// secrets: Debug shows neither.
impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Embedded { ttl } => f.debug_struct("Embedded").field("ttl", ttl).finish(),
            Provider::Remote { token_url, api_url } => f
                .debug_struct("Remote")
                .field("token_url", &redact_url(token_url))
                .field("api_url", &redact_url(api_url))
                .finish(),
        }
    }
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names = |headers: &[(String, String)]| {
            headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
        };
        let mut s = f.debug_struct("Args");
        s.field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("scopes", &self.scopes)
            .field("auth", &self.auth)
            .field("token_header_names", &header_names(&self.token_headers))
            .field("api_header_names", &header_names(&self.api_headers))
            .field("workload", &self.workload);
        #[cfg(feature = "redis")]
        s.field("redis", &self.redis);
        s.finish()
    }
}

/// `--serve`: the embedded token endpoint and API alone, for several demo
/// processes to share.
#[derive(Debug)]
struct Serve {
    duration: Duration,
    ttl: Duration,
    credentials: Credentials,
}

/// The credentials the embedded token endpoint accepts.
#[derive(Clone)]
struct Credentials {
    client_id: String,
    client_secret: String,
    api_key: String,
}

impl Credentials {
    fn random() -> Self {
        Credentials {
            client_id: format!("demo-{}", random_string(6)),
            client_secret: random_string(32),
            api_key: random_string(24),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug)]
struct Workload {
    requests: u64,
    duration: Option<Duration>,
    concurrency: usize,
}

enum ArgsError {
    Help,
    Bad(String),
}

/// The flags `--serve` takes; the others are the workload's.
const SERVE_FLAGS: [&str; 5] = [
    "--serve",
    "--ttl",
    "--client-id",
    "--client-secret",
    "--api-key",
];

fn parse_args(raw: impl IntoIterator<Item = String>) -> Result<Command, ArgsError> {
    let bad = |msg: String| ArgsError::Bad(msg);
    let mut raw = raw.into_iter();
    let mut token_url = None;
    let mut api_url = None;
    let mut ttl = None;
    let mut requests = None;
    let mut duration = None;
    let mut concurrency = DEFAULT_CONCURRENCY;
    let mut serve_for = None;
    let mut api_key = None;
    let mut flags_seen = Vec::new();
    let mut args = Args {
        provider: Provider::Embedded { ttl: DEFAULT_TTL },
        client_id: None,
        client_secret: None,
        scopes: Vec::new(),
        auth: AuthStyle::Basic,
        token_headers: Vec::new(),
        api_headers: Vec::new(),
        workload: Workload {
            requests: DEFAULT_REQUESTS,
            duration: None,
            concurrency,
        },
        #[cfg(feature = "redis")]
        redis: None,
    };
    while let Some(arg) = raw.next() {
        if arg == "-h" || arg == "--help" {
            return Err(ArgsError::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| raw.next())
                .ok_or_else(|| bad(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--token-url" => token_url = Some(value()?),
            "--url" => api_url = Some(value()?),
            "--client-id" => args.client_id = Some(value()?),
            "--client-secret" => args.client_secret = Some(value()?),
            "--scope" => args.scopes.push(value()?),
            "--auth" => {
                args.auth = match value()?.as_str() {
                    "basic" => AuthStyle::Basic,
                    "post" => AuthStyle::RequestBody,
                    other => {
                        return Err(bad(format!("--auth must be basic or post, not {other:?}")));
                    }
                }
            }
            "--token-header" => args
                .token_headers
                .push(parse_header(&flag, &value()?).map_err(bad)?),
            "--api-header" => args
                .api_headers
                .push(parse_header(&flag, &value()?).map_err(bad)?),
            "--requests" => {
                requests = Some(parse_positive(&flag, &value()?, u64::MAX).map_err(bad)?)
            }
            "--duration" => {
                duration = Some(parse_positive(&flag, &value()?, MAX_SECS).map_err(bad)?)
            }
            "--concurrency" => {
                concurrency =
                    parse_positive(&flag, &value()?, MAX_CONCURRENCY).map_err(bad)? as usize
            }
            "--ttl" => ttl = Some(parse_positive(&flag, &value()?, MAX_SECS).map_err(bad)?),
            #[cfg(feature = "redis")]
            "--redis" => args.redis = Some(parse_redis_url(&value()?).map_err(bad)?),
            #[cfg(not(feature = "redis"))]
            "--redis" => {
                return Err(bad("--redis needs the demo built with the redis feature: \
                     cargo run --example demo --features redis -- --redis URL ..."
                    .into()));
            }
            "--serve" => serve_for = Some(parse_positive(&flag, &value()?, MAX_SECS).map_err(bad)?),
            "--api-key" => api_key = Some(value()?),
            // A stray value may be a secret: only a flag's name is repeated.
            other if other.starts_with('-') => {
                let name = other.split_once('=').map_or(other, |(name, _)| name);
                return Err(bad(format!("unknown argument {name:?}")));
            }
            _ => return Err(bad("unexpected value (every value follows its flag)".into())),
        }
        flags_seen.push(flag);
    }
    if let Some(secs) = serve_for {
        if let Some(flag) = flags_seen
            .iter()
            .find(|flag| !SERVE_FLAGS.contains(&flag.as_str()))
        {
            return Err(bad(format!("{flag} does not apply to --serve")));
        }
        // The processes that use the endpoint must know these, so they are
        // the caller's to choose, never printed.
        let client_secret = args
            .client_secret
            .or_else(|| std::env::var("CLIENT_SECRET").ok())
            .ok_or_else(|| {
                bad("--serve needs the client secret to accept: --client-secret S or env CLIENT_SECRET".into())
            })?;
        let api_key = api_key
            .or_else(|| std::env::var("API_KEY").ok())
            .ok_or_else(|| {
                bad("--serve needs the API key to accept: --api-key K or env API_KEY".into())
            })?;
        return Ok(Command::Serve(Serve {
            duration: Duration::from_secs(secs),
            ttl: ttl.map_or(DEFAULT_TTL, Duration::from_secs),
            credentials: Credentials {
                client_id: args
                    .client_id
                    .unwrap_or_else(|| Credentials::random().client_id),
                client_secret,
                api_key,
            },
        }));
    }
    if api_key.is_some() {
        return Err(bad("--api-key applies to --serve only".into()));
    }
    if requests.is_some() && duration.is_some() {
        return Err(bad("give --requests or --duration, not both".into()));
    }
    args.workload = Workload {
        requests: requests.unwrap_or(DEFAULT_REQUESTS),
        duration: duration.map(Duration::from_secs),
        concurrency,
    };
    args.provider = match (token_url, api_url) {
        (None, None) => Provider::Embedded {
            ttl: ttl.map_or(DEFAULT_TTL, Duration::from_secs),
        },
        (Some(token_url), Some(api_url)) => {
            if ttl.is_some() {
                return Err(bad(
                    "--ttl applies to the embedded token endpoint only".into()
                ));
            }
            if args.client_id.is_none() {
                return Err(bad("--token-url needs --client-id".into()));
            }
            Provider::Remote { token_url, api_url }
        }
        (Some(_), None) => return Err(bad("--token-url needs --url (the API to call)".into())),
        (None, Some(_)) => {
            return Err(bad(
                "--url needs --token-url (where tokens come from)".into()
            ));
        }
    };
    Ok(Command::Run(args))
}

/// A store for `--redis`. Building it connects to nothing: a Redis that is
/// down shows up later as direct fetches, never as a failed run.
#[cfg(feature = "redis")]
fn parse_redis_url(url: &str) -> Result<RedisStore, String> {
    // The URL may hold a password: the message does not repeat it.
    RedisStore::builder(url)
        .map(|builder| builder.build())
        .map_err(|e| format!("--redis needs a redis:// URL: {e}"))
}

/// A `Name: value` header. Messages name the flag and at most a valid
/// header name: the value, or a mistyped argument, may be a secret.
fn parse_header(flag: &str, text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{flag} needs 'Name: value' (with a colon)"))?;
    let (name, value) = (name.trim(), value.trim());
    if HeaderName::try_from(name).is_err() {
        return Err(format!("{flag}: the header name is not valid"));
    }
    if HeaderValue::try_from(value).is_err() {
        return Err(format!("{flag}: the value of {name:?} is not valid"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

fn parse_positive(flag: &str, text: &str, max: u64) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n > max => Err(format!("{flag} must be at most {max}, not {text}")),
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{flag} needs a positive whole number, not {text:?}"
        )),
    }
}

// ---------------------------------------------------------------------------
// The embedded token endpoint and API.

/// A token endpoint shaped like Avionté's and an API that accepts only live
/// tokens it issued, on 127.0.0.1.
struct Embedded {
    token_url: String,
    api_url: String,
    api_key: String,
    client_id: String,
    client_secret: String,
    state: Arc<EmbeddedState>,
    // Dropping it stops both servers and their connections.
    _servers: JoinSet<()>,
}

struct EmbeddedState {
    api_key: String,
    client_id: String,
    client_secret: String,
    ttl: Duration,
    live: Mutex<HashMap<String, Instant>>,
    tokens_issued: AtomicU64,
    credentials_refused: AtomicU64,
    api_accepted: AtomicU64,
    api_rejected: AtomicU64,
}

fn random_string(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(len)
        .collect()
}

impl Embedded {
    async fn start(ttl: Duration, credentials: Credentials) -> std::io::Result<Embedded> {
        let Credentials {
            client_id,
            client_secret,
            api_key,
        } = credentials;
        let state = Arc::new(EmbeddedState {
            api_key,
            client_id,
            client_secret,
            ttl,
            live: Mutex::new(HashMap::new()),
            tokens_issued: AtomicU64::new(0),
            credentials_refused: AtomicU64::new(0),
            api_accepted: AtomicU64::new(0),
            api_rejected: AtomicU64::new(0),
        });
        let mut servers = JoinSet::new();
        let token_addr = serve(&mut servers, Arc::clone(&state), token_endpoint).await?;
        let api_addr = serve(&mut servers, Arc::clone(&state), api_endpoint).await?;
        Ok(Embedded {
            token_url: format!("http://{token_addr}/authorize/token"),
            api_url: format!("http://{api_addr}/front-office/v1/talents"),
            api_key: state.api_key.clone(),
            client_id: state.client_id.clone(),
            client_secret: state.client_secret.clone(),
            state,
            _servers: servers,
        })
    }
}

type Handler = fn(Arc<EmbeddedState>, http::Request<Incoming>) -> HandlerFuture;
type HandlerFuture = std::pin::Pin<Box<dyn Future<Output = http::Response<Full<Bytes>>> + Send>>;

async fn serve(
    servers: &mut JoinSet<()>,
    state: Arc<EmbeddedState>,
    handler: Handler,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    servers.spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let state = Arc::clone(&state);
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handler(state, req).await) }
            });
            connections.spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            // Reap finished connections so the set stays small.
            while connections.try_join_next().is_some() {}
        }
    });
    Ok(addr)
}

fn json_response(status: StatusCode, body: serde_json::Value) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> http::Response<Full<Bytes>> {
    json_response(
        status,
        serde_json::json!({ "error": error, "error_description": description }),
    )
}

fn token_endpoint(state: Arc<EmbeddedState>, req: http::Request<Incoming>) -> HandlerFuture {
    Box::pin(async move {
        if req.method() != Method::POST {
            return oauth_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "use POST",
            );
        }
        let key_ok = req
            .headers()
            .get("x-api-key")
            .is_some_and(|k| k.as_bytes() == state.api_key.as_bytes());
        if !key_ok {
            state.credentials_refused.fetch_add(1, Ordering::Relaxed);
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The x-api-key header is missing or wrong",
            );
        }
        let Ok(body) = Limited::new(req.into_body(), 16 * 1024).collect().await else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The body is too long",
            );
        };
        let form: HashMap<String, String> =
            serde_urlencoded::from_bytes(&body.to_bytes()).unwrap_or_default();
        let field = |name: &str| form.get(name).map(String::as_str);
        if field("grant_type") != Some("client_credentials") {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Only client_credentials is supported",
            );
        }
        // Like Avionté: credentials in the form (client_secret_post).
        if field("client_id") != Some(state.client_id.as_str())
            || field("client_secret") != Some(state.client_secret.as_str())
        {
            state.credentials_refused.fetch_add(1, Ordering::Relaxed);
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "Invalid client credentials",
            );
        }
        let token = random_string(40);
        let now = Instant::now();
        // --ttl is capped when parsed; this keeps the handler from panicking
        // should that cap ever exceed the clock's range.
        let Some(expires) = now.checked_add(state.ttl) else {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "The token lifetime is too long",
            );
        };
        {
            let mut live = state.live.lock().unwrap_or_else(|p| p.into_inner());
            live.retain(|_, expires| *expires > now);
            live.insert(token.clone(), expires);
        }
        state.tokens_issued.fetch_add(1, Ordering::Relaxed);
        json_response(
            StatusCode::OK,
            serde_json::json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": state.ttl.as_secs(),
            }),
        )
    })
}

fn api_endpoint(state: Arc<EmbeddedState>, req: http::Request<Incoming>) -> HandlerFuture {
    Box::pin(async move {
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let live = token.is_some_and(|t| {
            let live = state.live.lock().unwrap_or_else(|p| p.into_inner());
            live.get(t).is_some_and(|expires| Instant::now() < *expires)
        });
        if !live {
            state.api_rejected.fetch_add(1, Ordering::Relaxed);
            let mut res = json_response(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({ "message": "missing, unknown or expired token" }),
            );
            res.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            return res;
        }
        state.api_accepted.fetch_add(1, Ordering::Relaxed);
        json_response(StatusCode::OK, serde_json::json!({ "items": [] }))
    })
}

// ---------------------------------------------------------------------------
// The workload.

/// What one worker saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    token_failures: u64,
    transport_failures: u64,
    first_token_error: Option<String>,
    first_transport_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.token_failures += other.token_failures;
        self.transport_failures += other.transport_failures;
        self.first_token_error = self.first_token_error.take().or(other.first_token_error);
        self.first_transport_error = self
            .first_transport_error
            .take()
            .or(other.first_transport_error);
    }

    fn sent(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    fn ok(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Shared by the workers.
struct Run {
    workload: Workload,
    deadline: Option<Instant>,
    tickets: AtomicU64,
    cache: TokenCache,
    // `waited_for_fetch` when the first answer came: the requests that
    // waited for the first token.
    waited_for_first_token: OnceLock<u64>,
}

impl Run {
    fn next(&self) -> bool {
        match self.deadline {
            Some(deadline) => Instant::now() < deadline,
            None => self.tickets.fetch_add(1, Ordering::Relaxed) < self.workload.requests,
        }
    }
}

async fn worker(
    run: Arc<Run>,
    mut client: BearerAuth<reqwest::Client>,
    url: reqwest::Url,
    headers: HeaderMap,
) -> Tally {
    let mut tally = Tally::default();
    while run.next() {
        let mut request = reqwest::Request::new(Method::GET, url.clone());
        *request.headers_mut() = headers.clone();
        let started = Instant::now();
        let result = match client.ready().await {
            Ok(ready) => ready.call(request).await,
            Err(e) => Err(e),
        };
        tally
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
        run.waited_for_first_token
            .get_or_init(|| run.cache.stats().waited_for_fetch);
        match result {
            Ok(response) => {
                *tally
                    .statuses
                    .entry(response.status().as_u16())
                    .or_default() += 1;
                // Read the body so the connection is reused.
                let _ = response.bytes().await;
            }
            Err(Error::Token(error)) => {
                tally.token_failures += 1;
                if tally.first_token_error.is_none() {
                    let why = error
                        .source_error()
                        .map_or_else(|| error.to_string(), |e| e.to_string());
                    tally.first_token_error = Some(why);
                }
                // The cache fails requests at once while it backs off, with
                // no call to the token endpoint; a timed run waits with it
                // rather than spin.
                if let (Some(deadline), Some(wait)) = (run.deadline, error.backoff_remaining()) {
                    let until = Instant::now()
                        .checked_add(wait)
                        .map_or(deadline, |t| deadline.min(t));
                    tokio::time::sleep_until(until).await;
                }
            }
            Err(Error::Service(error)) => {
                tally.transport_failures += 1;
                if tally.first_transport_error.is_none() {
                    // reqwest's Display appends the URL, query and all.
                    tally.first_transport_error = Some(error_chain(&error.without_url()));
                }
            }
        }
    }
    tally
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn header_map(headers: &[(String, String)]) -> HeaderMap {
    headers
        .iter()
        .map(|(n, v)| {
            let name = HeaderName::try_from(n.as_str()).expect("checked when parsed");
            let mut value = HeaderValue::try_from(v.as_str()).expect("checked when parsed");
            value.set_sensitive(true);
            (name, value)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The report.

/// Nearest-rank percentile of sorted samples, in milliseconds.
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil().max(1.0) as usize;
    sorted_us[rank.min(sorted_us.len()) - 1] as f64 / 1000.0
}

fn histogram(latencies_us: &[u64]) -> Vec<(String, u64)> {
    let mut counts = [0u64; BUCKETS_MS.len() + 1];
    for &us in latencies_us {
        let bucket = BUCKETS_MS
            .iter()
            .position(|&ms| us <= ms * 1000)
            .unwrap_or(BUCKETS_MS.len());
        counts[bucket] += 1;
    }
    BUCKETS_MS
        .iter()
        .map(|ms| ms.to_string())
        .chain(std::iter::once("inf".to_owned()))
        .zip(counts)
        .collect()
}

/// The closing JSON line, keys in the documented order.
fn json_line(tally: &Tally, token_fetches: u64) -> String {
    let mut sorted = tally.latencies_us.clone();
    sorted.sort_unstable();
    let statuses: Vec<String> = tally
        .statuses
        .iter()
        .map(|(s, n)| format!("\"{s}\":{n}"))
        .collect();
    let buckets: Vec<String> = histogram(&tally.latencies_us)
        .into_iter()
        .map(|(k, n)| format!("\"{k}\":{n}"))
        .collect();
    format!(
        "{{\"requests\":{},\"ok\":{},\"failed\":{},\"status\":{{{}}},\"token_fetches\":{},\
         \"latency_ms\":{{\"p50\":{:.3},\"p99\":{:.3},\"max\":{:.3}}},\
         \"latency_histogram_ms\":{{{}}}}}",
        tally.sent(),
        tally.ok(),
        tally.sent() - tally.ok(),
        statuses.join(","),
        token_fetches,
        percentile_ms(&sorted, 50.0),
        percentile_ms(&sorted, 99.0),
        sorted.last().map_or(0.0, |&us| us as f64 / 1000.0),
        buckets.join(","),
    )
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// ---------------------------------------------------------------------------

#[tokio::main]
async fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(ArgsError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Bad(msg)) => {
            eprintln!("error: {msg}");
            eprintln!("{}", USAGE.lines().next().unwrap_or_default());
            eprintln!("(run with --help for more)");
            return ExitCode::from(2);
        }
    };
    let outcome = match command {
        Command::Run(args) => run(args).await,
        Command::Serve(serve) => serve_only(serve).await,
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Runs the demo; `Ok(true)` when every request succeeded.
async fn run(args: Args) -> Result<bool, String> {
    let embedded = match &args.provider {
        Provider::Embedded { ttl } => Some(
            Embedded::start(*ttl, Credentials::random())
                .await
                .map_err(|e| format!("could not start the embedded servers: {e}"))?,
        ),
        Provider::Remote { .. } => None,
    };

    let source = match (&args.provider, &embedded) {
        (Provider::Embedded { ttl }, Some(servers)) => {
            println!(
                "Embedded token endpoint at {} (Avionté-shaped, tokens live {}s)",
                servers.token_url,
                ttl.as_secs()
            );
            println!(
                "Embedded API at {} (accepts only live tokens it issued)",
                servers.api_url
            );
            ClientCredentials::builder(
                &servers.token_url,
                args.client_id
                    .clone()
                    .unwrap_or_else(|| servers.client_id.clone()),
            )
            .client_secret(
                args.client_secret
                    .clone()
                    .unwrap_or_else(|| servers.client_secret.clone()),
            )
            .auth_style(AuthStyle::RequestBody)
            .header("x-api-key", servers.api_key.clone())
            .scopes(args.scopes.clone())
            .build()
        }
        (Provider::Remote { token_url, api_url }, _) => {
            println!(
                "Token endpoint {}; API {}",
                redact_url(token_url),
                redact_url(api_url)
            );
            let secret = args
                .client_secret
                .clone()
                .or_else(|| std::env::var("CLIENT_SECRET").ok());
            let mut builder = ClientCredentials::builder(
                token_url,
                args.client_id.clone().expect("checked when parsed"),
            )
            .auth_style(args.auth)
            .scopes(args.scopes.clone());
            if let Some(secret) = secret {
                builder = builder.client_secret(secret);
            }
            for (name, value) in &args.token_headers {
                builder = builder.header(name.clone(), value.clone());
            }
            builder.build()
        }
        (Provider::Embedded { .. }, None) => unreachable!("the servers started above"),
    }
    .map_err(|e| e.to_string())?;

    let (api_url, api_headers) = match (&args.provider, &embedded) {
        (Provider::Remote { api_url, .. }, _) => (api_url.clone(), header_map(&args.api_headers)),
        (_, Some(servers)) => {
            // Like the BOLD API: x-api-key and Tenant on every call.
            let mut headers = vec![
                ("x-api-key".to_owned(), servers.api_key.clone()),
                ("tenant".to_owned(), "demo".to_owned()),
            ];
            headers.extend(args.api_headers.iter().cloned());
            (servers.api_url.clone(), header_map(&headers))
        }
        _ => unreachable!("embedded mode has servers"),
    };
    // The URL may hold credentials: the message does not repeat it.
    let api_url =
        reqwest::Url::parse(&api_url).map_err(|e| format!("--url is not a valid URL: {e}"))?;

    let (cache, endpoint_fetches) = build_cache(source, &args);
    let layer = BearerAuthLayer::with_cache(cache.clone());
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(reqwest::Client::new());

    let workload = args.workload;
    match workload.duration {
        Some(d) => println!(
            "Sending requests for {}s, {} at a time, through BearerAuthLayer over reqwest...",
            d.as_secs(),
            workload.concurrency
        ),
        None => println!(
            "Sending {} requests, {} at a time, through BearerAuthLayer over reqwest...",
            workload.requests, workload.concurrency
        ),
    }
    let started = Instant::now();
    let run = Arc::new(Run {
        workload,
        deadline: match workload.duration {
            Some(d) => Some(
                started
                    .checked_add(d)
                    .ok_or("--duration is too long for this clock")?,
            ),
            None => None,
        },
        tickets: AtomicU64::new(0),
        cache: cache.clone(),
        waited_for_first_token: OnceLock::new(),
    });
    let mut workers = JoinSet::new();
    for _ in 0..workload.concurrency {
        workers.spawn(worker(
            Arc::clone(&run),
            client.clone(),
            api_url.clone(),
            api_headers.clone(),
        ));
    }
    let mut tally = Tally::default();
    while let Some(result) = workers.join_next().await {
        tally.merge(result.map_err(|e| format!("a worker failed: {e}"))?);
    }
    let elapsed = started.elapsed();
    let stats = cache.stats();

    println!("Done in {:.2}s.", elapsed.as_secs_f64());
    let failed = tally.sent() - tally.ok();
    println!(
        "Requests: {} sent, {} answered 2xx, {} failed.",
        tally.sent(),
        tally.ok(),
        failed
    );
    let first_fetches = stats.fetches_started - stats.refreshes_ahead;
    println!(
        "Tokens: {} {} ({} when no usable token was cached, {} ahead of expiry in the background); {} failed.",
        plural(stats.fetches_started, "fetch", "fetches"),
        if endpoint_fetches.is_some() {
            "through the shared store"
        } else {
            "from the token endpoint"
        },
        first_fetches,
        stats.refreshes_ahead,
        stats.fetches_failed,
    );
    if let Some(endpoint_fetches) = &endpoint_fetches {
        let from_endpoint = endpoint_fetches.load(Ordering::Relaxed);
        println!(
            "Shared store: {} answered from Redis, {} from the token endpoint.",
            plural(
                stats.fetches_started.saturating_sub(from_endpoint),
                "fetch was",
                "fetches were"
            ),
            from_endpoint,
        );
    }
    let waited_first = run.waited_for_first_token.get().copied().unwrap_or(0);
    let waited_later = stats.waited_for_fetch - waited_first;
    if tally.ok() == 0 {
        println!(
            "Waiting: {} for a token.",
            plural(stats.waited_for_fetch, "request waited", "requests waited")
        );
    } else if waited_later == 0 {
        println!(
            "Waiting: {} for the first token; none waited after that (every later token came ahead of time, in the background).",
            plural(waited_first, "request waited", "requests waited")
        );
    } else {
        println!(
            "Waiting: {} for the first token, and {} for a token later on (a token was missing or rejected).",
            plural(waited_first, "request waited", "requests waited"),
            plural(waited_later, "request waited", "requests waited")
        );
    }
    if let Some(servers) = &embedded {
        let s = &servers.state;
        println!(
            "Embedded side: the token endpoint issued {} and refused {}; the API accepted {} and rejected {}.",
            plural(s.tokens_issued.load(Ordering::Relaxed), "token", "tokens"),
            plural(
                s.credentials_refused.load(Ordering::Relaxed),
                "request",
                "requests"
            ),
            plural(
                s.api_accepted.load(Ordering::Relaxed),
                "request",
                "requests"
            ),
            s.api_rejected.load(Ordering::Relaxed),
        );
    }
    let mut sorted = tally.latencies_us.clone();
    sorted.sort_unstable();
    println!(
        "Latency: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms.",
        percentile_ms(&sorted, 50.0),
        percentile_ms(&sorted, 99.0),
        sorted.last().map_or(0.0, |&us| us as f64 / 1000.0)
    );

    // What went wrong, in plain words.
    for (status, n) in &tally.statuses {
        if !(200..300).contains(status) {
            let reason = StatusCode::from_u16(*status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            println!(
                "Problem: the API answered {} with HTTP {status} {reason}.",
                plural(*n, "request", "requests")
            );
        }
    }
    if tally.token_failures > 0 {
        println!(
            "Problem: {} not sent because no token could be had.",
            plural(tally.token_failures, "request was", "requests were"),
        );
        println!(
            "  The cache asked the token endpoint {} in all and, while backing off between attempts, failed {} at once without asking it: no fetch storm.",
            plural(stats.fetches_started, "time", "times"),
            plural(stats.failed_fast, "request", "requests"),
        );
    }
    if tally.transport_failures > 0 {
        println!(
            "Problem: {} could not reach the API.",
            plural(tally.transport_failures, "request", "requests")
        );
    }
    if let Some(why) = &tally.first_token_error {
        eprintln!("error: no token could be had: {why}");
    }
    if let Some(why) = &tally.first_transport_error {
        eprintln!("error: the API could not be reached: {why}");
    }

    println!("{}", json_line(&tally, stats.fetches_started));
    Ok(tally.sent() > 0 && failed == 0)
}

/// The token cache the workload shares, with the crate's defaults. With
/// `--redis`, its source is the fleet-wide store in front of `source`, and
/// the counter says how many fetches reached the token endpoint.
#[cfg(feature = "redis")]
fn build_cache(
    source: ClientCredentialsSource,
    args: &Args,
) -> (TokenCache, Option<Arc<AtomicU64>>) {
    let Some(store) = &args.redis else {
        return (TokenCache::builder(source).build(), None);
    };
    // What identifies the token; never the secret or the x-api-key.
    let key = StoreKey::builder()
        .token_url(source.token_url().as_str())
        .client_id(source.client_id())
        .scopes(source.scopes())
        .build();
    let endpoint_fetches = Arc::new(AtomicU64::new(0));
    let counted = CountedSource {
        inner: source,
        fetches: Arc::clone(&endpoint_fetches),
    };
    let cache = TokenCache::builder(store.share(counted, key)).build();
    (cache, Some(endpoint_fetches))
}

/// The token cache the workload shares, with the crate's defaults.
#[cfg(not(feature = "redis"))]
fn build_cache(
    source: ClientCredentialsSource,
    _args: &Args,
) -> (TokenCache, Option<Arc<AtomicU64>>) {
    (TokenCache::builder(source).build(), None)
}

/// Counts the fetches that reach the wrapped source, to tell them from those
/// the shared store answered.
#[cfg(feature = "redis")]
struct CountedSource<S> {
    inner: S,
    fetches: Arc<AtomicU64>,
}

#[cfg(feature = "redis")]
impl<S: tower_bearer::TokenSource> tower_bearer::TokenSource for CountedSource<S> {
    type Error = S::Error;

    fn fetch(&self) -> impl Future<Output = Result<tower_bearer::Token, S::Error>> + Send {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.inner.fetch()
    }

    fn classify(&self, error: &S::Error) -> tower_bearer::ErrorClass {
        self.inner.classify(error)
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

// ---------------------------------------------------------------------------
// `--serve`: the embedded token endpoint and API alone.

/// Serves until the time is up or the process is told to stop, then reports
/// what the endpoint and API did.
async fn serve_only(serve: Serve) -> Result<bool, String> {
    // Listen for the stop signals before saying "ready", so that a SIGTERM
    // sent right after the first line still ends in a report.
    let stop = stop_requested()?;
    let servers = Embedded::start(serve.ttl, serve.credentials)
        .await
        .map_err(|e| format!("could not start the embedded servers: {e}"))?;
    println!(
        "{}",
        serde_json::json!({
            "token_url": servers.token_url,
            "api_url": servers.api_url,
            "client_id": servers.client_id,
        })
    );
    println!(
        "Serving an Avionté-shaped token endpoint (tokens live {}s) and an API for {}s; \
         SIGTERM, Ctrl-C or closing a piped standard input stops it sooner.",
        serve.ttl.as_secs(),
        serve.duration.as_secs(),
    );
    let started = Instant::now();
    let why = tokio::select! {
        _ = tokio::time::sleep(serve.duration) => "the time is up",
        why = stop => why,
    };
    let s = &servers.state;
    let issued = s.tokens_issued.load(Ordering::Relaxed);
    let refused = s.credentials_refused.load(Ordering::Relaxed);
    let accepted = s.api_accepted.load(Ordering::Relaxed);
    let rejected = s.api_rejected.load(Ordering::Relaxed);
    println!(
        "Stopped after {:.1}s ({why}): the token endpoint issued {} and refused {}; the API accepted {} and rejected {}.",
        started.elapsed().as_secs_f64(),
        plural(issued, "token", "tokens"),
        plural(refused, "request", "requests"),
        plural(accepted, "request", "requests"),
        rejected,
    );
    println!(
        "{{\"tokens_issued\":{issued},\"token_requests_refused\":{refused},\
         \"api_requests_accepted\":{accepted},\"api_requests_rejected\":{rejected}}}"
    );
    Ok(true)
}

/// Resolves, with the reason, on SIGTERM or Ctrl-C, or when standard input
/// is a pipe and closes (as it does when the parent holding it exits).
fn stop_requested() -> Result<impl Future<Output = &'static str>, String> {
    let stdin_closed = stdin_pipe_closed();
    #[cfg(unix)]
    let (mut terminate, mut interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind| signal(kind).map_err(|e| format!("cannot listen for signals: {e}"));
        (
            listen(SignalKind::terminate())?,
            listen(SignalKind::interrupt())?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = stdin_closed => "standard input closed",
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "interrupted",
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = stdin_closed => "standard input closed",
            Ok(()) = tokio::signal::ctrl_c() => "interrupted",
        }
    })
}

/// Resolves when standard input, a pipe, reaches its end; never when it is
/// something else: a background job's `/dev/null` must not stop the server
/// at once.
fn stdin_pipe_closed() -> impl Future<Output = ()> {
    let closed = stdin_is_a_pipe().then(|| {
        let (tell, closed) = tokio::sync::oneshot::channel::<()>();
        // A plain thread: tokio's stdin reads on a blocking thread that would
        // hold up the runtime's shutdown until input arrives.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = tell.send(());
        });
        closed
    });
    async move {
        match closed {
            Some(closed) => {
                let _ = closed.await;
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(unix)]
fn stdin_is_a_pipe() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|stdin| stdin.metadata())
        .is_ok_and(|meta| meta.file_type().is_fifo() || meta.file_type().is_socket())
}

#[cfg(not(unix))]
fn stdin_is_a_pipe() -> bool {
    false
}

// Run with `cargo test --all-features --example demo`: the arguments'
// Debug cannot be observed from outside the process.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_arguments_shows_no_secret() {
        let args = [
            "--token-url",
            "http://cid:PASSW0RD@127.0.0.1/token?k=K3Y",
            "--client-id",
            "id",
            "--client-secret",
            "S3CRET",
            "--token-header",
            "x-api-key: H34DER",
            "--api-header",
            "tenant: H34DER",
            "--url",
            "http://u:PASS@127.0.0.1/api?api_key=K3Y",
        ];
        let Ok(Command::Run(parsed)) = parse_args(args.map(String::from)) else {
            panic!("the arguments parse");
        };
        let shown = format!("{parsed:?}");
        for secret in ["PASSW0RD", "PASS", "K3Y", "S3CRET", "H34DER"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("x-api-key"), "{shown}");
        assert!(shown.contains("http://127.0.0.1/api"), "{shown}");
    }

    #[test]
    fn redacted_urls_keep_scheme_host_and_path_only() {
        assert_eq!(
            redact_url("https://u:p@example.com:8443/a/b?api_key=x#f"),
            "https://example.com:8443/a/b"
        );
        assert!(!redact_url("not a url: u:p@host").contains("u:p"));
        assert_eq!(redact_url("not a url?api_key=x"), "not a url");
    }
}
