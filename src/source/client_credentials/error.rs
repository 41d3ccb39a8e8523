//! Why a source could not be built, and why the token endpoint gave no
//! token.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

#[cfg(doc)]
use super::{ClientCredentialsBuilder, MAX_RESPONSE_BYTES, RESERVED_HEADERS};
use crate::dpop::ProofError;
use crate::error::ErrorClass;
use crate::redact;
use crate::source::client_auth::{AuthMethod, SignError};
use crate::source::discovery::DiscoveryError;
use crate::source::transient_status;

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
    /// A key's [`TokenParams`](crate::TokenParams) hold a parameter whose
    /// name says it carries a credential: a key never holds a secret.
    CredentialParam {
        /// The parameter's name.
        name: String,
    },
    /// Two ways to authenticate the client were given (such as a client
    /// secret and [`private_key_jwt`](ClientCredentialsBuilder::private_key_jwt)):
    /// a token request uses one.
    ConflictingClientAuth {
        /// One method.
        first: AuthMethod,
        /// The other.
        second: AuthMethod,
    },
    /// The `private_key_jwt` signer signs HS256, a shared-key algorithm:
    /// use [`client_secret_jwt`](ClientCredentialsBuilder::client_secret_jwt).
    SymmetricPrivateKeyJwt,
    /// The method needs a client secret, and none was given.
    MissingClientSecret {
        /// The method.
        method: AuthMethod,
    },
    /// The method names the client, and no client id was given (a token
    /// exchange's client id is optional; only a public client may go
    /// without).
    MissingClientId {
        /// The method.
        method: AuthMethod,
    },
    /// A token type (RFC 8693's `subject_token_type`, `actor_token_type`
    /// or `requested_token_type`) is empty.
    EmptyTokenType {
        /// The parameter it would be sent as.
        param: String,
    },
    /// [`AssertionAudience::Issuer`](crate::source::client_auth::AssertionAudience::Issuer)
    /// on a source with a token URL rather than an issuer to discover.
    NoIssuer,
    /// The discovered token endpoint is plain `http` or on loopback, and
    /// the issuer is neither: the default client, made for the issuer, may
    /// go through the environment's proxy, which must not see such a
    /// request. Give the token URL, or a client of your own.
    ProxiedEndpoint {
        /// The token endpoint, with any password left out.
        url: String,
    },
    /// The issuer URL cannot be discovered from.
    InvalidIssuer {
        /// The issuer, with any password left out.
        issuer: String,
        /// What is wrong with it.
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
                "the extra parameter {name:?} would overwrite one the token request's grant sets itself"
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
            BuildError::CredentialParam { name } => write!(
                f,
                "the token parameters name {name:?}, a credential: credentials go to the source's builder, never in a token key"
            ),
            BuildError::ConflictingClientAuth { first, second } => write!(
                f,
                "two client authentication methods were given, {first} and {second}; a token request uses one"
            ),
            BuildError::SymmetricPrivateKeyJwt => f.write_str(
                "private_key_jwt needs an asymmetric key (RS256, PS256, ES256, EdDSA); \
                 for HS256 with the client secret, use client_secret_jwt",
            ),
            BuildError::MissingClientSecret { method } => {
                write!(f, "{method} needs a client secret, and none was given")
            }
            BuildError::MissingClientId { method } => {
                write!(f, "{method} needs a client id, and none was given")
            }
            BuildError::EmptyTokenType { param } => {
                write!(f, "the {param} is empty; a token type is a URI such as urn:ietf:params:oauth:token-type:jwt")
            }
            BuildError::NoIssuer => f.write_str(
                "the assertion audience is the issuer, but the source has a token URL, not an issuer to discover",
            ),
            BuildError::ProxiedEndpoint { url } => write!(
                f,
                "the token endpoint {url:?} is plain http or on loopback while the issuer is not: \
                 the client made for the issuer may go through a proxy, which must not see this request"
            ),
            BuildError::InvalidIssuer { issuer, reason } => {
                write!(f, "the issuer {issuer:?} cannot be used: {reason}")
            }
        }
    }
}

impl std::error::Error for BuildError {}

