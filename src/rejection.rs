//! When an API's answer means the token was rejected (RFC 6750 §3), and
//! what the layer does about it.
//!
//! A response whose status is one of the [`RejectionStatuses`] (401 by
//! default; some APIs answer 403 for an expired token) rejected the token,
//! unless its `WWW-Authenticate` Bearer challenge says `insufficient_scope`:
//! then the token is fine and the request needs more, so the token is kept
//! and the request is not re-sent; the caller gets the answer, with the
//! scope it needs readable through [`Challenge`]. On a rejection the layer
//! throws the token away (if it is still the current one) and marks the
//! response [`TokenRejected`], which
//! [`RetryOnUnauthorized`](crate::RetryOnUnauthorized) re-sends once.
//!
//! ```
//! use http::StatusCode;
//! use tower_bearer::{BearerAuthLayer, Challenge, Token, rejection::RejectionStatuses, source::StaticSource};
//!
//! let layer = BearerAuthLayer::new(StaticSource::new(Token::bearer("t")))
//!     .rejection_statuses(RejectionStatuses::new([StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN]));
//! # drop(layer);
//!
//! // What a caller reads from a 403 that asks for more scope.
//! let response = http::Response::builder()
//!     .status(403)
//!     .header("www-authenticate", r#"Bearer error="insufficient_scope", scope="orders.write""#)
//!     .body(())
//!     .unwrap();
//! let challenge = Challenge::bearer(response.headers()).unwrap();
//! assert!(challenge.is_insufficient_scope());
//! assert_eq!(challenge.scopes().collect::<Vec<_>>(), ["orders.write"]);
//! ```

use http::StatusCode;

use crate::challenge::Challenge;
use crate::request::AuthResponse;

/// The statuses that mean "token rejected". Only client errors (4xx)
/// count; others given are ignored. Small and `Copy`: a set of bits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RejectionStatuses {
    // Bit `n` stands for status `400 + n`: two words, so that the response
    // future stays 8-byte aligned.
    bits: [u64; 2],
}

impl RejectionStatuses {
    /// The set of `statuses` (their 4xx ones).
    pub fn new(statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        let mut bits = [0; 2];
        for n in statuses.into_iter().filter_map(offset) {
            bits[n / 64] |= 1 << (n % 64);
        }
        Self { bits }
    }

    /// Whether `status` is in the set.
    pub fn contains(&self, status: StatusCode) -> bool {
        offset(status).is_some_and(|n| self.has(n))
    }

    /// The statuses, in order.
    pub fn iter(&self) -> impl Iterator<Item = StatusCode> + '_ {
        (0..100)
            .filter(|n| self.has(*n))
            .filter_map(|n| StatusCode::from_u16(400 + n as u16).ok())
    }

    fn has(&self, n: usize) -> bool {
        self.bits[n / 64] & (1 << (n % 64)) != 0
    }
}

/// A client error's place in the set: `status - 400`.
fn offset(status: StatusCode) -> Option<usize> {
    let n = status.as_u16().checked_sub(400)?;
    (n < 100).then_some(usize::from(n))
}

/// `401 Unauthorized` alone.
impl Default for RejectionStatuses {
    fn default() -> Self {
        Self::new([StatusCode::UNAUTHORIZED])
    }
}

impl std::fmt::Debug for RejectionStatuses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.iter().map(|s| s.as_u16()))
            .finish()
    }
}

/// A response extension the layer adds when the API rejected the token the
/// request carried: a new token may succeed where this one failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRejected;

/// A response extension the layer adds when the API asked for a DPoP
/// nonce (RFC 9449 section 9: a `401` whose `WWW-Authenticate: DPoP`
/// challenge says `use_dpop_nonce`, with a `DPoP-Nonce` header). The token
/// is fine and kept; the nonce is stored for the API's origin, so the same
/// request sent again carries it.
/// [`RetryOnUnauthorized`](crate::RetryOnUnauthorized) re-sends it once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpopNonceRequired;

/// What a response says of the token its request carried.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not a rejection.
    Accepted,
    /// The token was rejected: throw it away, a retry may succeed.
    Rejected,
    /// The token is fine; the request needs more scope.
    NeedsMoreScope,
    /// The token is fine; the DPoP proof must carry the server's nonce.
    NonceRequired,
    /// The token is fine; the server refused the DPoP proof. A new token
    /// would not help, nor would the same request again.
    ProofRejected,
}

