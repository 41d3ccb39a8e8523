//! A token endpoint and a resource server on loopback that verify DPoP
//! (RFC 9449) independently of the library under test: each proof is checked
//! by [`super::dpop_verify`] (jsonwebtoken against the proof's own `jwk`),
//! then against what the server remembers ([`super::dpop_state`]: its
//! nonce, the `jti`s it has seen, the key each token is bound to).
//!
//! - [`DpopTokenEndpoint`] serves `POST /token`: a `client_credentials`
//!   grant authenticated by `client_secret_post` or `client_secret_basic`
//!   (or, with [`TokenEndpointConfig::any_client`], any grant from anyone),
//!   whose `DPoP` proof (htm `POST`, htu the token URL, no `ath`) earns an
//!   opaque random token bound to the proof key's RFC 7638 thumbprint,
//!   answered as `token_type` `DPoP`. A bad proof is `400 invalid_dpop_proof`,
//!   a missing or stale nonce `400 use_dpop_nonce` with `DPoP-Nonce`
//!   (§8); a request without a proof gets a plain `Bearer` token or
//!   `400 invalid_dpop_proof`, as configured.
//! - [`DpopResourceServer`] answers any method on any path for a request with
//!   `Authorization: DPoP <token>` and one valid `DPoP` proof of the token's
//!   key, with `ath` of the token (§4.3, §7.1); else `401` with
//!   `WWW-Authenticate: DPoP error="invalid_dpop_proof"` (the proof),
//!   `error="invalid_token"` (the token: unknown, expired, unbound, bound to
//!   another key, or a bound token sent as `Bearer`) or
//!   `error="use_dpop_nonce"` with `DPoP-Nonce` (§9).
//! - [`DpopProvider`] starts the two paired: the resource server accepts the
//!   tokens the endpoint issued ([`IssuedTokens`]).
//!
//! When a server's nonces are on, every response it gives, success or not,
//! carries `DPoP-Nonce: <current>`. Both servers deref to [`DpopChecks`]:
//! the nonce controls and what they saw (counters, refusal reasons, `jti`s).
//! A missing or stale nonce is a challenge, counted by
//! [`DpopChecks::nonce_challenges`], not a refusal.

use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::request::Parts;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

use super::TestServer;
pub use super::dpop_state::{Binding, DpopChecks, IssuedTokens, NoncePolicy};
use super::dpop_state::{Checks, Refusal};
pub use super::dpop_verify::{
    DPOP_HEADER, DPOP_TYP, Expected, Proof, ProofError, SUPPORTED_ALGS, ath, normalize_htu, refuse,
    thumbprint, verify_proof,
};

/// The path the token endpoint serves.
pub const TOKEN_PATH: &str = "/token";

/// How far a proof's `iat` may be from now, either way, unless changed.
pub const DEFAULT_IAT_WINDOW: Duration = Duration::from_secs(60);

/// The `expires_in` of issued tokens unless changed.
pub const DEFAULT_EXPIRES_IN: u64 = 3600;

/// The client the token endpoint knows unless changed.
pub const DEFAULT_CLIENT_ID: &str = "dpop-client";

/// Its secret.
pub const DEFAULT_CLIENT_SECRET: &str = "dpop-client-secret";

/// The header a nonce is given in.
pub const DPOP_NONCE_HEADER: &str = "dpop-nonce";

/// How a [`DpopResourceServer`] checks requests.
#[derive(Clone, Debug)]
pub struct ResourceServerConfig {
    /// How far `iat` may be from now, either way.
    pub iat_window: Duration,
    /// Its nonces.
    pub nonce: NoncePolicy,
}

impl Default for ResourceServerConfig {
    fn default() -> Self {
        ResourceServerConfig {
            iat_window: DEFAULT_IAT_WINDOW,
            nonce: NoncePolicy::default(),
        }
    }
}

/// How a [`DpopTokenEndpoint`] checks token requests and what it issues.
#[derive(Clone, Debug)]
pub struct TokenEndpointConfig {
    /// The client id accepted.
    pub client_id: String,
    /// Its secret, by `client_secret_post` or `client_secret_basic`.
    pub client_secret: String,
    /// Accept any grant type from any client, authenticated or not (the
    /// proof is still checked).
    pub any_client: bool,
    /// The `expires_in` of issued tokens, which the resource server enforces.
    pub expires_in: u64,
    /// How far `iat` may be from now, either way.
    pub iat_window: Duration,
    /// Its nonces.
    pub nonce: NoncePolicy,
    /// A request without a `DPoP` header gets an unbound `Bearer` token
    /// (`true`) or `400 invalid_dpop_proof` (`false`).
    pub bearer_without_proof: bool,
}

