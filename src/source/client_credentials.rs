//! The OAuth2 client-credentials grant (RFC 6749 section 4.4) as a
//! [`TokenSource`], with a preset for Avionté's partner authorization API.
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_bearer::BearerAuthLayer;
//! use tower_bearer::source::client_credentials::{AuthStyle, ClientCredentials};
//!
//! # fn main() -> Result<(), tower_bearer::source::client_credentials::BuildError> {
//! let source = ClientCredentials::builder("https://login.example.com/oauth2/token", "my-client")
//!     .client_secret("s3cret")
//!     .scope("orders.read")
//!     .auth_style(AuthStyle::Basic) // the default
//!     .param("audience", "https://api.example.com")
//!     .timeout(Duration::from_secs(5))
//!     .build()?;
//!
//! let client = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(source))
//!     .service(reqwest::Client::new());
//! # drop(client);
//! # Ok(()) }
//! ```
//!
//! # The request
//!
//! `POST` to the token URL with `content-type: application/x-www-form-urlencoded`,
//! `accept: application/json`, any extra headers (one value per name;
//! `accept` may be replaced, the headers in [`RESERVED_HEADERS`] may not),
//! and the form
//! `grant_type=client_credentials`, `scope` (the scopes joined by spaces,
//! left out when there are none), and the extra parameters. The client
//! authenticates with HTTP Basic ([`AuthStyle::Basic`], the default; id and
//! secret are form-urlencoded before base64, RFC 6749 section 2.3.1) or with
//! `client_id` and `client_secret` in the form ([`AuthStyle::RequestBody`]).
//!
//! The token URL must be `https`, except on a loopback host (`127.0.0.0/8`,
//! `::1`, `localhost`); [`allow_insecure_http`](ClientCredentialsBuilder::allow_insecure_http)
//! lifts the rule. A user name or password in the URL is refused
//! ([`BuildError::CredentialsInUrl`]): the client authenticates one way only.
//!
//! The credentials go to that URL and nowhere else. The default HTTP client
//! follows no redirects, and a plain-http or loopback token request never
//! goes through a proxy, whatever `HTTP_PROXY` or `ALL_PROXY` say: a proxy
//! would read the credentials and could answer with a token of its own. With
//! the `rustls` feature (on by default), an `https` request to another host
//! goes through the proxy the environment names (`HTTPS_PROXY`,
//! `ALL_PROXY`, minus `NO_PROXY`), in a TLS tunnel the proxy cannot read;
//! without it, no request is proxied. For a proxy of your choosing, pass a
//! client built with it to [`http_client`](ClientCredentialsBuilder::http_client);
//! these guarantees are the default client's.
//!
//! # The response
//!
//! Parsing is tolerant where real providers differ:
//!
//! - The body is JSON whatever the `content-type` says; a body that is not
//!   JSON is read as a form when the `content-type` is
//!   `application/x-www-form-urlencoded`, `text/plain` or missing, and the
//!   form names `access_token` or `error`.
//! - A token is read whenever its `access_token` and `token_type` can be: a
//!   quirk elsewhere costs only the member it is in. A byte order mark, a
//!   trailing comma, text after the object, a repeated member (the last
//!   counts), a value that is not valid JSON (`NaN`, a raw control
//!   character, bytes that are not UTF-8) and whitespace around the values
//!   are all read past.
//! - At most [`MAX_RESPONSE_BYTES`] are read, and a longer answer is judged
//!   by what it is: a failure status by its status, a page that is not a
//!   token response like a short one (transient), and only what reads as a
//!   token response (a JSON object, a form naming `access_token` or
//!   `error`) as too large ([`ClientCredentialsError::BodyTooLarge`],
//!   permanent). No token is taken from a body cut at the cap.
//! - `expires_in` may be a number, a numeric string or a fraction.
//!   Fractions are rounded down to whole seconds (`1.5` is one second):
//!   providers stamp expiry in whole seconds. Missing or `null`, the token
//!   has no lifetime and the cache's
//!   [`default_lifetime`](crate::TokenCacheBuilder::default_lifetime) applies.
//!   **Zero, below one second, negative or non-numeric** values are treated
//!   the same way, as "unknown": a lifetime of (next to) nothing would make
//!   every request fetch a new token, and a provider that sends one means
//!   "no expiry stated" far more often than "already dead"; a token that
//!   dies sooner is dropped on its first 401. Values above
//!   [`crate::cache::MAX_LIFETIME`] (about a year) are clamped to it.
//! - `token_type` is compared without regard to case (`bearer` becomes
//!   `Bearer`); missing, it is `Bearer`.
//! - A missing or empty `access_token`, or an empty `token_type`, is an
//!   error that says which ([`ResponseProblem`]).
//!
//! # Errors
//!
//! [`ClientCredentialsError`] says what went wrong in words a user can act
//! on, with the provider's `error` and `error_description` when it sent them.
//! Transport failures, timeouts, `408`, `429` and `5xx` answers, and bodies
//! that are not a token response at all (empty, HTML, a captive portal's
//! page, however long) are transient (a `Retry-After` is kept); other `4xx`
//! answers, OAuth2 errors such as `invalid_client` (even when sent with
//! status `200`) and token responses the provider got wrong are permanent.
//!
//! The client secret and the token never appear in `Debug`, `Display` or
//! logs, even when the endpoint echoes them back. The source's own secrets
//! (the client secret, the Basic credentials, extra header values, extra
//! parameters named like secrets) become `[redacted]` in kept bodies and in
//! the provider's `error`, `error_description` and `error_uri`, in every
//! encoding a server could echo them in: raw, form-encoded, percent-encoded
//! as RFC 3986, `encodeURIComponent` or Python's `quote` do, in upper- or
//! lowercase hex, JSON-escaped or HTML-escaped. JSON values under keys
//! naming a token, secret, password, assertion or API key are hidden; text
//! that is not JSON is cut after words such as `token`, `secret`,
//! `password`, `pwd`, `assertion`, `credential` and `signature`;
//! kept bodies are cut to [`MAX_BODY_EXCERPT_BYTES`]; and provider text is
//! put on one line, whatever line breaks it uses. `Debug` shows extra
//! parameters by name only.
//!
//! # Avionté
//!
//! [`ClientCredentials::avionte`] gives the builder for Avionté's partner
//! authorization API. Calls to the BOLD API itself also carry the
//! `x-api-key` and `Tenant` headers; tower-http's `SetRequestHeader` puts
//! them on every request, beside [`BearerAuthLayer`](crate::BearerAuthLayer):
//!
//! ```
//! use http::{HeaderValue, header::HeaderName};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_bearer::{BearerAuthLayer, TokenCache};
//! use tower_bearer::source::client_credentials::ClientCredentials;
//! use tower_http::set_header::SetRequestHeaderLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let source = ClientCredentials::avionte("api-key", "client-id", "client-secret").build()?;
//! let mut api_key = HeaderValue::from_static("api-key");
//! api_key.set_sensitive(true);
//!
//! let mut bold = ServiceBuilder::new()
//!     .layer(SetRequestHeaderLayer::overriding(HeaderName::from_static("x-api-key"), api_key))
//!     .layer(SetRequestHeaderLayer::overriding(
//!         HeaderName::from_static("tenant"),
//!         HeaderValue::from_static("mytenant"),
//!     ))
//!     .layer(BearerAuthLayer::new(source))
//!     // Your HTTP client goes here: a hyper-util client, or reqwest through
//!     // `reqwest::Request::try_from` (see `examples/avionte.rs`).
//!     .service_fn(|req: http::Request<String>| async move {
//!         Ok::<_, tower::BoxError>(http::Response::new(format!("{:?}", req.headers().keys().collect::<Vec<_>>())))
//!     });
//! # let _ = &mut bold;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use reqwest::Url;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::cache::MAX_LIFETIME;
use crate::error::ErrorClass;
use crate::redact::{self, Secrets};
use crate::source::TokenSource;
use crate::token::Token;

