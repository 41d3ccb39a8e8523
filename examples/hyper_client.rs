//! hyper-util's client under the bearer layer, with a one-time retry on 401.
//!
//! Starts a stand-in API on loopback that accepts only tokens it has not
//! revoked, sends a few requests (one token fetch serves them all), revokes
//! the token and shows the next request retried once with a fresh one.
//!
//! ```text
//! cargo run --example hyper_client
//! ```

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use bytes::Bytes;
use http::StatusCode;
use http::header::AUTHORIZATION;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::retry::RetryLayer;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, RetryOnUnauthorized, Token, source::FnSource};

/// Tokens the stand-in API has revoked.
type Revoked = Arc<Mutex<HashSet<String>>>;

async fn api(State(revoked): State<Revoked>, request: Request) -> impl IntoResponse {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if token.is_empty() || revoked.lock().unwrap().contains(token) {
        return (StatusCode::UNAUTHORIZED, "invalid token".to_owned());
    }
    (StatusCode::OK, "order accepted".to_owned())
}

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let revoked = Revoked::default();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = Router::new().fallback(api).with_state(revoked.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Stands in for an identity provider: a new token per fetch.
    let minted = Arc::new(AtomicUsize::new(0));
    let counter = minted.clone();
    let source = FnSource::new(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            Ok::<_, Infallible>(
                Token::bearer(format!("token-{n}")).with_lifetime(Duration::from_secs(3600)),
            )
        }
    });
    let bearer = BearerAuthLayer::new(source);
    let cache = bearer.cache().clone();

    let mut client = ServiceBuilder::new()
        // Outside the bearer layer: a retried request passes through it again
        // and picks up the new token.
        .layer(RetryLayer::new(RetryOnUnauthorized::default()))
        .layer(bearer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    for round in 1..=4 {
        if round == 4 {
            println!("-- the API revokes the first token --");
            revoked.lock().unwrap().insert("token-1".to_owned());
        }
        // A body in memory can be replayed, so a 401 can be retried.
        let request = http::Request::post(format!("{base}/v1/orders"))
            .body(Full::new(Bytes::from_static(b"{\"qty\":1}")))?;
        let response = client.ready().await?.call(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "POST /v1/orders -> {status}: {} (token fetches so far: {})",
            String::from_utf8_lossy(&body),
            cache.stats().fetches_started
        );
    }

    let stats = cache.stats();
    println!(
        "token fetches: {}, served from cache: {}, invalidated after a 401: {}",
        stats.fetches_started, stats.served_from_cache, stats.invalidations
    );
    Ok(())
}
