//! The embedded provider: a token endpoint shaped like Avionté's and an API
//! that accepts only live tokens it issued, on 127.0.0.1 with free ports.
//!
//! Resources and audiences: a token request may name `resource`s (RFC 8707)
//! and `audience`s. The endpoint knows one protected resource, its API: it
//! accepts any absolute `http` URI on the API's origin
//! (`http://127.0.0.1:PORT/...`), as a resource or as an audience, without
//! a query, user info or fragment and with a plain path (no `.` or `..`
//! segment, no encoded `/` or `\`), and refuses any other with 400
//! `invalid_target` (RFC 8707 section 2, RFC 8693 section 2.2.2). It counts
//! the tokens issued per resource or audience, and remembers at most
//! [`MAX_TARGETS`] of them: a request naming another is refused too. The
//! token it issues is bound to what the request named: the API takes it
//! only for plain paths under one of them (a URI covers its own path and
//! the paths below it), and answers any other path 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"`, counted as a
//! wrong-target call. A token whose request named none is good for every
//! path, as before.
//!
//! Token exchange (RFC 8693): the token endpoint takes the
//! `urn:ietf:params:oauth:grant-type:token-exchange` grant too, from the
//! same client authenticated the same way. The request must carry a
//! `subject_token` and its `subject_token_type`, and an `actor_token` with
//! its `actor_token_type` or neither; a token said to be a JWT must look
//! like one (three dot-separated parts), or the exchange is refused with
//! `invalid_grant`. Its resources and audiences are checked as above, and
//! the token it issues is like any other.
//!
//! DPoP (RFC 9449): see [`dpop`], the servers' proof checks.
//!
//! `tests/demo.rs` starts it too, to run the demo's remote mode against it,
//! so this file stands alone: everything it uses is imported here.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

// The checks on one proof, shared with the library's tests so that the
// demo's provider is as independent of the library as theirs. The demo
// uses a part of it; tests/demo.rs loads it a second time, through its
// support module.
// Beside this file, from wherever this file is loaded (`tests/demo.rs`
// loads it by path too).
#[path = "dpop.rs"]
mod dpop;

use dpop::{DpopServer, ProofRefusal, dpop_challenge, dpop_verify};

/// RFC 8693's grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// RFC 8693's type of a JWT.
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The most distinct resources and audiences the token endpoint counts
/// tokens for; a request naming one more is refused with `invalid_target`,
/// so that what it remembers stays bounded.
pub const MAX_TARGETS: usize = 1_000;

/// The credentials the embedded token endpoint accepts.
#[derive(Clone)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: String,
    /// The `x-api-key` the token endpoint wants; the API counts the calls
    /// that carry it.
    pub api_key: String,
}

impl Credentials {
    pub fn random() -> Self {
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

/// The running token endpoint and API. Dropping it stops both, and their
/// connections.
pub struct Embedded {
    pub token_url: String,
    /// The token endpoint's origin, whose OpenID Connect metadata
    /// (`/.well-known/openid-configuration`) names the token URL.
    pub issuer: String,
    pub api_url: String,
    pub credentials: Credentials,
    state: Arc<EmbeddedState>,
    _servers: JoinSet<()>,
}

/// What the token endpoint and the API have done so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub tokens_issued: u64,
    /// Of the tokens issued, those for a token exchange.
    pub tokens_exchanged: u64,
    pub credentials_refused: u64,
    /// Token exchanges refused: a subject or actor token missing, or not
    /// what its type says (`invalid_request`, `invalid_grant`).
    pub exchanges_refused: u64,
    /// Token requests refused with `invalid_target`: a resource or audience
    /// that is not the API's.
    pub targets_refused: u64,
    pub api_accepted: u64,
    /// Every call refused, those with a token for another target included.
    pub api_rejected: u64,
    /// Calls refused because their token was bound to another resource or
    /// audience: a token sent where it does not belong.
    pub api_wrong_target: u64,
    /// Accepted calls that carried the API key, as the BOLD API wants.
    pub api_with_key: u64,
    /// Of the tokens issued, those bound to a DPoP key (`token_type` `DPoP`).
    pub dpop_tokens_issued: u64,
    /// Token requests answered `use_dpop_nonce`: their proof lacked the
    /// endpoint's nonce. A challenge, not a refusal.
    pub token_nonce_challenges: u64,
    /// API calls answered `use_dpop_nonce`. Not in `api_rejected`.
    pub api_nonce_challenges: u64,
    /// Token requests refused for their DPoP proof (`invalid_dpop_proof`,
    /// or the server's replay memory full).
    pub token_proofs_refused: u64,
    /// API calls refused for their DPoP proof, or for a proof by another
    /// key than the token's (in `api_rejected` too).
    pub api_proofs_refused: u64,
}

impl Counts {
    /// Token requests refused, for whatever reason (a nonce challenge is
    /// not a refusal).
    pub fn token_requests_refused(&self) -> u64 {
        self.credentials_refused
            + self.targets_refused
            + self.exchanges_refused
            + self.token_proofs_refused
    }

