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
//!     --url API_URL... [--resource URI]... [--audience A]...
//!     [--requests N] [--concurrency C] [--duration SECS]
//! ```
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
//! with or without the shared store), `report` (what happened) and `serve`
//! (`--serve`).

mod args;
mod cache;
mod provider;
mod report;
mod serve;
mod values;
mod workload;

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use http::{HeaderMap, HeaderName, HeaderValue};
use tower::ServiceBuilder;
use tower_bearer::request::Target;
use tower_bearer::{
    AuthStyle, BearerAuthLayer, ClientCredentials, ClientCredentialsBuilder, TokenCache,
    TokenParams, redact_url,
};

use args::{Args, Command, Provider, Tokens, UrlToken};
use provider::{Credentials, Embedded};
use report::Report;
use workload::Endpoint;

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
        Command::Run(args) => run(args).await,
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
    let source = token_source(&args, embedded.as_ref())?;
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
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(reqwest::Client::new());
    let outcome = workload::send_requests(
        args.workload,
        client,
        targets.endpoints(&args.tokens, &cache),
        api_headers,
    )
    .await?;

    let report = Report {
        outcome: &outcome,
        stats: cache.total_stats(),
        fetches_by_resource: targets.fetches_by_resource(&args.tokens, &cache),
        endpoint_fetches: endpoint_fetches.map(|n| n.load(Ordering::Relaxed)),
        embedded: embedded.as_ref().map(Embedded::counts),
    };
    report.print();
    let tally = &outcome.tally;
    Ok(tally.sent() > 0 && tally.ok() == tally.sent())
}

