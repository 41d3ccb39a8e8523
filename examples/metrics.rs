//! What a token cache reports through the `metrics` feature, as the
//! Prometheus text an exporter serves.
//!
//! Installs a Prometheus recorder (metrics-exporter-prometheus, with
//! histogram buckets, as `dashboards/tower-bearer.json` expects), starts on
//! loopback a client-credentials token endpoint whose tokens live 6 s and an
//! API, and sends requests through `BearerAuthLayer` and
//! `RetryOnUnauthorized` over hyper-util's client, to a cache named
//! `orders`, for about four seconds:
//!
//! - eight requests at once find no token and wait for the one fetch
//!   (`reason="no_usable_token"`, `path="waited"`);
//! - then a request every 100 ms, served from the cache (`path="cached"`),
//!   until one past the token's refresh point starts a background refresh
//!   (`reason="refresh_ahead"`) and the new token replaces the old
//!   (`tower_bearer_token_remaining_lifetime_seconds`);
//! - the API revokes the token in use: the request is answered 401, the
//!   cache throws the token away (`cause="rejected"`), and the request is
//!   sent again with a new token (`reason="rejected"`).
//!
//! Then it prints the scrape on stdout (what it did, in words, on stderr):
//!
//! ```text
//! cargo run --example metrics --features metrics
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::StatusCode;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_bearer::metrics::{FETCH_DURATION, REMAINING_LIFETIME, WAIT_DURATION};
use tower_bearer::{
    AuthStyle, BearerAuthLayer, ClientCredentials, RetryOnUnauthorized, TokenCache,
};

const CLIENT_ID: &str = "orders-service";
const CLIENT_SECRET: &str = "example-client-secret";
/// How long the endpoint's tokens live: short, so that a refresh comes due
/// within seconds.
const TOKEN_LIFETIME_SECS: u64 = 6;

/// Buckets for how long fetches and waits take, in seconds: from a fast
/// local endpoint to the cache's default fetch timeout (30 s).
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets for the usable time a token had left when replaced, in seconds.
/// `le="0"` counts tokens that ran out before a request renewed them.
const REMAINING_LIFETIME_BUCKETS: &[f64] = &[
    0.0, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The Prometheus recorder, installed for the whole process; its handle
/// renders the scrape. Histograms get buckets, so that they export
/// `_bucket` series for `histogram_quantile`; without them the exporter
/// writes summaries, which cannot be aggregated across instances.
fn install_recorder() -> Result<PrometheusHandle, BoxError> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(FETCH_DURATION.into()), DURATION_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(WAIT_DURATION.into()), DURATION_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(REMAINING_LIFETIME.into()),
            REMAINING_LIFETIME_BUCKETS,
        )?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    Ok(handle)
}

/// The stand-in identity provider and API, and what they have done.
#[derive(Default)]
struct Provider {
    /// Tokens issued; the nth is `secret-token-<n>-<random>`.
    issued: AtomicU64,
    /// The highest n among the tokens the API has accepted.
    newest_accepted: AtomicU64,
    /// Set to revoke the token of the API's next request.
    revoke_next: AtomicBool,
    revoked: Mutex<HashSet<String>>,
}

impl Provider {
    /// Whether the API has accepted a token from each of `fetches` fetches:
    /// then the last of them has landed in the cache, and been counted.
    fn accepted_tokens_of(&self, fetches: u64) -> bool {
        self.newest_accepted.load(Ordering::SeqCst) >= fetches
    }
}

/// The token endpoint: the client-credentials grant, credentials in the
/// form.
async fn token(
    State(provider): State<Arc<Provider>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("grant_type") != Some("client_credentials")
        || field("client_id") != Some(CLIENT_ID)
        || field("client_secret") != Some(CLIENT_SECRET)
    {
        let refusal = serde_json::json!({ "error": "invalid_client" });
        return (StatusCode::BAD_REQUEST, Json(refusal)).into_response();
    }
    // A real endpoint takes a moment: requests that need the token wait.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let n = provider.issued.fetch_add(1, Ordering::SeqCst) + 1;
    Json(serde_json::json!({
        "access_token": format!("secret-token-{n}-{:016x}", fastrand::u64(..)),
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECS,
    }))
    .into_response()
}

