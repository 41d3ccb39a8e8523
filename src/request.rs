//! What the layer needs of a request and a response, so that it wraps
//! `http::Request<B>` services (hyper, tonic, axum) and `reqwest::Client`
//! alike.
//!
//! ```
//! use tower_bearer::request::{AuthRequest, AuthResponse};
//!
//! let req = http::Request::get("https://api.example.com:8443/v1").body(()).unwrap();
//! let target = req.target();
//! assert_eq!((target.scheme(), target.host(), target.port()), (Some("https"), Some("api.example.com"), Some(8443)));
//!
//! let res = http::Response::builder().status(401).body(()).unwrap();
//! assert!(res.is_unauthorized());
//! ```

use http::HeaderMap;

/// Where a request goes: its scheme, host and port, as far as its URI says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    scheme: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<u16>,
}

impl<'a> Target<'a> {
    /// A target from its parts; `port` is the explicit one, if any.
    pub fn new(scheme: Option<&'a str>, host: Option<&'a str>, port: Option<u16>) -> Self {
        Self { scheme, host, port }
    }

    /// The scheme, such as `https`. `None` for a relative URI.
    pub fn scheme(&self) -> Option<&'a str> {
        self.scheme
    }

    /// The host. `None` for a relative URI.
    pub fn host(&self) -> Option<&'a str> {
        self.host
    }

    /// The port: the explicit one, else 80 for `http` and 443 for `https`.
    pub fn port(&self) -> Option<u16> {
        self.port.or(match self.scheme {
            Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
            Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
            _ => None,
        })
    }
}

/// A request the layer can attach a token to.
pub trait AuthRequest {
    /// The request's headers.
    fn headers(&self) -> &HeaderMap;
    /// The request's headers, to add the token.
    fn headers_mut(&mut self) -> &mut HeaderMap;
    /// Where the request goes.
    fn target(&self) -> Target<'_>;
}

impl<B> AuthRequest for http::Request<B> {
    fn headers(&self) -> &HeaderMap {
        http::Request::headers(self)
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        http::Request::headers_mut(self)
    }

    fn target(&self) -> Target<'_> {
        let uri = self.uri();
        Target::new(uri.scheme_str(), uri.host(), uri.port_u16())
    }
}

/// A response the layer can read a rejection from.
pub trait AuthResponse {
    /// Whether the API rejected the request's credentials.
    fn is_unauthorized(&self) -> bool;
}

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// `401 Unauthorized`, or gRPC status 16 (`UNAUTHENTICATED`) in the headers
/// of a trailers-only gRPC response, where tonic reports it.
impl<B> AuthResponse for http::Response<B> {
    fn is_unauthorized(&self) -> bool {
        self.status() == http::StatusCode::UNAUTHORIZED
            || self
                .headers()
                .get(GRPC_STATUS)
                .is_some_and(|v| v.as_bytes() == b"16")
    }
}

#[cfg(feature = "reqwest")]
impl AuthRequest for reqwest::Request {
    fn headers(&self) -> &HeaderMap {
        reqwest::Request::headers(self)
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        reqwest::Request::headers_mut(self)
    }

    fn target(&self) -> Target<'_> {
        let url = self.url();
        Target::new(Some(url.scheme()), url.host_str(), url.port())
    }
}

#[cfg(feature = "reqwest")]
impl AuthResponse for reqwest::Response {
    fn is_unauthorized(&self) -> bool {
        self.status() == http::StatusCode::UNAUTHORIZED
    }
}
