//! `reqwest::Client` under the bearer layer, with the token kept to its origin.
//!
//! `reqwest::Client` is a `tower::Service<reqwest::Request>`, so the layer
//! wraps it like any other client. The example starts two stand-in servers on
//! loopback, the API and another origin, and shows that with
//! `Scope::origins` only the API gets the token.
//!
//! ```text
//! cargo run --example reqwest_client
//! ```

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use http::header::AUTHORIZATION;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, Scope, Token, source::FnSource};

/// A stand-in server that says whether the request carried a bearer token.
async fn start_server(name: &'static str) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", listener.local_addr()?);
    let app = Router::new().fallback(move |request: Request| async move {
        let bearer = request
            .headers()
            .get(AUTHORIZATION)
            .is_some_and(|v| v.as_bytes().starts_with(b"Bearer "));
        let carried = if bearer { "a bearer token" } else { "no token" };
        format!("{name} received {carried}")
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(origin)
}

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let api = start_server("the API").await?;
    let elsewhere = start_server("another origin").await?;

    // Stands in for an OAuth2 client-credentials source.
    let source = FnSource::new(|| async {
        Ok::<_, Infallible>(
            Token::bearer("reqwest-demo-token").with_lifetime(Duration::from_secs(3600)),
        )
    });
    // Loopback demo: ignore any proxy set in the environment.
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source).scope(Scope::origins([&api])?))
        .service(http.clone());

    for url in [format!("{api}/v1/me"), format!("{elsewhere}/v1/me")] {
        // Build the request with reqwest's builder, send it through the stack.
        let request = http.get(&url).build()?;
        let response = client.ready().await?.call(request).await?;
        println!("GET {url} -> {}", response.text().await?);
    }
    Ok(())
}
