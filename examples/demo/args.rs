//! The command line: clap parses each flag and the rules between flags,
//! [`parse_from`] turns the result into a [`Command`].
//!
//! A value given on the command line may be a secret (a client secret, a
//! header value, a URL with a password, a secret typed where a flag was
//! expected), and clap's messages repeat a refused value: the value parsers
//! (in `values.rs`) name the flag only, and [`tidy`] cuts mistyped
//! arguments down to their flag's name.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgGroup, CommandFactory, Parser};
use tower_bearer::source::client_auth::{PrivateKeyFile, SigningAlgorithm};
use tower_bearer::source::token_exchange::SecurityToken;
#[cfg(feature = "redis")]
use tower_bearer::store::RedisStore;
use tower_bearer::{AuthStyle, redact_url};

use crate::provider::Credentials;
use crate::tls::{Tls, TlsFiles};
use crate::tokens::{Tokens, distinct_routes, pair, redacted};
#[cfg(feature = "redis")]
use crate::values::cluster_store;
use crate::values::{
    AuthFlag, GrantFlag, SeedNode, SharedStore, algorithm, audience, auth, checked, grant, header,
    positive, redis_node, redis_store, resource, token_type,
};
use crate::workload::Workload;

const DEFAULT_REQUESTS: u64 = 200;
const DEFAULT_CONCURRENCY: u64 = 8;
const DEFAULT_TTL_SECS: u64 = 3600;
/// The longest `--duration`, `--ttl` or `--serve`: one year. Larger values
/// overflow when added to the clock.
const MAX_SECS: u64 = 365 * 24 * 60 * 60;
/// The most workers `--concurrency` spawns.
const MAX_CONCURRENCY: u64 = 10_000;

/// The three ways to run the demo; clap puts it after "Usage: ".
const USAGE: &str = "\
demo [--ttl SECS] [--requests N | --duration SECS] [--concurrency C]
            [--resource URI]... [--audience A]...
       demo (--token-url URL | --issuer URL) --client-id ID
            [--client-secret S | env CLIENT_SECRET] [--scope S]...
            [--auth basic|post|client-secret-jwt
             | --auth private-key-jwt --private-key FILE [--key-id KID] [--alg ALG]
             | --auth tls --cert FILE --key FILE] [--ca FILE] [--token-header 'Name: value']...
            [--api-header 'Name: value']... --url API_URL... [--resource URI]...
            [--audience A]... [--requests N | --duration SECS] [--concurrency C]
            [--redis URL | --redis-cluster URL...]
       demo ... --dpop
       demo ... --grant token-exchange --subject-token-file FILE [--subject-token-type URN]
            [--actor-token-file FILE] [--actor-token-type URN]
       demo --serve SECS [--ttl SECS] [--client-id ID]
            [--client-secret S | env CLIENT_SECRET] [--api-key K | env API_KEY]";

const ABOUT: &str = "\
Watch the token cache at work: a workload through BearerAuthLayer over reqwest,
and what happened in plain words and one JSON line.";

const AFTER_HELP: &str = "\
Without --token-url, an embedded token endpoint and API run on 127.0.0.1;
--client-id and --client-secret then override the credentials the demo sends
(try a wrong secret, or a --resource elsewhere, to see a refusal).

Resources and audiences: with one --url (or none), every --resource and
--audience goes on the one token request (resource=URI, audience=A). With
several --url, requests go round-robin over them, and each --url pairs with
the --resource (and the --audience) at the same position: its requests carry
the token for that resource, all through one layer and one HTTP client. Give
one --resource (or --audience) per --url, or none. The JSON line then adds
\"token_fetches_by_resource\": {\"URI\": n, ...}: with a token per --url,
each URL's resource (its audience when only --audience is given) and the
fetches of its token; with one token, each --resource and --audience its
request named and the fetches of that token. It is left out when neither
flag is given; \"token_fetches\" stays the total. A resource the provider
refuses fails only its own requests, with one line on stderr naming the
resource (and the audience paired with it) and the provider's error, and is
not asked for again while its token backs off. The JSON and the messages
name each resource as given, so one with a user name or password is
refused.