/// Default for [`ClientCredentialsBuilder::timeout`]: 10 seconds, for the
/// whole exchange (connect, send, read the answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a response body that is read: 64 KiB. A token response is a
/// few hundred bytes; a longer body is refused, never buffered without bound.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The most of a body kept in an error for diagnosis: 512 bytes.
pub const MAX_BODY_EXCERPT_BYTES: usize = 512;

/// The token URL of Avionté's partner authorization API.
pub const AVIONTE_TOKEN_URL: &str = "https://api.avionte.com/authorize/token";

/// The scope Avionté's BOLD Front Office API (and its Partner Additions API)
/// asks for; [`ClientCredentials::avionte`] requests it.
pub const AVIONTE_FRONT_OFFICE_SCOPE: &str = "avionte.aero.compasintegrationservice";

/// Form parameters the source sets itself, which
/// [`param`](ClientCredentialsBuilder::param) may not overwrite.
pub const RESERVED_PARAMS: [&str; 4] = ["grant_type", "client_id", "client_secret", "scope"];

/// Headers the source sets itself, or that HTTP's framing and connection
/// handling own: [`header`](ClientCredentialsBuilder::header) may not name
/// them (`accept` it may: it replaces the default).
pub const RESERVED_HEADERS: [&str; 9] = [
    "authorization",
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
];

/// The longest provider-supplied text (`error`, `error_description`,
/// `error_uri`) kept in an error.
const MAX_PROVIDER_TEXT: usize = 512;

/// The client secret: its `Debug` prints `[redacted]`, and it has no
/// `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(Arc<str>);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<Arc<str>>) -> Self {
        Self(secret.into())
    }

    /// The secret itself. Keep it out of logs.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

impl<S: Into<Arc<str>>> From<S> for ClientSecret {
    fn from(secret: S) -> Self {
        Self::new(secret)
    }
}

/// How the client authenticates to the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`,
    /// RFC 6749 section 2.3.1; the form carries neither. The default, and
    /// what the RFC asks every server to support.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form (`client_secret_post`),
    /// as Avionté and some other providers require.
    RequestBody,
}

/// The entry point: [`ClientCredentials::builder`] and
/// [`ClientCredentials::avionte`]. Another name for
/// [`ClientCredentialsSource`].
pub type ClientCredentials = ClientCredentialsSource;

/// Builds a [`ClientCredentialsSource`]; from [`ClientCredentials::builder`].
#[derive(Clone)]
pub struct ClientCredentialsBuilder {
    token_url: String,
    client_id: String,
    client_secret: Option<ClientSecret>,
    scopes: Vec<String>,
    auth_style: AuthStyle,
    extra_params: Vec<(String, String)>,
    headers: Vec<(String, ClientSecret)>,
    timeout: Duration,
    http_client: Option<reqwest::Client>,
    allow_insecure_http: bool,
}

impl ClientCredentialsBuilder {
    /// The client secret. Without one the client authenticates by its id
    /// alone (a public client): `client_id` goes in the form.
    pub fn client_secret(mut self, secret: impl Into<ClientSecret>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// Adds a scope to request. Scopes are joined by spaces; with none, the
    /// `scope` parameter is left out.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Replaces the scopes to request.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// How the client authenticates. Defaults to [`AuthStyle::Basic`].
    pub fn auth_style(mut self, style: AuthStyle) -> Self {
        self.auth_style = style;
        self
    }

    /// Adds a form parameter, such as `audience` or `resource`. A parameter
    /// the source sets itself ([`RESERVED_PARAMS`]) makes
    /// [`build`](Self::build) fail rather than be overwritten silently.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_params.push((name.into(), value.into()));
        self
    }

