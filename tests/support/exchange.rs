//! A token-exchange endpoint (RFC 8693) on loopback: it checks each
//! request's shape and the client's authentication, refuses the subject
//! tokens it is told to with `invalid_grant` (echoing the whole request
//! back, secrets and all, as careless servers do), issues numbered tokens,
//! and keeps what it saw. It serves OpenID Connect metadata too, for
//! discovery.
//!
//! Each request to `/token` must:
//! - be a `POST` with the token-exchange `grant_type`;
//! - name no parameter twice, but `resource` and `audience` (RFC 8693
//!   section 2.1 allows several);
//! - authenticate the client as its [`ClientCheck`] says, and no other way;
//! - carry a non-empty `subject_token` and `subject_token_type`, and
//!   `actor_token` with `actor_token_type` or neither.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

use super::assertion::{
    Refusal, error_body, invalid_client, invalid_request, no_repeated_parameter,
};
use super::{TestServer, json_response};

/// RFC 8693's `grant_type`, spelt out independently of the crate.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The path the endpoint serves.
pub const TOKEN_PATH: &str = "/token";

/// How the client must authenticate.
#[derive(Clone, Debug)]
pub enum ClientCheck {
    /// `Authorization: Basic` with this id and secret (RFC 6749 section
    /// 2.3.1: each form-urlencoded first); no credentials in the form.
    Basic { id: String, secret: String },
    /// `client_id` and `client_secret` in the form.
    Post { id: String, secret: String },
    /// No authentication: the form's `client_id` is this (`None`: no
    /// `client_id` at all), and nothing else says who the client is.
    Public { client_id: Option<String> },
}

impl ClientCheck {
    pub fn basic(id: &str, secret: &str) -> ClientCheck {
        ClientCheck::Basic {
            id: id.into(),
            secret: secret.into(),
        }
    }

    pub fn post(id: &str, secret: &str) -> ClientCheck {
        ClientCheck::Post {
            id: id.into(),
            secret: secret.into(),
        }
    }

    pub fn public(client_id: Option<&str>) -> ClientCheck {
        ClientCheck::Public {
            client_id: client_id.map(str::to_owned),
        }
    }
}

/// One request as the endpoint read it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The form, in the order sent.
    pub form: Vec<(String, String)>,
    /// The `authorization` header, if any.
    pub authorization: Option<String>,
}

impl Seen {
    /// The one value of `name`, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The names sent, in order.
    pub fn names(&self) -> Vec<&str> {
        self.form.iter().map(|(n, _)| n.as_str()).collect()
    }
}

struct State {
    client: ClientCheck,
    refused_subjects: HashSet<String>,
    token_type: String,
    expires_in: u64,
    seen: Vec<Seen>,
    issued: usize,
    refusals: Vec<String>,
}

/// The endpoint; stopped when dropped.
pub struct ExchangeEndpoint {
    server: TestServer,
    state: Arc<Mutex<State>>,
}

