//! The embedded provider: a token endpoint shaped like Avionté's and an API
//! that accepts only live tokens it issued, on 127.0.0.1 with free ports.
//!
//! `tests/demo.rs` starts it too, to run the demo's remote mode against it,
//! so this file stands alone: everything it uses is imported here.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
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
    pub api_url: String,
    pub credentials: Credentials,
    state: Arc<EmbeddedState>,
    _servers: JoinSet<()>,
}

/// What the token endpoint and the API have done so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub tokens_issued: u64,
    pub credentials_refused: u64,
    pub api_accepted: u64,
    pub api_rejected: u64,
    /// Accepted calls that carried the API key, as the BOLD API wants.
    pub api_with_key: u64,
}

struct EmbeddedState {
    credentials: Credentials,
    ttl: Duration,
    live: Mutex<HashMap<String, Instant>>,
    tokens_issued: AtomicU64,
    credentials_refused: AtomicU64,
    api_accepted: AtomicU64,
    api_rejected: AtomicU64,
    api_with_key: AtomicU64,
}

fn random_string(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(len)
        .collect()
}

impl Embedded {
    /// Starts both servers; tokens live `ttl`.
    pub async fn start(ttl: Duration, credentials: Credentials) -> std::io::Result<Embedded> {
        let state = Arc::new(EmbeddedState {
            credentials: credentials.clone(),
            ttl,
            live: Mutex::new(HashMap::new()),
            tokens_issued: AtomicU64::new(0),
            credentials_refused: AtomicU64::new(0),
            api_accepted: AtomicU64::new(0),
            api_rejected: AtomicU64::new(0),
            api_with_key: AtomicU64::new(0),
        });
        let mut servers = JoinSet::new();
        let token_addr = spawn_server(&mut servers, Arc::clone(&state), token_endpoint).await?;
        let api_addr = spawn_server(&mut servers, Arc::clone(&state), api_endpoint).await?;
        Ok(Embedded {
            token_url: format!("http://{token_addr}/authorize/token"),
            api_url: format!("http://{api_addr}/front-office/v1/talents"),
            credentials,
            state,
            _servers: servers,
        })
    }

    pub fn counts(&self) -> Counts {
        let s = &self.state;
        Counts {
            tokens_issued: s.tokens_issued.load(Ordering::Relaxed),
            credentials_refused: s.credentials_refused.load(Ordering::Relaxed),
            api_accepted: s.api_accepted.load(Ordering::Relaxed),
            api_rejected: s.api_rejected.load(Ordering::Relaxed),
            api_with_key: s.api_with_key.load(Ordering::Relaxed),
        }
    }
}

type Handler = fn(Arc<EmbeddedState>, http::Request<Incoming>) -> HandlerFuture;
type HandlerFuture = std::pin::Pin<Box<dyn Future<Output = http::Response<Full<Bytes>>> + Send>>;

async fn spawn_server(
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
        let expected = &state.credentials;
        let key_ok = req
            .headers()
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
        // Counted, not required: demo processes sharing `--serve` send none.
        let keyed = req
            .headers()
            .get("x-api-key")
            .is_some_and(|k| k.as_bytes() == state.credentials.api_key.as_bytes());
        if keyed {
            state.api_with_key.fetch_add(1, Ordering::Relaxed);
        }
        state.api_accepted.fetch_add(1, Ordering::Relaxed);
        json_response(StatusCode::OK, serde_json::json!({ "items": [] }))
    })
}