    /// `use_dpop_nonce` challenges, at the token endpoint and the API.
    pub fn nonce_challenges(&self) -> u64 {
        self.token_nonce_challenges + self.api_nonce_challenges
    }

    /// Requests refused for their DPoP proof, at both servers.
    pub fn proofs_refused(&self) -> u64 {
        self.token_proofs_refused + self.api_proofs_refused
    }
}

/// What the last token exchange sent, as the token endpoint read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Exchange {
    pub subject_token: String,
    pub subject_token_type: String,
    pub actor_token: Option<String>,
    pub actor_token_type: Option<String>,
}

// The tokens are secrets: Debug shows their types.
impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("subject_token_type", &self.subject_token_type)
            .field("actor_token_type", &self.actor_token_type)
            .finish_non_exhaustive()
    }
}

/// A live token: when it dies, the resources and audiences it is for
/// (none: every path), and the thumbprint of the DPoP key it is bound to
/// (none: a bearer token).
struct Live {
    expires: Instant,
    targets: Vec<ApiTarget>,
    jkt: Option<String>,
}

/// A resource or audience on the API's origin: the path it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ApiTarget {
    path: String,
}

impl ApiTarget {
    /// Whether a call to `path` is under this target: the same path, or one
    /// below it. A path that is not plain is under none: `/a/../b` would
    /// pass for `/a` here and reach `/b` wherever dots are resolved.
    fn covers(&self, path: &str) -> bool {
        let own = self.path.trim_end_matches('/');
        plain_path(path)
            && (own.is_empty()
                || path == own
                || path
                    .strip_prefix(own)
                    .is_some_and(|rest| rest.starts_with('/')))
    }
}

/// Whether `path` means what it says, byte for byte: no `.` or `..`
/// segment (encoded or not), and no `/` or `\` hidden as `%2F` or `%5C`,
/// nor a `\`, which servers may read as a slash.
fn plain_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let dots = lower.replace("%2e", ".");
    !lower.contains("%2f")
        && !lower.contains("%5c")
        && !lower.contains('\\')
        && dots
            .split('/')
            .all(|segment| segment != "." && segment != "..")
}

/// The tokens issued per resource or audience, and per audience alone (the
/// names sent as `audience`), each bounded by [`MAX_TARGETS`] names.
#[derive(Default)]
struct Issued {
    by_target: BTreeMap<String, u64>,
    by_audience: BTreeMap<String, u64>,
}

impl Issued {
    /// Counts a token whose request named `named` (`(parameter, value)`),
    /// each name once per token; `false`, counting nothing, when that would
    /// make more than `limit` names.
    fn record(&mut self, named: &[(&str, &str)], limit: usize) -> bool {
        let mut names: Vec<&str> = named.iter().map(|(_, value)| *value).collect();
        names.sort_unstable();
        names.dedup();
        let new = names
            .iter()
            .filter(|name| !self.by_target.contains_key(**name))
            .count();
        if self.by_target.len() + new > limit {
            return false;
        }
        for name in names {
            *self.by_target.entry(name.to_owned()).or_default() += 1;
        }
        let mut audiences: Vec<&str> = named
            .iter()
            .filter(|(kind, _)| *kind == "audience")
            .map(|(_, value)| *value)
            .collect();
        audiences.sort_unstable();
        audiences.dedup();
        for audience in audiences {
            *self.by_audience.entry(audience.to_owned()).or_default() += 1;
        }
        true
    }
}