impl Default for TokenEndpointConfig {
    fn default() -> Self {
        TokenEndpointConfig {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            any_client: false,
            expires_in: DEFAULT_EXPIRES_IN,
            iat_window: DEFAULT_IAT_WINDOW,
            nonce: NoncePolicy::default(),
            bearer_without_proof: false,
        }
    }
}

/// A JSON response, with `DPoP-Nonce` if given.
fn json_with_nonce(status: u16, body: &Value, nonce: Option<&str>) -> Response<Full<Bytes>> {
    let mut response = super::json_response(status, body);
    if let Some(nonce) = nonce {
        response.headers_mut().insert(
            DPOP_NONCE_HEADER,
            http::HeaderValue::from_str(nonce).unwrap(),
        );
    }
    response
}

/// The URL a request was sent to, as `htu` must name it: the server's
/// scheme, the authority the client addressed (`Host`, or the HTTP/2
/// `:authority`), the path.
fn request_url(parts: &Parts, origin: &str) -> String {
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    match authority {
        Some(authority) => format!("http://{authority}{}", parts.uri.path()),
        None => format!("{origin}{}", parts.uri.path()),
    }
}

/// The token endpoint's settings that are not about proofs.
#[derive(Debug)]
struct Issuer {
    config: TokenEndpointConfig,
    origin: String,
    issued: Vec<Option<String>>,
    last_form: Vec<(String, String)>,
}

/// A DPoP token endpoint on `127.0.0.1`, stopped when dropped; derefs to its
/// [`DpopChecks`].
pub struct DpopTokenEndpoint {
    server: TestServer,
    checks: DpopChecks,
    issuer: Arc<Mutex<Issuer>>,
    tokens: IssuedTokens,
}

impl Deref for DpopTokenEndpoint {
    type Target = DpopChecks;
    fn deref(&self) -> &DpopChecks {
        &self.checks
    }
}

impl DpopTokenEndpoint {
    /// Serves `POST /token` as `config` says.
    pub async fn start(config: TokenEndpointConfig) -> Self {
        let checks = DpopChecks::new(config.iat_window, config.nonce.clone());
        let issuer = Arc::new(Mutex::new(Issuer {
            config,
            // Known once the server has a port, before any request can come.
            origin: String::new(),
            issued: Vec::new(),
            last_form: Vec::new(),
        }));
        let tokens = IssuedTokens::default();
        let (c, i, t) = (checks.clone(), Arc::clone(&issuer), tokens.clone());
        let server =
            TestServer::start(move |req| token_request(c.clone(), Arc::clone(&i), t.clone(), req))
                .await;
        issuer.lock().unwrap().origin = server.origin();
        DpopTokenEndpoint {
            server,
            checks,
            issuer,
            tokens,
        }
    }

    /// `http://127.0.0.1:PORT/token`, where to post and the `htu` required.
    pub fn token_url(&self) -> String {
        self.server.url(TOKEN_PATH)
    }

    /// The tokens issued, for a resource server to accept.
    pub fn tokens(&self) -> IssuedTokens {
        self.tokens.clone()
    }

    /// The client id accepted.
    pub fn client_id(&self) -> String {
        self.issuer.lock().unwrap().config.client_id.clone()
    }

    /// Its secret.
    pub fn client_secret(&self) -> String {
        self.issuer.lock().unwrap().config.client_secret.clone()
    }

    /// Tokens issued: the same as [`DpopChecks::accepted`].
    pub fn issued(&self) -> usize {
        self.checks.accepted()
    }

    /// The `cnf.jkt` of every token issued, in order (`None`: a `Bearer`
    /// token).
    pub fn issued_jkts(&self) -> Vec<Option<String>> {
        self.issuer.lock().unwrap().issued.clone()
    }

    /// The form of the last request with a readable one.
    pub fn last_form(&self) -> Vec<(String, String)> {
        self.issuer.lock().unwrap().last_form.clone()
    }
}