/// Why the token endpoint gave no token.
///
/// Its `Display` is one line a user can act on, such as
/// `the token endpoint refused the request: invalid_client: Invalid client secret (HTTP 400)`.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientCredentialsError {
    /// The source could not make a request for a key's
    /// [`TokenParams`](crate::TokenParams) (a reserved or credential
    /// parameter). Permanent: nothing was sent.
    InvalidParams {
        /// Why.
        source: BuildError,
    },
    /// The token endpoint could not be reached, or the connection failed.
    Transport {
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// The token endpoint refused the client certificate during the TLS
    /// handshake (RFC 8705 `tls_client_auth`): it answered with a TLS alert
    /// about the certificate, such as `UnknownCA` (it does not trust the
    /// issuing CA), `CertificateExpired` or `CertificateRevoked`, and read no token
    /// request. Permanent: the same certificate would be refused
    /// again. Only a source that authenticates with a client certificate
    /// reports this; for any other, the same failure is a
    /// [`Transport`](Self::Transport) error.
    ClientCertificateRefused {
        /// The TLS alert the endpoint sent, by its name in rustls, such as
        /// `UnknownCA`, `BadCertificate` or `CertificateRequired`.
        alert: String,
        /// The HTTP client's error, whose chain ends in the alert.
        source: reqwest::Error,
    },
    /// No DPoP proof could be made for the token request
    /// ([`ClientCredentialsBuilder::dpop`](super::ClientCredentialsBuilder::dpop)).
    /// Transient when signing failed, else permanent.
    Proof {
        /// Why.
        source: ProofError,
    },
    /// The token endpoint answered a DPoP token request with a token that
    /// is not bound to the key: its `token_type` is not `DPoP` (RFC 9449
    /// section 5). Permanent: the provider does not bind this client's
    /// tokens, and a bearer token is not what was asked for.
    DpopNotBound {
        /// The `token_type` it gave (at most 64 characters).
        token_type: String,
    },
    /// The token endpoint asked for a new DPoP nonce again after the one
    /// retry with the nonce it had given: it rotated its nonce during the
    /// fetch. Transient: the nonce it gave last is kept, and the next fetch
    /// carries it. (A `use_dpop_nonce` answer without a usable nonce, or to
    /// a source without DPoP, is an [`ErrorResponse`](Self::ErrorResponse),
    /// permanent: asking again could not meet it.)
    DpopNonceChanged,
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
    /// The token endpoint could not be discovered from the issuer.
    Discovery {
        /// Why.
        source: DiscoveryError,
        /// How long the failure is remembered: discovery is not tried
        /// again before then (see [`crate::source::discovery`]).
        retry_after: Option<Duration>,
    },
    /// The discovered token endpoint cannot be used: plain `http` off
    /// loopback, a user name in it, or plain `http` or loopback while the
    /// issuer is neither and the default client (which may go through a
    /// proxy) is used ([`BuildError::ProxiedEndpoint`]). Permanent.
    DiscoveredEndpoint {
        /// Why.
        source: BuildError,
    },
    /// The issuer's metadata lists the client authentication methods its
    /// token endpoint supports, and the source's is not among them.
    /// Permanent.
    AuthMethodNotSupported {
        /// The source's method.
        method: AuthMethod,
        /// The methods the metadata lists: the first 12, each on one line
        /// and cut to 64 characters.
        supported: Vec<String>,
        /// How many more it lists.
        more: usize,
    },
    /// The client assertion could not be made: the signer failed. Transient
    /// when the signer says so.
    Assertion {
        /// The signer's error.
        source: SignError,
    },
}

/// How many of the methods a provider's metadata lists an error keeps.
const SHOWN_METHODS: usize = 12;

/// The longest method name an error keeps, in characters.
const SHOWN_METHOD_CHARS: usize = 64;

impl ClientCredentialsError {
    /// [`ClientCredentialsError::AuthMethodNotSupported`], with the
    /// provider's list bounded: each name on one line and cut, and not too
    /// many of them.
    pub(super) fn auth_method_not_supported(method: AuthMethod, listed: &[String]) -> Self {
        let supported = listed
            .iter()
            .take(SHOWN_METHODS)
            .map(|name| redact::at_most(&redact::one_line(name), SHOWN_METHOD_CHARS + 1))
            .collect();
        ClientCredentialsError::AuthMethodNotSupported {
            method,
            supported,
            more: listed.len().saturating_sub(SHOWN_METHODS),
        }
    }