/// Where the tokens come from, and how they are asked for.
fn token_source(args: &Args, embedded: Option<&Embedded>) -> Result<ClientCredentials, String> {
    let built = match (&args.provider, embedded) {
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
            with_default_targets(builder, &args.tokens).build()
        }
        (
            Provider::Remote {
                token_url,
                api_urls,
            },
            _,
        ) => {
            let apis: Vec<String> = api_urls.iter().map(|url| redact_url(url)).collect();
            println!(
                "Token endpoint {}; API {}",
                redact_url(token_url),
                apis.join(", ")
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
            with_default_targets(builder, &args.tokens).build()
        }
        (Provider::Embedded { .. }, None) => unreachable!("the servers started above"),
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

/// Where one `--url` goes, as the layer's selector sees a request, and the
/// token it needs.
struct Route {
    scheme: String,
    host: Option<String>,
    port: Option<u16>,
    path: String,
    params: TokenParams,
}

impl Route {
    /// Whether a request to `target` goes to this URL: the same scheme,
    /// host, port (the default one if none is given) and path; the query
    /// does not count.
    fn matches(&self, target: &Target<'_>) -> bool {
        let same = |a: Option<&str>, b: Option<&str>| match (a, b) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        };
        same(target.scheme(), Some(&self.scheme))
            && same(target.host(), self.host.as_deref())
            && target.port() == self.port
            && target.path() == self.path
    }
}

/// The URLs, each with the token it needs: `None` for the default token.
struct Targets(Vec<(reqwest::Url, Option<(UrlToken, TokenParams)>)>);

impl Targets {
    fn new(urls: Vec<reqwest::Url>, tokens: &Tokens) -> Targets {
        let per_url: Vec<Option<UrlToken>> = match tokens {
            Tokens::One { .. } => vec![None; urls.len()],
            Tokens::PerUrl(each) => each.iter().cloned().map(Some).collect(),
        };
        Targets(
            urls.into_iter()
                .zip(per_url)
                .map(|(url, token)| {
                    let keyed = token.map(|token| {
                        let mut params = TokenParams::builder();
                        if let Some(resource) = &token.resource {
                            params = params.resource(resource.clone());
                        }
                        if let Some(audience) = &token.audience {
                            params = params.audience(audience.clone());
                        }
                        (token, params.build())
                    });
                    (url, keyed)
                })
                .collect(),
        )
    }

    /// Where the workload sends requests, each saying in messages what its
    /// token is for, with the cache of that token.
    fn endpoints(&self, tokens: &Tokens, cache: &TokenCache) -> Vec<Endpoint> {
        // The default token names what its request names, if anything.
        let default_for = match tokens {
            Tokens::One {
                resources,
                audiences,
            } if tokens.named() => {
                let names: Vec<String> = (resources.iter().map(|r| ("resource", r)))
                    .chain(audiences.iter().map(|a| ("audience", a)))
                    .map(|(kind, name)| format!("{kind} {}", redact_url(name)))
                    .collect();
                Some(names.join(", "))
            }
            _ => None,
        };
        // The default token is number 0; each distinct key, the next.
        let mut keys: Vec<&TokenParams> = Vec::new();
        self.0
            .iter()
            .map(|(url, keyed)| {
                let (token_for, cache, token) = match keyed {
                    None => (default_for.clone(), Some(cache.clone()), 0),
                    Some((token, params)) => {
                        let number = match keys.iter().position(|known| *known == params) {
                            Some(i) => i + 1,
                            None => {
                                keys.push(params);
                                keys.len()
                            }
                        };
                        let name = token
                            .name()
                            .map(|(kind, name)| format!("{kind} {}", redact_url(name)));
                        // Made now, so that its counters are there to read;
                        // nothing is fetched until a request needs it. A key
                        // the source cannot make fails its own requests, in
                        // the layer, and says why.
                        (name, cache.for_params(params).ok(), number)
                    }
                };
                Endpoint {
                    url: url.clone(),
                    token_for,
                    cache,
                    token,
                }
            })
            .collect()
    }

    /// The layer's selector, with several `--url` paired with resources: a
    /// request to one of the URLs (same scheme, host, port and path) gets
    /// that URL's token; any other, the default token.
    fn selector(
        &self,
    ) -> Option<impl Fn(&Target<'_>) -> Option<TokenParams> + Send + Sync + 'static> {
        let routes: Vec<Route> = self
            .0
            .iter()
            .filter_map(|(url, keyed)| {
                let (_, params) = keyed.as_ref()?;
                Some(Route {
                    scheme: url.scheme().to_owned(),
                    host: url.host_str().map(str::to_owned),
                    port: url.port_or_known_default(),
                    path: url.path().to_owned(),
                    params: params.clone(),
                })
            })
            .collect();
        (!routes.is_empty()).then_some(move |target: &Target<'_>| {
            routes
                .iter()
                .find(|route| route.matches(target))
                .map(|route| route.params.clone())
        })
    }

    /// `token_fetches_by_resource`, when `--resource` or `--audience` was
    /// given: with one token, each name its request carried, with that
    /// token's fetches; with a token per URL, each URL's resource (or
    /// audience), with its key's fetches.
    fn fetches_by_resource(
        &self,
        tokens: &Tokens,
        cache: &TokenCache,
    ) -> Option<Vec<(String, u64)>> {
        if !tokens.named() {
            return None;
        }
        let mut by_name: Vec<(String, u64)> = Vec::new();
        // Each token counts once under a name; two tokens under one name
        // (a resource paired with two audiences) add up.
        let mut add = |name: &str, fetches: u64| {
            let name = redact_url(name);
            match by_name.iter_mut().find(|(known, _)| *known == name) {
                Some((_, n)) => *n += fetches,
                None => by_name.push((name, fetches)),
            }
        };
        match tokens {
            Tokens::One {
                resources,
                audiences,
            } => {
                let fetches = cache.stats().fetches_started;
                // One token: a name given twice (as a resource and as an
                // audience) counts it once.
                let mut seen: Vec<&String> = Vec::new();
                for name in resources.iter().chain(audiences) {
                    if !seen.contains(&name) {
                        seen.push(name);
                        add(name, fetches);
                    }
                }
            }
            Tokens::PerUrl(_) => {
                let mut counted: Vec<&TokenParams> = Vec::new();
                for (token, params) in self.0.iter().filter_map(|(_, keyed)| keyed.as_ref()) {
                    let Some((_, name)) = token.name() else {
                        continue;
                    };
                    if counted.contains(&params) {
                        continue;
                    }
                    counted.push(params);
                    let fetches = cache
                        .for_params(params)
                        .map_or(0, |key| key.stats().fetches_started);
                    add(name, fetches);
                }
            }
        }
        Some(by_name)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_gives_each_url_its_own_token_and_any_other_the_default() {
        let urls = ["http://127.0.0.1:9/a", "https://api.example.com/b?x=1"]
            .map(|url| reqwest::Url::parse(url).unwrap())
            .to_vec();
        let tokens = Tokens::PerUrl(vec![
            UrlToken {
                resource: Some("urn:a".into()),
                audience: None,
            },
            UrlToken {
                resource: None,
                audience: Some("b".into()),
            },
        ]);
        let select = Targets::new(urls, &tokens).selector().expect("paired");
        let target =
            |scheme, host, port, path| Target::new(Some(scheme), Some(host), port).with_path(path);
        assert_eq!(
            select(&target("http", "127.0.0.1", Some(9), "/a")),
            Some(TokenParams::for_resource("urn:a"))
        );
        // The query is not part of the match; the default port is.
        assert_eq!(
            select(&target("https", "api.example.com", None, "/b")),
            Some(TokenParams::for_audience("b"))
        );
        assert_eq!(
            select(&target("https", "api.example.com", Some(443), "/b")),
            Some(TokenParams::for_audience("b"))
        );
        for other in [
            target("http", "127.0.0.1", Some(9), "/a/more"),
            target("http", "127.0.0.1", Some(10), "/a"),
            target("http", "api.example.com", None, "/b"),
        ] {
            assert_eq!(select(&other), None, "{other:?}");
        }
        let one = Tokens::One {
            resources: vec!["urn:a".into()],
            audiences: vec![],
        };
        let urls = vec![reqwest::Url::parse("http://127.0.0.1:9/a").unwrap()];
        assert!(Targets::new(urls, &one).selector().is_none());
    }
}