async fn token_request(
    checks: DpopChecks,
    issuer: Arc<Mutex<Issuer>>,
    tokens: IssuedTokens,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut checks = checks.lock();
    let mut issuer = issuer.lock().unwrap();
    checks.requests += 1;
    match check_token_request(&mut checks, &mut issuer, &parts, &body) {
        Ok((jkt, scope)) => {
            checks.accepted += 1;
            let nonce = checks.nonces.on_accept();
            let lifetime = Duration::from_secs(issuer.config.expires_in);
            let token = tokens.mint(jkt.as_deref(), lifetime);
            let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
            issuer.issued.push(jkt);
            let mut answer = json!({
                "access_token": token,
                "token_type": token_type,
                "expires_in": issuer.config.expires_in,
            });
            if let Some(scope) = scope {
                answer["scope"] = Value::String(scope);
            }
            json_with_nonce(200, &answer, nonce.as_deref())
        }
        Err(refusal) => {
            checks.refused(&refusal);
            // §8: a token endpoint's nonce challenge, like a bad proof, is a 400.
            let status = match (refusal.error, refusal.detail.reason) {
                (_, "path") => 404,
                (Some("invalid_client"), _) => 401,
                _ => 400,
            };
            let body = json!({
                "error": refusal.error,
                "error_description": refusal.detail.description,
            });
            json_with_nonce(status, &body, checks.nonces.header().as_deref())
        }
    }
}

/// Checks one token request; `Ok` with the key to bind the token to (`None`:
/// a `Bearer` token) and the scope asked for.
fn check_token_request(
    checks: &mut Checks,
    issuer: &mut Issuer,
    parts: &Parts,
    body: &[u8],
) -> Result<(Option<String>, Option<String>), Refusal> {
    let request = |description: String| Refusal::new("invalid_request", "request", description);
    if parts.uri.path() != TOKEN_PATH {
        return Err(Refusal::new(
            "invalid_request",
            "path",
            format!("no endpoint at {}", parts.uri.path()),
        ));
    }
    if parts.method != http::Method::POST {
        return Err(request(format!(
            "method {} (the token endpoint takes POST)",
            parts.method
        )));
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|err| request(format!("unreadable form: {err}")))?;
    issuer.last_form = form.clone();
    let param = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());

    let config = &issuer.config;
    if !config.any_client {
        match param("grant_type").as_deref() {
            Some("client_credentials") => {}
            other => {
                return Err(Refusal::new(
                    "unsupported_grant_type",
                    "grant_type",
                    format!("grant_type {other:?} (expected client_credentials)"),
                ));
            }
        }
        let (id, secret) = match basic_credentials(parts) {
            Some(credentials) => credentials,
            None => (
                param("client_id").unwrap_or_default(),
                param("client_secret").unwrap_or_default(),
            ),
        };
        if id != config.client_id || secret != config.client_secret {
            return Err(Refusal::new(
                "invalid_client",
                "client",
                format!("client {id:?} not authenticated"),
            ));
        }
    }

    let scope = param("scope");
    if !parts.headers.contains_key(DPOP_HEADER) && config.bearer_without_proof {
        return Ok((None, scope));
    }
    let url = request_url(parts, &issuer.origin);
    let proof = checks.proof(parts, &url, None)?;
    Ok((Some(proof.jkt), scope))
}

/// The client id and secret of `Authorization: Basic`, each form-decoded
/// (RFC 6749 §2.3.1).
fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let form_decode = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|mut pairs| pairs.pop())
            .map(|(_, v)| v)
    };
    Some((form_decode(id)?, form_decode(secret)?))
}

/// A DPoP-protected API on `127.0.0.1`, stopped when dropped; derefs to its
/// [`DpopChecks`].
pub struct DpopResourceServer {
    server: TestServer,
    checks: DpopChecks,
    tokens: IssuedTokens,
}

impl Deref for DpopResourceServer {
    type Target = DpopChecks;
    fn deref(&self) -> &DpopChecks {
        &self.checks
    }
}

