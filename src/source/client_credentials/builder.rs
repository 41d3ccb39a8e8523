//! The builder: the settings of a [`ClientCredentials`] source, checked
//! once by [`build`](ClientCredentialsBuilder::build).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::request::{self, CLIENT_CREDENTIALS, Grant, Settings, TokenRequest};
use super::{
    AuthStyle, BuildError, ClientCredentials, ClientSecret, DEFAULT_TIMEOUT, Endpoint, Inner,
    transport,
};
#[cfg(doc)]
use super::{RESERVED_HEADERS, RESERVED_PARAMS};
use crate::dpop::Dpop;
use crate::params::TokenParams;
use crate::redact;
#[cfg(feature = "rustls")]
use crate::source::client_auth::ClientIdentity;
use crate::source::client_auth::{
    Assertion, AssertionAudience, AssertionSigner, AuthMethod, ClientAuth, SigningAlgorithm,
    secret_signer,
};
use crate::source::discovery::Discovery;
use crate::source::token_exchange::{SecurityToken, TokenExchangeBuilder};

/// Builds a [`ClientCredentials`]; from [`ClientCredentials::builder`].
#[derive(Clone)]
pub struct ClientCredentialsBuilder {
    // The token URL, or the issuer to discover it from.
    token_url: String,
    discover: bool,
    // Always given for the client-credentials grant; a token exchange's
    // public client may have none.
    client_id: Option<String>,
    grant: Grant,
    client_secret: Option<ClientSecret>,
    scopes: Vec<String>,
    auth_style: AuthStyle,
    extra_params: Vec<(String, String)>,
    headers: Vec<(String, ClientSecret)>,
    timeout: Duration,
    http_client: Option<reqwest::Client>,
    allow_insecure_http: bool,
    private_key_jwt: Option<Arc<dyn AssertionSigner>>,
    client_secret_jwt: bool,
    assertion_audience: AssertionAudience,
    #[cfg(feature = "rustls")]
    identity: Option<ClientIdentity>,
    #[cfg(feature = "rustls")]
    root_certificates: Vec<reqwest::Certificate>,
    // Shared by every key's source once built: one discovery for them all.
    discovery: Option<Arc<Discovery>>,
    // Whether the client is the default one, built to go through the
    // environment's proxy (for an https issuer off loopback).
    proxied_default_client: bool,
    dpop: Option<Dpop>,
}

impl ClientCredentialsBuilder {
    pub(crate) fn new(token_url: String, client_id: Option<String>) -> Self {
        ClientCredentialsBuilder {
            token_url,
            discover: false,
            client_id,
            grant: CLIENT_CREDENTIALS.clone(),
            client_secret: None,
            scopes: Vec::new(),
            auth_style: AuthStyle::Basic,
            extra_params: Vec::new(),
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            http_client: None,
            allow_insecure_http: false,
            private_key_jwt: None,
            client_secret_jwt: false,
            assertion_audience: AssertionAudience::TokenEndpoint,
            #[cfg(feature = "rustls")]
            identity: None,
            #[cfg(feature = "rustls")]
            root_certificates: Vec::new(),
            discovery: None,
            proxied_default_client: false,
            dpop: None,
        }
    }

    pub(crate) fn discover(issuer: String, client_id: Option<String>) -> Self {
        ClientCredentialsBuilder {
            discover: true,
            ..ClientCredentialsBuilder::new(issuer, client_id)
        }
    }

    /// Asks with `grant` instead of `client_credentials`: how a source of
    /// another grant (token exchange) reuses everything else here.
    pub(crate) fn grant(mut self, grant: Grant) -> Self {
        self.grant = grant;
        self
    }

    /// The client id, given or replaced.
    pub(crate) fn client_id(mut self, client_id: String) -> Self {
        self.client_id = Some(client_id);
        self
    }

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

    /// How the client sends its secret. Defaults to [`AuthStyle::Basic`].
    pub fn auth_style(mut self, style: AuthStyle) -> Self {
        self.auth_style = style;
        self
    }

