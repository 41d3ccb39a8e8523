//! A token bound to a DPoP key, as the cache keeps it: the key, and the
//! token's `ath` computed once, so that each request costs one proof.

use http::HeaderName;

use super::{Ath, Dpop, NonceWatch};
use crate::cache::Lease;
use crate::error::TokenError;
use crate::request::{AuthRequest, AuthResponse};
use crate::token::AccessToken;

/// The `DPoP` request header: the proof.
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The `DPoP-Nonce` response header: the nonce the next proofs carry.
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// A cached token bound to its key: its lease, and what each request
/// adds.
pub(crate) struct Bound {
    lease: Lease,
    dpop: Dpop,
    ath: Ath,
}

impl Bound {
    pub(crate) fn new(dpop: &Dpop, token: &AccessToken, lease: Lease) -> Bound {
        Bound {
            lease,
            dpop: dpop.clone(),
            ath: Ath::of(token.secret()),
        }
    }

    /// The token's header and identity, for one request.
    pub(crate) fn lease(&self) -> Lease {
        self.lease.clone()
    }

    /// Puts a fresh proof for `request` in its `DPoP` header, and says
    /// where the nonce its answer may give goes.
    pub(crate) fn attach<R: AuthRequest>(&self, request: &mut R) -> Result<ProofWatch, TokenError> {
        let nonce = self
            .dpop
            .attach(request, Some(&self.ath))
            .map_err(TokenError::proof_failed)?;
        Ok(ProofWatch {
            nonce,
            dpop: self.dpop.clone(),
        })
    }
}

/// What a proven request's answer is read for: a new nonce for its origin.
pub(crate) struct ProofWatch {
    nonce: NonceWatch,
    dpop: Dpop,
}

impl ProofWatch {
    /// Keeps the nonce `response` gives, if any (see
    /// [`NonceWatch::take_from`]); `challenged` when it is a
    /// `use_dpop_nonce` challenge. Returns whether the origin now holds
    /// that nonce: the challenge is met by it.
    pub(crate) fn observe<T: AuthResponse>(&self, response: &T, challenged: bool) -> bool {
        response
            .headers()
            .is_some_and(|headers| self.nonce.take_from(headers, challenged))
    }

    /// Counts a request marked for a retry with the new nonce.
    pub(crate) fn count_retry(&self) {
        self.dpop.count_nonce_retry();
    }
}
