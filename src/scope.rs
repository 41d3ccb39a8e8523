//! Which requests get the token.
//!
//! By default every request through the layer carries the token. A [`Scope`]
//! narrows that to the origins the token is meant for, so that a redirect or a
//! misrouted request never hands it to another host.
//!
//! ```
//! use tower_bearer::{BearerAuthLayer, Scope, Token, source::StaticSource};
//!
//! let scope = Scope::origins(["https://api.example.com"]).unwrap();
//! let layer = BearerAuthLayer::new(StaticSource::new(Token::bearer("t"))).scope(scope);
//! # drop(layer);
//! ```
//!
//! # Redirects
//!
//! Put tower-http's `FollowRedirect` **outside** this layer: each hop then
//! passes through the layer again and the scope decides afresh for the new
//! URI. With an origin allow-list, a redirect to another origin goes out
//! without the token. Without a scope, every hop carries it.
//!
//! `reqwest::Client` follows redirects *inside* the layer, so a scope sees
//! only the first URI. reqwest drops `authorization` itself on a
//! cross-origin hop, but no other header: with a custom
//! [`header_name`](crate::BearerAuthLayer::header_name), build the client
//! with `reqwest::redirect::Policy::none()` (and follow redirects outside the
//! layer), or the token follows the redirect.
//!
//! # Relative URIs (tonic)
//!
//! A tonic `Channel` adds the origin to each request below the layers it is
//! wrapped in: through this layer, a generated client's request has a
//! relative URI such as `/grpc.health.v1.Health/Check`. A restricted scope
//! cannot judge such a request, so it is never sent bare: it fails with
//! [`TokenErrorKind::UnknownOrigin`](crate::TokenErrorKind::UnknownOrigin)
//! unless the scope is told the origin the inner service talks to:
//!
//! ```
//! use tower_bearer::Scope;
//!
//! let scope = Scope::https_only().base_origin("https://grpc.example.com")?;
//! # Ok::<(), tower_bearer::scope::InvalidOrigin>(())
//! ```

use std::fmt;
use std::sync::Arc;

use crate::request::Target;

type Predicate = Arc<dyn Fn(&Target<'_>) -> bool + Send + Sync>;

/// Decides whether a request gets the token. Cheap to clone.
#[derive(Clone)]
pub struct Scope {
    allows: Option<Predicate>,
    // Where requests with a relative URI go.
    base: Option<Arc<Origin>>,
}

/// What a scope says of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It gets the token.
    Attach,
    /// It goes without the token.
    Skip,
    /// It names no origin and the scope is restricted: it must not be sent.
    UnknownOrigin,
}

impl Scope {
    /// Every request gets the token (the default).
    pub fn any() -> Self {
        Self {
            allows: None,
            base: None,
        }
    }

    /// Requests for which `f` returns `true` get the token.
    pub fn from_fn(f: impl Fn(&Target<'_>) -> bool + Send + Sync + 'static) -> Self {
        Self {
            allows: Some(Arc::new(f)),
            base: None,
        }
    }

    /// The origin (`scheme://host[:port]`) that requests with a relative URI
    /// go to: the one a tonic `Channel` below the layer connects to. Without
    /// it, a restricted scope refuses such requests (see the
    /// [module docs](self#relative-uris-tonic)).
    pub fn base_origin(mut self, origin: &str) -> Result<Self, InvalidOrigin> {
        self.base = Some(Arc::new(Origin::parse(origin)?));
        Ok(self)
    }

    /// Only requests to these origins (`scheme://host[:port]`) get the token.
    /// Scheme and host compare case-insensitively; a missing port is the
    /// scheme's default. A request with a relative URI matches no origin.
    pub fn origins<I>(origins: I) -> Result<Self, InvalidOrigin>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let allowed = origins
            .into_iter()
            .map(|o| Origin::parse(o.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_fn(move |target| {
            allowed.iter().any(|origin| origin.matches(target))
        }))
    }

    /// Only `https` requests get the token.
    pub fn https_only() -> Self {
        Self::from_fn(|target| {
            target
                .scheme()
                .is_some_and(|s| s.eq_ignore_ascii_case("https"))
        })
    }

    /// Requests both scopes accept. The base origin is this scope's, else
    /// the other's.
    pub fn and(self, other: Scope) -> Self {
        let allows = match (self.allows, other.allows) {
            (None, b) => b,
            (a, None) => a,
            (Some(a), Some(b)) => Some(Arc::new(move |t: &Target<'_>| a(t) && b(t)) as Predicate),
        };
        Self {
            allows,
            base: self.base.or(other.base),
        }
    }

    /// Whether `request` gets the token. Looks at the request's target only
    /// when the scope is restricted.
    pub fn allows_request<R: crate::request::AuthRequest>(&self, request: &R) -> bool {
        self.verdict(request) == Verdict::Attach
    }

    /// Whether a request to `target` gets the token.
    pub fn allows(&self, target: &Target<'_>) -> bool {
        self.verdict_for(*target) == Verdict::Attach
    }

    pub(crate) fn verdict<R: crate::request::AuthRequest>(&self, request: &R) -> Verdict {
        if self.allows.is_none() {
            return Verdict::Attach;
        }
        self.verdict_for(request.target())
    }

    fn verdict_for(&self, target: Target<'_>) -> Verdict {
        let Some(allows) = &self.allows else {
            return Verdict::Attach;
        };
        let target = match (target.host(), &self.base) {
            (Some(_), _) => target,
            (None, Some(base)) => base.target(),
            (None, None) => return Verdict::UnknownOrigin,
        };
        if allows(&target) {
            Verdict::Attach
        } else {
            Verdict::Skip
        }
    }
}

impl Default for Scope {
    fn default() -> Self {
        Self::any()
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.allows.is_some() {
            "Scope(restricted)"
        } else {
            "Scope(any)"
        })
    }
}

struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(text: &str) -> Result<Self, InvalidOrigin> {
        let invalid = || InvalidOrigin(text.to_owned());
        let uri: http::Uri = text.parse().map_err(|_| invalid())?;
        let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
        let (Some(scheme), Some(host), true) = (uri.scheme_str(), uri.host(), path_ok) else {
            return Err(invalid());
        };
        let target = Target::new(Some(scheme), Some(host), uri.port_u16());
        Ok(Self {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            port: target.port().ok_or_else(invalid)?,
        })
    }

    fn target(&self) -> Target<'_> {
        Target::new(Some(&self.scheme), Some(&self.host), Some(self.port))
    }