    /// Adds a header to the token request, such as Avionté's `x-api-key`.
    /// Its value is treated as a secret: marked sensitive, never printed.
    ///
    /// One value per name: a name given again replaces the earlier value,
    /// and `accept` replaces the default `application/json`. A header the
    /// request's authentication or framing depends on ([`RESERVED_HEADERS`],
    /// such as `authorization` or `content-type`) makes
    /// [`build`](Self::build) fail, as does an invalid name or value.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<ClientSecret>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// How long the whole exchange with the token endpoint may take.
    ///
    /// Defaults to [`DEFAULT_TIMEOUT`] (10 seconds).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The HTTP client to use (for an explicit proxy, custom TLS roots,
    /// connection settings). It is used as it is: turn its redirects off, as
    /// the default client does (a redirect would carry the credentials
    /// elsewhere), and for a plain-http or loopback token URL build it with
    /// `no_proxy()` (a proxy would see the credentials in clear text).
    ///
    /// The default client follows no redirects. For an `https` token URL on
    /// a host that is not loopback, with the `rustls` feature, it goes
    /// through the proxy the environment names (`HTTPS_PROXY`, `ALL_PROXY`,
    /// `NO_PROXY`), in a TLS tunnel: the proxy sees the host name, never the
    /// request. Otherwise it uses no proxy at all.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Allows an `http` token URL on a host that is not loopback. Defaults
    /// to `false`: the credentials would cross the network in clear text.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Checks the settings and builds the source. Sends nothing.
    pub fn build(self) -> Result<ClientCredentialsSource, BuildError> {
        let token_url = Url::parse(&self.token_url).map_err(|e| BuildError::InvalidUrl {
            url: redact_url(&self.token_url),
            // The parser's reason never quotes the input.
            reason: e.to_string(),
        })?;
        check_scheme(&token_url, self.allow_insecure_http)?;
        if !token_url.username().is_empty() || token_url.password().is_some() {
            return Err(BuildError::CredentialsInUrl {
                url: redact_url(token_url.as_str()),
            });
        }
        if let Some((name, _)) = self
            .extra_params
            .iter()
            .find(|(name, _)| RESERVED_PARAMS.contains(&name.as_str()))
        {
            return Err(BuildError::ReservedParam { name: name.clone() });
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let mut secrets = Secrets::default();
        for (name, value) in &self.headers {
            let header_name = HeaderName::try_from(name.as_str())
                .map_err(|_| BuildError::InvalidHeaderName { name: name.clone() })?;
            if RESERVED_HEADERS.contains(&header_name.as_str()) {
                return Err(BuildError::ReservedHeader {
                    name: header_name.as_str().to_owned(),
                });
            }
            let mut header_value = HeaderValue::try_from(value.secret())
                .map_err(|_| BuildError::InvalidHeaderValue { name: name.clone() })?;
            header_value.set_sensitive(true);
            // One value per name: a later one, and `accept`, replace.
            if header_name != ACCEPT {
                secrets.add(value.secret());
            }
            headers.insert(header_name, header_value);
        }
        for (name, value) in &self.extra_params {
            if redact::secret_key(name) {
                secrets.add(value);
            }
        }
        let basic = self.client_secret.as_ref().map(|secret| {
            let pair = format!(
                "{}:{}",
                form_urlencode(&self.client_id),
                form_urlencode(secret.secret())
            );
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            secrets.add(secret.secret());
            // Whatever the style: the Basic form reveals the secret too,
            // with its padding or without.
            secrets.add(&encoded);
            secrets.add(encoded.trim_end_matches('='));
            encoded
        });
        let client_auth = match (&self.client_secret, basic, self.auth_style) {
            (Some(_), Some(encoded), AuthStyle::Basic) => {
                let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
                    .expect("base64 is a valid header value");
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
                Vec::new()
            }
            (Some(secret), _, AuthStyle::RequestBody) => vec![
                ("client_id", self.client_id.clone()),
                ("client_secret", secret.secret().to_owned()),
            ],
            _ => vec![("client_id", self.client_id.clone())],
        };
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        form.extend(client_auth.iter().map(|(k, v)| (*k, v.as_str())));
        let scope = self.scopes.join(" ");
        if !self.scopes.is_empty() {
            form.push(("scope", &scope));
        }
        form.extend(
            self.extra_params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let body = serde_urlencoded::to_string(&form).expect("pairs of strings always encode");
        let http_client = match self.http_client {
            Some(client) => client,
            None => {
                let mut client =
                    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
                // A proxy would see plain-http credentials and could answer
                // with a token of its own; on loopback it would also send
                // them off the machine.
                // Without TLS compiled in, reqwest would send even an https
                // request to a proxy in the clear.
                if token_url.scheme() == "http"
                    || is_loopback_host(host_of(&token_url))
                    || cfg!(not(feature = "rustls"))
                {
                    client = client.no_proxy();
                }
                client.build().map_err(|e| BuildError::HttpClient {
                    reason: e.to_string(),
                })?
            }
        };
        Ok(ClientCredentialsSource {
            inner: Arc::new(Inner {
                token_url,
                client_id: self.client_id,
                scopes: self.scopes,
                auth_style: self.auth_style,
                extra_params: self.extra_params,
                headers,
                body: ClientSecret::new(body),
                secrets,
                timeout: self.timeout,
                http_client,
            }),
        })
    }
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("token_url", &redact_url(&self.token_url))
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scopes", &self.scopes)
            .field("auth_style", &self.auth_style)
            // Names only: a value may be a secret such as a client_assertion.
            .field("extra_params", &param_names(&self.extra_params))
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish_non_exhaustive()
    }
}

/// Why a [`ClientCredentialsBuilder`] could not build its source.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The token URL does not parse.
    InvalidUrl {
        /// The URL, with any password left out.
        url: String,
        /// What is wrong with it, such as `invalid port number`.
        reason: String,
    },
    /// The token URL is `http` on a host that is not loopback, and
    /// [`allow_insecure_http`](ClientCredentialsBuilder::allow_insecure_http)
    /// is off.
    InsecureUrl {
        /// The URL's host.
        host: String,
    },
    /// The token URL holds a user name or password. The client's
    /// credentials go to the builder (its id, [`client_secret`](ClientCredentialsBuilder::client_secret)),
    /// never in the URL: they would authenticate twice, or be dropped, and
    /// could show wherever the URL is shown.
    CredentialsInUrl {
        /// The URL, without them.
        url: String,
    },
    /// The token URL's scheme is neither `https` nor `http`.
    UnsupportedScheme {
        /// The scheme.
        scheme: String,
    },
    /// An extra parameter would overwrite one the source sets itself.
    ReservedParam {
        /// The parameter's name.
        name: String,
    },
    /// An extra header names one of [`RESERVED_HEADERS`].
    ReservedHeader {
        /// The header's name, lowercase.
        name: String,
    },
    /// An extra header's name is not a valid HTTP header name.
    InvalidHeaderName {
        /// The name, as given.
        name: String,
    },
    /// An extra header's value is not a valid HTTP header value (it holds a
    /// line break or another control character). The value is not shown.
    InvalidHeaderValue {
        /// The header's name.
        name: String,
    },
    /// The default HTTP client could not be built.
    HttpClient {
        /// What the HTTP client said.
        reason: String,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::InvalidUrl { url, reason } => {
                write!(f, "the token URL {url:?} is not a valid URL: {reason}")
            }
            BuildError::InsecureUrl { host } => write!(
                f,
                "the token URL must use https (plain http to {host} would send the credentials in clear text; \
                 only loopback hosts are exempt unless insecure http is allowed explicitly)"
            ),
            BuildError::CredentialsInUrl { url } => write!(
                f,
                "the token URL {url:?} holds a user name or password; give the client id and \
                 secret to the builder instead"
            ),
            BuildError::UnsupportedScheme { scheme } => {
                write!(f, "the token URL must use https, not {scheme:?}")
            }
            BuildError::ReservedParam { name } => write!(
                f,
                "the extra parameter {name:?} would overwrite one the client-credentials grant sets itself"
            ),
            BuildError::ReservedHeader { name } => write!(
                f,
                "the extra header {name:?} is one the token request sets itself"
            ),
            BuildError::InvalidHeaderName { name } => {
                write!(
                    f,
                    "the extra header name {name:?} is not a valid HTTP header name"
                )
            }
            BuildError::InvalidHeaderValue { name } => write!(
                f,
                "the value of the extra header {name:?} is not a valid HTTP header value \
                 (it holds a line break or another control character)"
            ),
            BuildError::HttpClient { reason } => {
                write!(f, "the HTTP client could not be built: {reason}")
            }
        }
    }
}

impl std::error::Error for BuildError {}

/// A [`TokenSource`] that asks an OAuth2 token endpoint for tokens with the
/// client-credentials grant. Cheap to clone.
///
/// Build it with [`ClientCredentials::builder`] or
/// [`ClientCredentials::avionte`]. See the [module docs](self).
#[derive(Clone)]
pub struct ClientCredentialsSource {
    inner: Arc<Inner>,
}

