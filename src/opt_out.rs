//! [`OptOut`]: a request extension that turns the layer off for one request,
//! in part or whole.
//!
//! ```
//! use tower_bearer::OptOut;
//!
//! // A health check that must go out without the token.
//! let mut probe = http::Request::get("https://api.example.com/health").body(()).unwrap();
//! probe.extensions_mut().insert(OptOut::default().skip_token());
//!
//! // A probe of whether the token still works: its 401 must not throw the
//! // token away, nor be re-sent.
//! let mut check = http::Request::get("https://api.example.com/me").body(()).unwrap();
//! check.extensions_mut().insert(OptOut::default().skip_invalidation().skip_retry());
//! assert!(OptOut::default().skip_token().skips_token());
//! ```

/// What the layer should not do for this request. Put it in the request's
/// extensions (`http::Request`, or a `reqwest-middleware` request's
/// `with_extension`; `reqwest::Request` has none). The default
/// opts out of nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptOut {
    token: bool,
    invalidation: bool,
    retry: bool,
}

impl OptOut {
    /// Send the request without a token (and so without invalidation or
    /// retry).
    pub fn skip_token(mut self) -> Self {
        self.token = true;
        self
    }

    /// Do not throw the token away when the API rejects this request.
    pub fn skip_invalidation(mut self) -> Self {
        self.invalidation = true;
        self
    }

    /// Do not let [`RetryOnUnauthorized`](crate::RetryOnUnauthorized)
    /// re-send this request when the API rejects its token.
    pub fn skip_retry(mut self) -> Self {
        self.retry = true;
        self
    }

    /// Whether the request goes without a token.
    pub fn skips_token(&self) -> bool {
        self.token
    }

    /// Whether a rejection of this request leaves the token in place.
    pub fn skips_invalidation(&self) -> bool {
        self.invalidation
    }

    /// Whether a rejection of this request is not retried.
    pub fn skips_retry(&self) -> bool {
        self.retry
    }
}
