//! DPoP (RFC 9449): access tokens bound to a key the client holds, so that
//! a token that leaks is worthless without the key.
//!
//! The client makes a key pair ([`DpopKey`]) and keeps the private half.
//! Every request it sends, to the token endpoint and to the API alike,
//! carries a `DPoP` header: a proof, a short JWT signed with that key, whose
//! header holds the public key and whose claims name that one request (the
//! method `htm`, the URI `htu` without query or fragment), when it was made
//! (`iat`), a unique id (`jti`), and, for an API request, the hash of the
//! access token it goes with (`ath`). The authorization server binds the
//! token it issues to the key's thumbprint (`cnf.jkt`); the API checks that
//! each request's proof is signed by that key and names that request.
//!
//! A server may also want a nonce of its own in each proof, to limit how
//! long a proof is good for: it answers `use_dpop_nonce` with a
//! `DPoP-Nonce` header, and the client sends the request again with a
//! fresh proof carrying it. Nonces are kept per origin (scheme, host and
//! port), since the token endpoint and each API give their own, and each
//! response may bring a new one.
//!
//! [`Dpop`] holds the key and the nonces; share one between the token
//! source and the layer, so that both prove possession of the same key.
//!
//! ```
//! use tower_bearer::dpop::{Dpop, DpopAlgorithm};
//!
//! // A fresh ES256 key, kept in memory for the life of the process.
//! let dpop = Dpop::generate()?;
//! assert_eq!(dpop.key().algorithm(), DpopAlgorithm::Es256);
//!
//! // The key's JWK thumbprint: what the server binds tokens to (`cnf.jkt`),
//! // and what an authorization request may name (`dpop_jkt`).
//! let jkt = dpop.thumbprint();
//! assert_eq!(jkt.len(), 43);
//! assert_eq!(jkt, dpop.key().thumbprint());
//! # Ok::<(), tower_bearer::dpop::DpopKeyError>(())
//! ```
//!
//! # With the layer
//!
//! Give the [`Dpop`] to the token source
//! ([`ClientCredentialsBuilder::dpop`](crate::ClientCredentialsBuilder::dpop)):
//! its token requests carry a proof, and the tokens it returns are bound
//! to the key ([`Token::with_dpop`](crate::Token::with_dpop)). For such a
//! token, [`BearerAuth`](crate::BearerAuth) sends `Authorization: DPoP
//! <token>` and a fresh `DPoP` proof on every request; nothing else is
//! configured on the layer. The token's `ath` is worked out once, when the
//! token is cached.
//!
//! ```
//! use tower::{ServiceBuilder, retry::RetryLayer};
//! use tower_bearer::{BearerAuthLayer, ClientCredentials, RetryOnUnauthorized, dpop::Dpop};
//!
//! # fn main() -> Result<(), tower::BoxError> {
//! // A fresh ES256 key for this process, kept in memory.
//! let dpop = Dpop::generate()?;
//! let source = ClientCredentials::builder("https://login.example.com/oauth2/token", "my-client")
//!     .client_secret("s3cret")
//!     .dpop(dpop.clone())
//!     .build()?;
//!
//! let client = ServiceBuilder::new()
//!     // Sends a request once more when the API asks for a DPoP nonce.
//!     .layer(RetryLayer::new(RetryOnUnauthorized::default()))
//!     .layer(BearerAuthLayer::new(source))
//!     .service(reqwest::Client::new());
//! # drop(client);
//! # Ok(()) }
//! ```
//!
//! What the layer adds to a request, with a bound token from any source:
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{Service, ServiceBuilder, ServiceExt, retry::RetryLayer};
//! use tower_bearer::{BearerAuthLayer, RetryOnUnauthorized, Token, dpop::Dpop, source::StaticSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let dpop = Dpop::generate()?;
//! // A token the provider bound to the key; the client-credentials source
//! // makes these itself.
//! let token = Token::new("b0und", "DPoP").with_dpop(dpop.clone());
//!
//! let mut client = ServiceBuilder::new()
//!     // Re-sends a request once when the API asks for a nonce.
//!     .layer(RetryLayer::new(RetryOnUnauthorized::default()))
//!     .layer(BearerAuthLayer::new(StaticSource::new(token)))
//!     .service_fn(|req: http::Request<String>| async move {
//!         Ok::<_, Infallible>(http::Response::new(req.headers().clone()))
//!     });
//!
//! let request = http::Request::post("https://api.example.com/v1/orders").body(String::new())?;
//! let sent = client.ready().await?.call(request).await?.into_body();
//! assert_eq!(sent["authorization"], "DPoP b0und");
//! // The proof: a JWT naming POST https://api.example.com/v1/orders, signed
//! // with the key.
//! assert_eq!(sent["dpop"].to_str()?.split('.').count(), 3);
//! # Ok(()) }
//! ```
//!
//! # Nonces and retries
//!
//! A `DPoP-Nonce` header on any answer is kept for that answer's origin
//! (at most [`MAX_NONCE_ORIGINS`]), and the next proofs to that origin
//! carry it. An API's `401` with `WWW-Authenticate: DPoP
//! error="use_dpop_nonce"` keeps the token (it was not the problem) and
//! marks the response
//! [`DpopNonceRequired`](crate::rejection::DpopNonceRequired):
//! [`RetryOnUnauthorized`](crate::RetryOnUnauthorized), outside the layer,
//! sends a replayable request once more with a new proof; a streaming one
//! comes back to the caller, the nonce already kept for the next request.
//! A token endpoint's `use_dpop_nonce` is retried once by the source itself.
//! `error="invalid_dpop_proof"` keeps the token and is not retried: the
//! same proof would be refused again.
//!
//! A nonce is taken from an answer only while its origin's slot still
//! holds the nonce the request was sent with (or when the answer is a
//! `use_dpop_nonce` challenge), so that a late answer to an older request
//! does not bring back a nonce the server has rotated away. A token
//! endpoint and an API on one origin share one slot: when their nonces
//! differ, each costs the other a retry now and then. [`Dpop::nonce_retries`] counts the
//! retries.
//!
//! A request whose URI names no origin (a tonic request above its channel)
//! cannot be proven, and is not sent:
//! [`TokenErrorKind::ProofFailed`](crate::TokenErrorKind::ProofFailed).
//!
//! # Cost
//!
//! Each proof costs one signature (ES256 or Ed25519) and one allocation,
//! the header value's own buffer (beyond what aws-lc-rs allocates to sign:
//! `tests/dpop_allocations.rs` counts both). The header and the key's JWK
//! are encoded once per key. `cargo bench --bench overhead -- dpop` puts the
//! DPoP hot path beside the bearer one and beside a bare signature.