struct Inner {
    token_url: Url,
    client_id: String,
    scopes: Vec<String>,
    auth_style: AuthStyle,
    extra_params: Vec<(String, String)>,
    // Content type, accept, extra headers, Basic credentials: all ready.
    headers: HeaderMap,
    // The encoded form; it may hold the client secret.
    body: ClientSecret,
    // Scrubbed from anything the endpoint sends back that an error keeps.
    secrets: Secrets,
    timeout: Duration,
    http_client: reqwest::Client,
}

impl ClientCredentialsSource {
    /// A builder for a source that asks `token_url` for tokens as
    /// `client_id`.
    pub fn builder(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
    ) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: None,
            scopes: Vec::new(),
            auth_style: AuthStyle::Basic,
            extra_params: Vec::new(),
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            http_client: None,
            allow_insecure_http: false,
        }
    }

    /// A builder for Avionté's partner authorization API
    /// ([`AVIONTE_TOKEN_URL`]): the API key in the `x-api-key` header, the
    /// client id and secret in the form, and the BOLD Front Office scope
    /// ([`AVIONTE_FRONT_OFFICE_SCOPE`]; replace it with
    /// [`scopes`](ClientCredentialsBuilder::scopes) if Avionté gave you
    /// another).
    ///
    /// ```
    /// use tower_bearer::source::client_credentials::ClientCredentials;
    ///
    /// let source = ClientCredentials::avionte("api-key", "client-id", "client-secret").build().unwrap();
    /// assert_eq!(source.token_url().as_str(), "https://api.avionte.com/authorize/token");
    /// assert_eq!(source.scopes(), ["avionte.aero.compasintegrationservice"]);
    /// ```
    pub fn avionte(
        api_key: impl Into<ClientSecret>,
        client_id: impl Into<String>,
        client_secret: impl Into<ClientSecret>,
    ) -> ClientCredentialsBuilder {
        Self::builder(AVIONTE_TOKEN_URL, client_id)
            .client_secret(client_secret)
            .auth_style(AuthStyle::RequestBody)
            .header("x-api-key", api_key)
            .scope(AVIONTE_FRONT_OFFICE_SCOPE)
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> &Url {
        &self.inner.token_url
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The scopes requested, in order.
    pub fn scopes(&self) -> &[String] {
        &self.inner.scopes
    }

    /// How the client authenticates.
    pub fn auth_style(&self) -> AuthStyle {
        self.inner.auth_style
    }

    /// The extra form parameters, in order.
    pub fn extra_params(&self) -> &[(String, String)] {
        &self.inner.extra_params
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Asks the token endpoint for a token, once.
    pub async fn fetch_token(&self) -> Result<Token, ClientCredentialsError> {
        let timeout = self.inner.timeout;
        match tokio::time::timeout(timeout, self.exchange()).await {
            Ok(result) => result,
            Err(_) => Err(ClientCredentialsError::Timeout { after: timeout }),
        }
    }

    async fn exchange(&self) -> Result<Token, ClientCredentialsError> {
        let inner = &*self.inner;
        let mut response = inner
            .http_client
            .post(inner.token_url.clone())
            .headers(inner.headers.clone())
            .body(inner.body.secret().to_owned())
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_default();
        let mut body = Vec::new();
        let mut cut = false;
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                // What was read says what the answer is: a long maintenance
                // page stays transient, whatever its status.
                body.extend_from_slice(&chunk[..MAX_RESPONSE_BYTES - body.len()]);
                cut = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let answer = Answer {
            status,
            content_type: &content_type,
            body: &body,
            cut,
            retry_after,
        };
        interpret(&answer, &inner.secrets)
    }
}

impl fmt::Debug for ClientCredentialsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("ClientCredentialsSource")
            .field("token_url", &redact_url(inner.token_url.as_str()))
            .field("client_id", &inner.client_id)
            .field("scopes", &inner.scopes)
            .field("auth_style", &inner.auth_style)
            .field("extra_params", &param_names(&inner.extra_params))
            .field(
                "extra_headers",
                &inner
                    .headers
                    .keys()
                    .filter(|k| ![CONTENT_TYPE, ACCEPT, AUTHORIZATION].contains(k))
                    .collect::<Vec<_>>(),
            )
            .field("timeout", &inner.timeout)
            .finish_non_exhaustive()
    }
}

impl TokenSource for ClientCredentialsSource {
    type Error = ClientCredentialsError;

    fn fetch(&self) -> impl Future<Output = Result<Token, ClientCredentialsError>> + Send {
        self.fetch_token()
    }

    fn classify(&self, error: &ClientCredentialsError) -> ErrorClass {
        error.class()
    }

    fn kind(&self) -> &'static str {
        "client_credentials"
    }
}

/// Why the token endpoint gave no token.
///
/// Its `Display` is one line a user can act on, such as
/// `the token endpoint refused the request: invalid_client: Invalid client secret (HTTP 400)`.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientCredentialsError {
    /// The token endpoint could not be reached, or the connection failed.
    Transport {
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// The exchange took longer than the timeout.
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// An OAuth2 error response (RFC 6749 section 5.2), whatever its status,
    /// `200` included.
    ErrorResponse {
        /// The HTTP status.
        status: StatusCode,
        /// The `error` code, such as `invalid_client`.
        error: String,
        /// The `error_description`, if any.
        error_description: Option<String>,
        /// The `error_uri`, if any.
        error_uri: Option<String>,
        /// The `Retry-After` delay, if the provider sent one.
        retry_after: Option<Duration>,
    },
    /// A status other than success, without an OAuth2 error in the body.
    HttpStatus {
        /// The HTTP status.
        status: StatusCode,
        /// The start of the body, token values removed.
        body: String,
        /// The `Retry-After` delay, if the provider sent one.
        retry_after: Option<Duration>,
    },
    /// A success status with a body that holds no usable token.
    InvalidResponse {
        /// The HTTP status.
        status: StatusCode,
        /// What is wrong with it.
        problem: ResponseProblem,
        /// The start of the body, token values removed.
        body: String,
    },
    /// A success answer that reads as a token response (a JSON object, or
    /// a form naming `access_token` or `error`) but is longer than
    /// [`MAX_RESPONSE_BYTES`]; reading stopped there. Permanent: the
    /// endpoint would send the same again. A longer answer of any other
    /// kind is judged like a short one: by its status, or as
    /// [`ResponseProblem::NotATokenResponse`].
    BodyTooLarge {
        /// The HTTP status.
        status: StatusCode,
        /// The limit.
        limit: usize,
    },
}