Client authentication: basic and post send the client secret (HTTP Basic,
or in the form); client-secret-jwt signs an HS256 assertion with it instead;
private-key-jwt signs an RFC 7523 assertion with --private-key (a PEM key:
PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY; RSA, EC P-256 or Ed25519;
read again on every fetch), its algorithm by the key's type (RS256, ES256,
EdDSA) unless --alg says PS256 (or names it), with a kid only if --key-id is
given, its aud the token endpoint's URL; tls presents --cert and --key to
the token endpoint and to the API (RFC 8705 tls_client_auth, so
certificate-bound tokens work). --ca adds a trusted root (PEM) for both.
--issuer discovers the token endpoint from the issuer's metadata (OpenID
Connect, then RFC 8414), and with --auth tls its mTLS alias when it has one.
A key or certificate the provider refuses fails the run (exit 1) with one
line on stderr naming the provider's error (or the TLS alert refusing the
certificate), after one token fetch.

Token exchange: --grant token-exchange (RFC 8693) sends the token in
--subject-token-file (read again on every fetch: Kubernetes rotates a
projected service-account token on disk) as subject_token, and the one in
--actor-token-file, if given, as actor_token; their types default to
urn:ietf:params:oauth:token-type:jwt. The client authenticates as --auth
says, to the --token-url, the --issuer's token endpoint or the embedded one
(which refuses a token said to be a JWT that does not look like one). A
file missing or empty fails the fetch, which the cache retries after its
backoff. The token belongs to the subject, so it is not shared through
--redis.

DPoP: --dpop (RFC 9449) makes a fresh ES256 key for the run and proves
possession of it on the token request and on every API request (a DPoP
proof, and Authorization: DPoP <token>): the provider binds the tokens to
the key, so a token that leaks is useless without it. Nonces are kept per
server and updated from any DPoP-Nonce header; a use_dpop_nonce answer is
retried once with a new proof (a RetryLayer outside the bearer layer does
it for API requests). \"token_fetches\" counts a fetch once, whatever its
nonce retries; the JSON line adds \"dpop_nonce_retries\": n (API and token
requests together). It works with every provider (the embedded one checks
every proof), every --auth and --grant, and several --url; not with --redis
or --redis-cluster, which share a token that only this process can use.

A fleet: --redis URL, or --redis-cluster URL once per seed node of a Redis
Cluster (built with --features redis), shares tokens with the other demo
processes that use the same store: one token for them all, or one per
resource with --resource.

--serve accepts the given client secret and API key (x-api-key), prints its
URLs and client id as one JSON line, and stops after SECS, on SIGTERM or
Ctrl-C, or when its standard input is a pipe that closes; its last line is a
JSON object with the tokens it issued (in all, per resource or audience,
and per audience). Its token endpoint accepts as resource or audience any
http URI on its API's origin (\"api_origin\" in the first line) without a
query, user info or fragment and with a plain path (no . or .. segment, no
%2F or %5C), up to 1000 distinct ones; it binds each token to what its
request named, and refuses others with invalid_target. Its API refuses a
token bound elsewhere, or at a path that is not plain (401 invalid_token).
Both check DPoP proofs and want their nonce in each (for demo processes
run with --dpop); the last line then counts tokens bound to a key, nonce
challenges and proofs refused too.

Exit status: 0 when every request succeeded, 1 otherwise, 2 for bad arguments.";

