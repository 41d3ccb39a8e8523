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
//! cargo run --example demo -- (--token-url URL | --issuer URL) --client-id ID
//!     [--client-secret S | env CLIENT_SECRET] [--scope S]...
//!     [--auth basic|post|client-secret-jwt
//!      | --auth private-key-jwt --private-key FILE [--key-id KID] [--alg RS256|PS256|ES256|EdDSA]
//!      | --auth tls --cert FILE --key FILE] [--ca FILE]
//!     [--token-header 'Name: value']... [--api-header 'Name: value']...
//!     --url API_URL... [--resource URI]... [--audience A]...
//!     [--requests N] [--concurrency C] [--duration SECS] [--dpop]
//! ```
//!
//! `--grant token-exchange --subject-token-file FILE [--subject-token-type
//! URN] [--actor-token-file FILE] [--actor-token-type URN]` exchanges the
//! token in the file (RFC 8693, read again on every fetch) instead of
//! asking with the client-credentials grant, against any of the providers
//! (the embedded one too).
//!
//! `--issuer` discovers the token endpoint from the issuer's metadata;
//! `--auth private-key-jwt` signs an RFC 7523 client assertion with the key,
//! `client-secret-jwt` with the secret; `--auth tls` presents the client
//! certificate to the token endpoint and the API (RFC 8705); `--ca` trusts
//! one more root for both.
//!
//! `--dpop` asks for sender-constrained tokens (RFC 9449): a fresh ES256
//! key for the run, a DPoP proof of it on the token request and on every
//! API request, which carries `Authorization: DPoP <token>`. Nonces are
//! kept per server and a `use_dpop_nonce` answer is retried once with a new
//! proof: by the token source for token requests, by
//! `RetryLayer::new(RetryOnUnauthorized::default())` outside the bearer
//! layer for API requests. The embedded provider checks every proof (with
//! the verifier of the library's tests) and wants its nonce in each; the
//! JSON line adds `"dpop_nonce_retries"`. Not with `--redis`: a DPoP token
//! is this process's alone.
//!
//! With several `--url`, requests go round-robin over them and each carries
//! the token for the `--resource` (or `--audience`) at the same position,
//! through one layer (a keyed cache, and a `token_for` selector that maps a
//! request's URL to its resource) and one HTTP client.
//!
//! The last line on stdout is one JSON object with the counts and latencies.
//! Exit status: 0 when every request succeeded, 1 otherwise, 2 for bad
//! arguments.
//!
//! A fleet: `--serve SECS` runs only the embedded token endpoint and API,
//! for many demo processes to share, and `--redis URL` (built with
//! `--features redis`) shares one token between those processes through
//! Redis, or `--redis-cluster URL` (repeatable, the seed nodes) through a
//! Redis Cluster; with `--resource`, one token per resource
//! (`scripts/fleet.sh` runs eight at once, with and without Redis):
//!
//! ```text
//! CLIENT_SECRET=S cargo run --example demo -- --serve 60 --api-key K
//! CLIENT_SECRET=S cargo run --example demo --features redis -- --redis redis://127.0.0.1:6379/ \
//!     --token-url URL --client-id ID --auth post --token-header 'x-api-key: K' --url API_URL
//! ```

//! The parts: `args` (the command line), `provider` (the embedded token
//! endpoint and API), `workload` (the requests), `cache` (the token cache,
//! with or without the shared store), `targets` (which token each request
//! gets), `tls` (`--cert`, `--key`, `--ca`), `report` (what happened) and
//! `serve` (`--serve`).

mod args;
mod cache;
mod provider;
mod report;
mod serve;
mod targets;
mod tls;
mod tokens;
mod values;
mod workload;

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use http::{HeaderMap, HeaderName, HeaderValue};
use tower::ServiceBuilder;
use tower::retry::RetryLayer;
use tower_bearer::dpop::Dpop;
use tower_bearer::{
    AuthStyle, BearerAuthLayer, ClientCredentials, ClientCredentialsBuilder, RetryOnUnauthorized,
    redact_url,
};

use args::{Args, ClientAuth, Command, Grant, Provider, TokenEndpoint};
use cache::Source;
use provider::{Credentials, Embedded};
use report::Report;
use targets::Targets;
use tokens::Tokens;

