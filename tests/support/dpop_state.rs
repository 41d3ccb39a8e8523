//! What the DPoP test servers of [`super::dpop`] remember, checked against
//! after a proof passes [`verify_proof`] on its own: its nonce
//! ([`NoncePolicy`]), the `jti`s it has seen ([`DpopChecks`]), the key each
//! token is bound to ([`IssuedTokens`]). A server refuses a `jti` it has
//! seen (every proof that passed the checks on its own is remembered, even
//! if the request then failed) and challenges for a missing or stale nonce
//! when it requires one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use serde_json::Value;

use super::dpop_verify::{DPOP_HEADER, Expected, Proof, ProofError, refuse, verify_proof};

/// When a server requires nonces, and how it rotates them.
#[derive(Clone, Debug)]
pub struct NoncePolicy {
    /// Proofs must carry the current nonce (else a `use_dpop_nonce`
    /// challenge), and every response carries `DPoP-Nonce`.
    pub required: bool,
    /// Rotate the nonce by itself after every this many accepted requests.
    pub rotate_every: Option<usize>,
    /// Whether such an automatic rotation keeps the previous nonce accepted
    /// until the next rotation (a grace period) or refuses it at once.
    pub keep_previous: bool,
    /// Whether the response to the request that triggered an automatic
    /// rotation carries the new nonce (a client that reads `DPoP-Nonce` from
    /// successes never sees a challenge) or the old one (its next request is
    /// challenged, unless `keep_previous`).
    pub announce_rotation: bool,
}

impl Default for NoncePolicy {
    /// Nonces off, no automatic rotation.
    fn default() -> Self {
        NoncePolicy {
            required: false,
            rotate_every: None,
            keep_previous: false,
            announce_rotation: true,
        }
    }
}

impl NoncePolicy {
    /// Nonces required, rotated only when a test says so.
    pub fn required() -> Self {
        NoncePolicy {
            required: true,
            ..NoncePolicy::default()
        }
    }

    /// Nonces required, rotated after every `n` accepted requests, the new
    /// one announced, the previous one refused at once.
    pub fn rotating_every(n: usize) -> Self {
        assert!(n > 0, "rotate after at least one request");
        NoncePolicy {
            required: true,
            rotate_every: Some(n),
            ..NoncePolicy::default()
        }
    }
}

/// One issued token: the key it is bound to and when it expires.
#[derive(Clone, Debug)]
pub struct Binding {
    /// The `cnf.jkt`: the thumbprint of the key it is bound to, or `None`
    /// for a `Bearer` token.
    pub jkt: Option<String>,
    /// When the resource server stops accepting it.
    pub expires_at: Instant,
}

/// The tokens a token endpoint issued, shared with the resource server that
/// accepts them.
#[derive(Clone, Debug, Default)]
pub struct IssuedTokens(Arc<Mutex<HashMap<String, Binding>>>);

impl IssuedTokens {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Binding>> {
        self.0.lock().unwrap()
    }

    /// Issues a fresh opaque token bound to `jkt` (`None`: unbound), valid
    /// for `lifetime`, as the endpoint would.
    pub fn mint(&self, jkt: Option<&str>, lifetime: Duration) -> String {
        let token = random_b64(32);
        let binding = Binding {
            jkt: jkt.map(str::to_owned),
            expires_at: Instant::now() + lifetime,
        };
        self.map().insert(token.clone(), binding);
        token
    }

    /// What `token` is bound to, if it was issued.
    pub fn binding(&self, token: &str) -> Option<Binding> {
        self.map().get(token).cloned()
    }

    /// Forgets every token, so each is refused as unknown from now on.
    pub fn revoke_all(&self) {
        self.map().clear();
    }
}