/// The flags, each checked alone, and the rules between them. The help's
/// prose is in ABOUT and AFTER_HELP, whose line breaks clap keeps. Only the
/// secrets may start with `-`: any other flag missing its value must not
/// take the next flag (a `--client-secret=...`) for it.
#[derive(Parser)]
#[command(
    name = "demo",
    about = ABOUT,
    long_about = None,
    override_usage = USAGE,
    after_help = AFTER_HELP,
    // As before clap: a flag given twice takes its last value.
    args_override_self = true,
    group = ArgGroup::new("provider").args(["token_url", "issuer"])
)]
struct Cli {
    /// Lifetime of embedded tokens
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TTL_SECS,
          value_parser = checked(|flag, text| positive(flag, text, MAX_SECS)),
          conflicts_with = "provider")]
    ttl: u64,

    /// Send N requests
    #[arg(long, value_name = "N", default_value_t = DEFAULT_REQUESTS,
          value_parser = checked(|flag, text| positive(flag, text, u64::MAX)))]
    requests: u64,

    /// Send requests until SECS have passed, instead of a count
    #[arg(long, value_name = "SECS", conflicts_with = "requests",
          value_parser = checked(|flag, text| positive(flag, text, MAX_SECS)))]
    duration: Option<u64>,

    /// Requests in flight at once
    #[arg(long, value_name = "C", default_value_t = DEFAULT_CONCURRENCY,
          value_parser = checked(|flag, text| positive(flag, text, MAX_CONCURRENCY)))]
    concurrency: u64,

    /// The provider's token endpoint, instead of the embedded one
    #[arg(long, value_name = "URL", requires_all = ["urls", "client_id"])]
    token_url: Option<String>,

    /// The provider's issuer: its token endpoint discovered from its metadata
    #[arg(long, value_name = "URL", requires_all = ["urls", "client_id"])]
    issuer: Option<String>,

    /// The API to call with the tokens (repeatable: requests go round-robin)
    #[arg(long = "url", value_name = "API_URL", requires = "provider")]
    urls: Vec<String>,

    /// The client id
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,

    /// The client secret [or env CLIENT_SECRET]
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    client_secret: Option<String>,

    /// A scope to ask for (repeatable)
    #[arg(long = "scope", value_name = "S")]
    scopes: Vec<String>,

    /// A resource (RFC 8707) to ask a token for (repeatable; pairs with --url)
    #[arg(long = "resource", value_name = "URI", value_parser = checked(resource))]
    resources: Vec<String>,

    /// An audience to ask a token for, sent as `audience` (repeatable; pairs with --url)
    #[arg(long = "audience", value_name = "A", value_parser = checked(audience))]
    audiences: Vec<String>,

    /// How to ask for tokens: client-credentials, or token-exchange (RFC 8693)
    #[arg(long, value_name = "GRANT", default_value = "client-credentials", value_parser = checked(grant))]
    grant: GrantFlag,

    /// With --grant token-exchange: the file holding the subject token (read on every fetch)
    #[arg(long, value_name = "FILE")]
    subject_token_file: Option<PathBuf>,

    /// With --grant token-exchange: the subject token's type [default: urn:ietf:params:oauth:token-type:jwt]
    #[arg(long, value_name = "URN", value_parser = checked(token_type))]
    subject_token_type: Option<String>,

    /// With --grant token-exchange: the file holding the actor token (read on every fetch)
    #[arg(long, value_name = "FILE")]
    actor_token_file: Option<PathBuf>,

    /// With --actor-token-file: the actor token's type [default: urn:ietf:params:oauth:token-type:jwt]
    #[arg(long, value_name = "URN", value_parser = checked(token_type))]
    actor_token_type: Option<String>,

    /// Client authentication: basic, post, private-key-jwt, client-secret-jwt or tls
    #[arg(long, value_name = "METHOD", default_value = "basic", value_parser = checked(auth))]
    auth: AuthFlag,

    /// With --auth private-key-jwt: the PEM private key that signs the assertions
    #[arg(long, value_name = "FILE")]
    private_key: Option<PathBuf>,

    /// With --auth private-key-jwt: the key id (kid) the provider knows the key by
    #[arg(long, value_name = "KID", requires = "private_key")]
    key_id: Option<String>,

    /// With --auth private-key-jwt: RS256, PS256, ES256 or EdDSA [default: by key type]
    #[arg(long, value_name = "ALG", requires = "private_key", value_parser = checked(algorithm))]
    alg: Option<SigningAlgorithm>,

    /// With --auth tls: the client certificate (PEM, leaf first)
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,

    /// With --auth tls: the client certificate's private key (PEM)
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,

    /// An extra trusted root certificate (PEM) for the token endpoint and the API
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,

    /// A header for the token endpoint (repeatable)
    #[arg(long = "token-header", value_name = "'Name: value'", value_parser = checked(header))]
    token_headers: Vec<(String, String)>,

    /// A header for the API (repeatable)
    #[arg(long = "api-header", value_name = "'Name: value'", value_parser = checked(header))]
    api_headers: Vec<(String, String)>,

    /// Share one token with other demo processes through Redis (needs --features redis)
    #[arg(long, value_name = "URL", value_parser = checked(redis_store))]
    redis: Option<SharedStore>,

    /// The same through a Redis Cluster: a seed node (repeatable; needs --features redis)
    #[arg(long = "redis-cluster", value_name = "URL", conflicts_with = "redis",
          value_parser = checked(redis_node))]
    redis_cluster: Vec<SeedNode>,

    /// Only run the embedded token endpoint and API, for other demo processes to use
    #[arg(long, value_name = "SECS",
          value_parser = checked(|flag, text| positive(flag, text, MAX_SECS)),
          conflicts_with_all = ["requests", "duration", "concurrency", "token_url", "urls",
                                "scopes", "resources", "audiences", "auth", "token_headers",
                                "api_headers", "redis", "redis_cluster", "issuer",
                                "private_key", "key_id", "alg", "cert", "key", "ca",
                                "grant", "subject_token_file", "subject_token_type",
                                "actor_token_file", "actor_token_type", "dpop"])]
    serve: Option<u64>,

    /// Sender-constrained tokens (RFC 9449): a fresh ES256 key, a DPoP proof on every request
    #[arg(long)]
    dpop: bool,

    /// The API key --serve accepts [or env API_KEY]
    #[arg(long, value_name = "K", requires = "serve", allow_hyphen_values = true)]
    api_key: Option<String>,
}