struct EmbeddedState {
    credentials: Credentials,
    /// The issuer and token URL its metadata names.
    issuer: String,
    token_url: String,
    ttl: Duration,
    /// The API's `host:port`: the origin every resource and audience must
    /// name.
    api_authority: String,
    live: Mutex<HashMap<String, Live>>,
    /// Tokens issued per resource or audience, as named in the request.
    issued: Mutex<Issued>,
    tokens_issued: AtomicU64,
    tokens_exchanged: AtomicU64,
    credentials_refused: AtomicU64,
    exchanges_refused: AtomicU64,
    last_exchange: Mutex<Option<Exchange>>,
    targets_refused: AtomicU64,
    api_accepted: AtomicU64,
    api_rejected: AtomicU64,
    api_wrong_target: AtomicU64,
    api_with_key: AtomicU64,
    dpop_tokens_issued: AtomicU64,
    /// What the token endpoint and the API each keep for DPoP.
    token_dpop: DpopServer,
    api_dpop: DpopServer,
}

fn random_string(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(len)
        .collect()
}

impl Embedded {
    /// Starts both servers; tokens live `ttl`.
    pub async fn start(ttl: Duration, credentials: Credentials) -> std::io::Result<Embedded> {
        // The API's address first: the token endpoint checks resources
        // against it.
        let token_listener = TcpListener::bind("127.0.0.1:0").await?;
        let api_listener = TcpListener::bind("127.0.0.1:0").await?;
        let token_addr = token_listener.local_addr()?;
        let api_addr = api_listener.local_addr()?;
        let issuer = format!("http://{token_addr}");
        let token_url = format!("{issuer}/authorize/token");
        let state = Arc::new(EmbeddedState {
            credentials: credentials.clone(),
            issuer: issuer.clone(),
            token_url: token_url.clone(),
            ttl,
            api_authority: api_addr.to_string(),
            live: Mutex::new(HashMap::new()),
            issued: Mutex::new(Issued::default()),
            tokens_issued: AtomicU64::new(0),
            tokens_exchanged: AtomicU64::new(0),
            credentials_refused: AtomicU64::new(0),
            exchanges_refused: AtomicU64::new(0),
            last_exchange: Mutex::new(None),
            targets_refused: AtomicU64::new(0),
            api_accepted: AtomicU64::new(0),
            api_rejected: AtomicU64::new(0),
            api_wrong_target: AtomicU64::new(0),
            api_with_key: AtomicU64::new(0),
            dpop_tokens_issued: AtomicU64::new(0),
            token_dpop: DpopServer::new(),
            api_dpop: DpopServer::new(),
        });
        let mut servers = JoinSet::new();
        spawn_server(
            &mut servers,
            token_listener,
            Arc::clone(&state),
            token_endpoint,
            |state| &state.token_dpop,
        );
        spawn_server(
            &mut servers,
            api_listener,
            Arc::clone(&state),
            api_endpoint,
            |state| &state.api_dpop,
        );
        Ok(Embedded {
            token_url,
            issuer,
            api_url: format!("http://{api_addr}/front-office/v1/talents"),
            credentials,
            state,
            _servers: servers,
        })
    }

    /// The API's origin, `http://127.0.0.1:PORT`: every resource and
    /// audience the token endpoint accepts is under it.
    pub fn api_origin(&self) -> String {
        format!("http://{}", self.state.api_authority)
    }

    pub fn counts(&self) -> Counts {
        let s = &self.state;
        Counts {
            tokens_issued: s.tokens_issued.load(Ordering::Relaxed),
            tokens_exchanged: s.tokens_exchanged.load(Ordering::Relaxed),
            credentials_refused: s.credentials_refused.load(Ordering::Relaxed),
            exchanges_refused: s.exchanges_refused.load(Ordering::Relaxed),
            targets_refused: s.targets_refused.load(Ordering::Relaxed),
            api_accepted: s.api_accepted.load(Ordering::Relaxed),
            api_rejected: s.api_rejected.load(Ordering::Relaxed),
            api_wrong_target: s.api_wrong_target.load(Ordering::Relaxed),
            api_with_key: s.api_with_key.load(Ordering::Relaxed),
            dpop_tokens_issued: s.dpop_tokens_issued.load(Ordering::Relaxed),
            token_nonce_challenges: s.token_dpop.nonce_challenges.load(Ordering::Relaxed),
            api_nonce_challenges: s.api_dpop.nonce_challenges.load(Ordering::Relaxed),
            token_proofs_refused: s.token_dpop.proofs_refused.load(Ordering::Relaxed),
            api_proofs_refused: s.api_dpop.proofs_refused.load(Ordering::Relaxed),
        }
    }