pub(crate) mod bound;
mod key;
mod nonce;
mod proof;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderValue, Method};

use crate::request::{AuthRequest, Target};

pub use key::{DpopAlgorithm, DpopKey, DpopKeyError, UnknownDpopAlgorithm};
pub use proof::ProofError;

pub(crate) use bound::{DPOP, DPOP_NONCE};
pub(crate) use nonce::{NonceWatch, Nonces};
pub(crate) use proof::Ath;

/// The most origins whose nonces are kept: 256. A client talks to a
/// handful (its token endpoint, its APIs); past the bound the
/// oldest-created origin's nonce is forgotten, and that server at worst
/// asks for a nonce once more.
pub const MAX_NONCE_ORIGINS: usize = 256;

/// The longest `DPoP-Nonce` taken: 1024 bytes. RFC 9449 sets no bound; a
/// longer value is ignored rather than copied into every proof.
pub const MAX_NONCE_BYTES: usize = 1024;

/// What a client uses for DPoP: its key, and the nonces servers gave it.
/// Cheap to clone; share one between the token source and the layer.
///
/// `Debug` shows the algorithm and the key's thumbprint only.
///
/// ```
/// use tower_bearer::dpop::{Dpop, DpopAlgorithm, DpopKey};
///
/// let dpop = Dpop::new(DpopKey::generate_with(DpopAlgorithm::EdDsa)?);
/// assert_eq!(dpop.nonce_retries(), 0);
/// assert!(format!("{dpop:?}").contains(dpop.thumbprint()));
/// # Ok::<(), tower_bearer::dpop::DpopKeyError>(())
/// ```
#[derive(Clone)]
pub struct Dpop {
    inner: Arc<Shared>,
}

struct Shared {
    key: DpopKey,
    nonces: Nonces,
    nonce_retries: AtomicU64,
}

impl Dpop {
    /// DPoP with `key`.
    pub fn new(key: DpopKey) -> Dpop {
        Dpop {
            inner: Arc::new(Shared {
                key,
                nonces: Nonces::new(),
                nonce_retries: AtomicU64::new(0),
            }),
        }
    }

    /// DPoP with a fresh random ES256 key ([`DpopKey::generate`]).
    pub fn generate() -> Result<Dpop, DpopKeyError> {
        DpopKey::generate().map(Dpop::new)
    }

    /// The key.
    pub fn key(&self) -> &DpopKey {
        &self.inner.key
    }

    /// The key's JWK thumbprint ([`DpopKey::thumbprint`]).
    pub fn thumbprint(&self) -> &str {
        self.inner.key.thumbprint()
    }

    /// How many `use_dpop_nonce` challenges were answered with a new nonce
    /// (token requests re-sent, API responses marked for a retry).
    /// Monotonic: export it as a counter.
    pub fn nonce_retries(&self) -> u64 {
        self.inner.nonce_retries.load(Ordering::Relaxed)
    }