impl DpopResourceServer {
    /// Serves every method and path, accepting the tokens in `tokens`.
    pub async fn start(tokens: IssuedTokens, config: ResourceServerConfig) -> Self {
        let checks = DpopChecks::new(config.iat_window, config.nonce.clone());
        // Known once the server has a port, before any request can come.
        let origin = Arc::new(OnceLock::new());
        let (c, t, o) = (checks.clone(), tokens.clone(), Arc::clone(&origin));
        let server = TestServer::start(move |req| {
            let origin = o.get().cloned().unwrap_or_default();
            api_request(c.clone(), t.clone(), origin, req)
        })
        .await;
        origin.set(server.origin()).expect("set once");
        DpopResourceServer {
            server,
            checks,
            tokens,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        self.server.origin()
    }

    /// An absolute URL on this server.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// The tokens it accepts.
    pub fn tokens(&self) -> IssuedTokens {
        self.tokens.clone()
    }
}

async fn api_request(
    checks: DpopChecks,
    tokens: IssuedTokens,
    origin: String,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let _ = body.collect().await;
    let mut checks = checks.lock();
    checks.requests += 1;
    match check_api_request(&mut checks, &tokens, &parts, &origin) {
        Ok((scheme, jkt)) => {
            checks.accepted += 1;
            let nonce = checks.nonces.on_accept();
            let body = json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "scheme": scheme,
                "jkt": jkt,
            });
            json_with_nonce(200, &body, nonce.as_deref())
        }
        Err(refusal) => {
            checks.refused(&refusal);
            // A quoted-string of printable ASCII.
            let description: String = refusal
                .detail
                .description
                .chars()
                .map(|c| match c {
                    '"' | '\\' => '\'',
                    ' '..='~' => c,
                    _ => '?',
                })
                .collect();
            let algs = SUPPORTED_ALGS.join(" ");
            let challenge = match refusal.error {
                Some(error) => format!(
                    "DPoP error=\"{error}\", error_description=\"{description}\", algs=\"{algs}\""
                ),
                None => format!("DPoP algs=\"{algs}\""),
            };
            let body = json!({
                "error": refusal.error,
                "error_description": refusal.detail.description,
            });
            let mut response = json_with_nonce(401, &body, checks.nonces.header().as_deref());
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                challenge.parse().expect("a header value"),
            );
            response
        }
    }
}

/// Checks one API request; `Ok` with the scheme used and the key the token
/// is bound to.
fn check_api_request(
    checks: &mut Checks,
    tokens: &IssuedTokens,
    parts: &Parts,
    origin: &str,
) -> Result<(&'static str, Option<String>), Refusal> {
    let mut authorizations = parts.headers.get_all(http::header::AUTHORIZATION).iter();
    let value = match (authorizations.next(), authorizations.next()) {
        (None, _) => {
            return Err(Refusal {
                error: None,
                detail: refuse("no token", "no Authorization header"),
            });
        }
        (Some(value), None) => value.to_str().unwrap_or_default(),
        (Some(_), Some(_)) => {
            return Err(Refusal::token(
                "scheme",
                "more than one Authorization header",
            ));
        }
    };
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    if token.is_empty() {
        return Err(Refusal::token(
            "no token",
            format!("Authorization {scheme} has no token"),
        ));
    }
    let binding = tokens.binding(token);

    if scheme.eq_ignore_ascii_case("bearer") {
        return match binding {
            None => Err(Refusal::token(
                "unknown token",
                "the token was not issued here",
            )),
            Some(b) if b.jkt.is_some() => Err(Refusal::token(
                "scheme",
                "a DPoP-bound token sent with the Bearer scheme",
            )),
            Some(b) if Instant::now() >= b.expires_at => {
                Err(Refusal::token("expired token", "the token has expired"))
            }
            Some(_) => Ok(("Bearer", None)),
        };
    }
    if !scheme.eq_ignore_ascii_case("dpop") {
        return Err(Refusal::token(
            "scheme",
            format!("Authorization scheme {scheme:?}"),
        ));
    }

    let url = request_url(parts, origin);
    let proof = checks.proof(parts, &url, Some(token))?;
    let binding =
        binding.ok_or_else(|| Refusal::token("unknown token", "the token was not issued here"))?;
    if Instant::now() >= binding.expires_at {
        return Err(Refusal::token("expired token", "the token has expired"));
    }
    match binding.jkt {
        None => Err(Refusal::token(
            "unbound token",
            "a token not bound to a key sent with the DPoP scheme",
        )),
        Some(jkt) if jkt != proof.jkt => Err(Refusal::token(
            "thumbprint",
            format!(
                "the token is bound to {jkt}, the proof's key is {}",
                proof.jkt
            ),
        )),
        Some(jkt) => Ok(("DPoP", Some(jkt))),
    }
}

/// A token endpoint and the resource server that accepts its tokens.
pub struct DpopProvider {
    /// The token endpoint.
    pub token: DpopTokenEndpoint,
    /// The API.
    pub api: DpopResourceServer,
}

impl DpopProvider {
    /// Starts both, paired.
    pub async fn start(token: TokenEndpointConfig, api: ResourceServerConfig) -> Self {
        let token = DpopTokenEndpoint::start(token).await;
        let api = DpopResourceServer::start(token.tokens(), api).await;
        DpopProvider { token, api }
    }

    /// Starts both with the default configurations: no nonces, the default
    /// client, tokens for an hour.
    pub async fn start_default() -> Self {
        Self::start(
            TokenEndpointConfig::default(),
            ResourceServerConfig::default(),
        )
        .await
    }
}