impl ClientCredentialsError {
    /// How the cache should retry: see the [module docs](self#errors).
    pub fn class(&self) -> ErrorClass {
        match self {
            ClientCredentialsError::Transport { .. } | ClientCredentialsError::Timeout { .. } => {
                ErrorClass::TRANSIENT
            }
            ClientCredentialsError::ErrorResponse {
                status,
                error,
                retry_after,
                ..
            } => {
                let transient_code = TRANSIENT_ERROR_CODES.contains(&error.as_str());
                if transient_status(*status) || transient_code {
                    ErrorClass::Transient {
                        retry_after: *retry_after,
                    }
                } else {
                    ErrorClass::Permanent
                }
            }
            ClientCredentialsError::HttpStatus {
                status,
                retry_after,
                ..
            } => {
                if transient_status(*status) {
                    ErrorClass::Transient {
                        retry_after: *retry_after,
                    }
                } else {
                    ErrorClass::Permanent
                }
            }
            ClientCredentialsError::InvalidResponse { problem, .. } => {
                if problem.is_transient() {
                    ErrorClass::TRANSIENT
                } else {
                    ErrorClass::Permanent
                }
            }
            ClientCredentialsError::BodyTooLarge { .. } => ErrorClass::Permanent,
        }
    }

    /// The HTTP status, when the endpoint answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientCredentialsError::ErrorResponse { status, .. }
            | ClientCredentialsError::HttpStatus { status, .. }
            | ClientCredentialsError::InvalidResponse { status, .. }
            | ClientCredentialsError::BodyTooLarge { status, .. } => Some(*status),
            ClientCredentialsError::Transport { .. } | ClientCredentialsError::Timeout { .. } => {
                None
            }
        }
    }

    /// The OAuth2 `error` code, such as `invalid_client`, when the provider
    /// sent one.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            ClientCredentialsError::ErrorResponse { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The `Retry-After` delay, when the provider sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientCredentialsError::ErrorResponse { retry_after, .. }
            | ClientCredentialsError::HttpStatus { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for ClientCredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCredentialsError::Transport { source } => {
                write!(f, "the token endpoint could not be reached: {source}")?;
                // reqwest's Display stops at its own layer; the cause says why.
                let mut cause = std::error::Error::source(source);
                while let Some(c) = cause {
                    write!(f, ": {c}")?;
                    cause = c.source();
                }
                Ok(())
            }
            ClientCredentialsError::Timeout { after } => {
                write!(f, "the token endpoint did not answer within {after:?}")
            }
            ClientCredentialsError::ErrorResponse {
                status,
                error,
                error_description,
                error_uri,
                ..
            } => {
                write!(f, "the token endpoint refused the request: {error}")?;
                if let Some(description) = error_description {
                    write!(f, ": {description}")?;
                }
                if let Some(uri) = error_uri {
                    write!(f, " (see {uri})")?;
                }
                write!(f, " (HTTP {})", status.as_u16())
            }
            ClientCredentialsError::HttpStatus { status, body, .. } => {
                write!(f, "the token endpoint answered HTTP {status}")?;
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            ClientCredentialsError::InvalidResponse {
                status,
                problem,
                body,
            } => {
                write!(
                    f,
                    "the token endpoint's answer (HTTP {}) is not usable: {problem}",
                    status.as_u16()
                )?;
                if !body.is_empty() {
                    write!(f, "; body: {body}")?;
                }
                Ok(())
            }
            ClientCredentialsError::BodyTooLarge { status, limit } => write!(
                f,
                "the token endpoint's answer (HTTP {}) is a token response longer than {limit} bytes; \
                 reading stopped there",
                status.as_u16()
            ),
        }
    }
}

impl std::error::Error for ClientCredentialsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Display already prints the transport error and its causes.
        None
    }
}

/// What is wrong with a success answer that holds no usable token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseProblem {
    /// The body is empty. Transient.
    EmptyBody,
    /// The body is neither JSON nor a form naming `access_token` or
    /// `error`: a proxy's, captive portal's or maintenance page, whatever
    /// its length. Transient.
    NotATokenResponse,
    /// The body is JSON, but an array, a string or a number rather than an
    /// object: not a token response either. Transient.
    NotAnObject,
    /// The object has no `access_token`. Permanent.
    MissingAccessToken,
    /// The `access_token` is an empty string. Permanent.
    EmptyAccessToken,
    /// The `access_token` is not a string, or a string that cannot be read
    /// (an invalid escape). Permanent.
    AccessTokenNotAString,
    /// The `token_type` is an empty string. Permanent.
    EmptyTokenType,
    /// The `token_type` is not a string, or a string that cannot be read.
    /// Permanent.
    TokenTypeNotAString,
}

impl ResponseProblem {
    /// Whether asking again later may succeed: true for answers that are
    /// not a token response at all (something in between answered), false
    /// for a token response the provider got wrong.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ResponseProblem::EmptyBody
                | ResponseProblem::NotATokenResponse
                | ResponseProblem::NotAnObject
        )
    }
}

impl fmt::Display for ResponseProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResponseProblem::EmptyBody => "the body is empty",
            ResponseProblem::NotATokenResponse => {
                "the body is neither JSON nor a form with an access_token or error"
            }
            ResponseProblem::NotAnObject => "the body is JSON, but not an object",
            ResponseProblem::MissingAccessToken => "there is no access_token",
            ResponseProblem::EmptyAccessToken => "the access_token is empty",
            ResponseProblem::AccessTokenNotAString => "the access_token is not a string",
            ResponseProblem::EmptyTokenType => "the token_type is empty",
            ResponseProblem::TokenTypeNotAString => "the token_type is not a string",
        })
    }
}

/// OAuth2 error codes that mean "later": authorization-endpoint codes some
/// providers also send from the token endpoint, and the device flow's
/// `slow_down`.
const TRANSIENT_ERROR_CODES: [&str; 3] = ["temporarily_unavailable", "server_error", "slow_down"];

/// The registered OAuth2 error codes a token endpoint may send (RFC 6749
/// sections 4.1.2.1 and 5.2, RFC 8628, RFC 8707, RFC 9449).
const REGISTERED_ERROR_CODES: [&str; 16] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    "authorization_pending",
    "slow_down",
    "expired_token",
    "invalid_target",
    "invalid_dpop_proof",
    "use_dpop_nonce",
];

/// The members of a token response that hold secrets of its own.
const ANSWER_SECRETS: [&str; 3] = ["access_token", "refresh_token", "id_token"];

fn transient_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

fn transport_error(error: reqwest::Error) -> ClientCredentialsError {
    ClientCredentialsError::Transport {
        // The URL is in the source's Debug already, and the chain says what failed.
        source: error.without_url(),
    }
}

fn host_of(url: &Url) -> &str {
    url.host_str().unwrap_or_default()
}