impl ExchangeEndpoint {
    /// Serves `POST /token` for a client `client` checks. Tokens are
    /// `exchanged-N`, `Bearer`, living an hour, until told otherwise.
    pub async fn start(client: ClientCheck) -> ExchangeEndpoint {
        let state = Arc::new(Mutex::new(State {
            client,
            refused_subjects: HashSet::new(),
            token_type: "Bearer".into(),
            expires_in: 3600,
            seen: Vec::new(),
            issued: 0,
            refusals: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let server = TestServer::start(move |req| handle(Arc::clone(&shared), req)).await;
        ExchangeEndpoint { server, state }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn token_url(&self) -> String {
        self.server.url(TOKEN_PATH)
    }

    /// `http://127.0.0.1:PORT`, whose metadata names the token URL.
    pub fn issuer(&self) -> String {
        self.server.origin()
    }

    /// Answers requests for `subject` with `400 invalid_grant`, the request
    /// echoed back in the description.
    pub fn refuse_subject(&self, subject: &str) {
        self.state().refused_subjects.insert(subject.to_owned());
    }

    /// The `token_type` of the tokens issued from now on.
    pub fn set_token_type(&self, token_type: &str) {
        self.state().token_type = token_type.to_owned();
    }

    /// The `expires_in` of the tokens issued from now on.
    pub fn set_expires_in(&self, seconds: u64) {
        self.state().expires_in = seconds;
    }

    /// Token requests received (metadata requests aside).
    pub fn requests(&self) -> usize {
        self.state().seen.len()
    }

    /// Why each refused request was refused, as `"<error>: <description>"`.
    pub fn refusals(&self) -> Vec<String> {
        self.state().refusals.clone()
    }

    /// The last token request.
    pub fn last(&self) -> Seen {
        self.state().seen.last().cloned().expect("a request came")
    }
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if parts.method == http::Method::GET && parts.uri.path() == "/.well-known/openid-configuration"
    {
        let host = parts.headers[http::header::HOST].to_str().unwrap();
        let issuer = format!("http://{host}");
        return json_response(
            200,
            &json!({
                "issuer": issuer,
                "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
                "grant_types_supported": [GRANT_TYPE],
            }),
        );
    }
    let body = body.collect().await.unwrap().to_bytes();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let authorization = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let mut state = state.lock().unwrap();
    let seen = Seen {
        form,
        authorization,
    };
    state.seen.push(seen.clone());
    let refusal = check(&state, &parts, &seen).err().or_else(|| {
        let subject = seen.get("subject_token").unwrap_or_default();
        state.refused_subjects.contains(subject).then(|| {
            // A careless server: the whole request, secrets and all.
            let echoed = String::from_utf8_lossy(&body).into_owned();
            Refusal {
                status: 400,
                error: "invalid_grant",
                description: format!(
                    "the subject token {subject} is not accepted (actor {:?}; authorization {:?}; request {echoed})",
                    seen.get("actor_token"),
                    seen.authorization,
                ),
            }
        })
    });
    if let Some(refusal) = refusal {
        state
            .refusals
            .push(format!("{}: {}", refusal.error, refusal.description));
        return json_response(
            refusal.status,
            &error_body(refusal.error, &refusal.description),
        );
    }
    state.issued += 1;
    let issued_token_type = seen
        .get("requested_token_type")
        .unwrap_or("urn:ietf:params:oauth:token-type:access_token")
        .to_owned();
    json_response(
        200,
        &json!({
            "access_token": format!("exchanged-{}", state.issued),
            "issued_token_type": issued_token_type,
            "token_type": state.token_type,
            "expires_in": state.expires_in,
        }),
    )
}

/// Checks everything but the subject token's worth.
fn check(state: &State, parts: &http::request::Parts, seen: &Seen) -> Result<(), Refusal> {
    if parts.uri.path() != TOKEN_PATH || parts.method != http::Method::POST {
        return Err(Refusal {
            status: 404,
            error: "invalid_request",
            description: "POST /token only".into(),
        });
    }
    if seen.get("grant_type") != Some(GRANT_TYPE) {
        return Err(Refusal {
            status: 400,
            error: "unsupported_grant_type",
            description: format!("grant_type {:?}", seen.get("grant_type")),
        });
    }
    no_repeated_parameter(seen.names(), &["resource", "audience"])?;
    let basic = |id: &str, secret: &str| {
        let encode = |s: &str| serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_owned();
        let pair = format!("{}:{}", encode(id), encode(secret));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let authenticated = match &state.client {
        ClientCheck::Basic { id, secret } => {
            seen.authorization.as_deref() == Some(basic(id, secret).as_str())
                && seen.get("client_id").is_none()
                && seen.get("client_secret").is_none()
        }
        ClientCheck::Post { id, secret } => {
            seen.authorization.is_none()
                && seen.get("client_id") == Some(id)
                && seen.get("client_secret") == Some(secret)
        }
        ClientCheck::Public { client_id } => {
            seen.authorization.is_none()
                && seen.get("client_id") == client_id.as_deref()
                && seen.get("client_secret").is_none()
                && seen.get("client_assertion").is_none()
        }
    };
    if !authenticated {
        return Err(invalid_client(format!(
            "the client did not authenticate as {:?}",
            state.client
        )));
    }
    let present = |name: &str| seen.get(name).is_some_and(|v| !v.is_empty());
    for name in ["subject_token", "subject_token_type"] {
        if !present(name) {
            return Err(invalid_request(format!("{name} missing")));
        }
    }
    if present("actor_token") != present("actor_token_type") {
        return Err(invalid_request(
            "actor_token and actor_token_type go together",
        ));
    }
    Ok(())
}
