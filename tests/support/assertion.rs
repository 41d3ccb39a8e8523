//! A token endpoint that authenticates clients by JWT assertion
//! (`private_key_jwt` and `client_secret_jwt`: RFC 7523 §2.2, RFC 7521 §4.2,
//! OpenID Connect Core §9), verifying with jsonwebtoken, independently of the
//! library under test.
//!
//! Every request to `/token` must be a `client_credentials` grant (or the
//! grant [`AssertionEndpoint::set_grant_type`] names) whose only client
//! authentication is a `client_assertion` that:
//! - is a JWS whose header `alg` is the verifier's algorithm (never `none`),
//!   with `typ`, if present, `JWT`, and no `crit`;
//! - carries a valid signature by the verifier's key or secret;
//! - has `iss` and `sub` equal to the client id, `aud` equal to (or, as an
//!   array, containing) the token URL;
//! - has `exp` in the future, `iat` not in the future, `exp` after `iat` and
//!   no more than [`MAX_LIFETIME_SECS`] after it, `nbf` (if any) passed —
//!   each within the leeway (default [`DEFAULT_LEEWAY_SECS`], at most
//!   [`MAX_LEEWAY_SECS`]);
//! - has a `jti` no accepted assertion has used before.
//!
//! Anything else is refused, `400 invalid_request` (or
//! `unsupported_grant_type`) for a malformed request, `401 invalid_client`
//! for an assertion that does not authenticate the client; the reason is in
//! `error_description` and in [`AssertionEndpoint::refusals`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use super::keys::TestKey;
use super::{TestServer, json_response};

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest `exp - iat` accepted: ten minutes.
pub const MAX_LIFETIME_SECS: u64 = 600;

/// The clock-skew allowance on `exp`, `iat` and `nbf` unless changed.
pub const DEFAULT_LEEWAY_SECS: u64 = 5;

/// The largest leeway [`AssertionEndpoint::set_leeway`] takes.
pub const MAX_LEEWAY_SECS: u64 = 30;

/// The path the endpoint serves.
pub const TOKEN_PATH: &str = "/token";

/// What verifies an assertion's signature.
#[derive(Clone, Debug)]
pub enum Verifier {
    /// `private_key_jwt`: the client's public key and the one algorithm
    /// accepted for it.
    PublicKey {
        key: DecodingKey,
        algorithm: Algorithm,
    },
    /// `client_secret_jwt`: the client secret as an HS256 key.
    Secret(String),
}

impl Verifier {
    /// `private_key_jwt` with a test key's public half.
    pub fn for_key(key: &TestKey, algorithm: Algorithm) -> Verifier {
        Verifier::PublicKey {
            key: key.decoding_key(),
            algorithm,
        }
    }

    /// `client_secret_jwt` with HS256.
    pub fn secret(secret: impl Into<String>) -> Verifier {
        Verifier::Secret(secret.into())
    }

    /// The one algorithm an assertion's header must name.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Verifier::PublicKey { algorithm, .. } => *algorithm,
            Verifier::Secret(_) => Algorithm::HS256,
        }
    }

    fn decoding_key(&self) -> DecodingKey {
        match self {
            Verifier::PublicKey { key, .. } => key.clone(),
            Verifier::Secret(secret) => DecodingKey::from_secret(secret.as_bytes()),
        }
    }
}

/// The JOSE name of an algorithm, as in a JWS header (`RS256`, `EdDSA`, ...).
pub fn alg_name(algorithm: Algorithm) -> String {
    match serde_json::to_value(algorithm) {
        Ok(Value::String(name)) => name,
        other => panic!("an algorithm serializes as a string, not {other:?}"),
    }
}

/// The endpoint's record of what it saw.
struct State {
    grant_type: String,
    client_id: String,
    token_url: String,
    verifier: Verifier,
    leeway: u64,
    requests: usize,
    issued: usize,
    refusals: Vec<String>,
    kids: Vec<Option<String>>,
    audiences: Vec<Value>,
    jtis: Vec<String>,
    accepted_jtis: HashSet<String>,
    last_form: Vec<(String, String)>,
    last_header: Option<Value>,
    last_claims: Option<Value>,
}

/// A refusal: the status, the OAuth error code and why. The token-exchange
/// endpoint (`exchange.rs`) refuses with it too.
pub struct Refusal {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

pub fn invalid_request(description: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        error: "invalid_request",
        description: description.into(),
    }
}

