//! The builder: the settings of a [`ClientCredentials`] source, checked
//! once by [`build`](ClientCredentialsBuilder::build).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::request::{self, Settings, TokenRequest};
use super::{
    AuthStyle, BuildError, ClientCredentials, ClientSecret, DEFAULT_TIMEOUT, Inner, transport,
};
#[cfg(doc)]
use super::{RESERVED_HEADERS, RESERVED_PARAMS};
use crate::params::TokenParams;
use crate::redact;

/// Builds a [`ClientCredentials`]; from [`ClientCredentials::builder`].
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
    pub(super) fn new(token_url: String, client_id: String) -> Self {
        ClientCredentialsBuilder {
            token_url,
            client_id,
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
            if redact::secret_key(name) || name == "client_assertion_type" {
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

    /// Checks the settings and builds the source. Sends nothing.
    pub fn build(self) -> Result<ClientCredentials, BuildError> {
        let token_url = request::token_url(&self.token_url, self.allow_insecure_http)?;
        let settings = Settings {
            client_id: &self.client_id,
            client_secret: self.client_secret.as_ref(),
            scopes: &self.scopes,
            auth_style: self.auth_style,
            extra_params: &self.extra_params,
            headers: &self.headers,
        };
        let (request, secrets) = TokenRequest::new(token_url, &settings)?;
        let http_client = match &self.http_client {
            Some(client) => client.clone(),
            None => transport::default_client(&request)?,
        };
        // Every key's source shares this one's client, and its connections.
        let settings = ClientCredentialsBuilder {
            http_client: Some(http_client.clone()),
            ..self
        };
        Ok(ClientCredentials {
            inner: Arc::new(Inner {
                request,
                client_id: settings.client_id.clone(),
                scopes: settings.scopes.clone(),
                auth_style: settings.auth_style,
                extra_params: settings.extra_params.clone(),
                secrets,
                timeout: settings.timeout,
                http_client,
                settings,
            }),
        })
    }
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("token_url", &redact::redact_url(&self.token_url))
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scopes", &self.scopes)
            .field("auth_style", &self.auth_style)
            // Names only: a value may be a secret such as a client_assertion.
            .field("extra_params", &super::param_names(&self.extra_params))
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish_non_exhaustive()
    }
}
