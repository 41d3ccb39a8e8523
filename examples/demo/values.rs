//! Flag values, each checked alone, by parsers whose refusals name the flag
//! and never repeat the value: a value may be a secret, or a secret typed
//! where a flag was expected.

use std::ffi::OsStr;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use http::{HeaderName, HeaderValue};
use tower_bearer::AuthStyle;
use tower_bearer::source::client_auth::SigningAlgorithm;
#[cfg(feature = "redis")]
use tower_bearer::store::RedisStore;

/// How the client authenticates, as `--auth` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFlag {
    /// `basic` or `post`: the client secret, in a Basic header or the form.
    Secret(AuthStyle),
    /// `private-key-jwt`: an assertion signed with `--private-key`.
    PrivateKeyJwt,
    /// `client-secret-jwt`: an HS256 assertion made with the client secret.
    ClientSecretJwt,
    /// `tls`: the `--cert` and `--key` on the connection.
    Tls,
}

/// `--auth basic|post|private-key-jwt|client-secret-jwt|tls`. A mistyped
/// value is not repeated (it may be the secret that was meant to follow).
pub fn auth(flag: &str, text: &str) -> Result<AuthFlag, String> {
    match text {
        "basic" => Ok(AuthFlag::Secret(AuthStyle::Basic)),
        "post" => Ok(AuthFlag::Secret(AuthStyle::RequestBody)),
        "private-key-jwt" => Ok(AuthFlag::PrivateKeyJwt),
        "client-secret-jwt" => Ok(AuthFlag::ClientSecretJwt),
        "tls" => Ok(AuthFlag::Tls),
        _ => Err(format!(
            "{flag} must be basic, post, private-key-jwt, client-secret-jwt or tls"
        )),
    }
}

/// How the demo asks for tokens, as `--grant` names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GrantFlag {
    /// `client-credentials`: RFC 6749 section 4.4, the default.
    #[default]
    ClientCredentials,
    /// `token-exchange`: RFC 8693, with `--subject-token-file`.
    TokenExchange,
}

/// `--grant client-credentials|token-exchange`. A mistyped value is not
/// repeated.
pub fn grant(flag: &str, text: &str) -> Result<GrantFlag, String> {
    match text {
        "client-credentials" => Ok(GrantFlag::ClientCredentials),
        "token-exchange" => Ok(GrantFlag::TokenExchange),
        _ => Err(format!(
            "{flag} must be client-credentials or token-exchange"
        )),
    }
}

/// `--subject-token-type URN`, `--actor-token-type URN`: an absolute URI,
/// such as `urn:ietf:params:oauth:token-type:jwt` (RFC 8693 section 3),
/// without spaces or control characters.
pub fn token_type(flag: &str, text: &str) -> Result<String, String> {
    let absolute = reqwest::Url::parse(text).is_ok();
    if !absolute || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{flag} needs a token type URI, such as urn:ietf:params:oauth:token-type:jwt"
        ));
    }
    Ok(text.to_owned())
}

/// `--alg RS256|PS256|ES256|EdDSA`: the algorithm of `private_key_jwt`
/// assertions.
pub fn algorithm(flag: &str, text: &str) -> Result<SigningAlgorithm, String> {
    match text.parse() {
        Ok(SigningAlgorithm::HS256) | Err(_) => {
            Err(format!("{flag} must be RS256, PS256, ES256 or EdDSA"))
        }
        Ok(algorithm) => Ok(algorithm),
    }
}

/// What `--redis` gives: the fleet-wide store; without the feature, nothing
/// (the flag is refused).
#[cfg(feature = "redis")]
pub type SharedStore = RedisStore;
#[cfg(not(feature = "redis"))]
pub type SharedStore = std::convert::Infallible;

/// A value parser whose errors say what is wrong without repeating the
/// value: `check` gets the flag (`--ttl`) and the text, and its message
/// starts with the flag.
pub fn checked<T, F>(check: F) -> Checked<F>
where
    F: Fn(&str, &str) -> Result<T, String>,
{
    Checked(check)
}

#[derive(Clone)]
pub struct Checked<F>(F);

impl<T, F> TypedValueParser for Checked<F>
where
    T: Clone + Send + Sync + 'static,
    F: Fn(&str, &str) -> Result<T, String> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let flag = arg
            .and_then(|arg| arg.get_long())
            .map_or_else(|| "a value".to_owned(), |long| format!("--{long}"));
        let refuse = |message| cmd.clone().error(ErrorKind::ValueValidation, message);
        let text = value
            .to_str()
            .ok_or_else(|| refuse(format!("{flag} needs UTF-8 text")))?;
        (self.0)(&flag, text).map_err(refuse)
    }
}

