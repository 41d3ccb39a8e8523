//! OAuth 2.0 token exchange (RFC 8693) as a [`TokenSource`]: a token the
//! workload already holds (a Kubernetes service-account token, a CI
//! provider's OIDC token, another service's access token) exchanged at a
//! security token service for one the API accepts. Workload identity,
//! without a client secret to store.
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_bearer::BearerAuthLayer;
//! use tower_bearer::source::token_exchange::{SecurityToken, TokenExchange, token_type};
//!
//! # fn main() -> Result<(), tower_bearer::source::client_credentials::BuildError> {
//! // The pod's projected service-account token, read again on every fetch.
//! let subject = SecurityToken::file("/var/run/secrets/tokens/sts-token");
//! let source = TokenExchange::builder("https://sts.example.com/oauth2/token", subject)
//!     .client_id("payments-api") // optional: many token services want none
//!     .audience("https://orders.example.com")
//!     .requested_token_type(token_type::ACCESS_TOKEN)
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
//! The [client-credentials source](crate::source::client_credentials)'s
//! request, with every one of its settings and rules (the token URL given
//! or discovered from an issuer, every client authentication method, extra
//! parameters and headers, the timeout, the HTTP client, https only), but
//! for its grant. The form carries
//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`,
//! `subject_token` and `subject_token_type`, `actor_token` and
//! `actor_token_type` when there is an [`actor`](TokenExchangeBuilder::actor),
//! `requested_token_type` when one is named, `scope`, `resource` and
//! `audience` when given, and the client's credentials. Without a client
//! id and a way to authenticate, the client is public and the form names
//! no client.
//!
//! The subject and actor tokens are had anew for every fetch: a
//! [`SecurityToken::file`] is read again (Kubernetes rotates projected
//! tokens on disk), a [`SecurityToken::source`] asked again. Like the
//! client secret, they are secrets of the request: scrubbed, in any
//! encoding, from whatever the endpoint sends back that an error keeps,
//! and never in `Debug`.
//!
//! # The response
//!
//! Read as the client-credentials source reads it. RFC 8693's
//! `issued_token_type` is not read: the layer sends the token it is given,
//! whatever its type. A `token_type` of `N_A` (section 2.2.1: the issued
//! token is not an access token, an ID token say) is taken as `Bearer`,
//! since the layer sends the token as a bearer credential; any other type
//! is kept as the client-credentials source keeps it.
//!
//! # Errors
//!
//! [`TokenExchangeError`] tells the three places a fetch can fail apart:
//! a token file ([`TokenExchangeError::TokenFile`], naming the file and
//! whose token it is, transient so that a file that appears later is used),
//! a subject or actor token's source ([`TokenExchangeError::TokenSource`],
//! retried as that source says), and the token endpoint
//! ([`TokenExchangeError::TokenEndpoint`], the client-credentials error as
//! it is: a subject token the endpoint refuses is a permanent error naming
//! the provider's `invalid_grant`, `invalid_request` or `invalid_target`).
//!
//! # Many tokens
//!
//! [`TokenExchange`] is a [`KeyedTokenSource`]: a key's source exchanges
//! the same subject (and actor) token for the key's scopes, audiences,
//! resources and parameters, as a client-credentials key's source does. A
//! key never names a credential: parameters such as `subject_token` or any
//! other `*_token` are refused, and so are the exchange's own
//! ([`RESERVED_PARAMS`]).
//!
//! # Sharing through a fleet store
//!
//! An exchanged token speaks for its subject. The Redis fleet store keys
//! tokens by what a `StoreKey` (feature `redis`) names (the token
//! URL, client, scopes, audiences, resources), not by the subject: share an
//! exchange through it only when every process exchanges the same subject,
//! or give each subject a key of its own. The demo refuses `--redis` with
//! `--grant token-exchange` for that reason.

mod builder;
mod error;
mod security_token;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ErrorClass;
use crate::params::TokenParams;
use crate::source::client_auth::AuthMethod;
use crate::source::client_credentials::{ClientCredentials, ClientCredentialsBuilder};
use crate::source::discovery::ProviderMetadata;
use crate::source::{KeyedTokenSource, TokenSource};
use crate::token::Token;

pub use builder::TokenExchangeBuilder;
pub use error::{TokenExchangeError, TokenFileProblem, TokenRole};
pub use security_token::{MAX_TOKEN_FILE_BYTES, SecurityToken, token_type};

/// The grant type of a token exchange (RFC 8693 section 2.1).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Form parameters the exchange sets itself, which
/// [`param`](TokenExchangeBuilder::param) may not overwrite: the
/// client-credentials source's
/// ([`client_credentials::RESERVED_PARAMS`](crate::source::client_credentials::RESERVED_PARAMS))
/// and RFC 8693's tokens and token types.
pub const RESERVED_PARAMS: [&str; 9] = [
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
];

/// A [`TokenSource`] that exchanges a subject token (and an actor token)
/// for an access token at a token endpoint, RFC 8693. Cheap to clone.
///
/// Build it with [`TokenExchange::builder`] or [`TokenExchange::discover`].
/// See the [module docs](self).
#[derive(Clone)]
pub struct TokenExchange {
    // The request machinery: endpoint, client authentication, parameters,
    // headers, transport, response reading. Its grant is the exchange's.
    client: ClientCredentials,
    subject: SecurityToken,
    actor: Option<SecurityToken>,
    requested_token_type: Option<Arc<str>>,
}