fn check_scheme(url: &Url, allow_insecure_http: bool) -> Result<(), BuildError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = host_of(url);
            if allow_insecure_http || is_loopback_host(host) {
                Ok(())
            } else {
                Err(BuildError::InsecureUrl {
                    host: host.to_owned(),
                })
            }
        }
        other => Err(BuildError::UnsupportedScheme {
            scheme: other.to_owned(),
        }),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    // RFC 6761: `localhost` and its subdomains resolve to loopback.
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// A URL fit for logs and error messages: without its user info, query or
/// fragment, which may hold credentials. Text that is not a URL is cut at
/// `?` or `#`, or hidden when it holds an `@`.
///
/// ```
/// use tower_bearer::source::client_credentials::redact_url;
///
/// assert_eq!(
///     redact_url("https://id:secret@idp.example.com/token?api_key=k#x"),
///     "https://idp.example.com/token"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("");
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        // Unparsable: user info could be anywhere before an `@`.
        Err(_) if url.contains('@') => "[not shown: it may hold credentials]".to_owned(),
        Err(_) => {
            let end = url.find(['?', '#']).unwrap_or(url.len());
            url[..end].chars().take(200).collect()
        }
    }
}

/// `application/x-www-form-urlencoded` byte serialization (WHATWG URL), as
/// RFC 6749 section 2.3.1 asks for the id and secret before Basic.
fn form_urlencode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for &byte in input.as_bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `Retry-After` as delay-seconds or an HTTP-date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// What the endpoint answered, as far as it was read.
struct Answer<'a> {
    status: StatusCode,
    content_type: &'a str,
    body: &'a [u8],
    // Reading stopped at MAX_RESPONSE_BYTES: `body` is the start of a longer one.
    cut: bool,
    retry_after: Option<Duration>,
}

/// Turns the endpoint's answer into a token or an error.
fn interpret(answer: &Answer<'_>, secrets: &Secrets) -> Result<Token, ClientCredentialsError> {
    let Answer {
        status,
        content_type,
        body,
        cut,
        retry_after,
    } = *answer;
    let fields = parse_fields(content_type, body, cut);
    // The answer's own tokens are hidden wherever else they show (under
    // another key, in an error's text), as they were sent.
    let mut all_secrets = secrets.clone();
    // One value each, the one read (a server could repeat a member
    // thousands of times).
    if let Ok(fields) = &fields {
        for name in ANSWER_SECRETS {
            match fields.get(name) {
                Some(Field::Unreadable(raw)) => {
                    let raw = String::from_utf8_lossy(raw);
                    all_secrets.add_verbatim(raw.trim().trim_matches('"'));
                }
                Some(field) => {
                    if let TextField::Text(value) = field.text() {
                        all_secrets.add_verbatim(value.trim());
                    }
                }
                None => {}
            }
        }
    }
    let secrets = &all_secrets;
    let excerpt = || body_excerpt(body, cut, secrets);
    let text = |name: &str| match &fields {
        Ok(fields) => fields.text(name),
        Err(_) => TextField::Absent,
    };
    let provider = |name: &str| match text(name) {
        TextField::Text(text) => Some(provider_text(&text, secrets)),
        TextField::Absent | TextField::NotText => None,
    };
    // A registered code is kept as sent: scrubbing a short secret out of
    // it must not turn `temporarily_unavailable` into a permanent error, nor
    // `invalid_client` into a code no caller knows.
    let error_code = match text("error") {
        TextField::Text(code) if REGISTERED_ERROR_CODES.contains(&code.trim()) => {
            Some(code.trim().to_owned())
        }
        _ => provider("error"),
    };
    let has_token =
        matches!(text("access_token"), TextField::Text(token) if !token.trim().is_empty());
    if let Some(error) = error_code.filter(|e| !e.is_empty())
        && (!status.is_success() || !has_token)
    {
        return Err(ClientCredentialsError::ErrorResponse {
            status,
            error,
            error_description: provider("error_description"),
            error_uri: provider("error_uri"),
            retry_after,
        });
    }
    if !status.is_success() {
        return Err(ClientCredentialsError::HttpStatus {
            status,
            body: excerpt(),
            retry_after,
        });
    }
    if cut {
        // Never a token from a body cut short: only say what it was.
        return Err(if fields.is_ok() {
            ClientCredentialsError::BodyTooLarge {
                status,
                limit: MAX_RESPONSE_BYTES,
            }
        } else {
            ClientCredentialsError::InvalidResponse {
                status,
                problem: ResponseProblem::NotATokenResponse,
                body: excerpt(),
            }
        });
    }
    let invalid = |problem| ClientCredentialsError::InvalidResponse {
        status,
        problem,
        body: excerpt(),
    };
    let fields = fields.map_err(invalid)?;
    let access_token = match fields.text("access_token") {
        TextField::Text(token) if token.trim().is_empty() => {
            return Err(invalid(ResponseProblem::EmptyAccessToken));
        }
        TextField::Text(token) => token.trim().to_owned(),
        TextField::Absent => return Err(invalid(ResponseProblem::MissingAccessToken)),
        TextField::NotText => return Err(invalid(ResponseProblem::AccessTokenNotAString)),
    };
    let token_type = match fields.text("token_type") {
        TextField::Absent => "Bearer".to_owned(),
        TextField::Text(kind) if kind.trim().is_empty() => {
            return Err(invalid(ResponseProblem::EmptyTokenType));
        }
        TextField::Text(kind) => kind.trim().to_owned(),
        TextField::NotText => return Err(invalid(ResponseProblem::TokenTypeNotAString)),
    };
    let token = Token::new(access_token, &token_type);
    Ok(match lifetime(fields.number("expires_in")) {
        Some(lifetime) => token.with_lifetime(lifetime),
        None => token,
    })
}

/// `body` without a byte order mark and leading whitespace.
fn trim_start(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    &body[start..]
}

/// The answer's fields, as sent.
struct Fields<'a>(Vec<(String, Field<'a>)>);

enum Field<'a> {
    /// A JSON member's value, unparsed: only the fields read are parsed.
    Json(&'a RawValue),
    /// A JSON member's value that is not valid JSON (`NaN`, a raw control
    /// character in a string), as sent.
    Unreadable(&'a [u8]),
    /// A form value.
    Form(String),
}

impl Field<'_> {
    fn text(&self) -> TextField {
        match self {
            Field::Form(value) => TextField::Text(value.clone()),
            Field::Unreadable(_) => TextField::NotText,
            Field::Json(raw) => match raw.get() {
                "null" => TextField::Absent,
                raw if raw.starts_with('"') => {
                    serde_json::from_str(raw).map_or(TextField::NotText, TextField::Text)
                }
                _ => TextField::NotText,
            },
        }
    }
}

/// A field read as text.
enum TextField {
    /// Missing or `null`.
    Absent,
    Text(String),
    /// Not a string, or a string that cannot be read.
    NotText,
}

