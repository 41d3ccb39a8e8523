//! One layer, one HTTP client, a token per API: each request gets the token
//! for its own audience.
//!
//! Starts, on loopback, a token endpoint that issues audience-bound tokens
//! (client credentials) and two APIs that accept only their own audience.
//! Sends forty requests at once, mixed; the keyed cache fetches one token
//! per audience. Then a request that names its own token (a scope, as a
//! request extension), and an answer the layer leaves alone: a 403
//! `insufficient_scope` keeps the token, and the caller reads the scope it
//! lacks.
//!
//! ```text
//! cargo run --example multi_audience
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
use tokio::net::TcpListener;
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::rejection::RejectionStatuses;
use tower_bearer::{
    AuthStyle, BearerAuthLayer, Challenge, ClientCredentials, RetryOnUnauthorized, TokenCache,
    TokenParams,
};

/// The token endpoint: `tok.<audience>.<scope>.<n>`.
async fn token(
    State(issued): State<Arc<AtomicUsize>>,
    Form(form): Form<HashMap<String, String>>,
) -> impl IntoResponse {
    let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
    let audience = form.get("audience").cloned().unwrap_or_default();
    let scope = form.get("scope").cloned().unwrap_or_default();
    Json(serde_json::json!({
        "access_token": format!("tok.{audience}.{scope}.{n}"),
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
}

/// Calls to `/admin`, on either API.
static ADMIN_CALLS: AtomicUsize = AtomicUsize::new(0);

/// An API that accepts only tokens for `audience`; `/admin` also needs the
/// `admin` scope.
async fn api(State(audience): State<&'static str>, request: Request) -> Response {
    if request.uri().path() == "/admin" {
        ADMIN_CALLS.fetch_add(1, Ordering::SeqCst);
    }
    let refuse = |status: StatusCode, challenge: &'static str| {
        (status, [(WWW_AUTHENTICATE, challenge)]).into_response()
    };
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mut parts = token.split('.');
    let (Some("tok"), Some(bound), Some(scope)) = (parts.next(), parts.next(), parts.next()) else {
        return refuse(StatusCode::UNAUTHORIZED, "Bearer");
    };
    if bound != audience {
        return refuse(StatusCode::UNAUTHORIZED, r#"Bearer error="invalid_token""#);
    }
    if request.uri().path() == "/admin" && scope != "admin" {
        return refuse(
            StatusCode::FORBIDDEN,
            r#"Bearer error="insufficient_scope", scope="admin""#,
        );
    }
    "ok".into_response()
}

async fn serve(router: Router) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(origin)
}

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let issued = Arc::new(AtomicUsize::new(0));
    let idp = serve(
        Router::new()
            .route("/token", post(token))
            .with_state(issued.clone()),
    )
    .await?;
    let orders = serve(Router::new().fallback(any(api)).with_state("orders")).await?;
    let billing = serve(Router::new().fallback(any(api)).with_state("billing")).await?;

    let source = ClientCredentials::builder(format!("{idp}/token"), "shop-backend")
        .client_secret("example-secret")
        .auth_style(AuthStyle::RequestBody)
        .build()?;
    let cache = TokenCache::keyed(source);
    // Which token a request needs, from where it goes.
    let orders_port = http::Uri::try_from(orders.as_str())?.port_u16();
    let layer = BearerAuthLayer::with_cache(cache.clone())
        // This API answers 403 for a token it will not take, too.
        .rejection_statuses(RejectionStatuses::new([
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
        ]))
        .token_for(move |target| {
            let audience = if target.port() == orders_port {
                "orders"
            } else {
                "billing"
            };
            Some(TokenParams::for_audience(audience))
        });
    let client = ServiceBuilder::new()
        // A rejected token is thrown away and the request sent once more.
        .layer(RetryLayer::new(RetryOnUnauthorized::default()))
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    let mut requests = tokio::task::JoinSet::new();
    for i in 0..40 {
        let url = if i % 2 == 0 {
            format!("{orders}/v1/orders")
        } else {
            format!("{billing}/v1/invoices")
        };
        let client = client.clone();
        requests.spawn(async move {
            let request = http::Request::get(url).body(Full::default())?;
            Ok::<_, tower::BoxError>(client.oneshot(request).await?.status())
        });
    }
    let mut ok = 0;
    while let Some(status) = requests.join_next().await {
        ok += usize::from(status?? == StatusCode::OK);
    }
    println!("40 mixed requests: {ok} answered 200");
    for (params, key) in cache.keys() {
        println!(
            "  {:?}: {} token fetch(es), {} request(s) served from cache",
            params.audiences(),
            key.stats().fetches_started,
            key.stats().served_from_cache
        );
    }

    // A request that needs more than its audience: it names its own token.
    let mut request = http::Request::get(format!("{orders}/admin")).body(Full::default())?;
    request.extensions_mut().insert(
        TokenParams::builder()
            .audience("orders")
            .scope("admin")
            .build(),
    );
    let status = client.clone().oneshot(request).await?.status();
    println!("GET /admin with the admin token -> {status}");

    // Without it: a 403 insufficient_scope. Though 403 is a rejection
    // status here, the token is kept (no fetch) and the request is not
    // re-sent; the caller reads what is missing.
    let request = http::Request::get(format!("{orders}/admin")).body(Full::default())?;
    let response = client.clone().oneshot(request).await?;
    let needed = Challenge::bearer(response.headers())
        .map(|challenge| challenge.scopes().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!(
        "GET /admin with the orders token -> {}, needs scope {needed:?}",
        response.status()
    );
    println!(
        "token fetches at the provider: {}, calls to /admin: {}",
        issued.load(Ordering::SeqCst),
        ADMIN_CALLS.load(Ordering::SeqCst)
    );
    Ok(())
}
