//! The access token a [`TokenSource`](crate::TokenSource) yields.
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::Token;
//!
//! let token = Token::bearer("opaque-value").with_lifetime(Duration::from_secs(3600));
//! assert_eq!(token.token_type(), "Bearer");
//! assert_eq!(token.access_token().secret(), "opaque-value");
//! // The secret never shows in Debug output.
//! assert!(!format!("{token:?}").contains("opaque-value"));
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use crate::binding::Bound;
#[cfg(feature = "client-credentials")]
use crate::cache::Lease;
use crate::cache::TokenId;
#[cfg(feature = "client-credentials")]
use crate::dpop::Dpop;

/// An access token value: a secret.
///
/// Its `Debug` prints `[redacted]`; it has no `Display`. Read the value with
/// [`AccessToken::secret`], on purpose and in one place.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    /// Wraps a token value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The token value itself. Keep it out of logs.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// A token as a source yields it: the value, its type, how long it lives,
/// and the DPoP key it is bound to, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    access_token: AccessToken,
    token_type: Arc<str>,
    lifetime: Option<Duration>,
    #[cfg(feature = "client-credentials")]
    dpop: Option<Dpop>,
}

impl Token {
    /// A token of the given type. `bearer` and `dpop`, in any letter case,
    /// become `Bearer` and `DPoP` (RFC 6750 and RFC 9449 spell them so, and
    /// some servers compare the scheme case-sensitively); any other type
    /// passes through unchanged.
    pub fn new(access_token: impl Into<Arc<str>>, token_type: &str) -> Self {
        let token_type: Arc<str> = if token_type.eq_ignore_ascii_case("bearer") {
            Arc::from("Bearer")
        } else if token_type.eq_ignore_ascii_case("dpop") {
            Arc::from("DPoP")
        } else {
            Arc::from(token_type)
        };
        Self {
            access_token: AccessToken::new(access_token),
            token_type,
            lifetime: None,
            #[cfg(feature = "client-credentials")]
            dpop: None,
        }
    }

    /// A `Bearer` token.
    pub fn bearer(access_token: impl Into<Arc<str>>) -> Self {
        Self::new(access_token, "Bearer")
    }

    /// Sets how long the token lives, counted from when it was requested.
    ///
    /// Without a lifetime the cache uses its default lifetime
    /// ([`TokenCacheBuilder::default_lifetime`](crate::TokenCacheBuilder::default_lifetime)).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// Binds the token to `dpop`'s key (RFC 9449): the layer sends it as
    /// `Authorization: DPoP <token>` with a fresh proof of possession of
    /// the key on every request. The token's type becomes `DPoP`.
    ///
    /// The client-credentials and token-exchange sources do this themselves
    /// when given a [`Dpop`]; a source of your own does it for the tokens
    /// its provider bound to the key.
    #[cfg(feature = "client-credentials")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client-credentials")))]
    pub fn with_dpop(mut self, dpop: Dpop) -> Self {
        self.token_type = Arc::from("DPoP");
        self.dpop = Some(dpop);
        self
    }

    /// The DPoP key the token is bound to, if it is.
    #[cfg(feature = "client-credentials")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client-credentials")))]
    pub fn dpop(&self) -> Option<&Dpop> {
        self.dpop.as_ref()
    }

    /// Whether the token is bound to a key (DPoP): no other process can
    /// use it.
    pub(crate) fn is_bound(&self) -> bool {
        #[cfg(feature = "client-credentials")]
        {
            self.dpop.is_some()
        }
        #[cfg(not(feature = "client-credentials"))]
        {
            false
        }
    }

    /// What the layer adds to each request for this token, cached as
    /// `header` under `id`: a proof of possession of its key, when it is
    /// bound to one.
    pub(crate) fn binding(&self, header: &HeaderValue, id: TokenId) -> Option<Arc<Bound>> {
        #[cfg(feature = "client-credentials")]
        {
            self.dpop.as_ref().map(|dpop| {
                let lease = Lease {
                    header: header.clone(),
                    id,
                };
                Arc::new(Bound::new(dpop, &self.access_token, lease))
            })
        }
        #[cfg(not(feature = "client-credentials"))]
        {
            let _ = (header, id);
            None
        }
    }

    /// The token value.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// The token type, such as `Bearer`.
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// How long the token lives, if the source said.
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// `"<type> <token>"` as a sensitive header value, or `None` when either
    /// part is not visible ASCII without spaces: anything else could split or
    /// inject headers.
    pub(crate) fn header_value(&self) -> Option<HeaderValue> {
        let secret = self.access_token.secret();
        if !header_safe(secret) || !header_safe(&self.token_type) {
            return None;
        }
        let mut value = HeaderValue::try_from(format!("{} {secret}", self.token_type)).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// Whether `part` (a token or its type) may go in an `Authorization` header
/// as it is: visible ASCII, no spaces, not empty. Anything else could split
/// or inject headers.
pub(crate) fn header_safe(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_in_any_case_is_normalized() {
        for ty in ["bearer", "BEARER", "Bearer", "bEaReR"] {
            assert_eq!(Token::new("t", ty).token_type(), "Bearer");
        }
    }

    #[test]
    fn other_types_pass_through() {
        assert_eq!(Token::new("t", "DPoP").token_type(), "DPoP");
        assert_eq!(Token::new("t", "dpop").token_type(), "DPoP");
        assert_eq!(Token::new("t", "mac").token_type(), "mac");
    }

    #[test]
    fn the_header_refuses_control_bytes_and_spaces() {
        for bad in [
            "a\r\nx-injected: 1",
            "a\nb",
            "a\0b",
            "a b",
            "",
            "tab\there",
            "é",
        ] {
            assert!(Token::bearer(bad).header_value().is_none(), "{bad:?}");
        }
        assert!(Token::new("ok", "Bad Type").header_value().is_none());
        let value = Token::bearer("abc.DEF-_~+/=").header_value().unwrap();
        assert_eq!(value, "Bearer abc.DEF-_~+/=");
        assert!(value.is_sensitive());
    }

    #[test]
    fn debug_redacts_the_value() {
        let token = Token::bearer("s3cr3t-value").with_lifetime(Duration::from_secs(5));
        let printed = format!("{token:?} {:?}", token.access_token());
        assert!(!printed.contains("s3cr3t-value"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }
}