impl Fields<'_> {
    /// The last field of that name, as JSON objects and forms repeat them.
    fn get(&self, name: &str) -> Option<&Field<'_>> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    fn text(&self, name: &str) -> TextField {
        self.get(name).map_or(TextField::Absent, Field::text)
    }

    /// A number, sent as one or as a numeric string. Out of `f64`'s range
    /// it is infinite, not an error.
    fn number(&self, name: &str) -> Option<f64> {
        let field = self.get(name)?;
        let text = match (field.text(), field) {
            (TextField::Text(text), _) => text,
            // A bare JSON value: checked below to be a number.
            (_, Field::Json(raw)) => raw.get().to_owned(),
            _ => return None,
        };
        let text = text.trim();
        // Digits, signs, a point and an exponent: Rust would also read
        // `inf` and `NaN`, which no provider means.
        let numeric = text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
        if text.is_empty() || !numeric {
            return None;
        }
        text.parse().ok()
    }
}

/// The body's fields: a JSON object, whatever the content type says, or a
/// form when the body is not JSON and the content type (or its absence)
/// allows one. `cut` says the body is the start of a longer one: the form
/// pair it ends in may be cut short, so it is left out.
fn parse_fields<'a>(
    content_type: &str,
    body: &'a [u8],
    cut: bool,
) -> Result<Fields<'a>, ResponseProblem> {
    let trimmed = trim_start(body);
    if trimmed.is_empty() {
        return Err(ResponseProblem::EmptyBody);
    }
    // Garbage reads as a form, or as the start of an object, too: either
    // counts only if it names a field of a token response.
    let names_a_token_field = |key: &str| key == "access_token" || key == "error";
    if trimmed.starts_with(b"{") {
        let object = JsonObject::read(trimmed);
        // An object cut at the cap is one still: its members were read.
        let an_object = object.complete || (cut && !object.keys_seen.is_empty());
        if an_object || object.keys_seen.iter().any(|k| names_a_token_field(k)) {
            return Ok(Fields(object.members));
        }
    } else if serde_json::from_slice::<IgnoredAny>(trimmed).is_ok() {
        return Err(ResponseProblem::NotAnObject);
    }
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let form_allowed = matches!(
        media_type,
        "application/x-www-form-urlencoded" | "text/plain" | ""
    );
    if form_allowed
        && let Ok(mut pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(trimmed)
        && pairs.iter().any(|(k, _)| names_a_token_field(k))
    {
        if cut {
            pairs.pop();
        }
        let fields = pairs
            .into_iter()
            .map(|(key, value)| (key, Field::Form(value)))
            .collect();
        return Ok(Fields(fields));
    }
    Err(ResponseProblem::NotATokenResponse)
}

/// The members of the JSON object a body starts with, read one at a time,
/// so that a quirk (a trailing comma, text after the object, a value that is
/// not valid JSON or runs on past its end, a number out of range) costs only
/// the member it is in, never the token beside it.
struct JsonObject<'a> {
    members: Vec<(String, Field<'a>)>,
    /// Every key read, its value readable or not.
    keys_seen: Vec<String>,
    /// Whether reading reached the object's closing brace.
    complete: bool,
}

impl<'a> JsonObject<'a> {
    /// Reads the object `body` starts with (`body[0]` is `{`).
    fn read(body: &'a [u8]) -> Self {
        let mut object = JsonObject {
            members: Vec::new(),
            keys_seen: Vec::new(),
            complete: false,
        };
        let skip_blanks = |at: &mut usize, also: u8| {
            while body
                .get(*at)
                .is_some_and(|b| b.is_ascii_whitespace() || *b == also)
            {
                *at += 1;
            }
        };
        // After the `{`.
        let mut at = 1;
        loop {
            skip_blanks(&mut at, b',');
            match body.get(at) {
                None => return object,
                Some(b'}') => {
                    object.complete = true;
                    return object;
                }
                Some(_) => {}
            }
            let mut keys = serde_json::Deserializer::from_slice(&body[at..]).into_iter::<String>();
            let key = match keys.next() {
                Some(Ok(key)) => {
                    at += keys.byte_offset();
                    key
                }
                // Not a key: read on from the next member.
                _ => match next_member(body, at) {
                    Some(next) => {
                        at = next;
                        continue;
                    }
                    None => return object,
                },
            };
            object.keys_seen.push(key.clone());
            skip_blanks(&mut at, b' ');
            if body.get(at) == Some(&b':') {
                at += 1;
            }
            skip_blanks(&mut at, b' ');
            let mut values =
                serde_json::Deserializer::from_slice(&body[at..]).into_iter::<&RawValue>();
            let value = match values.next() {
                Some(Ok(value)) => {
                    let end = at + values.byte_offset();
                    let mut after = end;
                    skip_blanks(&mut after, b' ');
                    // A value must end its member: `"say "hi""` or `3600 s`
                    // runs on, and is not what the provider meant.
                    if matches!(body.get(after), None | Some(b',' | b'}')) {
                        at = end;
                        Some(value)
                    } else {
                        None
                    }
                }
                _ => None,
            };
            match value {
                Some(value) => object.members.push((key, Field::Json(value))),
                None => match next_member(body, at) {
                    Some(next) => {
                        object
                            .members
                            .push((key, Field::Unreadable(&body[at..next])));
                        at = next;
                    }
                    // It runs to the end: a member cut short says nothing.
                    None => return object,
                },
            }
        }
    }
}

/// Where the member at `body[at]` ends: the next `,` or `}` outside strings,
/// arrays and objects. `None` when the body ends first.
fn next_member(body: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &byte) in body.iter().enumerate().skip(at) {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b'}' if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// `expires_in` as a lifetime: see the module docs for the choices.
fn lifetime(seconds: Option<f64>) -> Option<Duration> {
    // Whole seconds: `0.001` would otherwise mean a fetch per request.
    let seconds = seconds?.floor();
    if seconds.is_nan() || seconds < 1.0 {
        return None;
    }
    if seconds >= MAX_LIFETIME.as_secs_f64() {
        return Some(MAX_LIFETIME);
    }
    Some(Duration::from_secs(seconds as u64))
}

/// The names of the extra parameters, for `Debug`.
fn param_names(params: &[(String, String)]) -> Vec<&str> {
    params.iter().map(|(name, _)| name.as_str()).collect()
}

/// Provider text for an error message: scrubbed of the source's secrets,
/// bounded, on one line.
fn provider_text(text: &str, secrets: &Secrets) -> String {
    redact::one_line(&truncate(&secrets.scrub(text), MAX_PROVIDER_TEXT, false))
}

/// The start of a body for an error message: the source's secrets, token
/// values and other secret-looking values removed, bounded, on one line.
fn body_excerpt(body: &[u8], cut: bool, secrets: &Secrets) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            redact::redact_secret_keys(&mut value);
            secrets.scrub_json(&mut value);
            // Serializing escapes again; scrub that form too.
            secrets.scrub(&value.to_string())
        }
        // Not JSON: cut before anything that may be a secret value.
        Err(_) => redact::cut_at_secret_words(&secrets.scrub(&String::from_utf8_lossy(body))),
    };
    redact::one_line(&truncate(&text, MAX_BODY_EXCERPT_BYTES, cut))
}