pub fn invalid_client(description: impl Into<String>) -> Refusal {
    Refusal {
        status: 401,
        error: "invalid_client",
        description: description.into(),
    }
}

/// RFC 6749 §3.2: no parameter more than once, but for those named in
/// `repeatable`.
pub fn no_repeated_parameter<'a>(
    names: impl IntoIterator<Item = &'a str>,
    repeatable: &[&str],
) -> Result<(), Refusal> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) && !repeatable.contains(&name) {
            return Err(invalid_request(format!("parameter {name} repeated")));
        }
    }
    Ok(())
}

/// A token endpoint on `127.0.0.1` that accepts only JWT client assertions;
/// stopped when dropped.
pub struct AssertionEndpoint {
    server: TestServer,
    state: Arc<Mutex<State>>,
}

impl AssertionEndpoint {
    /// Serves `POST /token` for `client_id`, verifying assertions with `verifier`.
    pub async fn start(client_id: &str, verifier: Verifier) -> AssertionEndpoint {
        let state = Arc::new(Mutex::new(State {
            grant_type: "client_credentials".to_owned(),
            client_id: client_id.to_owned(),
            // Known once the server has a port, before any request can come.
            token_url: String::new(),
            verifier,
            leeway: DEFAULT_LEEWAY_SECS,
            requests: 0,
            issued: 0,
            refusals: Vec::new(),
            kids: Vec::new(),
            audiences: Vec::new(),
            jtis: Vec::new(),
            accepted_jtis: HashSet::new(),
            last_form: Vec::new(),
            last_header: None,
            last_claims: None,
        }));
        let shared = Arc::clone(&state);
        let server = TestServer::start(move |req| handle(Arc::clone(&shared), req)).await;
        state.lock().unwrap().token_url = server.url(TOKEN_PATH);
        AssertionEndpoint { server, state }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// `http://127.0.0.1:PORT/token`: where to post, and the `aud` required.
    pub fn token_url(&self) -> String {
        self.server.url(TOKEN_PATH)
    }

    /// The client id `iss` and `sub` must name.
    pub fn client_id(&self) -> String {
        self.state().client_id.clone()
    }

    /// Verifies later requests with `verifier` instead (key rotation).
    pub fn set_verifier(&self, verifier: Verifier) {
        self.state().verifier = verifier;
    }

    /// Accepts requests of `grant_type` instead of `client_credentials`
    /// (a token exchange authenticated by assertion); what the grant itself
    /// carries is the test's to check, in [`last_form`](Self::last_form).
    pub fn set_grant_type(&self, grant_type: &str) {
        self.state().grant_type = grant_type.to_owned();
    }

    /// Sets the clock-skew allowance; at most [`MAX_LEEWAY_SECS`].
    pub fn set_leeway(&self, leeway: Duration) {
        let secs = leeway.as_secs();
        assert!(
            secs <= MAX_LEEWAY_SECS,
            "leeway {secs}s above {MAX_LEEWAY_SECS}s"
        );
        self.state().leeway = secs;
    }

    /// Requests received, on any path.
    pub fn requests(&self) -> usize {
        self.state().requests
    }

    /// Tokens issued (assertions accepted).
    pub fn issued(&self) -> usize {
        self.state().issued
    }

    /// Requests refused.
    pub fn refused(&self) -> usize {
        self.state().refusals.len()
    }

    /// Why each refused request was refused, in order, as
    /// `"<error>: <error_description>"`.
    pub fn refusals(&self) -> Vec<String> {
        self.state().refusals.clone()
    }

    /// The header `kid` of every assertion whose header could be read.
    pub fn kids(&self) -> Vec<Option<String>> {
        self.state().kids.clone()
    }

    /// The `aud` claim (a string or an array, as sent; `null` if absent) of
    /// every assertion whose signature verified.
    pub fn audiences(&self) -> Vec<Value> {
        self.state().audiences.clone()
    }

    /// The `jti` of every assertion whose signature verified and that had
    /// one, replays included.
    pub fn jtis(&self) -> Vec<String> {
        self.state().jtis.clone()
    }

    /// The form of the last request with a readable form, `client_assertion`
    /// included, in the order sent.
    pub fn last_form(&self) -> Vec<(String, String)> {
        self.state().last_form.clone()
    }

    /// The `client_assertion` of the last request that had one.
    pub fn last_assertion(&self) -> Option<String> {
        let state = self.state();
        state
            .last_form
            .iter()
            .find(|(name, _)| name == "client_assertion")
            .map(|(_, value)| value.clone())
    }

    /// The JOSE header of the last assertion whose header could be read.
    pub fn last_header(&self) -> Option<Value> {
        self.state().last_header.clone()
    }

    /// The claims of the last assertion whose signature verified.
    pub fn last_claims(&self) -> Option<Value> {
        self.state().last_claims.clone()
    }
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(err) => return json_response(400, &error_body("invalid_request", &err.to_string())),
    };
    let mut state = state.lock().unwrap();
    state.requests += 1;
    match check(&mut state, &parts, &body) {
        Ok(()) => {
            state.issued += 1;
            let token = format!("assertion-token-{}", state.issued);
            json_response(
                200,
                &json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}),
            )
        }
        Err(refusal) => {
            state
                .refusals
                .push(format!("{}: {}", refusal.error, refusal.description));
            json_response(
                refusal.status,
                &error_body(refusal.error, &refusal.description),
            )
        }
    }
}

