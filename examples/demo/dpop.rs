//! DPoP (RFC 9449) at the embedded provider: a token request with a
//! `DPoP` header has its proof checked by the same independent verifier the
//! library's tests use
//! (`tests/support/dpop_verify.rs`: the signature against the proof's own
//! key, `typ`, `alg` ES256 or EdDSA, `htm`, `htu` the URL requested, `iat`
//! within [`DPOP_IAT_WINDOW`]), then against what the server remembers: a
//! `jti` seen before is refused, and the proof must carry the server's
//! nonce (one random nonce per server and run; without it, or with another,
//! the answer is `400 use_dpop_nonce` with a `DPoP-Nonce` header). A bad
//! proof is `400 invalid_dpop_proof`. A good one earns a token of type
//! `DPoP` bound to the proof key's RFC 7638 thumbprint; a request without
//! the header gets a `Bearer` token as before. The API takes a bound token
//! only as `Authorization: DPoP <token>` with a proof of its key for that
//! call (`htu` the URL without its query, `ath` the token's hash) carrying
//! the API's own nonce, and answers `401` with `WWW-Authenticate: DPoP
//! error="use_dpop_nonce"` (and `DPoP-Nonce`), `error="invalid_dpop_proof"`
//! or `error="invalid_token"` (another key, or the token sent as `Bearer`).
//! Once a server has seen a DPoP request, every answer it gives carries its
//! `DPoP-Nonce`.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::Full;
use tokio::time::Instant;

use super::{lock, random_string};

#[path = "../../tests/support/dpop_verify.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
pub(super) mod dpop_verify;

/// How far a DPoP proof's `iat` may be from now, either way: short, since
/// client and servers share a clock here, and the replay memory lasts
/// twice as long.
pub const DPOP_IAT_WINDOW: Duration = Duration::from_secs(15);

/// The longest `jti` taken; a proof's is 22 characters from the crate.
const MAX_JTI_BYTES: usize = 256;

/// How long a server remembers a proof's `jti`: twice the `iat` window, so
/// that a proof is remembered for as long as its `iat` can pass (it may
/// have been made up to a window before it came, and passes until a
/// window after that).
const DPOP_REPLAY_MEMORY: Duration = Duration::from_secs(2 * DPOP_IAT_WINDOW.as_secs());

/// The most `jti`s a server remembers at once, each as a 16-byte hash.
/// Past it, proofs are refused (503) until older ones are forgotten, rather
/// than forgotten early, which would let a replay through: enough for
/// 33,000 proofs a second over [`DPOP_REPLAY_MEMORY`]. Only authenticated
/// requests get that far (good client credentials, or a live token and a
/// proof signed by the key it is bound to).
pub const MAX_REMEMBERED_PROOFS: usize = 1_000_000;

/// What one server keeps for DPoP: its nonce, the proofs it has seen, and
/// what it made of them.
pub(super) struct DpopServer {
    /// Random, one per server and run: a proof made before the run, or for
    /// the other server, does not carry it.
    nonce: String,
    seen: Mutex<SeenProofs>,
    /// Whether a DPoP request came: from then on every answer carries the
    /// nonce.
    pub(super) used: AtomicBool,
    pub(super) nonce_challenges: AtomicU64,
    pub(super) proofs_refused: AtomicU64,
}

/// Why a DPoP proof did not pass.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ProofRefusal {
    /// It lacks the server's nonce, or carries another: `use_dpop_nonce`.
    NonceRequired,
    /// It is not a good proof for this request (`invalid_dpop_proof`), why.
    Invalid(String),
    /// It is signed by another key than the token is bound to:
    /// `invalid_token`, and its `jti` is not remembered.
    OtherKey,
    /// The replay memory is full: try again shortly.
    Busy,
}

impl DpopServer {
    pub(super) fn new() -> DpopServer {
        DpopServer {
            nonce: random_string(24),
            seen: Mutex::new(SeenProofs::new(MAX_REMEMBERED_PROOFS)),
            used: AtomicBool::new(false),
            nonce_challenges: AtomicU64::new(0),
            proofs_refused: AtomicU64::new(0),
        }
    }