/// At most `max` bytes of `text`; `cut` says the text is itself the start
/// of a longer body, whose full length is unknown.
fn truncate(text: &str, max: usize, cut: bool) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if cut {
        format!(
            "{}… (reading stopped at {MAX_RESPONSE_BYTES} bytes)",
            &text[..end]
        )
    } else if end < text.len() {
        format!("{}… ({} bytes in all)", &text[..end], text.len())
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Result<Token, ClientCredentialsError> {
        let answer = Answer {
            status: StatusCode::OK,
            content_type: "application/json",
            body: body.as_bytes(),
            cut: false,
            retry_after: None,
        };
        interpret(&answer, &Secrets::default())
    }

    fn excerpt(body: &[u8]) -> String {
        body_excerpt(body, false, &Secrets::default())
    }

    #[test]
    fn form_urlencode_follows_the_form_rules() {
        assert_eq!(form_urlencode("my client"), "my+client");
        assert_eq!(form_urlencode("p+ss w%rd:x/y"), "p%2Bss+w%25rd%3Ax%2Fy");
        assert_eq!(form_urlencode("a-b_c.d*é"), "a-b_c.d*%C3%A9");
    }

    #[test]
    fn expires_in_variants() {
        let life = |v: &str| {
            ok(&format!(r#"{{"access_token":"t","expires_in":{v}}}"#))
                .unwrap()
                .lifetime()
        };
        assert_eq!(life("3600"), Some(Duration::from_secs(3600)));
        assert_eq!(life("\"3600\""), Some(Duration::from_secs(3600)));
        // Rounded down to whole seconds; below one second is unknown.
        assert_eq!(life("3599.5"), Some(Duration::from_secs(3599)));
        assert_eq!(life("1.999"), Some(Duration::from_secs(1)));
        assert_eq!(life("0.999"), None);
        assert_eq!(life("0.0001"), None);
        assert_eq!(life("\"0.001\""), None);
        assert_eq!(life("\" 60 \""), Some(Duration::from_secs(60)));
        assert_eq!(life("null"), None);
        assert_eq!(life("0"), None);
        assert_eq!(life("-5"), None);
        assert_eq!(life("\"soon\""), None);
        assert_eq!(life("true"), None);
        assert_eq!(life("1e300"), Some(MAX_LIFETIME));
        assert_eq!(life("1e999"), Some(MAX_LIFETIME));
        assert_eq!(life("\"1e999\""), Some(MAX_LIFETIME));
        assert_eq!(life("\"inf\""), None);
        assert_eq!(life("\"NaN\""), None);
        assert_eq!(life("99999999999999999999"), Some(MAX_LIFETIME));
        assert_eq!(ok(r#"{"access_token":"t"}"#).unwrap().lifetime(), None);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(61));
        let d = parse_retry_after(&in_a_minute).unwrap();
        assert!(
            d > Duration::from_secs(55) && d <= Duration::from_secs(61),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("later"), None);
    }

    #[test]
    fn excerpts_never_keep_token_values() {
        let json = br#"{"access_token":"SECRET1","nested":{"refresh_token":"SECRET2"},"token_type":"bearer"}"#;
        let kept = excerpt(json);
        assert!(!kept.contains("SECRET"), "{kept}");
        assert!(kept.contains("bearer"), "{kept}");
        let broken = br#"{"access_token": "SECRET3", "expires_in": "#;
        let kept = excerpt(broken);
        assert!(!kept.contains("SECRET"), "{kept}");
        let form = b"x=1&access_token=SECRET4";
        assert!(!excerpt(form).contains("SECRET"));
    }

    #[test]
    fn excerpts_hide_values_under_secret_keys() {
        let json = br#"{"message":"bad","client_secret":"V1","Password":"V2","client_assertion":"V3","x":{"api_key":"V4","apiKey":"V5"}}"#;
        let kept = excerpt(json);
        assert!(!kept.contains('V'), "{kept}");
        assert!(kept.contains(r#""message":"bad""#), "{kept}");
        for (text, kept_part) in [
            ("rejected: client_secret=V1", "rejected: client_secret"),
            ("bad PASSWORD V2", "bad PASSWORD"),
            ("id=a&token V3", "id=a&token"),
        ] {
            assert_eq!(
                excerpt(text.as_bytes()),
                format!("{kept_part} [rest redacted]")
            );
        }
    }

    #[test]
    fn excerpts_and_provider_text_are_scrubbed_of_the_sources_secrets() {
        let mut secrets = Secrets::default();
        secrets.add("p+ss w\"rd");
        secrets.add("key-1");
        // Every encoding is `redact`'s; here, that excerpts and provider
        // text go through it.
        let json = br#"{"message":"got p+ss w\"rd and key-1"}"#;
        let kept = body_excerpt(json, false, &secrets);
        assert_eq!(kept, r#"{"message":"got [redacted] and [redacted]"}"#);
        assert_eq!(provider_text("bad key-1", &secrets), "bad [redacted]");
    }

    #[test]
    fn the_last_pair_of_a_cut_form_is_left_out() {
        let body = b"error=invalid_request&error_description=a+long+desc";
        let fields = parse_fields("", body, false).ok().unwrap();
        assert!(matches!(
            fields.text("error_description"),
            TextField::Text(_)
        ));
        let fields = parse_fields("", body, true).ok().unwrap();
        assert!(matches!(
            fields.text("error_description"),
            TextField::Absent
        ));
        assert!(matches!(fields.text("error"), TextField::Text(e) if e == "invalid_request"));
    }

    #[test]
    fn a_cut_body_says_reading_stopped() {
        let kept = body_excerpt(&[b'x'; 100], true, &Secrets::default());
        assert_eq!(
            kept,
            format!("{}… (reading stopped at 65536 bytes)", "x".repeat(100))
        );
    }

    #[test]
    fn excerpts_are_bounded_and_on_one_line() {
        let long = "é\n".repeat(10_000);
        let kept = excerpt(long.as_bytes());
        assert!(kept.len() < MAX_BODY_EXCERPT_BYTES + 64, "{}", kept.len());
        assert!(!kept.contains('\n'));
        assert!(kept.ends_with("(30000 bytes in all)"), "{kept}");
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "localhost",
            "LOCALHOST",
            "a.localhost",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1",
            "[::2]",
            "localhost.example.com",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn redacted_urls_lose_credentials() {
        let shown = redact_url("https://user:pw@example.com/token?key=abc#frag");
        assert_eq!(shown, "https://example.com/token");
        assert_eq!(redact_url("not a url?key=abc"), "not a url");
        assert!(!redact_url("https://user:pw word@exa mple").contains("pw"));
    }
}