/// What to do.
#[derive(Debug)]
pub enum Command {
    /// Send a workload through the layer.
    Run(Box<Args>),
    /// Only serve the embedded token endpoint and API.
    Serve(Serve),
}

/// Where tokens come from.
pub enum Provider {
    /// The embedded token endpoint and API.
    Embedded { ttl: Duration },
    /// A real provider and API: one URL or more, called round-robin.
    Remote {
        endpoint: TokenEndpoint,
        api_urls: Vec<String>,
    },
}

/// Where a remote provider's token endpoint is.
pub enum TokenEndpoint {
    /// `--token-url`.
    Url(String),
    /// `--issuer`: discovered from its metadata.
    Issuer(String),
}

impl TokenEndpoint {
    /// The URL given, whichever it is.
    pub fn url(&self) -> &str {
        match self {
            TokenEndpoint::Url(url) | TokenEndpoint::Issuer(url) => url,
        }
    }
}

/// How tokens are asked for.
#[derive(Debug)]
pub enum Grant {
    /// `--grant client-credentials`, the default.
    ClientCredentials,
    /// `--grant token-exchange`: the subject token, and the actor token if
    /// any, each read from its file on every fetch.
    TokenExchange {
        subject: SecurityToken,
        actor: Option<SecurityToken>,
    },
}

/// How the client authenticates.
#[derive(Debug)]
pub enum ClientAuth {
    /// The client secret, as `--auth basic` or `post` sends it.
    Secret(AuthStyle),
    /// `--auth private-key-jwt`: the key, checked when parsed.
    PrivateKeyJwt(PrivateKeyFile),
    /// `--auth client-secret-jwt`.
    ClientSecretJwt,
    /// `--auth tls`: the certificate and key, checked when parsed.
    Tls,
}

/// A workload run.
pub struct Args {
    pub provider: Provider,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    /// Which token each request needs.
    pub tokens: Tokens,
    pub grant: Grant,
    pub auth: ClientAuth,
    /// `--cert`, `--key` and `--ca`, read.
    pub tls: Tls,
    pub token_headers: Vec<(String, String)>,
    pub api_headers: Vec<(String, String)>,
    pub workload: Workload,
    /// `--dpop`: tokens bound to a key made for this run.
    pub dpop: bool,
    /// The fleet-wide token store, with `--redis` or `--redis-cluster`.
    #[cfg(feature = "redis")]
    pub redis: Option<RedisStore>,
    /// The `--redis-cluster` seed nodes the store was built from, in the
    /// order given: their addresses (`host:port`), never a password.
    #[cfg(feature = "redis")]
    pub redis_seeds: Vec<String>,
}