    /// Authenticates with `private_key_jwt` (RFC 7523 section 2.2, OpenID
    /// Connect Core section 9): every token request carries a new client
    /// assertion signed by `signer`, a [`PrivateKey`](crate::source::client_auth::PrivateKey),
    /// a [`PrivateKeyFile`](crate::source::client_auth::PrivateKeyFile)
    /// (read again on every fetch) or a KMS behind
    /// [`AssertionSigner`]. The assertion's `iss` and `sub` are the client
    /// id, its `aud` the token endpoint's URL
    /// ([`assertion_audience`](Self::assertion_audience)), its `jti` random,
    /// its `exp` [`ASSERTION_LIFETIME`](crate::source::client_auth::ASSERTION_LIFETIME)
    /// after its `iat`. The form carries `client_id`, `client_assertion_type`
    /// and `client_assertion`. A client secret or certificate besides makes
    /// [`build`](Self::build) fail: one method at a time.
    pub fn private_key_jwt(mut self, signer: impl AssertionSigner) -> Self {
        self.private_key_jwt = Some(Arc::new(signer));
        self
    }

    /// Authenticates with `client_secret_jwt`: an assertion like
    /// [`private_key_jwt`](Self::private_key_jwt)'s, signed HS256 with the
    /// [`client_secret`](Self::client_secret), which never leaves the
    /// process.
    pub fn client_secret_jwt(mut self) -> Self {
        self.client_secret_jwt = true;
        self
    }

    /// The `aud` of client assertions. Defaults to
    /// [`AssertionAudience::TokenEndpoint`], the URL the request goes to.
    pub fn assertion_audience(mut self, audience: AssertionAudience) -> Self {
        self.assertion_audience = audience;
        self
    }

    /// Authenticates with `tls_client_auth` (RFC 8705 section 2.1): the
    /// default HTTP client presents `identity`'s certificate, and the form
    /// names the client id. Offer the same identity on API requests
    /// ([`ClientIdentity::reqwest_identity`]) so that certificate-bound
    /// tokens are accepted. With [`http_client`](Self::http_client), that
    /// client must carry the identity itself.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_client_auth(mut self, identity: ClientIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Trusts `certificate` as a root, besides the platform's, in the
    /// default HTTP client: a private CA's token endpoint (and issuer).
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn add_root_certificate(mut self, certificate: reqwest::Certificate) -> Self {
        self.root_certificates.push(certificate);
        self
    }

