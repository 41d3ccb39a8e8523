//! The builder: a [`TokenExchange`]'s own settings (the actor, the
//! requested token type) beside the client-credentials settings it shares
//! (endpoint, client authentication, parameters, headers, HTTP client),
//! which it forwards.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{GRANT_TYPE, RESERVED_PARAMS, SecurityToken, TokenExchange};
use crate::dpop::Dpop;
#[cfg(feature = "rustls")]
use crate::source::client_auth::ClientIdentity;
use crate::source::client_auth::{AssertionAudience, AssertionSigner};
use crate::source::client_credentials::{
    AuthStyle, BuildError, ClientCredentialsBuilder, ClientSecret, Grant,
};
#[cfg(doc)]
use crate::source::client_credentials::{DEFAULT_TIMEOUT, RESERVED_HEADERS};

/// Builds a [`TokenExchange`]; from [`TokenExchange::builder`],
/// [`TokenExchange::discover`] or
/// [`ClientCredentialsBuilder::token_exchange`].
///
/// The settings it shares with [`ClientCredentialsBuilder`] behave as they
/// do there, defaults included.
#[derive(Clone)]
pub struct TokenExchangeBuilder {
    client: ClientCredentialsBuilder,
    subject: SecurityToken,
    actor: Option<SecurityToken>,
    requested_token_type: Option<Arc<str>>,
}

impl TokenExchangeBuilder {
    pub(crate) fn new(client: ClientCredentialsBuilder, subject: SecurityToken) -> Self {
        TokenExchangeBuilder {
            client,
            subject,
            actor: None,
            requested_token_type: None,
        }
    }

    /// The actor token: who acts on the subject's behalf (RFC 8693
    /// section 1.1, delegation), sent as `actor_token` and
    /// `actor_token_type`. Read, like the subject token, on every fetch.
    /// Defaults to none.
    pub fn actor(mut self, actor: SecurityToken) -> Self {
        self.actor = Some(actor);
        self
    }

    /// The type of token wanted, sent as `requested_token_type` (a URI
    /// such as [`token_type::ACCESS_TOKEN`](super::token_type::ACCESS_TOKEN)).
    /// Defaults to none: the endpoint chooses, usually an access token.
    pub fn requested_token_type(mut self, token_type: impl Into<Arc<str>>) -> Self {
        self.requested_token_type = Some(token_type.into());
        self
    }

    /// The client id. Defaults to none: a public client that names no
    /// client, as many security token services (Google's STS, a Kubernetes
    /// cluster's own) want. Every client authentication method but none
    /// needs one.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client = self.client.client_id(client_id.into());
        self
    }

    /// See [`ClientCredentialsBuilder::client_secret`]. Defaults to none.
    pub fn client_secret(mut self, secret: impl Into<ClientSecret>) -> Self {
        self.client = self.client.client_secret(secret);
        self
    }

    /// See [`ClientCredentialsBuilder::auth_style`]. Defaults to
    /// [`AuthStyle::Basic`].
    pub fn auth_style(mut self, style: AuthStyle) -> Self {
        self.client = self.client.auth_style(style);
        self
    }

    /// See [`ClientCredentialsBuilder::private_key_jwt`].
    pub fn private_key_jwt(mut self, signer: impl AssertionSigner) -> Self {
        self.client = self.client.private_key_jwt(signer);
        self
    }

    /// See [`ClientCredentialsBuilder::client_secret_jwt`].
    pub fn client_secret_jwt(mut self) -> Self {
        self.client = self.client.client_secret_jwt();
        self
    }

    /// See [`ClientCredentialsBuilder::assertion_audience`]. Defaults to
    /// [`AssertionAudience::TokenEndpoint`].
    pub fn assertion_audience(mut self, audience: AssertionAudience) -> Self {
        self.client = self.client.assertion_audience(audience);
        self
    }

    /// See [`ClientCredentialsBuilder::tls_client_auth`].
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_client_auth(mut self, identity: ClientIdentity) -> Self {
        self.client = self.client.tls_client_auth(identity);
        self
    }

    /// See [`ClientCredentialsBuilder::add_root_certificate`].
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn add_root_certificate(mut self, certificate: reqwest::Certificate) -> Self {
        self.client = self.client.add_root_certificate(certificate);
        self
    }

    /// Adds a scope to request (RFC 8693 `scope`); see
    /// [`ClientCredentialsBuilder::scope`].
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.client = self.client.scope(scope);
        self
    }

    /// Replaces the scopes to request.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.client = self.client.scopes(scopes);
        self
    }

    /// Adds a `resource` (RFC 8693 section 2.1: where the new token will be
    /// used, an absolute URI); repeatable.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.client = self.client.resource(resource);
        self
    }

    /// Adds an `audience` (RFC 8693 section 2.1: the logical name of where
    /// the new token will be used); repeatable.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.client = self.client.audience(audience);
        self
    }

    /// Adds a form parameter. Those the exchange sets itself
    /// ([`RESERVED_PARAMS`]) make [`build`](Self::build) fail.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.client = self.client.param(name, value);
        self
    }

    /// Adds a header to the token request; see
    /// [`ClientCredentialsBuilder::header`] (values are secrets;
    /// [`RESERVED_HEADERS`] are refused).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<ClientSecret>) -> Self {
        self.client = self.client.header(name, value);
        self
    }

    /// How long the exchange with the token endpoint may take. Reading the
    /// subject and actor tokens comes before it, bounded by the cache's
    /// fetch timeout. Defaults to [`DEFAULT_TIMEOUT`] (10 seconds).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.timeout(timeout);
        self
    }

    /// Asks for tokens bound to `dpop`'s key (RFC 9449); see
    /// [`ClientCredentialsBuilder::dpop`]. Defaults to none: bearer tokens.
    pub fn dpop(mut self, dpop: Dpop) -> Self {
        self.client = self.client.dpop(dpop);
        self
    }

    /// See [`ClientCredentialsBuilder::http_client`].
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = self.client.http_client(client);
        self
    }

    /// See [`ClientCredentialsBuilder::allow_insecure_http`]. Defaults to
    /// `false`: the subject token would cross the network in clear text.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.client = self.client.allow_insecure_http(allow);
        self
    }

    /// Checks the settings and builds the source. Sends and reads nothing:
    /// the token files are read, and the sources asked, on each fetch.
    pub fn build(self) -> Result<TokenExchange, BuildError> {
        let empty = |param: &str| BuildError::EmptyTokenType {
            param: param.to_owned(),
        };
        // The token types go in every request; the tokens, read per fetch,
        // are added to each.
        let mut params = vec![("subject_token_type", self.subject.token_type().to_owned())];
        if let Some(actor) = &self.actor {
            params.push(("actor_token_type", actor.token_type().to_owned()));
        }
        if let Some(requested) = &self.requested_token_type {
            params.push(("requested_token_type", requested.to_string()));
        }
        if let Some((name, _)) = params.iter().find(|(_, value)| value.trim().is_empty()) {
            return Err(empty(name));
        }
        let grant = Grant {
            grant_type: GRANT_TYPE,
            params,
            reserved: &RESERVED_PARAMS,
        };
        let client = self.client.grant(grant).build()?;
        Ok(TokenExchange {
            client,
            subject: self.subject,
            actor: self.actor,
            requested_token_type: self.requested_token_type,
        })
    }
}

impl fmt::Debug for TokenExchangeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchangeBuilder")
            .field("subject", &self.subject)
            .field("actor", &self.actor)
            .field("requested_token_type", &self.requested_token_type)
            .field("client", &self.client)
            .finish()
    }
}