/// `--serve`: the embedded token endpoint and API alone, for several demo
/// processes to share.
#[derive(Debug)]
pub struct Serve {
    pub duration: Duration,
    pub ttl: Duration,
    pub credentials: Credentials,
}

// The URLs may hold credentials and the secret and header values are
// secrets: Debug shows neither.
impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Embedded { ttl } => f.debug_struct("Embedded").field("ttl", ttl).finish(),
            Provider::Remote { endpoint, api_urls } => f
                .debug_struct("Remote")
                .field(
                    match endpoint {
                        TokenEndpoint::Url(_) => "token_url",
                        TokenEndpoint::Issuer(_) => "issuer",
                    },
                    &redact_url(endpoint.url()),
                )
                .field("api_urls", &redacted(api_urls))
                .finish(),
        }
    }
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names = |headers: &[(String, String)]| {
            headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
        };
        let mut s = f.debug_struct("Args");
        s.field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("scopes", &self.scopes)
            .field("tokens", &self.tokens)
            .field("grant", &self.grant)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("token_header_names", &header_names(&self.token_headers))
            .field("api_header_names", &header_names(&self.api_headers))
            .field("workload", &self.workload)
            .field("dpop", &self.dpop);
        #[cfg(feature = "redis")]
        s.field("redis", &self.redis)
            .field("redis_seeds", &self.redis_seeds);
        s.finish()
    }
}

/// Parses the command line, `raw[0]` being the program's name. The error
/// prints itself (`--help` too) and knows its exit code: 0 for `--help`, 2
/// for bad arguments.
pub fn parse_from<I, T>(raw: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(raw)
        .map_err(tidy)?
        .into_command()
        .map_err(tidy)
}

impl Cli {
    /// Checks what clap cannot and fills in from the environment.
    fn into_command(self) -> Result<Command, clap::Error> {
        let missing =
            |message: &str| Cli::command().error(ErrorKind::MissingRequiredArgument, message);
        let invalid = |message: String| Cli::command().error(ErrorKind::ValueValidation, message);
        let remote = self.token_url.is_some() || self.issuer.is_some();
        let auth = self.client_auth(remote).map_err(invalid)?;
        let grant = self.token_grant().map_err(invalid)?;
        self.check_dpop().map_err(invalid)?;
        let tls = TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
        }
        .read(matches!(auth, ClientAuth::Tls))
        .map_err(invalid)?;
        #[cfg(not(feature = "redis"))]
        if let Some(never) = self.redis.or(self.redis_cluster.into_iter().next()) {
            match never {}
        }
        #[cfg(feature = "redis")]
        let redis_seeds: Vec<String> = self.redis_cluster.iter().map(SeedNode::address).collect();
        #[cfg(feature = "redis")]
        let redis = match self.redis {
            Some(store) => Some(store),
            None if self.redis_cluster.is_empty() => None,
            None => Some(
                cluster_store("--redis-cluster", &self.redis_cluster)
                    .map_err(|message| Cli::command().error(ErrorKind::ValueValidation, message))?,
            ),
        };
        if let Some(secs) = self.serve {
            // The processes that use the endpoint must know these, so they
            // are the caller's to choose, never printed.
            let client_secret = self
                .client_secret
                .or_else(|| std::env::var("CLIENT_SECRET").ok())
                .ok_or_else(|| {
                    missing("--serve needs the client secret to accept: --client-secret S or env CLIENT_SECRET")
                })?;
            let api_key = self
                .api_key
                .or_else(|| std::env::var("API_KEY").ok())
                .ok_or_else(|| {
                    missing("--serve needs the API key to accept: --api-key K or env API_KEY")
                })?;
            return Ok(Command::Serve(Serve {
                duration: Duration::from_secs(secs),
                ttl: Duration::from_secs(self.ttl),
                credentials: Credentials {
                    client_id: self
                        .client_id
                        .unwrap_or_else(|| Credentials::random().client_id),
                    client_secret,
                    api_key,
                },
            }));
        }
        let tokens = pair(self.urls.len(), self.resources, self.audiences)
            .and_then(|tokens| distinct_routes(&self.urls, tokens))
            .map_err(|message| Cli::command().error(ErrorKind::WrongNumberOfValues, message))?;
        // clap has checked that --token-url or --issuer and --url come
        // together, and that --token-url and --issuer do not.
        let endpoint = match (self.token_url, self.issuer) {
            (Some(url), _) => Some(TokenEndpoint::Url(url)),
            (_, Some(issuer)) => Some(TokenEndpoint::Issuer(issuer)),
            (None, None) => None,
        };
        let provider = match endpoint {
            Some(endpoint) => Provider::Remote {
                endpoint,
                api_urls: self.urls,
            },
            None => Provider::Embedded {
                ttl: Duration::from_secs(self.ttl),
            },
        };
        Ok(Command::Run(Box::new(Args {
            provider,
            client_id: self.client_id,
            client_secret: self.client_secret,
            scopes: self.scopes,
            tokens,
            grant,
            auth,
            tls,
            token_headers: self.token_headers,
            api_headers: self.api_headers,
            workload: Workload {
                requests: self.requests,
                duration: self.duration.map(Duration::from_secs),
                concurrency: usize::try_from(self.concurrency).expect("at most MAX_CONCURRENCY"),
            },
            dpop: self.dpop,
            #[cfg(feature = "redis")]
            redis,
            #[cfg(feature = "redis")]
            redis_seeds,
        })))
    }
}