    /// What the last token exchange the endpoint answered sent, refused
    /// or not (`None` before the first).
    // For tests/demo.rs, which checks what reached the endpoint.
    #[allow(dead_code)]
    pub fn last_exchange(&self) -> Option<Exchange> {
        lock(&self.state.last_exchange).clone()
    }

    /// The tokens issued per resource or audience, as the requests named
    /// them; a token whose request named two counts under each. Tokens
    /// whose request named none are in [`Counts::tokens_issued`] only.
    pub fn issued_by_target(&self) -> BTreeMap<String, u64> {
        lock(&self.state.issued).by_target.clone()
    }

    /// The tokens issued per audience: the names requests sent as
    /// `audience` (they are in [`Embedded::issued_by_target`] too).
    pub fn issued_by_audience(&self) -> BTreeMap<String, u64> {
        lock(&self.state.issued).by_audience.clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

type Handler = fn(Arc<EmbeddedState>, http::Request<Incoming>) -> HandlerFuture;
type HandlerFuture = std::pin::Pin<Box<dyn Future<Output = http::Response<Full<Bytes>>> + Send>>;

/// A server's own DPoP state, in the state both servers share.
type DpopOf = fn(&EmbeddedState) -> &DpopServer;

/// Serves `handler` on `listener`; once the server has seen a DPoP request,
/// every answer carries its nonce (`dpop`).
fn spawn_server(
    servers: &mut JoinSet<()>,
    listener: TcpListener,
    state: Arc<EmbeddedState>,
    handler: Handler,
    dpop: DpopOf,
) {
    servers.spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let state = Arc::clone(&state);
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move {
                    let mut response = handler(Arc::clone(&state), req).await;
                    dpop(&state).stamp(&mut response);
                    Ok::<_, Infallible>(response)
                }
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
        if req.method() == Method::GET && req.uri().path() == "/.well-known/openid-configuration" {
            // Enough for a client to find the token endpoint and see how it
            // wants the client to authenticate, and that it binds tokens to
            // DPoP keys (RFC 9449 section 5.1).
            return json_response(
                StatusCode::OK,
                serde_json::json!({
                    "issuer": state.issuer,
                    "token_endpoint": state.token_url,
                    "token_endpoint_auth_methods_supported": ["client_secret_post"],
                    "grant_types_supported": ["client_credentials", TOKEN_EXCHANGE],
                    "dpop_signing_alg_values_supported": dpop_verify::SUPPORTED_ALGS,
                }),
            );
        }
        if req.method() != Method::POST {
            return oauth_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "use POST",
            );
        }
        let (parts, body) = req.into_parts();
        let expected = &state.credentials;
        let key_ok = parts
            .headers
            .get("x-api-key")
            .is_some_and(|k| k.as_bytes() == expected.api_key.as_bytes());
        if !key_ok {
            state.credentials_refused.fetch_add(1, Ordering::Relaxed);
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The x-api-key header is missing or wrong",
            );
        }
        let Ok(body) = Limited::new(body, 16 * 1024).collect().await else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The body is too long",
            );
        };
        // Pairs, not a map: `resource` and `audience` may repeat.
        let form: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&body.to_bytes()).unwrap_or_default();
        let field = |name: &str| {
            form.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let exchange = match field("grant_type") {
            Some("client_credentials") => false,
            Some(TOKEN_EXCHANGE) => true,
            _ => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "Only client_credentials and token exchange are supported",
                );
            }
        };
        // Like Avionté: credentials in the form (client_secret_post).
        if field("client_id") != Some(expected.client_id.as_str())
            || field("client_secret") != Some(expected.client_secret.as_str())
        {
            state.credentials_refused.fetch_add(1, Ordering::Relaxed);
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "Invalid client credentials",
            );
        }
        // The proof once the client is known, so that only clients with good
        // credentials fill the replay memory. Its `htu` is the URL requested,
        // on this server's own origin (the token URL, for a request there).
        let jkt = if parts.headers.contains_key("dpop") {
            let url = format!("{}{}", state.issuer, parts.uri.path());
            match state
                .token_dpop
                .check(&parts.headers, &parts.method, &url, None)
            {
                Ok(jkt) => Some(jkt),
                Err(ProofRefusal::NonceRequired) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "use_dpop_nonce",
                        "Authorization server requires nonce in DPoP proof",
                    );
                }
                Err(ProofRefusal::Invalid(why)) => {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof", &why);
                }
                // Not here: no token is presented, so none names a key.
                Err(ProofRefusal::OtherKey) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_dpop_proof",
                        "The proof is signed by another key",
                    );
                }
                Err(ProofRefusal::Busy) => {
                    return oauth_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily_unavailable",
                        "Too many recent DPoP proofs to remember another; try again shortly",
                    );
                }
            }
        } else {
            None
        };
        if exchange {
            let seen = Exchange {
                subject_token: field("subject_token").unwrap_or_default().to_owned(),
                subject_token_type: field("subject_token_type").unwrap_or_default().to_owned(),
                actor_token: field("actor_token").map(str::to_owned),
                actor_token_type: field("actor_token_type").map(str::to_owned),
            };
            let refusal = exchange_refusal(&seen);
            *lock(&state.last_exchange) = Some(seen);
            if let Some((error, description)) = refusal {
                state.exchanges_refused.fetch_add(1, Ordering::Relaxed);
                return oauth_error(StatusCode::BAD_REQUEST, error, description);
            }
        }
        // RFC 8707: every resource (and, RFC 8693, audience) must be one
        // this server issues tokens for, or none is issued.
        let named: Vec<(&str, &str)> = form
            .iter()
            .filter(|(n, _)| n == "resource" || n == "audience")
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut targets = Vec::with_capacity(named.len());
        for (_, value) in &named {
            match api_target(value, &state.api_authority) {
                Some(target) => targets.push(target),
                None => {
                    state.targets_refused.fetch_add(1, Ordering::Relaxed);
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_target",
                        "The resource or audience is not one this server issues tokens for",
                    );
                }
            }
        }
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
        // Counted before the token is made: a name beyond what the server
        // remembers gets none.
        if !lock(&state.issued).record(&named, MAX_TARGETS) {
            state.targets_refused.fetch_add(1, Ordering::Relaxed);
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                &format!(
                    "This server issues tokens for at most {MAX_TARGETS} distinct resources \
                     and audiences, and the request names another"
                ),
            );
        }
        let token = random_string(40);
        let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
        if jkt.is_some() {
            state.dpop_tokens_issued.fetch_add(1, Ordering::Relaxed);
        }
        {
            let mut live = lock(&state.live);
            live.retain(|_, live| live.expires > now);
            live.insert(
                token.clone(),
                Live {
                    expires,
                    targets,
                    jkt,
                },
            );
        }
        state.tokens_issued.fetch_add(1, Ordering::Relaxed);
        if exchange {
            state.tokens_exchanged.fetch_add(1, Ordering::Relaxed);
        }
        json_response(
            StatusCode::OK,
            serde_json::json!({
                "access_token": token,
                "token_type": token_type,
                "expires_in": state.ttl.as_secs(),
            }),
        )
    })
}

