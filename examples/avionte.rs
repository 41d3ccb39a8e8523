//! Calling Avionté's BOLD API: tokens from the partner authorization API,
//! and the `x-api-key` and `Tenant` headers on every call.
//!
//! ```text
//! AVIONTE_API_KEY=.. AVIONTE_CLIENT_ID=.. AVIONTE_CLIENT_SECRET=.. AVIONTE_TENANT=.. \
//!     [AVIONTE_API_URL=https://api.avionte.com/front-office/v1/...] cargo run --example avionte
//! ```
//!
//! Without `AVIONTE_API_URL` it only fetches a token. Without the
//! credentials it says what to set and exits with status 2, without any
//! network call.

use std::process::ExitCode;

use bytes::Bytes;
use http::{HeaderValue, header::HeaderName};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_bearer::source::client_credentials::ClientCredentials;
use tower_bearer::{BearerAuthLayer, TokenCache};
use tower_http::set_header::SetRequestHeaderLayer;

const REQUIRED: [&str; 4] = [
    "AVIONTE_API_KEY",
    "AVIONTE_CLIENT_ID",
    "AVIONTE_CLIENT_SECRET",
    "AVIONTE_TENANT",
];

#[tokio::main]
async fn main() -> ExitCode {
    let missing: Vec<&str> = REQUIRED
        .into_iter()
        .filter(|name| std::env::var(name).map_or(true, |v| v.is_empty()))
        .collect();
    if !missing.is_empty() {
        // Like any command missing its configuration: say what to set, on
        // standard error, and exit 2.
        eprintln!("error: this example calls Avionté's API with your credentials; set:");
        for name in REQUIRED {
            let state = if missing.contains(&name) {
                "missing"
            } else {
                "set"
            };
            eprintln!("  {name:<22} ({state})");
        }
        eprintln!(
            "  AVIONTE_API_URL        (optional: a BOLD API URL to GET; without it, only a token is fetched)"
        );
        eprintln!("For a run with no credentials and no network, try: cargo run --example demo");
        return ExitCode::from(2);
    }
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    match run(
        var("AVIONTE_API_KEY"),
        var("AVIONTE_CLIENT_ID"),
        var("AVIONTE_CLIENT_SECRET"),
        var("AVIONTE_TENANT"),
        std::env::var("AVIONTE_API_URL")
            .ok()
            .filter(|u| !u.is_empty()),
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Each layer of the error once: the source chain says why.
            let mut line = error.to_string();
            let mut cause = error.source();
            while let Some(layer) = cause {
                line.push_str(&format!(": {layer}"));
                cause = layer.source();
            }
            eprintln!("error: {line}");
            ExitCode::from(1)
        }
    }
}

async fn run(
    api_key: String,
    client_id: String,
    client_secret: String,
    tenant: String,
    api_url: Option<String>,
) -> Result<(), BoxError> {
    let source = ClientCredentials::avionte(api_key.clone(), client_id, client_secret).build()?;
    let cache = TokenCache::new(source);

    let Some(api_url) = api_url else {
        cache.refresh().await?;
        println!("Got a token from Avionté; a cache like this one renews it ahead of expiry.");
        return Ok(());
    };

    let mut api_key = HeaderValue::try_from(api_key)?;
    api_key.set_sensitive(true);
    let http = reqwest::Client::new();
    let mut bold = ServiceBuilder::new()
        .layer(SetRequestHeaderLayer::overriding(
            HeaderName::from_static("x-api-key"),
            api_key,
        ))
        .layer(SetRequestHeaderLayer::overriding(
            HeaderName::from_static("tenant"),
            HeaderValue::try_from(tenant)?,
        ))
        .layer(SetRequestHeaderLayer::overriding(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        ))
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        // reqwest as an `http::Request` service, so tower-http's layers fit.
        .service_fn(move |req: http::Request<Bytes>| {
            let http = http.clone();
            async move {
                let req = reqwest::Request::try_from(req)?;
                let res = http.execute(req).await?;
                Ok::<_, reqwest::Error>(http::Response::from(res))
            }
        });

    let request = http::Request::get(api_url).body(Bytes::new())?;
    let response = bold.ready().await?.call(request).await?;
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await?
        .to_bytes();
    let shown = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
    println!("HTTP {status}: {shown}");
    println!("Token fetches: {}", cache.stats().fetches_started);
    Ok(())
}