#[tokio::main]
async fn main() -> ExitCode {
    let command = match args::parse_from(std::env::args_os()) {
        Ok(command) => command,
        Err(error) => {
            // `--help` goes to stdout and exits 0; a bad argument, to
            // stderr with the usage, and exits 2.
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    let outcome = match command {
        Command::Run(args) => run(*args).await,
        Command::Serve(serve) => serve::serve(serve).await,
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

/// Runs the workload and reports; `Ok(true)` when every request succeeded.
async fn run(args: Args) -> Result<bool, String> {
    let embedded = match &args.provider {
        Provider::Embedded { ttl } => Some(
            Embedded::start(*ttl, Credentials::random())
                .await
                .map_err(|e| format!("could not start the embedded servers: {e}"))?,
        ),
        Provider::Remote { .. } => None,
    };
    // One key for the run, shared by the token source (which proves it to
    // the token endpoint and binds the tokens to it) and, through the
    // tokens, the layer (which proves it on every API request).
    let dpop = args
        .dpop
        .then(Dpop::generate)
        .transpose()
        .map_err(|e| format!("no DPoP key could be made: {e}"))?;
    let source = token_source(&args, embedded.as_ref(), dpop.as_ref())?;
    let (api_urls, api_headers) = api_target(&args, embedded.as_ref())?;
    let targets = Targets::new(api_urls, &args.tokens);

    let (cache, endpoint_fetches) = cache::build_cache(source, &args);
    // One layer and one client for every URL: the selector picks each
    // request's token from its URL (reqwest::Request has no extensions to
    // carry TokenParams in).
    let mut layer = BearerAuthLayer::with_cache(cache.clone());
    if let Some(select) = targets.selector() {
        layer = layer.token_for(select);
    }
    // With DPoP, a retry outside the layer: an API's `use_dpop_nonce`
    // answer comes back marked, and the request (a replayable GET) is sent
    // once more with a proof carrying the nonce (as is one whose token the
    // API rejected, with a new token). Without, the stack is the layer
    // alone, as before.
    let client = ServiceBuilder::new()
        .option_layer(
            dpop.as_ref()
                .map(|_| RetryLayer::new(RetryOnUnauthorized::default())),
        )
        .layer(layer)
        .service(args.tls.api_client()?);
    let outcome = workload::send_requests(
        args.workload,
        client,
        targets.endpoints(&cache),
        api_headers,
    )
    .await?;

    let report = Report {
        outcome: &outcome,
        stats: cache.total_stats(),
        fetches_by_resource: targets.fetches_by_resource(&cache),
        endpoint_fetches: endpoint_fetches.map(|n| n.load(Ordering::Relaxed)),
        embedded: embedded.as_ref().map(Embedded::counts),
        dpop: dpop.as_ref(),
    };
    report.print();
    let tally = &outcome.tally;
    Ok(tally.sent() > 0 && tally.ok() == tally.sent())
}

/// Where the tokens come from, and how they are asked for.
fn token_source(
    args: &Args,
    embedded: Option<&Embedded>,
    dpop: Option<&Dpop>,
) -> Result<Source, String> {
    let mut builder = match (&args.provider, embedded) {
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
            let accepted = &servers.credentials;
            let builder = ClientCredentials::builder(
                &servers.token_url,
                args.client_id
                    .clone()
                    .unwrap_or_else(|| accepted.client_id.clone()),
            )
            .client_secret(
                args.client_secret
                    .clone()
                    .unwrap_or_else(|| accepted.client_secret.clone()),
            )
            .auth_style(AuthStyle::RequestBody)
            .header("x-api-key", accepted.api_key.clone())
            .scopes(args.scopes.clone());
            with_default_targets(builder, &args.tokens)
        }
        (Provider::Remote { endpoint, api_urls }, _) => {
            let apis: Vec<String> = api_urls.iter().map(|url| redact_url(url)).collect();
            let client_id = args.client_id.clone().expect("checked when parsed");
            let mut builder = match endpoint {
                TokenEndpoint::Url(token_url) => {
                    println!(
                        "Token endpoint {}; API {}",
                        redact_url(token_url),
                        apis.join(", ")
                    );
                    ClientCredentials::builder(token_url, client_id)
                }
                TokenEndpoint::Issuer(issuer) => {
                    println!(
                        "Issuer {} (its token endpoint discovered on the first fetch); API {}",
                        redact_url(issuer),
                        apis.join(", ")
                    );
                    ClientCredentials::discover(issuer, client_id)
                }
            }
            .scopes(args.scopes.clone());
            let secret = args
                .client_secret
                .clone()
                .or_else(|| std::env::var("CLIENT_SECRET").ok());
            builder = match &args.auth {
                ClientAuth::Secret(style) => match secret {
                    Some(secret) => builder.auth_style(*style).client_secret(secret),
                    None => builder,
                },
                ClientAuth::ClientSecretJwt => builder
                    .client_secret(secret.expect("checked when parsed"))
                    .client_secret_jwt(),
                ClientAuth::PrivateKeyJwt(key) => builder.private_key_jwt(key.clone()),
                // The certificate, on the token request and on the API's.
                ClientAuth::Tls => builder,
            };
            builder = args.tls.on_source(builder);
            for (name, value) in &args.token_headers {
                builder = builder.header(name.clone(), value.clone());
            }
            with_default_targets(builder, &args.tokens)
        }
        (Provider::Embedded { .. }, None) => unreachable!("the servers started above"),
    };
    if let Some(dpop) = dpop {
        // The thumbprint names the key; the key itself is never printed.
        println!(
            "DPoP (RFC 9449): tokens bound to a fresh {} key, thumbprint {}; a proof on the token request and on every API request (sent once more, with a new proof, when a server asks for its nonce)",
            dpop.key().algorithm(),
            dpop.thumbprint()
        );
        builder = builder.dpop(dpop.clone());
    }
    // The same endpoint, client, authentication and DPoP key, whichever
    // the grant.
    let built = match &args.grant {
        Grant::ClientCredentials => builder.build().map(Source::ClientCredentials),
        Grant::TokenExchange { subject, actor } => {
            let file = |token: &tower_bearer::SecurityToken| {
                token
                    .path()
                    .map_or_else(String::new, |path| path.display().to_string())
            };
            match actor {
                Some(actor) => println!(
                    "Token exchange (RFC 8693): the subject token in {}, the actor token in {}, read on every fetch",
                    file(subject),
                    file(actor)
                ),
                None => println!(
                    "Token exchange (RFC 8693): the subject token in {}, read on every fetch",
                    file(subject)
                ),
            }
            let mut exchange = builder.token_exchange(subject.clone());
            if let Some(actor) = actor {
                exchange = exchange.actor(actor.clone());
            }
            exchange.build().map(Source::TokenExchange)
        }
    };
    built.map_err(|e| e.to_string())
}

/// The default token's request names the resources and audiences given with
/// one `--url` (or none).
fn with_default_targets(
    mut builder: ClientCredentialsBuilder,
    tokens: &Tokens,
) -> ClientCredentialsBuilder {
    if let Tokens::One {
        resources,
        audiences,
    } = tokens
    {
        for resource in resources {
            builder = builder.resource(resource.clone());
        }
        for audience in audiences {
            builder = builder.audience(audience.clone());
        }
    }
    builder
}

/// The API's URLs, and the headers every call carries besides the token.
fn api_target(
    args: &Args,
    embedded: Option<&Embedded>,
) -> Result<(Vec<reqwest::Url>, HeaderMap), String> {
    let (api_urls, api_headers) = match (&args.provider, embedded) {
        (Provider::Remote { api_urls, .. }, _) => (api_urls.clone(), header_map(&args.api_headers)),
        (_, Some(servers)) => {
            // Like the BOLD API: x-api-key and Tenant on every call.
            let mut headers = vec![
                ("x-api-key".to_owned(), servers.credentials.api_key.clone()),
                ("tenant".to_owned(), "demo".to_owned()),
            ];
            headers.extend(args.api_headers.iter().cloned());
            (vec![servers.api_url.clone()], header_map(&headers))
        }
        _ => unreachable!("embedded mode has servers"),
    };
    // The URL may hold credentials: the message does not repeat it.
    let api_urls = api_urls
        .iter()
        .map(|url| reqwest::Url::parse(url).map_err(|e| format!("--url is not a valid URL: {e}")))
        .collect::<Result<_, _>>()?;
    Ok((api_urls, api_headers))
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