pub fn error_body(error: &str, description: &str) -> Value {
    json!({"error": error, "error_description": description})
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// Checks one request, recording what it saw; `Ok` means issue a token.
fn check(state: &mut State, parts: &http::request::Parts, body: &[u8]) -> Result<(), Refusal> {
    if parts.uri.path() != TOKEN_PATH {
        return Err(Refusal {
            status: 404,
            error: "invalid_request",
            description: format!("no endpoint at {}", parts.uri.path()),
        });
    }
    if parts.method != http::Method::POST {
        return Err(invalid_request(format!(
            "method {} (the token endpoint takes POST)",
            parts.method
        )));
    }
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(invalid_request(format!(
            "content-type {content_type:?} (expected application/x-www-form-urlencoded)"
        )));
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|err| invalid_request(format!("unreadable form: {err}")))?;
    state.last_form = form.clone();

    // RFC 6749 §3.2: no parameter more than once.
    no_repeated_parameter(form.iter().map(|(name, _)| name.as_str()), &[])?;
    let param = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };

    // One client authentication method only (RFC 6749 §2.3).
    let has_authorization = parts.headers.contains_key(http::header::AUTHORIZATION);
    let has_secret = param("client_secret").is_some();
    let assertion = param("client_assertion");
    let methods = [
        (has_authorization, "Authorization header"),
        (has_secret, "client_secret"),
        (assertion.is_some(), "client_assertion"),
    ];
    let used: Vec<&str> = methods
        .iter()
        .filter(|(used, _)| *used)
        .map(|(_, name)| *name)
        .collect();
    if used.len() > 1 {
        return Err(invalid_request(format!(
            "more than one client authentication method: {}",
            used.join(", ")
        )));
    }

    match param("grant_type") {
        Some(grant_type) if grant_type == state.grant_type => {}
        Some(other) => {
            return Err(Refusal {
                status: 400,
                error: "unsupported_grant_type",
                description: format!("grant_type {other:?} (expected {})", state.grant_type),
            });
        }
        None => return Err(invalid_request("grant_type missing")),
    }

    let Some(assertion) = assertion else {
        return Err(match used.first() {
            Some(method) => invalid_client(format!(
                "client authentication by {method}; this endpoint takes only client_assertion"
            )),
            None => invalid_client("no client authentication (client_assertion missing)"),
        });
    };
    match param("client_assertion_type") {
        Some(CLIENT_ASSERTION_TYPE) => {}
        Some(other) => {
            return Err(invalid_request(format!(
                "client_assertion_type {other:?} (expected {CLIENT_ASSERTION_TYPE})"
            )));
        }
        None => return Err(invalid_request("client_assertion_type missing")),
    }
    if let Some(client_id) = param("client_id")
        && client_id != state.client_id
    {
        return Err(invalid_client(format!(
            "client_id {client_id:?} is not the client {:?}",
            state.client_id
        )));
    }

    let claims = verify(state, assertion)?;
    check_claims(state, &claims)
}