impl Cli {
    /// `--dpop` and the flags it cannot go with.
    fn check_dpop(&self) -> Result<(), String> {
        // The store shares one token per client across the fleet, but a
        // DPoP token is bound to this process's key: no other process can
        // use it, so the library neither shares it nor reads a shared one
        // for it, and the store would do nothing. Refused, as for a
        // subject's token, rather than accepted and ignored.
        if self.dpop && (self.redis.is_some() || !self.redis_cluster.is_empty()) {
            let flag = if self.redis.is_some() {
                "--redis"
            } else {
                "--redis-cluster"
            };
            return Err(format!(
                "--dpop does not go with {flag}: a DPoP token is bound to this process's key, \
                 so the fleet cannot share it"
            ));
        }
        Ok(())
    }

    /// `--grant` and the flags that go with it. The files are only named
    /// here: they are read on every fetch, and one that is not there yet
    /// fails that fetch, not the arguments.
    fn token_grant(&self) -> Result<Grant, String> {
        let exchange_flags = [
            ("--subject-token-file", self.subject_token_file.is_some()),
            ("--subject-token-type", self.subject_token_type.is_some()),
            ("--actor-token-file", self.actor_token_file.is_some()),
            ("--actor-token-type", self.actor_token_type.is_some()),
        ];
        if self.grant != GrantFlag::TokenExchange {
            return match exchange_flags.iter().find(|(_, given)| *given) {
                Some((flag, _)) => Err(format!("{flag} goes with --grant token-exchange")),
                None => Ok(Grant::ClientCredentials),
            };
        }
        let subject = self
            .subject_token_file
            .as_ref()
            .ok_or("--grant token-exchange needs --subject-token-file FILE")?;
        if self.actor_token_type.is_some() && self.actor_token_file.is_none() {
            return Err("--actor-token-type goes with --actor-token-file".into());
        }
        // A token exchanged for one subject is that subject's: the fleet
        // store shares one token per client.
        if self.redis.is_some() || !self.redis_cluster.is_empty() {
            return Err(
                "--grant token-exchange does not go with --redis or --redis-cluster: \
                        the token is the subject's, not one for the whole fleet"
                    .into(),
            );
        }
        let token = |file: &PathBuf, token_type: &Option<String>| {
            let token = SecurityToken::file(file);
            match token_type {
                Some(token_type) => token.with_type(token_type.as_str()),
                None => token,
            }
        };
        Ok(Grant::TokenExchange {
            subject: token(subject, &self.subject_token_type),
            actor: self
                .actor_token_file
                .as_ref()
                .map(|file| token(file, &self.actor_token_type)),
        })
    }