fn api_endpoint(state: Arc<EmbeddedState>, req: http::Request<Incoming>) -> HandlerFuture {
    Box::pin(async move {
        let authorization = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let (scheme, token) = match authorization {
            Some(value) => match (value.strip_prefix("Bearer "), value.strip_prefix("DPoP ")) {
                (Some(token), _) => (Scheme::Bearer, Some(token)),
                (_, Some(token)) => (Scheme::Dpop, Some(token)),
                _ => (Scheme::Bearer, None),
            },
            None => (Scheme::Bearer, None),
        };
        if scheme == Scheme::Dpop {
            state.api_dpop.used.store(true, Ordering::Relaxed);
        }
        let path = req.uri().path();
        // What the token is, read under the lock; the proof is checked after.
        let found = token.and_then(|token| {
            let live = lock(&state.live);
            let live = live
                .get(token)
                .filter(|live| Instant::now() < live.expires)?;
            let covered = live.targets.is_empty() || live.targets.iter().any(|t| t.covers(path));
            Some((token, live.jkt.clone(), covered))
        });
        let verdict = match found {
            None => Verdict::NotLive,
            Some((_, None, _)) if scheme == Scheme::Dpop => Verdict::NotBound,
            Some((_, None, covered)) => {
                if covered {
                    Verdict::Good
                } else {
                    Verdict::WrongTarget
                }
            }
            Some((_, Some(_), _)) if scheme == Scheme::Bearer => Verdict::NotProven,
            Some((token, Some(jkt), covered)) => {
                // `htu` is the URL called without its query, on the API's own
                // origin (not the Host header, which the client chose).
                let url = format!("http://{}{path}", state.api_authority);
                match state
                    .api_dpop
                    .check(req.headers(), req.method(), &url, Some((token, &jkt)))
                {
                    Ok(_) if covered => Verdict::Good,
                    Ok(_) => Verdict::WrongTarget,
                    Err(refusal) => Verdict::Proof(refusal),
                }
            }
        };
        // A call that says DPoP is answered with a DPoP challenge, a bearer
        // call with a Bearer one, as before.
        let challenge = |error: &str| match scheme {
            Scheme::Dpop => dpop_challenge(error),
            Scheme::Bearer => format!("Bearer error=\"{error}\""),
        };
        let (status, error, message) = match verdict {
            Verdict::Good => {
                // Counted, not required: demo processes sharing `--serve`
                // send none.
                let keyed = req
                    .headers()
                    .get("x-api-key")
                    .is_some_and(|k| k.as_bytes() == state.credentials.api_key.as_bytes());
                if keyed {
                    state.api_with_key.fetch_add(1, Ordering::Relaxed);
                }
                state.api_accepted.fetch_add(1, Ordering::Relaxed);
                return json_response(StatusCode::OK, serde_json::json!({ "items": [] }));
            }
            // A challenge, not a refusal: the client retries with the nonce
            // this answer carries.
            Verdict::Proof(ProofRefusal::NonceRequired) => {
                let mut res = json_response(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({ "message": "a DPoP nonce is required" }),
                );
                let challenge = format!(
                    "{}, error_description=\"Resource server requires nonce in DPoP proof\"",
                    dpop_challenge("use_dpop_nonce")
                );
                res.headers_mut().insert(
                    "www-authenticate",
                    HeaderValue::try_from(challenge).expect("ASCII"),
                );
                return res;
            }
            Verdict::Proof(ProofRefusal::Busy) => {
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({ "message": "too many recent DPoP proofs; try again shortly" }),
                );
            }
            Verdict::Proof(ProofRefusal::Invalid(why)) => (
                StatusCode::UNAUTHORIZED,
                challenge("invalid_dpop_proof"),
                format!("invalid DPoP proof: {why}"),
            ),
            Verdict::Proof(ProofRefusal::OtherKey) => (
                StatusCode::UNAUTHORIZED,
                challenge("invalid_token"),
                "the DPoP proof is not by the key the token is bound to".to_owned(),
            ),
            Verdict::NotProven => (
                StatusCode::UNAUTHORIZED,
                // Said as DPoP: that is how this token must come.
                dpop_challenge("invalid_token"),
                "the token is bound to a DPoP key: send it as Authorization: DPoP, with a proof"
                    .to_owned(),
            ),
            Verdict::NotBound => (
                StatusCode::UNAUTHORIZED,
                challenge("invalid_token"),
                "the token is not bound to a DPoP key".to_owned(),
            ),
            Verdict::NotLive => (
                StatusCode::UNAUTHORIZED,
                challenge("invalid_token"),
                "missing, unknown or expired token".to_owned(),
            ),
            Verdict::WrongTarget => {
                state.api_wrong_target.fetch_add(1, Ordering::Relaxed);
                (
                    StatusCode::UNAUTHORIZED,
                    challenge("invalid_token"),
                    "the token is for another resource or audience".to_owned(),
                )
            }
        };
        state.api_rejected.fetch_add(1, Ordering::Relaxed);
        let mut res = json_response(status, serde_json::json!({ "message": message }));
        res.headers_mut().insert(
            "www-authenticate",
            HeaderValue::try_from(error).expect("a valid challenge"),
        );
        res
    })
}

