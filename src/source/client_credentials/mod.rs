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
//! authenticates one way (see [`client_auth`]):
//!
//! - with its secret, by HTTP Basic ([`AuthStyle::Basic`], the default; id
//!   and secret are form-urlencoded before base64, RFC 6749 section 2.3.1) or
//!   as `client_id` and `client_secret` in the form ([`AuthStyle::RequestBody`]);
//! - with a client assertion made for this request
//!   ([`private_key_jwt`](ClientCredentialsBuilder::private_key_jwt),
//!   [`client_secret_jwt`](ClientCredentialsBuilder::client_secret_jwt)):
//!   `client_id`, `client_assertion_type` and `client_assertion` in the form;
//! - with a client certificate on the connection
//!   ([`tls_client_auth`](ClientCredentialsBuilder::tls_client_auth)):
//!   `client_id` in the form;
//! - or not at all (a public client): `client_id` in the form, and whatever
//!   the extra parameters carry (a pre-made `client_assertion`, say).
//!
//! The token URL must be `https`, except on a loopback host (`127.0.0.0/8`,
//! `::1`, `localhost`); [`allow_insecure_http`](ClientCredentialsBuilder::allow_insecure_http)
//! lifts the rule. A user name or password in the URL is refused
//! ([`BuildError::CredentialsInUrl`]): the client authenticates one way only.
//!
//! With [`ClientCredentials::discover`], the token URL is the one the
//! issuer's metadata names, checked by the same rules; and when the default
//! client is made for an `https` issuer off loopback (so that it may go
//! through a proxy), a plain-http or loopback token endpoint is refused
//! ([`BuildError::ProxiedEndpoint`]).
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
//! - When `expires_in` is unknown and the access token is a JWT (three
//!   base64url segments, a JSON object in the middle), its `exp` claim gives
//!   the lifetime instead: the time left until then by this machine's clock.
//!   The claim is decoded for timing only; the signature is not checked and
//!   nothing else in the token is read. A JWT without `exp`, or one whose
//!   `exp` has passed, has no lifetime, as above.
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
//! status `200`, or beside an `access_token`) and token responses the
//! provider got wrong are permanent. A transport failure's `source()` is
//! reqwest's error, whose chain goes on to hyper's and the operating
//! system's.
//!
//! With [`tls_client_auth`](ClientCredentialsBuilder::tls_client_auth), a
//! token endpoint that refuses the client certificate during the TLS
//! handshake (a TLS alert such as `UnknownCA`, `BadCertificate`,
//! `CertificateExpired`, `CertificateRevoked`, `CertificateUnknown`,
//! `UnsupportedCertificate`, `AccessDenied` or `CertificateRequired`) fails
//! the fetch with [`ClientCredentialsError::ClientCertificateRefused`],
//! which names the alert and is permanent: the same certificate would be
//! refused again, so the cache does not keep asking. Any other TLS failure
//! (the endpoint's own certificate not trusted, a handshake the endpoint
//! gave up on for another reason), and any failure of a source that does not
//! authenticate with a certificate, stays a transient transport failure.
//!
//! The client secret and the token never appear in `Debug`, `Display` or
//! logs, even when the endpoint echoes them back. The source's own secrets
//! (the client secret, the Basic credentials, each request's client
//! assertion, extra header values, extra parameters named like secrets) become `[redacted]` in kept bodies and in
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

mod avionte;
mod builder;
mod endpoint;
mod error;
mod fields;
mod request;
mod response;
mod transport;

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::dpop::Dpop;
use crate::error::ErrorClass;
use crate::params::TokenParams;
use crate::redact::{self, Secrets};
use crate::source::client_auth::{
    self, Assertion, AssertionAudience, AuthMethod, ClientAuth, JWT_BEARER_ASSERTION_TYPE,
};
use crate::source::discovery::ProviderMetadata;
use crate::source::{KeyedTokenSource, TokenSource};
use crate::token::Token;
use endpoint::Endpoint;
use request::TokenRequest;

pub use avionte::{AVIONTE_FRONT_OFFICE_SCOPE, AVIONTE_TOKEN_URL};
pub use builder::ClientCredentialsBuilder;
pub use error::{BuildError, ClientCredentialsError, ResponseProblem};
pub(crate) use request::Grant;
pub use request::{AuthStyle, RESERVED_HEADERS, RESERVED_PARAMS};

/// Default for [`ClientCredentialsBuilder::timeout`]: 10 seconds, for the
/// whole exchange (sign an assertion, connect, send, read the answer); a
/// discovery before a first fetch has a timeout of the same length of its
/// own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a response body that is read: 64 KiB. A token response is a
/// few hundred bytes; a longer body is refused, never buffered without bound.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The most of a body kept in an error for diagnosis: 512 bytes.
pub const MAX_BODY_EXCERPT_BYTES: usize = 512;

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