    /// `--auth` and the flags that go with it: the key read and checked
    /// now, so that a key that cannot sign is a bad argument (exit 2), not
    /// a failed run. The messages name the flag and the file, never what is
    /// in it.
    fn client_auth(&self, remote: bool) -> Result<ClientAuth, String> {
        let name = match self.auth {
            AuthFlag::Secret(_) => None,
            AuthFlag::PrivateKeyJwt => Some("private-key-jwt"),
            AuthFlag::ClientSecretJwt => Some("client-secret-jwt"),
            AuthFlag::Tls => Some("tls"),
        };
        if let Some(name) = name
            && !remote
        {
            return Err(format!(
                "--auth {name} needs a provider of your own: --token-url URL or --issuer URL"
            ));
        }
        if self.private_key.is_some() && self.auth != AuthFlag::PrivateKeyJwt {
            return Err("--private-key goes with --auth private-key-jwt".into());
        }
        if self.cert.is_some() && self.auth != AuthFlag::Tls {
            return Err("--cert and --key go with --auth tls".into());
        }
        Ok(match self.auth {
            AuthFlag::Secret(style) => ClientAuth::Secret(style),
            AuthFlag::PrivateKeyJwt => {
                let path = self
                    .private_key
                    .as_ref()
                    .ok_or("--auth private-key-jwt needs --private-key FILE")?;
                let mut key =
                    PrivateKeyFile::new(path).map_err(|e| format!("--private-key: {e}"))?;
                if let Some(algorithm) = self.alg {
                    key = key
                        .with_algorithm(algorithm)
                        .map_err(|e| format!("--alg: {e}"))?;
                }
                if let Some(kid) = &self.key_id {
                    key = key.with_key_id(kid.as_str());
                }
                ClientAuth::PrivateKeyJwt(key)
            }
            AuthFlag::ClientSecretJwt => {
                // As main reads it: a value that is not UTF-8 is none.
                if self.client_secret.is_none() && std::env::var("CLIENT_SECRET").is_err() {
                    return Err("--auth client-secret-jwt needs the client secret: \
                                --client-secret S or env CLIENT_SECRET"
                        .into());
                }
                ClientAuth::ClientSecretJwt
            }
            AuthFlag::Tls => {
                if self.cert.is_none() {
                    return Err("--auth tls needs --cert FILE and --key FILE".into());
                }
                ClientAuth::Tls
            }
        })
    }
}

/// clap's error, made safe and complete: a mistyped argument cut down to
/// its flag's name (clap repeats it whole, and it may hold a secret:
/// `--token-header=x-api-key S3CR3T`, a secret where a flag was expected),
/// and the usage on every refusal (clap leaves it out of some).
fn tidy(mut error: clap::Error) -> clap::Error {
    if error.kind() == ErrorKind::UnknownArgument {
        let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
            return error;
        };
        if !arg.starts_with('-') {
            return Cli::command().error(
                ErrorKind::UnknownArgument,
                "unexpected value (every value follows its flag)",
            );
        }
        let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
        let name = ContextValue::String(name.to_owned());
        error.insert(ContextKind::InvalidArg, name);
        // "to pass '…' as a value, use '-- …'": the whole argument again.
        error.remove(ContextKind::Suggested);
    }
    if error.use_stderr() && error.get(ContextKind::Usage).is_none() {
        let usage = Cli::command().render_usage();
        error.insert(ContextKind::Usage, ContextValue::StyledStr(usage));
    }
    error
}

// Run with `cargo test --all-features --example demo`: the arguments'
// Debug cannot be observed from outside the process. tests/demo.rs runs
// the demo with bad arguments and reads what it prints.
#[cfg(test)]
mod tests;