/// Why a token exchange is refused, if it is: the OAuth2 error and its
/// description, which never quotes a token.
fn exchange_refusal(seen: &Exchange) -> Option<(&'static str, &'static str)> {
    if seen.subject_token.is_empty() || seen.subject_token_type.is_empty() {
        return Some((
            "invalid_request",
            "subject_token and subject_token_type are required",
        ));
    }
    if seen.actor_token.is_some() != seen.actor_token_type.is_some() {
        return Some((
            "invalid_request",
            "actor_token and actor_token_type go together",
        ));
    }
    let tokens = [
        (
            Some(&seen.subject_token),
            Some(&seen.subject_token_type),
            "the subject token is not a JWT",
        ),
        (
            seen.actor_token.as_ref(),
            seen.actor_token_type.as_ref(),
            "the actor token is not a JWT",
        ),
    ];
    for (token, token_type, why) in tokens {
        if let (Some(token), Some(token_type)) = (token, token_type)
            && token_type == JWT_TOKEN_TYPE
            && !looks_like_a_jwt(token)
        {
            return Some(("invalid_grant", why));
        }
    }
    None
}

/// Three non-empty base64url parts, dot-separated: the shape of a JWS
/// compact serialization (the signature is not checked here).
fn looks_like_a_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// How a call presents its token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