impl TokenExchange {
    /// A builder for a source that exchanges `subject` at `token_url`.
    pub fn builder(token_url: impl Into<String>, subject: SecurityToken) -> TokenExchangeBuilder {
        TokenExchangeBuilder::new(
            ClientCredentialsBuilder::new(token_url.into(), None),
            subject,
        )
    }

    /// A builder for a source that exchanges `subject` at the token
    /// endpoint `issuer`'s metadata names, found on the first fetch as
    /// [`ClientCredentials::discover`] finds it.
    pub fn discover(issuer: impl Into<String>, subject: SecurityToken) -> TokenExchangeBuilder {
        TokenExchangeBuilder::new(
            ClientCredentialsBuilder::discover(issuer.into(), None),
            subject,
        )
    }

    /// The subject token: where it comes from, and its type.
    pub fn subject(&self) -> &SecurityToken {
        &self.subject
    }

    /// The actor token, if there is one.
    pub fn actor(&self) -> Option<&SecurityToken> {
        self.actor.as_ref()
    }

    /// The `requested_token_type`, if one is named.
    pub fn requested_token_type(&self) -> Option<&str> {
        self.requested_token_type.as_deref()
    }

    /// The token endpoint's URL: the one given, or the discovered one once
    /// the first fetch has found it (`None` before).
    pub fn token_url(&self) -> Option<&reqwest::Url> {
        self.client.token_url()
    }

    /// The issuer the token endpoint is discovered from, if it is.
    pub fn issuer(&self) -> Option<&reqwest::Url> {
        self.client.issuer()
    }

    /// The issuer's metadata, once a fetch has discovered it.
    pub fn provider_metadata(&self) -> Option<Arc<ProviderMetadata>> {
        self.client.provider_metadata()
    }

    /// The client id, if the client names itself.
    pub fn client_id(&self) -> Option<&str> {
        self.client.client_id_if_any()
    }

    /// How the client authenticates, by the method's registered name
    /// ([`AuthMethod::None`] for a public client).
    pub fn auth_method(&self) -> AuthMethod {
        self.client.auth_method()
    }

    /// The scopes requested, in order.
    pub fn scopes(&self) -> &[String] {
        self.client.scopes()
    }

    /// The extra form parameters (`resource` and `audience` included), in
    /// order.
    pub fn extra_params(&self) -> &[(String, String)] {
        self.client.extra_params()
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.client.timeout()
    }

    /// Exchanges the subject token, once: reads it (and the actor token),
    /// then asks the token endpoint (discovering it first, if it has not
    /// been).
    pub async fn fetch_token(&self) -> Result<Token, TokenExchangeError> {
        let subject = self.subject.read(TokenRole::Subject).await?;
        let actor = match &self.actor {
            Some(actor) => Some(actor.read(TokenRole::Actor).await?),
            None => None,
        };
        let mut tokens = vec![("subject_token", subject.as_str())];
        tokens.extend(
            actor
                .as_deref()
                .map(|actor| ("actor_token", actor.as_str())),
        );
        let token = self.client.fetch_token_with(&tokens).await?;
        Ok(sent_as_bearer(token))
    }
}

/// A token whose type is `N_A` (RFC 8693 section 2.2.1: not an access
/// token) as `Bearer`: the layer sends it as a bearer credential, and
/// `N_A <token>` is no `Authorization` scheme an API knows.
fn sent_as_bearer(token: Token) -> Token {
    if !token.token_type().eq_ignore_ascii_case("N_A") {
        return token;
    }
    let bearer = Token::bearer(token.access_token().secret());
    match token.lifetime() {
        Some(lifetime) => bearer.with_lifetime(lifetime),
        None => bearer,
    }
}

impl fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchange")
            .field("subject", &self.subject)
            .field("actor", &self.actor)
            .field("requested_token_type", &self.requested_token_type)
            .field("client", &self.client)
            .finish()
    }
}

impl TokenSource for TokenExchange {
    type Error = TokenExchangeError;

    fn fetch(&self) -> impl Future<Output = Result<Token, TokenExchangeError>> + Send {
        self.fetch_token()
    }

    fn classify(&self, error: &TokenExchangeError) -> ErrorClass {
        error.class()
    }

    fn kind(&self) -> &'static str {
        "token_exchange"
    }

    fn binds_tokens(&self) -> bool {
        self.client.dpop().is_some()
    }
}

/// A key's source exchanges the same subject (and actor) token, asking for
/// the key's scopes, audiences, resources and parameters as a
/// [`ClientCredentials`] key's source does; it shares this source's HTTP
/// client, credentials, headers and discovery. Parameters whose names say
/// they carry a credential (`subject_token`, any `*_token`, `*_secret`,
/// `client_assertion`, `password`) are refused, as are the reserved ones
/// ([`RESERVED_PARAMS`]).
impl KeyedTokenSource for TokenExchange {
    type Keyed = TokenExchange;

    fn for_params(&self, params: &TokenParams) -> Result<TokenExchange, TokenExchangeError> {
        Ok(TokenExchange {
            client: self.client.for_params(params)?,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_a_is_sent_as_bearer_with_its_lifetime() {
        let lifetime = Duration::from_secs(300);
        let token = sent_as_bearer(Token::new("id-token", "N_A").with_lifetime(lifetime));
        assert_eq!(token.token_type(), "Bearer");
        assert_eq!(token.access_token().secret(), "id-token");
        assert_eq!(token.lifetime(), Some(lifetime));
        assert_eq!(sent_as_bearer(Token::new("t", "n_a")).lifetime(), None);
        assert_eq!(sent_as_bearer(Token::new("t", "DPoP")).token_type(), "DPoP");
    }
}
