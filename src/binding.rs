//! What a token bound to a key adds to the requests that carry it: a proof
//! of possession per request, and the nonces the answers give. The cache
//! keeps a [`Bound`] beside each bound token's header, and the service asks
//! it for the proof; neither knows what the proof is (DPoP, RFC 9449: see
//! [`crate::dpop`]).
//!
//! Without the `client-credentials` feature there is no DPoP, and no token
//! is ever bound: the types here cannot be made.

#[cfg(feature = "client-credentials")]
pub(crate) use crate::dpop::bound::{Bound, ProofWatch};

#[cfg(not(feature = "client-credentials"))]
pub(crate) use unbound::{Bound, ProofWatch};

#[cfg(not(feature = "client-credentials"))]
mod unbound {
    use crate::cache::Lease;
    use crate::error::TokenError;
    use crate::request::{AuthRequest, AuthResponse};

    /// No token is bound without DPoP.
    pub(crate) enum Bound {}

    /// No proof, so nothing to watch.
    pub(crate) enum ProofWatch {}

    impl Bound {
        pub(crate) fn lease(&self) -> Lease {
            match *self {}
        }

        pub(crate) fn attach<R: AuthRequest>(&self, _: &mut R) -> Result<ProofWatch, TokenError> {
            match *self {}
        }
    }

    impl ProofWatch {
        pub(crate) fn observe<T: AuthResponse>(&self, _: &T, _: bool) -> bool {
            match *self {}
        }

        pub(crate) fn count_retry(&self) {
            match *self {}
        }
    }
}