    fn matches(&self, target: &Target<'_>) -> bool {
        target
            .scheme()
            .is_some_and(|s| s.eq_ignore_ascii_case(&self.scheme))
            && target
                .host()
                .is_some_and(|h| h.eq_ignore_ascii_case(&self.host))
            && target.port() == Some(self.port)
    }
}

/// An origin given to [`Scope::origins`] that is not `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOrigin(String);

impl fmt::Display for InvalidOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid origin {:?}: expected scheme://host[:port] (http or https)",
            self.0
        )
    }
}

impl std::error::Error for InvalidOrigin {}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(scope: &Scope, uri: &str) -> bool {
        let req = http::Request::get(uri).body(()).unwrap();
        scope.allows(&crate::request::AuthRequest::target(&req))
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let scope = Scope::origins(["https://API.example.com", "http://127.0.0.1:8080"]).unwrap();
        assert!(allows(&scope, "https://api.example.com/v1?x=1"));
        assert!(allows(&scope, "https://api.example.com:443/v1"));
        assert!(allows(&scope, "http://127.0.0.1:8080/"));
        assert!(!allows(&scope, "http://api.example.com/v1"));
        assert!(!allows(&scope, "https://api.example.com:8443/v1"));
        assert!(!allows(&scope, "https://evil.example.com/v1"));
        assert!(!allows(&scope, "https://api.example.com.evil.net/v1"));
        assert!(!allows(&scope, "http://127.0.0.1:8081/"));
        assert!(!allows(&scope, "/relative"));
    }

    #[test]
    fn bad_origins_are_refused() {
        for bad in [
            "api.example.com",
            "https://",
            "ftp://x",
            "https://a.com/path",
            "::",
        ] {
            assert!(Scope::origins([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn https_only_and_combination() {
        let scope = Scope::https_only().and(Scope::origins(["https://a.test"]).unwrap());
        assert!(allows(&scope, "https://a.test/x"));
        assert!(!allows(&scope, "http://a.test/x"));
        assert!(!allows(&scope, "https://b.test/x"));
        assert!(allows(&Scope::any(), "/anything"));
    }

    #[test]
    fn a_relative_uri_is_judged_by_the_base_origin_or_not_at_all() {
        let verdict =
            |scope: &Scope, uri: &str| scope.verdict(&http::Request::get(uri).body(()).unwrap());
        let scope = Scope::origins(["http://127.0.0.1:50051"]).unwrap();
        assert_eq!(
            verdict(&scope, "/grpc.health.v1.Health/Check"),
            Verdict::UnknownOrigin
        );
        let based = scope.clone().base_origin("http://127.0.0.1:50051").unwrap();
        assert_eq!(
            verdict(&based, "/grpc.health.v1.Health/Check"),
            Verdict::Attach
        );
        assert_eq!(verdict(&based, "http://127.0.0.1:50052/x"), Verdict::Skip);
        let elsewhere = scope.base_origin("http://127.0.0.1:50052").unwrap();
        assert_eq!(verdict(&elsewhere, "/x"), Verdict::Skip);
        assert_eq!(verdict(&Scope::any(), "/x"), Verdict::Attach);
        assert_eq!(verdict(&Scope::https_only(), "/x"), Verdict::UnknownOrigin);
        assert!(Scope::any().base_origin("not an origin").is_err());
    }
}