/// The API: accepts the endpoint's tokens that it has not revoked.
async fn api(State(provider): State<Arc<Provider>>, request: Request) -> Response {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let serial = token
        .strip_prefix("secret-token-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|n| n.parse::<u64>().ok());
    let mut revoked = provider.revoked.lock().unwrap();
    if provider.revoke_next.swap(false, Ordering::SeqCst) {
        revoked.insert(token.clone());
    }
    match serial {
        Some(n) if !revoked.contains(&token) => {
            provider.newest_accepted.fetch_max(n, Ordering::SeqCst);
            "order accepted".into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
        )
            .into_response(),
    }
}

async fn serve(router: Router) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(origin)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Before the first request: a cache takes its handles from the recorder
    // in place at its first fetch.
    let scrape = install_recorder()?;

    let provider = Arc::new(Provider::default());
    let idp = serve(
        Router::new()
            .route("/token", post(token))
            .with_state(provider.clone()),
    )
    .await?;
    let api_origin = serve(
        Router::new()
            .fallback(any(api))
            .with_state(provider.clone()),
    )
    .await?;

    let source = ClientCredentials::builder(format!("{idp}/token"), CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .auth_style(AuthStyle::RequestBody)
        .build()?;
    // Keyed, as a cache behind `token_for` would be (a token per
    // `TokenParams` a request names; these name none and share the default
    // token): a keyed cache also counts the keys it evicts.
    let cache = TokenCache::keyed_builder(source)
        // The `cache` label of every metric.
        .name("orders")
        // A quarter of the usable time refreshing ahead, so that these few
        // seconds see a refresh; the default (5%) suits real lifetimes.
        .refresh_share(0.25)
        .build();
    let client = ServiceBuilder::new()
        // Outside the bearer layer: the re-sent request picks up the new
        // token.
        .layer(RetryLayer::new(RetryOnUnauthorized::default()))
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let url = format!("{api_origin}/v1/orders");
    let send = || {
        let client = client.clone();
        let url = url.clone();
        async move {
            let request = http::Request::post(url).body(Full::new(Bytes::from_static(b"{}")))?;
            let status = client.oneshot(request).await?.status();
            if status != StatusCode::OK {
                return Err(BoxError::from(format!("the API answered {status}")));
            }
            Ok::<_, BoxError>(())
        }
    };

    // No token yet: eight requests at once, one fetch, all wait for it.
    let mut first = JoinSet::new();
    for _ in 0..8 {
        first.spawn(send());
    }
    while let Some(sent) = first.join_next().await {
        sent??;
    }
    eprintln!(
        "8 requests at once: {} token fetch",
        cache.stats().fetches_started
    );

    // A request every 100 ms until a refresh ahead has landed: the API has
    // taken the token of every fetch started so far, the refresh's too.
    // Bounded, with room for a slow machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut paced = 0;
    loop {
        send().await?;
        paced += 1;
        let stats = cache.stats();
        if stats.refreshes_ahead >= 1 && provider.accepted_tokens_of(stats.fetches_started) {
            break;
        }
        if Instant::now() > deadline {
            return Err("no refresh ahead landed within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{paced} requests, 100 ms apart: a refresh ahead replaced the token");

    // The API revokes the token in use: 401, the token is thrown away, the
    // request is re-sent with a new one. Right after the refresh landed,
    // the new token is seconds away from its own refresh point.
    provider.revoke_next.store(true, Ordering::SeqCst);
    send().await?;
    eprintln!(
        "the API revoked the token: {} rejection, the request re-sent with a new token",
        cache.stats().invalidations
    );

    for _ in 0..4 {
        send().await?;
    }
    eprintln!(
        "token fetches: {} at the cache, {} at the endpoint",
        cache.stats().fetches_started,
        provider.issued.load(Ordering::SeqCst)
    );

    print!("{}", scrape.render());
    Ok(())
}