/// A positive whole number up to `max`. A number is repeated, to say what
/// was read; other text is not: it may be anything, a secret included.
pub fn positive(flag: &str, text: &str, max: u64) -> Result<u64, String> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u64>() {
        Ok(n) if 0 < n && n <= max => Ok(n),
        Ok(0) => Err(format!("{flag} needs a positive whole number, not 0")),
        // Past u64::MAX too: a number, too large.
        _ if digits => Err(format!("{flag} must be at most {max}, not {text}")),
        _ => Err(format!("{flag} needs a positive whole number")),
    }
}

/// A `Name: value` header. Messages name the flag and at most a valid
/// header name: the value, or a mistyped argument, may be a secret.
pub fn header(flag: &str, text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{flag} needs 'Name: value' (with a colon)"))?;
    let (name, value) = (name.trim(), value.trim());
    if HeaderName::try_from(name).is_err() {
        return Err(format!("{flag}: the header name is not valid"));
    }
    if HeaderValue::try_from(value).is_err() {
        return Err(format!("{flag}: the value of {name:?} is not valid"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// `--resource URI`: an absolute URI without a fragment (RFC 8707 section
/// 2), without a user name or password (the JSON line and the messages name
/// a resource as given), and without spaces or control characters inside;
/// any around it are trimmed, as the URI parser does. The refusal names the
/// flag, not the value.
pub fn resource(flag: &str, text: &str) -> Result<String, String> {
    let text = trim(text);
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{flag} must not have spaces or control characters inside"
        ));
    }
    let url = reqwest::Url::parse(text)
        .map_err(|_| format!("{flag} needs an absolute URI, such as https://api.example.com/"))?;
    if url.fragment().is_some() {
        return Err(format!("{flag} must not have a fragment (#...): RFC 8707"));
    }
    refuse_user_info(flag, &url)?;
    Ok(text.to_owned())
}

/// `--audience A`: any text but blank, sent as it is; a URL with a user
/// name or password is refused, as for `--resource` (the JSON line and the
/// messages name an audience as given).
pub fn audience(flag: &str, text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(format!("{flag} needs a value"));
    }
    if let Ok(url) = reqwest::Url::parse(trim(text)) {
        refuse_user_info(flag, &url)?;
    }
    Ok(text.to_owned())
}

/// The text without what a URL parser trims around it: spaces and control
/// characters.
fn trim(text: &str) -> &str {
    text.trim_matches(|c: char| c <= ' ')
}

fn refuse_user_info(flag: &str, url: &reqwest::Url) -> Result<(), String> {
    if url.username().is_empty() && url.password().is_none() {
        Ok(())
    } else {
        Err(format!(
            "{flag} must not hold a user name or password: the output names it as given"
        ))
    }
}

/// A `--redis-cluster` seed node: a URL Redis can read, kept to build the
/// cluster store from all of them.
#[cfg(feature = "redis")]
#[derive(Clone)]
pub struct SeedNode(redis::ConnectionInfo);

#[cfg(not(feature = "redis"))]
pub type SeedNode = std::convert::Infallible;

#[cfg(feature = "redis")]
impl SeedNode {
    /// Where it is, `host:port`: no user name or password.
    pub fn address(&self) -> String {
        self.0.addr().to_string()
    }
}

/// A `--redis-cluster` seed node. The URL may hold a password: the message
/// does not repeat it.
#[cfg(feature = "redis")]
pub fn redis_node(flag: &str, url: &str) -> Result<SeedNode, String> {
    redis::IntoConnectionInfo::into_connection_info(url)
        .map(SeedNode)
        .map_err(|e| format!("{flag} needs a redis:// URL: {e}"))
}

#[cfg(not(feature = "redis"))]
pub fn redis_node(flag: &str, url: &str) -> Result<SeedNode, String> {
    redis_store(flag, url)
}

/// The store on a Redis Cluster found through `nodes`. Connects to nothing
/// yet: a cluster that is down shows up later as direct fetches.
#[cfg(feature = "redis")]
pub fn cluster_store(flag: &str, nodes: &[SeedNode]) -> Result<RedisStore, String> {
    RedisStore::cluster(nodes.iter().map(|node| node.0.clone()))
        .map(|builder| builder.build())
        .map_err(|e| format!("{flag}: the seed nodes do not make one cluster client: {e}"))
}

/// A store for `--redis`. Building it connects to nothing: a Redis that is
/// down shows up later as direct fetches, never as a failed run.
#[cfg(feature = "redis")]
pub fn redis_store(flag: &str, url: &str) -> Result<RedisStore, String> {
    // The URL may hold a password: the message does not repeat it.
    RedisStore::builder(url)
        .map(|builder| builder.build())
        .map_err(|e| format!("{flag} needs a redis:// URL: {e}"))
}

#[cfg(not(feature = "redis"))]
pub fn redis_store(flag: &str, _url: &str) -> Result<SharedStore, String> {
    Err(format!(
        "{flag} needs the demo built with the redis feature: \
         cargo run --example demo --features redis -- --redis URL ..."
    ))
}