    /// Checks the one `DPoP` header of a `method` request to `url`
    /// (presenting `access_token` bound to the key `bound_to`, at the API):
    /// the proof on its own and its key, then its `jti` never seen
    /// (remembered even when the nonce is then missing: a proof is good
    /// once), then the nonce. The proof key's thumbprint if it passes.
    pub(super) fn check(
        &self,
        headers: &HeaderMap,
        method: &Method,
        url: &str,
        access_token: Option<(&str, &str)>,
    ) -> Result<String, ProofRefusal> {
        self.used.store(true, Ordering::Relaxed);
        let result = self.verify(headers, method, url, access_token);
        let counter = match &result {
            Ok(_) => None,
            Err(ProofRefusal::NonceRequired) => Some(&self.nonce_challenges),
            Err(_) => Some(&self.proofs_refused),
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        url: &str,
        access_token: Option<(&str, &str)>,
    ) -> Result<String, ProofRefusal> {
        let mut proofs = headers.get_all("dpop").iter();
        let (Some(jws), None) = (proofs.next(), proofs.next()) else {
            return Err(ProofRefusal::Invalid(
                "exactly one DPoP header is needed".into(),
            ));
        };
        let jws = jws
            .to_str()
            .map_err(|_| ProofRefusal::Invalid("the DPoP header is not ASCII".into()))?;
        let expected = dpop_verify::Expected {
            method: method.as_str(),
            url,
            iat_window: DPOP_IAT_WINDOW,
            access_token: access_token.map(|(token, _)| token),
        };
        let proof = dpop_verify::verify_proof(jws, &expected)
            .map_err(|refusal| ProofRefusal::Invalid(refusal.description))?;
        // Before the jti is remembered: a stolen token with proofs of
        // another key must not fill the memory.
        if access_token.is_some_and(|(_, bound_to)| proof.jkt != bound_to) {
            return Err(ProofRefusal::OtherKey);
        }
        if proof.jti.len() > MAX_JTI_BYTES {
            return Err(ProofRefusal::Invalid("the proof's jti is too long".into()));
        }
        // The time read under the lock, so that arrivals stay in order.
        let mut seen = lock(&self.seen);
        seen.remember(&proof.jti, Instant::now())?;
        drop(seen);
        if proof.nonce.as_deref() != Some(self.nonce.as_str()) {
            return Err(ProofRefusal::NonceRequired);
        }
        Ok(proof.jkt)
    }

    /// Puts the nonce on `response` once a DPoP request has come.
    pub(super) fn stamp(&self, response: &mut http::Response<Full<Bytes>>) {
        if self.used.load(Ordering::Relaxed) {
            let nonce = HeaderValue::try_from(self.nonce.as_str()).expect("alphanumeric");
            response.headers_mut().insert("dpop-nonce", nonce);
        }
    }
}

/// The `jti`s of the proofs a server saw in the last
/// [`DPOP_REPLAY_MEMORY`], at most `limit` of them, each kept as a hash of
/// fixed size whatever its length.
struct SeenProofs {
    limit: usize,
    /// When each came, oldest first: what to forget next.
    by_arrival: VecDeque<(Instant, JtiHash)>,
    jtis: HashSet<JtiHash>,
}

/// The first 16 bytes of a `jti`'s SHA-256.
type JtiHash = [u8; 16];

fn jti_hash(jti: &str) -> JtiHash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jti.as_bytes());
    let mut hash = [0; 16];
    hash.copy_from_slice(&digest.as_ref()[..16]);
    hash
}

impl SeenProofs {
    fn new(limit: usize) -> SeenProofs {
        SeenProofs {
            limit,
            by_arrival: VecDeque::new(),
            jtis: HashSet::new(),
        }
    }

    /// Remembers `jti`, which came at `now`, after forgetting those that
    /// came more than [`DPOP_REPLAY_MEMORY`] ago; refuses one seen before,
    /// and any when `limit` are remembered.
    fn remember(&mut self, jti: &str, now: Instant) -> Result<(), ProofRefusal> {
        while let Some((came, _)) = self.by_arrival.front()
            && now.saturating_duration_since(*came) > DPOP_REPLAY_MEMORY
        {
            if let Some((_, old)) = self.by_arrival.pop_front() {
                self.jtis.remove(&old);
            }
        }
        let hash = jti_hash(jti);
        if self.jtis.contains(&hash) {
            return Err(ProofRefusal::Invalid(
                "the proof's jti was used before".into(),
            ));
        }
        if self.jtis.len() >= self.limit {
            return Err(ProofRefusal::Busy);
        }
        self.jtis.insert(hash);
        self.by_arrival.push_back((now, hash));
        Ok(())
    }
}

/// A `WWW-Authenticate: DPoP` challenge naming `error`, with the
/// algorithms the API takes (RFC 9449 section 7.1).
pub(super) fn dpop_challenge(error: &str) -> String {
    format!(
        "DPoP algs=\"{}\", error=\"{error}\"",
        dpop_verify::SUPPORTED_ALGS.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_good_once_and_remembered_for_twice_the_iat_window_at_most_limit() {
        let start = Instant::now();
        let mut seen = SeenProofs::new(2);
        assert_eq!(seen.remember("a", start), Ok(()));
        assert!(matches!(
            seen.remember("a", start + DPOP_IAT_WINDOW),
            Err(ProofRefusal::Invalid(_))
        ));
        assert_eq!(seen.remember("b", start + DPOP_IAT_WINDOW), Ok(()));
        // Full: refused, not forgotten early (a replay would pass).
        assert_eq!(
            seen.remember("c", start + DPOP_IAT_WINDOW),
            Err(ProofRefusal::Busy)
        );
        // "a" is a replay until twice the window has passed...
        assert!(seen.remember("a", start + DPOP_REPLAY_MEMORY).is_err());
        // ...and then forgotten: its iat can no longer pass anyway.
        let later = start + DPOP_REPLAY_MEMORY + Duration::from_millis(1);
        assert_eq!(seen.remember("c", later), Ok(()));
        assert_eq!(seen.jtis.len(), 2);
        assert_eq!(seen.by_arrival.len(), 2);
        assert!(seen.remember("b", later).is_err());
    }
}