    pub(crate) fn count_nonce_retry(&self) {
        self.inner.nonce_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A proof for a request: `htm` its method, `target` where it goes
    /// (`htu` is made from it), `ath` for an API request (`None` for a
    /// token request); the nonce is the one held for the target's origin.
    /// Returns the `DPoP` header value (marked sensitive) and that origin's
    /// slot, so that the response's `DPoP-Nonce` can be offered to it
    /// without another lookup.
    pub(crate) fn proof(
        &self,
        htm: &Method,
        target: &Target<'_>,
        ath: Option<&Ath>,
    ) -> Result<(HeaderValue, NonceWatch), ProofError> {
        let htu = proof::Htu::of(target).ok_or(ProofError::RelativeUri)?;
        let slot = self
            .inner
            .nonces
            .slot(target)
            .ok_or(ProofError::RelativeUri)?;
        let nonce = slot.read();
        let value = proof::Claims::new(htm, htu, ath, nonce.as_str())?.sign(&self.inner.key)?;
        Ok((value, NonceWatch::new(slot, nonce)))
    }

    /// Puts a fresh proof for `request` in its `DPoP` header (`ath` for an
    /// API request), and returns the slot of its origin's nonce, for the
    /// nonce the answer may give.
    pub(crate) fn attach<R: AuthRequest>(
        &self,
        request: &mut R,
        ath: Option<&Ath>,
    ) -> Result<NonceWatch, ProofError> {
        let method = request.method().ok_or(ProofError::NoMethod)?;
        let (proof, watch) = self.proof(method, &request.target(), ath)?;
        request.headers_mut().insert(DPOP, proof);
        Ok(watch)
    }
}

/// The same `Dpop`: one key and its nonces, shared.
impl PartialEq for Dpop {
    fn eq(&self, other: &Dpop) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Dpop {}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("algorithm", &self.inner.key.algorithm())
            .field("thumbprint", &self.inner.key.thumbprint())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn claims_of(proof: &HeaderValue) -> serde_json::Value {
        let payload = proof.to_str().unwrap().split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn proofs_carry_the_nonce_of_their_origin() {
        let dpop = Dpop::generate().unwrap();
        let api: http::Uri = "https://api.example.com/v1/orders?page=2".parse().unwrap();
        let api = Target::new(api.scheme_str(), api.host(), api.port_u16()).with_path(api.path());
        let token =
            Target::new(Some("https"), Some("login.example.com"), None).with_path("/oauth2/token");

        let (proof, watch) = dpop.proof(&Method::GET, &api, None).unwrap();
        let slot = watch.slot;
        assert!(proof.is_sensitive());
        let claims = claims_of(&proof);
        assert_eq!(claims["htu"], "https://api.example.com/v1/orders");
        assert_eq!(claims.get("nonce"), None);
        assert_eq!(claims.get("ath"), None);

        // The server answers with a nonce; the next proof there carries it.
        assert!(slot.offer(&HeaderValue::from_static("api-nonce")));
        dpop.count_nonce_retry();
        let ath = Ath::of("access-token");
        let (proof, again) = dpop.proof(&Method::GET, &api, Some(&ath)).unwrap();
        assert!(Arc::ptr_eq(&slot, &again.slot));
        let claims = claims_of(&proof);
        assert_eq!(claims["nonce"], "api-nonce");
        assert_eq!(claims["ath"], ath.as_str());
        assert_eq!(dpop.nonce_retries(), 1);

        // Another origin has none; clones share the nonces and the count.
        let copy = dpop.clone();
        let (proof, _) = copy.proof(&Method::POST, &token, None).unwrap();
        assert_eq!(claims_of(&proof).get("nonce"), None);
        assert_eq!(copy.nonce_retries(), 1);
        assert!(Arc::ptr_eq(&copy.inner.nonces.slot(&api).unwrap(), &slot));
    }

    #[test]
    fn a_relative_uri_cannot_be_proven() {
        let dpop = Dpop::generate().unwrap();
        let relative = Target::new(None, None, None).with_path("/pkg.Service/Call");
        assert_eq!(
            dpop.proof(&Method::POST, &relative, None).unwrap_err(),
            ProofError::RelativeUri
        );
    }

    #[test]
    fn debug_shows_no_key_material_or_ath() {
        let dpop = Dpop::generate().unwrap();
        let debug = format!("{dpop:?}");
        assert_eq!(
            debug,
            format!(
                "Dpop {{ algorithm: Es256, thumbprint: {:?}, .. }}",
                dpop.thumbprint()
            )
        );
        let jwk: serde_json::Value = serde_json::from_str(dpop.key().public_jwk()).unwrap();
        assert!(!debug.contains(jwk["x"].as_str().unwrap()));
        assert!(!debug.contains(jwk["y"].as_str().unwrap()));

        let ath = Ath::of("secret-token");
        assert!(!format!("{ath:?}").contains(ath.as_str()));
    }
}