/// A [`TokenSource`] that asks an OAuth2 token endpoint for tokens with the
/// client-credentials grant. Cheap to clone.
///
/// Build it with [`ClientCredentials::builder`] or
/// [`ClientCredentials::avionte`]. See the [module docs](self).
#[derive(Clone)]
pub struct ClientCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    client_id: Option<String>,
    scopes: Vec<String>,
    auth: ClientAuth,
    extra_params: Vec<(String, String)>,
    // Scrubbed from anything the endpoint sends back that an error keeps.
    secrets: Secrets,
    timeout: Duration,
    http_client: reqwest::Client,
    dpop: Option<Dpop>,
    // What it was built from, to build a key's source.
    settings: ClientCredentialsBuilder,
}

impl ClientCredentials {
    /// A builder for a source that asks `token_url` for tokens as
    /// `client_id`.
    pub fn builder(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
    ) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder::new(token_url.into(), Some(client_id.into()))
    }

    /// A builder for a source that finds its token endpoint from `issuer`'s
    /// metadata: OpenID Connect discovery
    /// (`{issuer}/.well-known/openid-configuration`), falling back to RFC
    /// 8414 (`/.well-known/oauth-authorization-server` before the issuer's
    /// path). See the [`discovery`](crate::source::discovery) module.
    ///
    /// Nothing is sent when the source is built. The first fetch discovers
    /// the endpoint, once for any number of concurrent fetches and for every
    /// key's source. A failed discovery is remembered: until its retry time
    /// every fetch, of any key, fails with its error without a request, and
    /// the first fetch after it tries again. The delay is 1 s after a first
    /// failure, doubling with each failure in a row up to 60 s
    /// ([`FIRST_RETRY_DELAY`](crate::source::discovery::FIRST_RETRY_DELAY),
    /// [`MAX_RETRY_DELAY`](crate::source::discovery::MAX_RETRY_DELAY)),
    /// whatever the token cache's backoff. The metadata's `issuer` must
    /// be `issuer` exactly; with [`tls_client_auth`](ClientCredentialsBuilder::tls_client_auth),
    /// its `mtls_endpoint_aliases.token_endpoint` is used when present; and
    /// when it lists `token_endpoint_auth_methods_supported` without the
    /// source's method, fetches fail with
    /// [`ClientCredentialsError::AuthMethodNotSupported`] (a public client,
    /// which may carry an assertion of its own in its parameters, is left
    /// to the token endpoint to judge).
    ///
    /// ```
    /// use tower_bearer::{BearerAuthLayer, ClientCredentials};
    ///
    /// # fn main() -> Result<(), tower_bearer::source::client_credentials::BuildError> {
    /// let source = ClientCredentials::discover("https://login.example.com/realms/prod", "my-client")
    ///     .client_secret("s3cret")
    ///     .build()?;
    /// assert_eq!(source.token_url(), None); // not until the first fetch
    /// let layer = BearerAuthLayer::new(source);
    /// # drop(layer);
    /// # Ok(()) }
    /// ```
    pub fn discover(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
    ) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder::discover(issuer.into(), Some(client_id.into()))
    }

    /// The token endpoint's URL: the one given, or the discovered one once
    /// the first fetch has found it (`None` before).
    pub fn token_url(&self) -> Option<&reqwest::Url> {
        self.inner.endpoint.token_url()
    }

    /// The issuer's metadata, once a fetch (this source's, or a key's of
    /// the same keyed cache) has discovered it.
    pub fn provider_metadata(&self) -> Option<Arc<ProviderMetadata>> {
        self.inner.endpoint.discovery()?.found()
    }

    /// The issuer the token endpoint is discovered from, if it is.
    pub fn issuer(&self) -> Option<&reqwest::Url> {
        self.inner.endpoint.issuer()
    }

    /// How the client authenticates, by the method's registered name.
    pub fn auth_method(&self) -> AuthMethod {
        self.inner.auth.method()
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        // Always given to this source's builders; only a token exchange's
        // public client (which wraps this source) may have none.
        self.inner.client_id.as_deref().unwrap_or_default()
    }

    /// The client id, if the client has one.
    pub(crate) fn client_id_if_any(&self) -> Option<&str> {
        self.inner.client_id.as_deref()
    }

    /// The scopes requested, in order.
    pub fn scopes(&self) -> &[String] {
        &self.inner.scopes
    }

    /// How the client sends its secret (`client_secret_basic` or
    /// `client_secret_post`); `None` when it authenticates otherwise.
    pub fn auth_style(&self) -> Option<AuthStyle> {
        match &self.inner.auth {
            ClientAuth::Secret { style, .. } => Some(*style),
            _ => None,
        }
    }

    /// The extra form parameters, in order.
    pub fn extra_params(&self) -> &[(String, String)] {
        &self.inner.extra_params
    }

    /// The DPoP key tokens are bound to, if they are
    /// ([`ClientCredentialsBuilder::dpop`]).
    pub fn dpop(&self) -> Option<&Dpop> {
        self.inner.dpop.as_ref()
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Asks the token endpoint for a token, once (discovering it first, if
    /// it has not been: the discovery has a timeout of its own, the same
    /// length, so that a silent issuer is named as such).
    pub async fn fetch_token(&self) -> Result<Token, ClientCredentialsError> {
        self.fetch_token_with(&[]).await
    }

    /// [`fetch_token`](Self::fetch_token), with `secret_params` added to
    /// this request's form: a grant's per-fetch parameters (RFC 8693's
    /// subject and actor tokens), each value a secret, scrubbed from
    /// whatever the endpoint sends back as the client assertion is.
    ///
    /// The one place a token request is put together and sent.
    pub(crate) async fn fetch_token_with(
        &self,
        secret_params: &[(&str, &str)],
    ) -> Result<Token, ClientCredentialsError> {
        let inner = &*self.inner;
        let (request, issuer) = inner.endpoint.request(&inner.auth, &inner.settings).await?;
        let exchange = async {
            // What this request adds to the one built once, and the secrets
            // that come with it.
            let mut secrets = Cow::Borrowed(&inner.secrets);
            for (_, value) in secret_params {
                secrets.to_mut().add(value);
            }
            let Some(dpop) = &inner.dpop else {
                let (result, _) = inner
                    .send(request, issuer, secret_params, &mut secrets, None)
                    .await?;
                return result;
            };
            // With DPoP, a second attempt when the endpoint asks for a
            // nonce (RFC 9449 section 8); each with its own assertion and
            // proof, since a server may remember their `jti`s.
            let mut nonce_retried = false;
            loop {
                let (result, nonce_challenge_met) = inner
                    .send(request, issuer, secret_params, &mut secrets, Some(dpop))
                    .await?;
                match result {
                    Err(_) if nonce_challenge_met && nonce_retried => {
                        return Err(ClientCredentialsError::DpopNonceChanged);
                    }
                    Err(_) if nonce_challenge_met => {
                        nonce_retried = true;
                        dpop.count_nonce_retry();
                    }
                    Ok(token) if token.token_type() == "DPoP" => {
                        return Ok(token.with_dpop(dpop.clone()));
                    }
                    Ok(token) => {
                        return Err(ClientCredentialsError::DpopNotBound {
                            token_type: redact::at_most(token.token_type(), 64),
                        });
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        match tokio::time::timeout(inner.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ClientCredentialsError::Timeout {
                after: inner.timeout,
            }),
        }
    }
}

impl Inner {
    /// Sends `request` once, with `secret_params`, a client assertion when
    /// the client makes them and a proof of possession of `dpop`'s key when
    /// given; `secrets` gains what this attempt adds. The endpoint's answer
    /// as read, and whether it was a `use_dpop_nonce` challenge that gave a
    /// nonce the next attempt can carry.
    async fn send(
        &self,
        request: &TokenRequest,
        issuer: Option<&str>,
        secret_params: &[(&str, &str)],
        secrets: &mut Cow<'_, Secrets>,
        dpop: Option<&Dpop>,
    ) -> Result<(Result<Token, ClientCredentialsError>, bool), ClientCredentialsError> {
        let mut form = secret_params.to_vec();
        let jwt;
        if let ClientAuth::Assertion(assertion) = &self.auth {
            jwt = self
                .client_assertion(assertion, request.url(), issuer)
                .await?;
            secrets.to_mut().add(&jwt);
            form.push(("client_assertion_type", JWT_BEARER_ASSERTION_TYPE));
            form.push(("client_assertion", &jwt));
        }
        let mut http_request = request.to_http_with(&form);
        let nonce = match dpop {
            Some(dpop) => Some(
                dpop.attach(&mut http_request, None)
                    .map_err(|source| ClientCredentialsError::Proof { source })?,
            ),
            None => None,
        };
        let answer = transport::send(&self.http_client, http_request)
            .await
            .map_err(|error| certificate_refusal(&self.auth, error))?;
        let result = response::interpret(&answer, secrets);
        let challenged =
            matches!(&result, Err(error) if error.oauth_error() == Some("use_dpop_nonce"));
        let challenge_met = nonce.is_some_and(|nonce| nonce.take_from(&answer.headers, challenged));
        Ok((result, challenged && challenge_met))
    }

    /// A client assertion made for one request to `token_url`.
    async fn client_assertion(
        &self,
        assertion: &Assertion,
        token_url: &reqwest::Url,
        issuer: Option<&str>,
    ) -> Result<String, ClientCredentialsError> {
        let audience = match &assertion.audience {
            AssertionAudience::TokenEndpoint => token_url.as_str(),
            // As the provider names itself: `aud` is compared as a string
            // (RFC 7519 section 4.1.3).
            AssertionAudience::Issuer => issuer.unwrap_or(""),
            AssertionAudience::Other(audience) => audience,
        };
        // The builder refused an assertion without a client id to name.
        let client_id = self.client_id.as_deref().unwrap_or_default();
        client_auth::make_assertion(&*assertion.signer, client_id, audience)
            .await
            .map_err(|source| ClientCredentialsError::Assertion { source })
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let mut debug = f.debug_struct("ClientCredentials");
        if let Some(issuer) = self.issuer() {
            debug.field("issuer", &redact::redact_url(issuer.as_str()));
        }
        debug.field(
            "token_url",
            &self.token_url().map(|url| redact::redact_url(url.as_str())),
        );
        if let Some(client_id) = &inner.client_id {
            debug.field("client_id", client_id);
        }
        debug
            .field("scopes", &inner.scopes)
            .field("auth", &inner.auth)
            .field("extra_params", &param_names(&inner.extra_params))
            .field(
                "extra_headers",
                &inner.endpoint.template().extra_header_names(),
            )
            .field("timeout", &inner.timeout)
            .finish_non_exhaustive()
    }
}

/// A key's source asks for the key's scopes, audiences, resources and
/// parameters, each replacing the same part of this source's settings (its
/// scopes, every `audience`, every `resource`, the parameters of the same
/// names); it shares this source's HTTP client, credentials and headers.
/// Parameters whose names say they carry a credential (`client_assertion`,
/// `*_secret`, `*_token`, `password`) are refused, as are the reserved ones
/// ([`RESERVED_PARAMS`]).
impl KeyedTokenSource for ClientCredentials {
    type Keyed = ClientCredentials;

    fn for_params(
        &self,
        params: &TokenParams,
    ) -> Result<ClientCredentials, ClientCredentialsError> {
        self.inner
            .settings
            .for_params(params)
            .and_then(ClientCredentialsBuilder::build)
            .map_err(|source| ClientCredentialsError::InvalidParams { source })
    }
}

impl TokenSource for ClientCredentials {
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

    fn binds_tokens(&self) -> bool {
        self.inner.dpop.is_some()
    }
}

/// A transport failure of a source that authenticates with a client
/// certificate, when the endpoint refused that certificate with a TLS alert:
/// [`ClientCredentialsError::ClientCertificateRefused`], permanent. Any other
/// failure, and any failure of another source (whose certificate, if its
/// HTTP client presents one, is not its credential), is kept as it is.
#[cfg(feature = "rustls")]
fn certificate_refusal(auth: &ClientAuth, error: ClientCredentialsError) -> ClientCredentialsError {
    match error {
        ClientCredentialsError::Transport { source } if matches!(auth, ClientAuth::Tls) => {
            match transport::refused_client_certificate(&source) {
                Some(alert) => ClientCredentialsError::ClientCertificateRefused { alert, source },
                None => ClientCredentialsError::Transport { source },
            }
        }
        error => error,
    }
}

/// Without TLS there is no client certificate to refuse.
#[cfg(not(feature = "rustls"))]
fn certificate_refusal(_: &ClientAuth, error: ClientCredentialsError) -> ClientCredentialsError {
    error
}

/// The names of the extra parameters, for `Debug`: a value may be a secret
/// such as a `client_assertion`.
fn param_names(params: &[(String, String)]) -> Vec<&str> {
    params.iter().map(|(name, _)| name.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_methods_a_provider_lists_are_bounded_in_the_error() {
        let mut listed: Vec<String> = (0..20).map(|n| format!("method_{n}")).collect();
        listed[0] = format!("evil\nline{}", "x".repeat(100));
        let error = ClientCredentialsError::auth_method_not_supported(
            AuthMethod::ClientSecretBasic,
            &listed,
        );
        let text = error.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.ends_with("and 8 more"), "{text}");
        assert!(text.contains('…'), "{text}");
        let ClientCredentialsError::AuthMethodNotSupported { supported, .. } = &error else {
            unreachable!()
        };
        assert_eq!(supported.len(), 12);
        assert!(supported.iter().all(|s| s.chars().count() <= 65));
        let empty = ClientCredentialsError::auth_method_not_supported(AuthMethod::None, &[]);
        assert!(
            empty.to_string().ends_with("lists an empty list"),
            "{empty}"
        );
    }
}
