//! A server-side proxy: an axum app that forwards `/api/*` to an upstream API
//! and adds the bearer token on the way out.
//!
//! `GET /api/v1/users?active=true` on the proxy becomes
//! `GET <upstream>/v1/users?active=true` with `Authorization: Bearer <token>`.
//! The client's own `Authorization` header is for the proxy, never for the
//! upstream: the proxy strips it before forwarding, so the layer always
//! attaches its own token (and a client cannot pick the upstream identity).
//!
//! The example starts a stand-in upstream and the proxy on loopback, sends two
//! requests through the proxy and prints what the upstream saw.
//!
//! ```text
//! cargo run --example proxy
//! ```

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::header::{AUTHORIZATION, HOST};
use http::{StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuth, BearerAuthLayer, Error, Scope, Token, source::FnSource};

/// The outbound client: hyper-util's, under the bearer layer.
type UpstreamClient = BearerAuth<Client<HttpConnector, Body>>;

#[derive(Clone)]
struct Proxy {
    client: UpstreamClient,
    // The upstream's base URL, without a trailing slash.
    upstream: String,
}

/// The proxy app: `/api/*` goes to `upstream` with the token from `layer`.
pub fn router(upstream: &Uri, layer: BearerAuthLayer) -> Router {
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http());
    let proxy = Proxy {
        client,
        upstream: upstream.to_string().trim_end_matches('/').to_owned(),
    };
    Router::new()
        .route("/api/{*rest}", any(forward))
        .with_state(proxy)
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let rest = path_and_query
        .strip_prefix("/api")
        .unwrap_or(path_and_query);
    parts.uri = match format!("{}{rest}", proxy.upstream).parse() {
        Ok(uri) => uri,
        Err(_) => return (StatusCode::BAD_REQUEST, "unroutable path").into_response(),
    };
    // The client's credentials are for the proxy, not the upstream; the
    // inbound Host names the proxy too (the client sets the upstream's).
    parts.headers.remove(AUTHORIZATION);
    parts.headers.remove(HOST);
    // The upstream connection is HTTP/1.1, whatever the client spoke.
    parts.version = Version::HTTP_11;

    let mut client = proxy.client.clone();
    let result = match client.ready().await {
        Ok(client) => client.call(Request::from_parts(parts, body)).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(response) => response.map(Body::new),
        Err(Error::Token(error)) => {
            // The request was not sent: no token, no call.
            tracing::warn!(%error, "no upstream token");
            let status = if error.is_transient() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_GATEWAY
            };
            (status, "upstream credentials unavailable").into_response()
        }
        Err(Error::Service(error)) => {
            tracing::warn!(%error, "upstream unreachable");
            (StatusCode::BAD_GATEWAY, "upstream unreachable").into_response()
        }
    }
}

/// A stand-in upstream API: it tells who called it, by the token it got.
async fn upstream_api(request: Request) -> Result<Response, Infallible> {
    let auth = request.headers().get(AUTHORIZATION).cloned();
    let who = match auth.as_ref().and_then(|v| v.to_str().ok()) {
        Some("Bearer proxy-service-token") => "the proxy's service token",
        Some(_) => "some other credential",
        None => "no credential at all",
    };
    Ok(format!("upstream saw {} for {}", who, request.uri()).into_response())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let upstream_listener = TcpListener::bind("127.0.0.1:0").await?;
    let upstream: Uri = format!("http://{}", upstream_listener.local_addr()?).parse()?;
    tokio::spawn(async move {
        let app = Router::new().fallback(upstream_api);
        axum::serve(upstream_listener, app).await
    });

    // Stands in for an OAuth2 client-credentials source.
    let source = FnSource::new(|| async {
        Ok::<_, Infallible>(
            Token::bearer("proxy-service-token").with_lifetime(Duration::from_secs(3600)),
        )
    });
    let layer = BearerAuthLayer::new(source)
        // The token is for the upstream only, whatever a path might resolve to.
        .scope(Scope::origins([upstream
            .to_string()
            .trim_end_matches('/')])?);
    let cache = layer.cache().clone();

    let proxy_listener = TcpListener::bind("127.0.0.1:0").await?;
    let proxy_addr = proxy_listener.local_addr()?;
    tokio::spawn(async move { axum::serve(proxy_listener, router(&upstream, layer)).await });
    println!("proxy on http://{proxy_addr}, forwarding /api/* upstream");

    let client = Client::builder(TokioExecutor::new()).build_http::<String>();
    let plain = http::Request::get(format!("http://{proxy_addr}/api/v1/users?active=true"))
        .body(String::new())?;
    let with_own_credential = http::Request::get(format!("http://{proxy_addr}/api/v1/me"))
        .header(AUTHORIZATION, "Bearer a-browser-session")
        .body(String::new())?;
    for (label, request) in [
        ("request without a token", plain),
        ("request with its own Authorization", with_own_credential),
    ] {
        let response = client.request(request).await?;
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await?
            .to_bytes();
        println!("{label}: {status}: {}", String::from_utf8_lossy(&body));
    }
    println!("token fetches: {}", cache.stats().fetches_started);
    Ok(())
}