    /// Adds a form parameter, such as `audience` or `resource`. A parameter
    /// the source sets itself ([`RESERVED_PARAMS`]) makes
    /// [`build`](Self::build) fail rather than be overwritten silently.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_params.push((name.into(), value.into()));
        self
    }

    /// Adds an RFC 8707 `resource` (an absolute URI) to the default token's
    /// request; repeatable. Per request, name resources with
    /// [`TokenParams`](crate::TokenParams).
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    /// Adds an `audience` (Auth0, Okta) to the default token's request;
    /// repeatable. Per request, name audiences with
    /// [`TokenParams`](crate::TokenParams).
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.param("audience", audience)
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

    /// Asks for tokens bound to `dpop`'s key (DPoP, RFC 9449): each token
    /// request carries a proof of possession of the key, and the tokens
    /// come back bound to it, which the layer then proves on every request
    /// (see [`crate::dpop`]). Share the same [`Dpop`] with nothing else
    /// but what proves for these tokens: it keeps the servers' nonces.
    ///
    /// A token endpoint's `use_dpop_nonce` answer is retried once, with its
    /// nonce. A token that comes back with another `token_type` than
    /// `DPoP` is refused ([`ClientCredentialsError::DpopNotBound`](super::ClientCredentialsError::DpopNotBound)): the
    /// provider did not bind it, and sending it as a bearer token is not
    /// what was asked for.
    ///
    /// Defaults to none: bearer tokens.
    ///
    /// ```
    /// use tower_bearer::{BearerAuthLayer, ClientCredentials, dpop::Dpop};
    ///
    /// # fn main() -> Result<(), tower::BoxError> {
    /// let source = ClientCredentials::builder("https://login.example.com/oauth2/token", "my-client")
    ///     .client_secret("s3cret")
    ///     .dpop(Dpop::generate()?)
    ///     .build()?;
    /// let layer = BearerAuthLayer::new(source);
    /// # drop(layer);
    /// # Ok(()) }
    /// ```
    pub fn dpop(mut self, dpop: Dpop) -> Self {
        self.dpop = Some(dpop);
        self
    }

    /// How long the whole exchange with the token endpoint may take
    /// (signing an assertion included). A discovery, before a discovering
    /// source's first fetch, may take as long again.
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

    /// These settings (the endpoint, the client and how it authenticates,
    /// scopes, parameters, headers, the HTTP client) for a source that
    /// exchanges `subject` for a token (RFC 8693 token exchange) instead
    /// of asking with the client-credentials grant.
    ///
    /// ```
    /// use tower_bearer::ClientCredentials;
    /// use tower_bearer::source::token_exchange::SecurityToken;
    ///
    /// # fn main() -> Result<(), tower_bearer::source::client_credentials::BuildError> {
    /// let source = ClientCredentials::builder("https://sts.example.com/token", "ci-runner")
    ///     .client_secret("s3cret")
    ///     .token_exchange(SecurityToken::file("/run/ci/oidc-token"))
    ///     .build()?;
    /// assert_eq!(source.client_id(), Some("ci-runner"));
    /// # Ok(()) }
    /// ```
    pub fn token_exchange(self, subject: SecurityToken) -> TokenExchangeBuilder {
        TokenExchangeBuilder::new(self, subject)
    }

    /// These settings with a key's parameters: each part the key has
    /// replaces the same part here (its scopes replace the scopes, its
    /// audiences every `audience`, its resources every `resource`, its
    /// parameters those of the same names).
    pub(super) fn for_params(&self, params: &TokenParams) -> Result<Self, BuildError> {
        let mut keyed = self.clone();
        if !params.scopes().is_empty() {
            keyed.scopes = params.scopes().to_vec();
        }
        let mut replace = |name: &str, values: Vec<&str>| {
            if values.is_empty() {
                return;
            }
            keyed.extra_params.retain(|(n, _)| n != name);
            keyed
                .extra_params
                .extend(values.into_iter().map(|v| (name.to_owned(), v.to_owned())));
        };
        replace(
            "audience",
            params.audiences().iter().map(String::as_str).collect(),
        );
        replace(
            "resource",
            params.resources().iter().map(String::as_str).collect(),
        );
        let mut names: Vec<&str> = params.params().iter().map(|(n, _)| n.as_str()).collect();
        names.dedup();
        for name in names {
            if crate::params::names_credential(name) || name == "client_assertion_type" {
                return Err(BuildError::CredentialParam {
                    name: name.to_owned(),
                });
            }
            let values = params
                .params()
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            replace(name, values);
        }
        Ok(keyed)
    }

    /// The client authentication the settings name: an error for two at
    /// once, or for one that lacks what it needs.
    fn client_auth(&self) -> Result<ClientAuth, BuildError> {
        let secret_method = match self.auth_style {
            AuthStyle::Basic => AuthMethod::ClientSecretBasic,
            AuthStyle::RequestBody => AuthMethod::ClientSecretPost,
        };
        let mut named = Vec::new();
        if self.private_key_jwt.is_some() {
            named.push(AuthMethod::PrivateKeyJwt);
        }
        if self.client_secret_jwt {
            named.push(AuthMethod::ClientSecretJwt);
        }
        #[cfg(feature = "rustls")]
        if self.identity.is_some() {
            named.push(AuthMethod::TlsClientAuth);
        }
        // A secret beside a method that does not use it would be sent
        // nowhere, or sent besides: either is a mistake worth a word.
        if self.client_secret.is_some() && !self.client_secret_jwt {
            named.push(secret_method);
        }
        if let [first, second, ..] = named[..] {
            return Err(BuildError::ConflictingClientAuth { first, second });
        }
        // HS256 is client_secret_jwt's, with the client secret: a signer
        // of its own with a shared key is a secret the provider cannot
        // tell from the client secret's.
        if let Some(signer) = &self.private_key_jwt
            && signer.algorithm() == SigningAlgorithm::HS256
        {
            return Err(BuildError::SymmetricPrivateKeyJwt);
        }
        if self.assertion_audience == AssertionAudience::Issuer && !self.discover {
            return Err(BuildError::NoIssuer);
        }
        // Every method but none names the client: Basic credentials, an
        // assertion's `iss` and `sub`, RFC 8705's `client_id`.
        if let (Some(&method), None) = (named.first(), &self.client_id) {
            return Err(BuildError::MissingClientId { method });
        }
        let assertion = |signer, method, secret| {
            ClientAuth::Assertion(Assertion {
                signer,
                audience: self.assertion_audience.clone(),
                method,
                secret,
            })
        };
        Ok(match named.first() {
            Some(AuthMethod::PrivateKeyJwt) => assertion(
                self.private_key_jwt.clone().expect("named above"),
                AuthMethod::PrivateKeyJwt,
                None,
            ),
            Some(AuthMethod::ClientSecretJwt) => {
                let secret = self
                    .client_secret
                    .clone()
                    .ok_or(BuildError::MissingClientSecret {
                        method: AuthMethod::ClientSecretJwt,
                    })?;
                assertion(
                    secret_signer(&secret),
                    AuthMethod::ClientSecretJwt,
                    Some(secret),
                )
            }
            #[cfg(feature = "rustls")]
            Some(AuthMethod::TlsClientAuth) => ClientAuth::Tls,
            Some(_) => ClientAuth::Secret {
                secret: self.client_secret.clone().expect("named above"),
                style: self.auth_style,
            },
            None => ClientAuth::Public,
        })
    }

    /// Checks the settings and builds the source. Sends nothing: a source
    /// built with [`ClientCredentials::discover`] discovers its token
    /// endpoint on its first fetch.
    pub fn build(self) -> Result<ClientCredentials, BuildError> {
        let auth = self.client_auth()?;
        let url = if self.discover {
            request::issuer_url(&self.token_url, self.allow_insecure_http)?
        } else {
            request::token_url(&self.token_url, self.allow_insecure_http)?
        };
        let settings = Settings {
            grant: &self.grant,
            client_id: self.client_id.as_deref(),
            auth: &auth,
            scopes: &self.scopes,
            extra_params: &self.extra_params,
            headers: &self.headers,
        };
        // With discovery, a request to the issuer: checked now, sent to the
        // token endpoint once it is known.
        let (request, secrets) = TokenRequest::new(url.clone(), &settings)?;
        let proxied_default_client = self.proxied_default_client
            || (self.http_client.is_none() && transport::may_proxy(&url));
        let http_client = match &self.http_client {
            Some(client) => client.clone(),
            None => transport::default_client(&url, |client| self.add_tls(client))?,
        };
        let endpoint = if self.discover {
            let discovery = self.discovery.clone().unwrap_or_else(|| {
                Arc::new(Discovery::new(
                    url.clone(),
                    http_client.clone(),
                    self.timeout,
                ))
            });
            Endpoint::discovered(url, discovery, request)
        } else {
            Endpoint::Fixed(request)
        };
        // Every key's source shares this one's client, its connections and
        // its discovery.
        let settings = ClientCredentialsBuilder {
            http_client: Some(http_client.clone()),
            discovery: endpoint.discovery().cloned(),
            proxied_default_client,
            ..self
        };
        Ok(ClientCredentials {
            inner: Arc::new(Inner {
                endpoint,
                client_id: settings.client_id.clone(),
                scopes: settings.scopes.clone(),
                auth,
                extra_params: settings.extra_params.clone(),
                secrets,
                timeout: settings.timeout,
                http_client,
                dpop: settings.dpop.clone(),
                settings,
            }),
        })
    }

    /// The client certificate and extra roots, on the default client.
    #[cfg(feature = "rustls")]
    fn add_tls(&self, mut client: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if let Some(identity) = &self.identity {
            client = client.identity(identity.reqwest_identity());
        }
        client.tls_certs_merge(self.root_certificates.iter().cloned())
    }

    #[cfg(not(feature = "rustls"))]
    fn add_tls(&self, client: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        client
    }

    /// Whether the source authenticates with a client certificate.
    pub(super) fn uses_tls_client_auth(&self) -> bool {
        #[cfg(feature = "rustls")]
        return self.identity.is_some();
        #[cfg(not(feature = "rustls"))]
        false
    }

    /// Whether the default client, which may go through a proxy, is used.
    pub(super) fn proxied_default_client(&self) -> bool {
        self.proxied_default_client
    }

    /// Whether `http` is allowed off loopback.
    pub(super) fn allows_insecure_http(&self) -> bool {
        self.allow_insecure_http
    }
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ClientCredentialsBuilder");
        debug.field(
            if self.discover { "issuer" } else { "token_url" },
            &redact::redact_url(&self.token_url),
        );
        if self.grant.grant_type != CLIENT_CREDENTIALS.grant_type {
            debug.field("grant_type", &self.grant.grant_type);
        }
        if let Some(client_id) = &self.client_id {
            debug.field("client_id", client_id);
        }
        debug
            .field("client_secret", &self.client_secret)
            .field("scopes", &self.scopes)
            .field("auth_style", &self.auth_style)
            .field(
                "private_key_jwt",
                &self
                    .private_key_jwt
                    .as_ref()
                    .map(|s| (s.algorithm(), s.key_id().map(str::to_owned))),
            )
            .field("client_secret_jwt", &self.client_secret_jwt)
            // Names only: a value may be a secret such as a client_assertion.
            .field("extra_params", &super::param_names(&self.extra_params))
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http);
        // The certificate by its thumbprint; never the key.
        #[cfg(feature = "rustls")]
        debug
            .field("tls_client_auth", &self.identity)
            .field("root_certificates", &self.root_certificates.len());
        debug.finish_non_exhaustive()
    }
}