/// `len` random bytes, base64url.
fn random_b64(len: usize) -> String {
    let mut bytes = vec![0; len];
    aws_lc_rs::rand::fill(&mut bytes).expect("random bytes");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A server's nonce: the current one, and the previous one during a grace.
#[derive(Debug)]
pub(super) struct Nonces {
    policy: NoncePolicy,
    current: String,
    previous: Option<String>,
    accepted_since_rotation: usize,
}

impl Nonces {
    fn new(policy: NoncePolicy) -> Self {
        Nonces {
            policy,
            current: random_b64(16),
            previous: None,
            accepted_since_rotation: 0,
        }
    }

    /// Whether a proof with `nonce` may go on: always, when nonces are off.
    fn accepts(&self, nonce: Option<&str>) -> bool {
        !self.policy.required
            || nonce.is_some_and(|n| n == self.current || self.previous.as_deref() == Some(n))
    }

    fn rotate(&mut self, keep_previous: bool) -> String {
        let old = std::mem::replace(&mut self.current, random_b64(16));
        self.previous = keep_previous.then_some(old);
        self.accepted_since_rotation = 0;
        self.current.clone()
    }

    /// The `DPoP-Nonce` for a response, when nonces are on.
    pub(super) fn header(&self) -> Option<String> {
        self.policy.required.then(|| self.current.clone())
    }

    /// Counts an accepted request, rotating if the policy says so; the
    /// `DPoP-Nonce` for its response.
    pub(super) fn on_accept(&mut self) -> Option<String> {
        self.accepted_since_rotation += 1;
        let due = self
            .policy
            .rotate_every
            .is_some_and(|n| self.accepted_since_rotation >= n);
        if !due {
            return self.header();
        }
        let before = self.header();
        self.rotate(self.policy.keep_previous);
        if self.policy.announce_rotation {
            self.header()
        } else {
            before
        }
    }
}

/// What a server checks with and what it saw.
#[derive(Debug)]
pub(super) struct Checks {
    iat_window: Duration,
    pub(super) nonces: Nonces,
    pub(super) requests: usize,
    pub(super) accepted: usize,
    nonce_challenges: usize,
    refusals: Vec<ProofError>,
    seen_jtis: HashSet<String>,
    jtis: Vec<String>,
    last_header: Option<Value>,
    last_claims: Option<Value>,
}

impl Checks {
    /// Verifies the one `DPoP` header of a request; refuses a replayed `jti`
    /// and, after consuming the `jti`, a missing or stale nonce.
    pub(super) fn proof(
        &mut self,
        parts: &Parts,
        url: &str,
        token: Option<&str>,
    ) -> Result<Proof, Refusal> {
        let mut headers = parts.headers.get_all(DPOP_HEADER).iter();
        let (Some(value), None) = (headers.next(), headers.next()) else {
            let count = parts.headers.get_all(DPOP_HEADER).iter().count();
            return Err(Refusal::proof(refuse(
                "dpop header",
                format!("{count} DPoP headers (exactly one is needed)"),
            )));
        };
        let jws = value
            .to_str()
            .map_err(|_| Refusal::proof(refuse("malformed", "DPoP header is not ASCII")))?;
        let expected = Expected {
            method: parts.method.as_str(),
            url,
            iat_window: self.iat_window,
            access_token: token,
        };
        let proof = verify_proof(jws, &expected).map_err(Refusal::proof)?;
        self.last_header = Some(proof.header.clone());
        self.last_claims = Some(proof.claims.clone());
        self.jtis.push(proof.jti.clone());
        if !self.seen_jtis.insert(proof.jti.clone()) {
            return Err(Refusal::proof(refuse(
                "jti replayed",
                format!("jti {:?} was used before", proof.jti),
            )));
        }
        if !self.nonces.accepts(proof.nonce.as_deref()) {
            let description = match &proof.nonce {
                None => "a nonce is required in the DPoP proof".to_owned(),
                Some(nonce) => format!("nonce {nonce:?} is not the current one"),
            };
            return Err(Refusal {
                error: Some("use_dpop_nonce"),
                detail: refuse("nonce", description),
            });
        }
        Ok(proof)
    }

    /// Counts a nonce challenge, or records a refusal.
    pub(super) fn refused(&mut self, refusal: &Refusal) {
        if refusal.error == Some("use_dpop_nonce") {
            self.nonce_challenges += 1;
        } else {
            self.refusals.push(refusal.detail.clone());
        }
    }
}

/// The nonce controls of a server and what it saw; both servers deref to
/// one.
#[derive(Clone, Debug)]
pub struct DpopChecks(Arc<Mutex<Checks>>);

impl DpopChecks {
    pub(super) fn new(iat_window: Duration, nonce: NoncePolicy) -> Self {
        DpopChecks(Arc::new(Mutex::new(Checks {
            iat_window,
            nonces: Nonces::new(nonce),
            requests: 0,
            accepted: 0,
            nonce_challenges: 0,
            refusals: Vec::new(),
            seen_jtis: HashSet::new(),
            jtis: Vec::new(),
            last_header: None,
            last_claims: None,
        })))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Checks> {
        self.0.lock().unwrap()
    }

    /// The current nonce (given out only while nonces are required).
    pub fn nonce(&self) -> String {
        self.lock().nonces.current.clone()
    }

    /// Replaces the nonce; the previous one is refused from now on. The new
    /// one.
    pub fn rotate_nonce(&self) -> String {
        self.lock().nonces.rotate(false)
    }

    /// Replaces the nonce, the previous one still accepted until the next
    /// rotation. The new one.
    pub fn rotate_nonce_keeping_previous(&self) -> String {
        self.lock().nonces.rotate(true)
    }

    /// Turns nonces on or off for later requests.
    pub fn set_nonce_required(&self, required: bool) {
        self.lock().nonces.policy.required = required;
    }

    /// Changes how far `iat` may be from now.
    pub fn set_iat_window(&self, window: Duration) {
        self.lock().iat_window = window;
    }

    /// Requests received.
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    /// Requests accepted (at the token endpoint: tokens issued).
    pub fn accepted(&self) -> usize {
        self.lock().accepted
    }

    /// `use_dpop_nonce` challenges given (not counted as refusals).
    pub fn nonce_challenges(&self) -> usize {
        self.lock().nonce_challenges
    }

    /// The reason of every refusal, in order: `"signature"`, `"htu"`,
    /// `"jti replayed"`, `"thumbprint"`, ... (see [`ProofError::reason`]).
    pub fn refusals(&self) -> Vec<String> {
        self.lock()
            .refusals
            .iter()
            .map(|r| r.reason.to_owned())
            .collect()
    }

    /// Every refusal as `"<reason>: <description>"`, in order.
    pub fn refusal_details(&self) -> Vec<String> {
        self.lock()
            .refusals
            .iter()
            .map(|r| format!("{}: {}", r.reason, r.description))
            .collect()
    }

    /// The `jti` of every proof that passed the stateless checks, in order,
    /// replays included; each is refused if it comes again.
    pub fn seen_jtis(&self) -> Vec<String> {
        self.lock().jtis.clone()
    }

    /// The header of the last proof that passed the stateless checks.
    pub fn last_header(&self) -> Option<Value> {
        self.lock().last_header.clone()
    }

    /// The claims of the last proof that passed the stateless checks.
    pub fn last_claims(&self) -> Option<Value> {
        self.lock().last_claims.clone()
    }
}

/// A refused request: the OAuth error code (`None`: a bare challenge, no
/// credentials sent) and the reason. Each server answers with its own status.
pub(super) struct Refusal {
    pub(super) error: Option<&'static str>,
    pub(super) detail: ProofError,
}

impl Refusal {
    pub(super) fn new(
        error: &'static str,
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Refusal {
            error: Some(error),
            detail: refuse(reason, description),
        }
    }

    pub(super) fn proof(detail: ProofError) -> Self {
        Refusal {
            error: Some("invalid_dpop_proof"),
            detail,
        }
    }

    pub(super) fn token(reason: &'static str, description: impl Into<String>) -> Self {
        Refusal::new("invalid_token", reason, description)
    }
}