    /// How the cache should retry: see the [module docs](super#errors).
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
            ClientCredentialsError::Discovery {
                source,
                retry_after,
            } => {
                if source.is_transient() {
                    // The cache retries no sooner than discovery would.
                    ErrorClass::Transient {
                        retry_after: *retry_after,
                    }
                } else {
                    ErrorClass::Permanent
                }
            }
            ClientCredentialsError::Assertion { source } => {
                if source.is_transient() {
                    ErrorClass::TRANSIENT
                } else {
                    ErrorClass::Permanent
                }
            }
            ClientCredentialsError::Proof {
                source: ProofError::SigningFailed,
            }
            | ClientCredentialsError::DpopNonceChanged => ErrorClass::TRANSIENT,
            ClientCredentialsError::BodyTooLarge { .. }
            | ClientCredentialsError::Proof { .. }
            | ClientCredentialsError::DpopNotBound { .. }
            | ClientCredentialsError::InvalidParams { .. }
            | ClientCredentialsError::ClientCertificateRefused { .. }
            | ClientCredentialsError::DiscoveredEndpoint { .. }
            | ClientCredentialsError::AuthMethodNotSupported { .. } => ErrorClass::Permanent,
        }
    }

    /// The HTTP status, when the endpoint answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientCredentialsError::ErrorResponse { status, .. }
            | ClientCredentialsError::HttpStatus { status, .. }
            | ClientCredentialsError::InvalidResponse { status, .. }
            | ClientCredentialsError::BodyTooLarge { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The OAuth2 `error` code, such as `invalid_client`, when the provider
    /// sent one.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            ClientCredentialsError::ErrorResponse { error, .. } => Some(error),
            ClientCredentialsError::DpopNonceChanged => Some("use_dpop_nonce"),
            _ => None,
        }
    }

    /// The `Retry-After` delay, when the provider sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientCredentialsError::ErrorResponse { retry_after, .. }
            | ClientCredentialsError::HttpStatus { retry_after, .. }
            | ClientCredentialsError::Discovery { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for ClientCredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Why is the source chain's to say: reqwest's error, then
            // hyper's and the operating system's.
            ClientCredentialsError::Transport { .. } => {
                f.write_str("the token endpoint could not be reached")
            }
            ClientCredentialsError::ClientCertificateRefused { alert, .. } => write!(
                f,
                "the token endpoint refused the client certificate during the TLS handshake ({alert})"
            ),
            ClientCredentialsError::InvalidParams { source } => {
                write!(
                    f,
                    "no token request could be made for these token parameters: {source}"
                )
            }
            ClientCredentialsError::Timeout { after } => {
                write!(f, "the token endpoint did not answer within {after:?}")
            }
            ClientCredentialsError::Proof { .. } => {
                f.write_str("no DPoP proof could be made for the token request")
            }
            ClientCredentialsError::DpopNonceChanged => f.write_str(
                "the token endpoint asked for a new DPoP nonce (use_dpop_nonce) again after the retry with its nonce: it rotated its nonce meanwhile",
            ),
            ClientCredentialsError::DpopNotBound { token_type } => write!(
                f,
                "the token endpoint answered a DPoP token request with a token of type {token_type:?}, not bound to the key (it does not issue DPoP tokens to this client)"
            ),
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
            // Why is the source's to say, as for transport errors.
            ClientCredentialsError::Discovery { .. } => {
                f.write_str("the token endpoint could not be discovered")
            }
            ClientCredentialsError::DiscoveredEndpoint { .. } => {
                f.write_str("the discovered token endpoint cannot be used")
            }
            ClientCredentialsError::AuthMethodNotSupported {
                method,
                supported,
                more,
            } => {
                write!(
                    f,
                    "the token endpoint does not support {method} client authentication; its metadata lists "
                )?;
                if supported.is_empty() {
                    return f.write_str("an empty list");
                }
                f.write_str(&supported.join(", "))?;
                if *more > 0 {
                    write!(f, " and {more} more")?;
                }
                Ok(())
            }
            ClientCredentialsError::Assertion { .. } => {
                f.write_str("the client assertion could not be made")
            }
        }
    }
}

impl std::error::Error for ClientCredentialsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientCredentialsError::Transport { source }
            | ClientCredentialsError::ClientCertificateRefused { source, .. } => Some(source),
            ClientCredentialsError::Discovery { source, .. } => Some(source),
            ClientCredentialsError::DiscoveredEndpoint { source } => Some(source),
            ClientCredentialsError::Assertion { source } => Some(source),
            ClientCredentialsError::Proof { source } => Some(source),
            _ => None,
        }
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