/// What the API makes of a call's token.
enum Verdict {
    Good,
    NotLive,
    WrongTarget,
    /// A token bound to a DPoP key, sent as `Bearer`.
    NotProven,
    /// A bearer token sent as `DPoP`.
    NotBound,
    /// The proof did not pass.
    Proof(ProofRefusal),
}

/// The part of the API a resource or audience names: an absolute `http`
/// URI on the API's origin (`authority`), without user info, a query or a
/// fragment, with a plain path; `None` for any other. What it accepts is
/// what the token endpoint counts and `--serve` prints: nothing there may
/// hold a secret, and a path means what it says.
fn api_target(value: &str, authority: &str) -> Option<ApiTarget> {
    // http::Uri drops a fragment (RFC 8707 forbids one); `?` and `@` are
    // refused wherever they are.
    if value.contains(['#', '?', '@']) {
        return None;
    }
    let uri: http::Uri = value.parse().ok()?;
    let on_the_api = uri.scheme_str() == Some("http")
        && uri
            .authority()
            .is_some_and(|a| a.as_str().eq_ignore_ascii_case(authority));
    (on_the_api && uri.query().is_none() && plain_path(uri.path())).then(|| ApiTarget {
        path: uri.path().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_an_http_uri_on_the_api_origin_and_covers_the_paths_below_it() {
        let on_api = |value| api_target(value, "127.0.0.1:8080");
        let talents = on_api("http://127.0.0.1:8080/v1/talents").expect("on the API");
        assert!(talents.covers("/v1/talents"));
        assert!(talents.covers("/v1/talents/42"));
        assert!(!talents.covers("/v1/talents-and-more"));
        assert!(!talents.covers("/v1"));
        let whole = on_api("http://127.0.0.1:8080").expect("the origin");
        assert!(whole.covers("/anything"));
        for elsewhere in [
            "https://127.0.0.1:8080/v1",
            "http://127.0.0.1:8081/v1",
            "http://user:pw@127.0.0.1:8080/v1",
            "http://user@127.0.0.1:8080/v1",
            "http://127.0.0.1:8080/v1#fragment",
            "http://127.0.0.1:8080/v1?api_key=S3CRET",
            "http://127.0.0.1:8080/v1?",
            "http://127.0.0.1:8080/v1/talents/../companies",
            "http://127.0.0.1:8080/v1/./talents",
            "http://127.0.0.1:8080/v1/%2e%2E/companies",
            "http://127.0.0.1:8080/v1%2Fcompanies",
            "http://127.0.0.1:8080/v1%2fcompanies",
            "http://127.0.0.1:8080/v1%5Ccompanies",
            "http://127.0.0.1:8080/v1%5ccompanies",
            "/v1/talents",
            "orders",
        ] {
            assert_eq!(on_api(elsewhere), None, "{elsewhere}");
        }
        // Dots inside a segment are a name, not a step.
        assert!(on_api("http://127.0.0.1:8080/v1/a..b/.well-known").is_some());
    }

    #[test]
    fn a_target_covers_no_path_that_is_not_plain() {
        let talents = ApiTarget {
            path: "/v1/talents".to_owned(),
        };
        let whole = ApiTarget {
            path: String::new(),
        };
        for sneaky in [
            "/v1/talents/../companies",
            "/v1/talents/./42",
            "/v1/talents/%2e%2e/companies",
            "/v1/talents/.%2E/companies",
            "/v1/talents%2F..%2Fcompanies",
            "/v1/talents/%2fcompanies",
            "/v1/talents/%5Ccompanies",
            "/v1/talents/\\..\\companies",
        ] {
            assert!(!talents.covers(sneaky), "{sneaky}");
            assert!(!whole.covers(sneaky), "{sneaky}");
        }
    }

    #[test]
    fn an_exchange_needs_its_tokens_and_a_jwt_must_look_like_one() {
        let exchange = |subject: &str, actor: Option<(&str, &str)>| Exchange {
            subject_token: subject.to_owned(),
            subject_token_type: JWT_TOKEN_TYPE.to_owned(),
            actor_token: actor.map(|(token, _)| token.to_owned()),
            actor_token_type: actor.map(|(_, kind)| kind.to_owned()),
        };
        let refused = |seen: &Exchange| exchange_refusal(seen).map(|(error, _)| error);
        assert_eq!(refused(&exchange("a.b.c", None)), None);
        assert_eq!(
            refused(&exchange(
                "eyJh.eyJz.s1g-_",
                Some(("x.y.z", JWT_TOKEN_TYPE))
            )),
            None
        );
        // An opaque actor token, said to be one.
        let opaque = "urn:ietf:params:oauth:token-type:access_token";
        assert_eq!(refused(&exchange("a.b.c", Some(("opaque", opaque)))), None);
        assert_eq!(refused(&exchange("", None)), Some("invalid_request"));
        assert_eq!(refused(&exchange("not-a-jwt", None)), Some("invalid_grant"));
        assert_eq!(refused(&exchange("a..c", None)), Some("invalid_grant"));
        assert_eq!(
            refused(&exchange("a.b.c", Some(("opaque", JWT_TOKEN_TYPE)))),
            Some("invalid_grant")
        );
        let mut lone_actor = exchange("a.b.c", None);
        lone_actor.actor_token = Some("x.y.z".into());
        assert_eq!(refused(&lone_actor), Some("invalid_request"));
        // Debug shows the types, never a token.
        let shown = format!(
            "{:?}",
            exchange("s3cret.subject.t0ken", Some(("act0r.t.k", JWT_TOKEN_TYPE)))
        );
        assert!(
            !shown.contains("s3cret") && !shown.contains("act0r"),
            "{shown}"
        );
    }

    #[test]
    fn the_tally_counts_each_name_once_per_token_and_at_most_limit_names() {
        let mut issued = Issued::default();
        assert!(issued.record(
            &[("resource", "a"), ("audience", "a"), ("audience", "b")],
            3
        ));
        assert!(issued.record(&[("resource", "c")], 3));
        // A fourth name is refused, and nothing of its request counted.
        assert!(!issued.record(&[("resource", "a"), ("resource", "d")], 3));
        // Known names still count.
        assert!(issued.record(&[("resource", "a")], 3));
        let counts = |map: &BTreeMap<String, u64>| -> Vec<(String, u64)> {
            map.iter().map(|(k, n)| (k.clone(), *n)).collect()
        };
        assert_eq!(
            counts(&issued.by_target),
            [("a".into(), 2), ("b".into(), 1), ("c".into(), 1)]
        );
        assert_eq!(
            counts(&issued.by_audience),
            [("a".into(), 1), ("b".into(), 1)]
        );
    }
}