/// Checks the header and signature, recording the `kid`; the claims if good.
fn verify(state: &mut State, assertion: &str) -> Result<Value, Refusal> {
    let segments: Vec<&str> = assertion.split('.').collect();
    if segments.len() != 3 {
        return Err(invalid_client(format!(
            "client_assertion has {} segments (a JWS has 3)",
            segments.len()
        )));
    }
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segments[0])
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .filter(Value::is_object)
        .ok_or_else(|| invalid_client("client_assertion header is not base64url JSON"))?;
    state.last_header = Some(header.clone());
    state
        .kids
        .push(header.get("kid").and_then(Value::as_str).map(str::to_owned));

    let expected = state.verifier.algorithm();
    let expected_name = alg_name(expected);
    match header.get("alg").and_then(Value::as_str) {
        None => return Err(invalid_client("header alg missing")),
        Some(alg) if alg.eq_ignore_ascii_case("none") => {
            return Err(invalid_client(format!("alg {alg:?} refused (unsigned)")));
        }
        Some(alg) if alg != expected_name => {
            return Err(invalid_client(format!(
                "alg {alg} refused (expected {expected_name})"
            )));
        }
        Some(_) => {}
    }
    if let Some(typ) = header.get("typ")
        && !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
    {
        return Err(invalid_client(format!("typ {typ} (expected \"JWT\")")));
    }
    if let Some(crit) = header.get("crit") {
        return Err(invalid_client(format!("crit {crit} not understood")));
    }

    // The signature only; the claims are checked by hand, for exact reasons.
    let mut validation = Validation::new(expected);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data =
        jsonwebtoken::decode::<Value>(assertion, &state.verifier.decoding_key(), &validation)
            .map_err(|err| invalid_client(format!("signature not verified: {err}")))?;
    let claims = data.claims;
    if !claims.is_object() {
        return Err(invalid_client("claims are not a JSON object"));
    }
    state.last_claims = Some(claims.clone());
    state
        .audiences
        .push(claims.get("aud").cloned().unwrap_or(Value::Null));
    if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
        state.jtis.push(jti.to_owned());
    }
    Ok(claims)
}

/// Checks the verified claims; consumes the `jti` if all is well.
fn check_claims(state: &mut State, claims: &Value) -> Result<(), Refusal> {
    let client_id = state.client_id.as_str();
    for name in ["iss", "sub"] {
        match claims.get(name) {
            Some(Value::String(value)) if value == client_id => {}
            Some(value) => {
                return Err(invalid_client(format!(
                    "{name} {value} is not the client id {client_id:?}"
                )));
            }
            None => return Err(invalid_client(format!("{name} missing"))),
        }
    }

    let token_url = state.token_url.as_str();
    let aud_ok = match claims.get("aud") {
        None => return Err(invalid_client("aud missing")),
        Some(Value::String(aud)) => aud == token_url,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(token_url)),
        Some(_) => false,
    };
    if !aud_ok {
        return Err(invalid_client(format!(
            "aud {} does not name the token endpoint {token_url:?}",
            claims["aud"]
        )));
    }

    let number = |name: &str| -> Result<Option<f64>, Refusal> {
        match claims.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_f64()
                .map(Some)
                .ok_or_else(|| invalid_client(format!("{name} {value} is not a NumericDate"))),
        }
    };
    let exp = number("exp")?.ok_or_else(|| invalid_client("exp missing"))?;
    let iat = number("iat")?.ok_or_else(|| invalid_client("iat missing"))?;
    let nbf = number("nbf")?;
    let now = now();
    let leeway = state.leeway as f64;
    if now >= exp + leeway {
        return Err(invalid_client(format!(
            "expired: exp {exp} is {:.0}s ago",
            now - exp
        )));
    }
    if iat > now + leeway {
        return Err(invalid_client(format!(
            "iat {iat} is {:.0}s in the future",
            iat - now
        )));
    }
    if let Some(nbf) = nbf
        && nbf > now + leeway
    {
        return Err(invalid_client(format!("not yet valid: nbf {nbf}")));
    }
    if exp <= iat {
        return Err(invalid_client(format!("exp {exp} is not after iat {iat}")));
    }
    if exp - iat > MAX_LIFETIME_SECS as f64 {
        return Err(invalid_client(format!(
            "lifetime {:.0}s (exp - iat) above {MAX_LIFETIME_SECS}s",
            exp - iat
        )));
    }

    let jti = match claims.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() => jti.clone(),
        Some(Value::String(_)) => return Err(invalid_client("jti empty")),
        Some(value) => return Err(invalid_client(format!("jti {value} is not a string"))),
        None => return Err(invalid_client("jti missing")),
    };
    if !state.accepted_jtis.insert(jti.clone()) {
        return Err(invalid_client(format!("jti replayed: {jti:?}")));
    }
    Ok(())
}
