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
//! Each proof costs one signature (ES256 or Ed25519) and one allocation,
//! the header value's own buffer.

pub(crate) mod bound;
mod key;
mod nonce;
mod proof;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderValue, Method};

use crate::request::Target;

pub use key::{DpopAlgorithm, DpopKey, DpopKeyError, UnknownDpopAlgorithm};
pub use proof::ProofError;

pub(crate) use nonce::{NonceSlot, Nonces};
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
    ) -> Result<(HeaderValue, Arc<NonceSlot>), ProofError> {
        let htu = proof::Htu::of(target).ok_or(ProofError::RelativeUri)?;
        let slot = self
            .inner
            .nonces
            .slot(target)
            .ok_or(ProofError::RelativeUri)?;
        let value = {
            let nonce = slot.read();
            proof::Claims::new(htm, htu, ath, nonce.as_str())?.sign(&self.inner.key)?
        };
        Ok((value, slot))
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

        let (proof, slot) = dpop.proof(&Method::GET, &api, None).unwrap();
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
        assert!(Arc::ptr_eq(&slot, &again));
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