/// Reads `response` by `statuses` and the challenge of the scheme the
/// request used: DPoP's when it carried a proof (`proven`), else Bearer's.
/// A request without a proof cannot meet a DPoP challenge: it names the
/// token as what failed.
pub(crate) fn judge<R: AuthResponse>(
    response: &R,
    statuses: RejectionStatuses,
    proven: bool,
) -> Verdict {
    let Some(status) = response.auth_status() else {
        return Verdict::Accepted;
    };
    if !statuses.contains(status) {
        return Verdict::Accepted;
    }
    let Some(headers) = response.headers() else {
        return Verdict::Rejected;
    };
    if proven && let Some(challenge) = Challenge::find(headers, "DPoP") {
        // A challenge without an error (`DPoP algs="ES256"`) only says
        // the scheme is on offer: Bearer's, if any, says why.
        match challenge.error() {
            Some("use_dpop_nonce") => return Verdict::NonceRequired,
            Some("invalid_dpop_proof") => return Verdict::ProofRejected,
            Some(_) if challenge.is_insufficient_scope() => return Verdict::NeedsMoreScope,
            Some(_) => return Verdict::Rejected,
            None => {}
        }
    }
    match Challenge::bearer(headers) {
        Some(challenge) if challenge.is_insufficient_scope() => Verdict::NeedsMoreScope,
        _ => Verdict::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, challenge: Option<&str>) -> http::Response<()> {
        let mut builder = http::Response::builder().status(status);
        if let Some(challenge) = challenge {
            builder = builder.header("www-authenticate", challenge);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn statuses_and_challenges_decide() {
        let both = RejectionStatuses::new([StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN]);
        let only_401 = RejectionStatuses::default();
        let cases = [
            (200, None, only_401, false, Verdict::Accepted),
            (401, None, only_401, false, Verdict::Rejected),
            (
                401,
                Some(r#"Bearer error="invalid_token""#),
                only_401,
                false,
                Verdict::Rejected,
            ),
            (
                401,
                Some(r#"Bearer realm="api", error="insufficient_scope", scope="a""#),
                only_401,
                false,
                Verdict::NeedsMoreScope,
            ),
            (
                403,
                Some(r#"Bearer error="invalid_token""#),
                only_401,
                false,
                Verdict::Accepted,
            ),
            (
                403,
                Some(r#"Bearer error="invalid_token""#),
                both,
                false,
                Verdict::Rejected,
            ),
            (403, None, both, false, Verdict::Rejected),
            (
                403,
                Some(r#"Bearer error="insufficient_scope", scope="orders.write""#),
                both,
                false,
                Verdict::NeedsMoreScope,
            ),
            // Another scheme's challenge says nothing of the Bearer token.
            (
                401,
                Some(r#"Basic realm="x", error="insufficient_scope""#),
                only_401,
                false,
                Verdict::Rejected,
            ),
            // DPoP's challenges (RFC 9449 sections 7.1 and 9).
            (
                401,
                Some(
                    r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
                ),
                only_401,
                true,
                Verdict::NonceRequired,
            ),
            (
                401,
                Some(r#"Bearer realm="x", DPoP algs="ES256", error="invalid_dpop_proof""#),
                only_401,
                true,
                Verdict::ProofRejected,
            ),
            (
                401,
                Some(r#"DPoP algs="ES256 EdDSA", error="invalid_token""#),
                only_401,
                true,
                Verdict::Rejected,
            ),
            (
                403,
                Some(r#"DPoP error="insufficient_scope", scope="orders.write""#),
                both,
                true,
                Verdict::NeedsMoreScope,
            ),
            (
                200,
                Some(r#"DPoP error="use_dpop_nonce""#),
                only_401,
                true,
                Verdict::Accepted,
            ),
            // A request without a proof reads the Bearer challenge: a DPoP
            // one cannot be met with its token.
            (
                401,
                Some(r#"DPoP error="invalid_dpop_proof""#),
                only_401,
                false,
                Verdict::Rejected,
            ),
            (
                401,
                Some(r#"DPoP error="use_dpop_nonce", Bearer error="insufficient_scope""#),
                only_401,
                false,
                Verdict::NeedsMoreScope,
            ),
            // A proven one reads the DPoP challenge, whatever Bearer's says.
            (
                401,
                Some(r#"Bearer error="insufficient_scope", DPoP error="invalid_token""#),
                only_401,
                true,
                Verdict::Rejected,
            ),
            (
                401,
                Some(r#"DPoP algs="ES256""#),
                only_401,
                true,
                Verdict::Rejected,
            ),
            (
                401,
                Some(r#"Bearer error="insufficient_scope", DPoP algs="ES256""#),
                only_401,
                true,
                Verdict::NeedsMoreScope,
            ),
            // Without a DPoP challenge, Bearer's says.
            (
                403,
                Some(r#"Bearer error="insufficient_scope""#),
                both,
                true,
                Verdict::NeedsMoreScope,
            ),
        ];
        for (status, challenge, statuses, proven, expected) in cases {
            assert_eq!(
                judge(&response(status, challenge), statuses, proven),
                expected,
                "{status} {challenge:?} {proven}"
            );
        }
    }

    #[test]
    fn grpc_statuses_read_as_http() {
        let grpc = |code: &str| {
            http::Response::builder()
                .header("grpc-status", code)
                .body(())
                .unwrap()
        };
        let both = RejectionStatuses::new([StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN]);
        assert_eq!(
            judge(&grpc("16"), RejectionStatuses::default(), false),
            Verdict::Rejected
        );
        assert_eq!(
            judge(&grpc("7"), RejectionStatuses::default(), false),
            Verdict::Accepted
        );
        assert_eq!(judge(&grpc("7"), both, false), Verdict::Rejected);
        assert_eq!(judge(&grpc("0"), both, false), Verdict::Accepted);
    }

    #[test]
    fn only_client_errors_count() {
        let set = RejectionStatuses::new([
            StatusCode::OK,
            StatusCode::UNAUTHORIZED,
            StatusCode::from_u16(499).unwrap(),
            StatusCode::INTERNAL_SERVER_ERROR,
        ]);
        assert_eq!(
            set.iter().map(|s| s.as_u16()).collect::<Vec<_>>(),
            [401, 499]
        );
        assert!(!set.contains(StatusCode::OK));
        assert_eq!(format!("{set:?}"), "{401, 499}");
    }
}
