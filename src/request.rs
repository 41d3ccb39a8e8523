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

use http::{Extensions, HeaderMap, Method, StatusCode};

/// Where a request goes: its scheme, host, port and path, as far as its URI
/// says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    scheme: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<u16>,
    path: &'a str,
}

impl<'a> Target<'a> {
    /// A target from its parts; `port` is the explicit one, if any. The
    /// path is empty until [`with_path`](Self::with_path) sets it.
    pub fn new(scheme: Option<&'a str>, host: Option<&'a str>, port: Option<u16>) -> Self {
        Self {
            scheme,
            host,
            port,
            path: "",
        }
    }

    /// The same target with its path.
    pub fn with_path(mut self, path: &'a str) -> Self {
        self.path = path;
        self
    }

    /// The path, such as `/v1/orders`, without the query.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The scheme, such as `https`. `None` for a relative URI.
    pub fn scheme(&self) -> Option<&'a str> {
        self.scheme
    }

    /// The host. `None` for a relative URI.
    pub fn host(&self) -> Option<&'a str> {
        self.host
    }

    /// The port the URI names, if it names one (a DPoP proof's `htu` keeps
    /// it only when it is not the scheme's default).
    #[cfg_attr(not(feature = "client-credentials"), allow(dead_code))]
    pub(crate) fn explicit_port(&self) -> Option<u16> {
        self.port
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
    /// The request's extensions, where it may carry
    /// [`TokenParams`](crate::TokenParams) and [`OptOut`](crate::OptOut).
    ///
    /// Defaults to none, and then the layer cannot see either: a request
    /// type that has extensions (a wrapper around `http::Request`) must
    /// return them, or its requests all get the default token and no
    /// opt-out is honoured.
    fn extensions(&self) -> Option<&Extensions> {
        None
    }

    /// The request's method, which a DPoP proof names
    /// ([`dpop`](crate::dpop)).
    ///
    /// Defaults to none, and then a token bound to a DPoP key cannot be
    /// sent: the request fails with
    /// [`TokenErrorKind::ProofFailed`](crate::TokenErrorKind::ProofFailed).
    fn method(&self) -> Option<&Method> {
        None
    }
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
        Target::new(uri.scheme_str(), uri.host(), uri.port_u16()).with_path(uri.path())
    }

    fn extensions(&self) -> Option<&Extensions> {
        Some(http::Request::extensions(self))
    }

    fn method(&self) -> Option<&Method> {
        Some(http::Request::method(self))
    }
}

/// A response the layer can read a rejection from.
pub trait AuthResponse {
    /// Whether the API rejected the request's credentials.
    fn is_unauthorized(&self) -> bool;

    /// The status, as HTTP says it: for gRPC, `UNAUTHENTICATED` reads as
    /// 401 and `PERMISSION_DENIED` as 403. Defaults to 401 when
    /// [`is_unauthorized`](Self::is_unauthorized), else none.
    fn auth_status(&self) -> Option<StatusCode> {
        self.is_unauthorized().then_some(StatusCode::UNAUTHORIZED)
    }

    /// The response's headers, where `WWW-Authenticate` says why the token
    /// was refused. Defaults to none.
    fn headers(&self) -> Option<&HeaderMap> {
        None
    }

    /// The response's extensions. Defaults to none.
    fn extensions(&self) -> Option<&Extensions> {
        None
    }

    /// The response's extensions, where the layer marks a rejected token
    /// ([`TokenRejected`](crate::rejection::TokenRejected)). Defaults to
    /// none.
    fn extensions_mut(&mut self) -> Option<&mut Extensions> {
        None
    }
}

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// The HTTP status a gRPC status in the headers of a trailers-only
/// response (where tonic reports it) stands for.
fn grpc_status(headers: &HeaderMap) -> Option<StatusCode> {
    match headers.get(GRPC_STATUS)?.as_bytes() {
        b"16" => Some(StatusCode::UNAUTHORIZED),
        b"7" => Some(StatusCode::FORBIDDEN),
        _ => None,
    }
}

/// `401 Unauthorized`, or gRPC status 16 (`UNAUTHENTICATED`) in the headers
/// of a trailers-only gRPC response, where tonic reports it.
impl<B> AuthResponse for http::Response<B> {
    fn is_unauthorized(&self) -> bool {
        self.auth_status() == Some(StatusCode::UNAUTHORIZED)
    }

    fn auth_status(&self) -> Option<StatusCode> {
        match self.status() {
            StatusCode::OK => grpc_status(self.headers()).or(Some(StatusCode::OK)),
            status => Some(status),
        }
    }

    fn headers(&self) -> Option<&HeaderMap> {
        Some(http::Response::headers(self))
    }

    fn extensions(&self) -> Option<&Extensions> {
        Some(http::Response::extensions(self))
    }

    fn extensions_mut(&mut self) -> Option<&mut Extensions> {
        Some(http::Response::extensions_mut(self))
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
        Target::new(Some(url.scheme()), url.host_str(), url.port()).with_path(url.path())
    }

    fn method(&self) -> Option<&Method> {
        Some(reqwest::Request::method(self))
    }
}

#[cfg(feature = "reqwest")]
impl AuthResponse for reqwest::Response {
    fn is_unauthorized(&self) -> bool {
        self.status() == StatusCode::UNAUTHORIZED
    }

    fn auth_status(&self) -> Option<StatusCode> {
        Some(self.status())
    }

    fn headers(&self) -> Option<&HeaderMap> {
        Some(reqwest::Response::headers(self))
    }

    fn extensions(&self) -> Option<&Extensions> {
        Some(reqwest::Response::extensions(self))
    }

    fn extensions_mut(&mut self) -> Option<&mut Extensions> {
        Some(reqwest::Response::extensions_mut(self))
    }
}
