//! The token endpoint found from the issuer: OpenID Connect discovery and
//! RFC 8414 authorization server metadata.
//!
//! Given an issuer such as `https://login.example.com/tenant1`, discovery
//! reads the provider's metadata document where OpenID Connect Discovery
//! puts it, `https://login.example.com/tenant1/.well-known/openid-configuration`,
//! and, when that is not there, where RFC 8414 section 3.1 puts it, the
//! well-known segment between host and path:
//! `https://login.example.com/.well-known/oauth-authorization-server/tenant1`.
//!
//! The document must name the configured issuer (RFC 8414 section 3.3,
//! OpenID Connect Discovery section 4.3): otherwise another server may have
//! answered, and credentials would go where it says. From the document come
//! the [`token_endpoint`](ProviderMetadata::token_endpoint), its mutual-TLS
//! alias (RFC 8705 section 5) and the client authentication methods the
//! endpoint lists.
//!
//! # Errors
//!
//! "Not there" and "not now" are told apart, as the token source does:
//!
//! - A status that says the document is not there (a 4xx other than 408
//!   and 429, or a 3xx: redirects are not followed), or a success whose body
//!   is not a JSON object (an HTML page), moves on to the RFC 8414 URL. When
//!   neither URL holds a document, the error
//!   ([`DiscoveryError::NotFound`]) names both answers; it is transient if
//!   either was a page that is not JSON at all (a captive portal, a proxy),
//!   permanent if both were statuses.
//! - A transport failure, the timeout, 408, 429 and 5xx stop discovery at
//!   once, without trying the other URL: they are transient.
//! - A JSON object that lacks a field, holds a field of the wrong kind, names
//!   another issuer, or is longer than [`MAX_DOCUMENT_BYTES`] is permanent:
//!   the provider would send the same again.
//!
//! Errors show URLs through [`redact_url`](crate::redact_url), and never the body. The one
//! text from the document an error shows, the issuer it names, is put on one
//! line and cut to at most 256 characters.
//!
//! # Once, and retried after a delay
//!
//! One discovery serves the source and every key's source made from it. It
//! runs once for any number of concurrent calls, on a task of its own (a
//! caller that gives up stops nothing), and what it finds is kept for good.
//!
//! A failed attempt is remembered: until its retry time, every call gets
//! the same error at once, and no request is sent, however many callers
//! (such as the keys of a keyed token cache, each on its own backoff) ask.
//! The first call after the retry time starts a new attempt. The delay is
//! [`FIRST_RETRY_DELAY`] (1 s) after a first failure and doubles with each
//! failure in a row (2 s, 4 s, ...) up to [`MAX_RETRY_DELAY`] (60 s); it
//! has no jitter, as there is one discovery per source, not one per key. A
//! permanent error waits out the delay too: the provider's configuration
//! may be fixed meanwhile. The delay is counted on Tokio's clock
//! ([`tokio::time::Instant`]), which tests can pause and advance.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use reqwest::Url;

/// The most of a metadata document that is read: 64 KiB. Real documents
/// are a few KiB; a longer one is refused rather than buffered.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// How long a failed discovery is remembered after a first failure: 1 s.
/// Until then every call gets its error without a request; the delay
/// doubles with each failure in a row, up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The longest a failed discovery is remembered before it is tried again:
/// 60 s, reached after seven failures in a row.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// The most characters of text from a document an error shows.
const MAX_SHOWN_CHARS: usize = 256;

/// The OpenID Connect Discovery document, after the issuer's path.
const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
/// The RFC 8414 document, before the issuer's path.
const OAUTH_AUTHORIZATION_SERVER: &str = "/.well-known/oauth-authorization-server";
/// RFC 8414 section 2: the default when the list is absent.
const DEFAULT_AUTH_METHOD: &str = "client_secret_basic";

/// What an authorization server's metadata says about its token endpoint.
///
/// Only the members a client-credentials client needs are kept; the
/// document's other members are not read.
#[derive(Clone)]
pub struct ProviderMetadata {
    issuer: String,
    token_endpoint: Url,
    mtls_token_endpoint: Option<Url>,
    auth_methods: Option<Vec<String>>,
    document_url: Url,
}

impl ProviderMetadata {
    /// The `issuer` the document names, as it names it (it matched the
    /// configured one; for an issuer without a path, with or without the
    /// trailing `/`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `token_endpoint`.
    pub fn token_endpoint(&self) -> &Url {
        &self.token_endpoint
    }

    /// The token endpoint for clients that authenticate with mutual TLS:
    /// `mtls_endpoint_aliases.token_endpoint` (RFC 8705 section 5), when the
    /// document has one.
    pub fn mtls_token_endpoint(&self) -> Option<&Url> {
        self.mtls_token_endpoint.as_ref()
    }

    /// The `token_endpoint_auth_methods_supported`, as listed, when the
    /// document has the list.
    pub fn token_endpoint_auth_methods_supported(&self) -> Option<&[String]> {
        self.auth_methods.as_deref()
    }

    /// Whether the token endpoint is known to accept the client
    /// authentication `method`, such as `private_key_jwt`.
    ///
    /// Without a list, only `client_secret_basic` is known to be accepted
    /// (the default of RFC 8414 section 2). Providers often leave methods
    /// out that they accept: to refuse only what a list rules out, use
    /// [`lists_auth_method`](Self::lists_auth_method).
    pub fn supports_auth_method(&self, method: &str) -> bool {
        self.lists_auth_method(method)
            .unwrap_or(method == DEFAULT_AUTH_METHOD)
    }

    /// Whether the document's `token_endpoint_auth_methods_supported` lists
    /// `method`; `None` when the document has no such list.
    pub fn lists_auth_method(&self, method: &str) -> Option<bool> {
        self.auth_methods
            .as_ref()
            .map(|methods| methods.iter().any(|m| m == method))
    }

    /// The URL the document was read from: the OpenID Connect or the RFC
    /// 8414 well-known URL.
    pub fn document_url(&self) -> &Url {
        &self.document_url
    }
}

impl fmt::Debug for ProviderMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs as text: `Url`'s own Debug lists every part.
        f.debug_struct("ProviderMetadata")
            .field("issuer", &self.issuer)
            .field("token_endpoint", &self.token_endpoint.as_str())
            .field(
                "mtls_token_endpoint",
                &self.mtls_token_endpoint.as_ref().map(Url::as_str),
            )
            .field("token_endpoint_auth_methods_supported", &self.auth_methods)
            .field("document_url", &self.document_url.as_str())
            .finish()
    }
}

/// What a well-known URL answered instead of a metadata document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoDocument {
    /// A status that says the document is not there: a 3xx, or a 4xx other
    /// than 408 and 429.
    Status(StatusCode),
    /// A success whose body is not JSON, such as an HTML page.
    NotJson,
    /// A success whose body is JSON, but not an object.
    NotAnObject,
}

impl NoDocument {
    /// Whether something other than the provider may have answered: a page
    /// that is not a JSON object at all.
    fn is_transient(self) -> bool {
        !matches!(self, NoDocument::Status(_))
    }
}

impl fmt::Display for NoDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoDocument::Status(status) => write!(f, "HTTP {status}"),
            NoDocument::NotJson => f.write_str("a body that is not JSON"),
            NoDocument::NotAnObject => f.write_str("JSON that is not an object"),
        }
    }
}

/// Why the token endpoint could not be discovered.
///
/// Its `Display` is one line a user can act on, such as
/// `no authorization server metadata at https://idp.example.com/t1/.well-known/openid-configuration (HTTP 404 Not Found) nor at https://idp.example.com/.well-known/oauth-authorization-server/t1 (HTTP 404 Not Found); check the issuer URL`.
/// URLs are shown through [`redact_url`](crate::redact_url); bodies are never shown.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The issuer cannot be discovered from: it has a query or a fragment
    /// (RFC 8414 section 2 forbids both), or is not an `http` or `https`
    /// URL. Permanent: nothing was sent.
    InvalidIssuer {
        /// The issuer, as shown.
        issuer: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A well-known URL could not be reached, or the connection failed.
    /// Transient.
    Transport {
        /// The URL, as shown.
        url: String,
        /// The HTTP client's error, shared: one discovery's error goes to
        /// every caller that waited for it.
        source: Arc<reqwest::Error>,
    },
    /// Discovery took longer than its timeout. Transient.
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// A well-known URL answered 408, 429 or a 5xx. Transient; the other
    /// URL is not tried.
    HttpStatus {
        /// The URL, as shown.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// Neither well-known URL holds a metadata document. Transient when
    /// either answered with something that is not JSON or not an object
    /// (something other than the provider may have answered), permanent
    /// when both answered with a status.
    NotFound {
        /// The OpenID Connect URL, as shown.
        openid_url: String,
        /// What it answered.
        openid_answer: NoDocument,
        /// The RFC 8414 URL, as shown.
        oauth_url: String,
        /// What it answered.
        oauth_answer: NoDocument,
    },
    /// The document is a JSON object longer than [`MAX_DOCUMENT_BYTES`];
    /// reading stopped there. Permanent.
    TooLarge {
        /// The document's URL, as shown.
        url: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The document has no such member, or it is `null`: `issuer` or
    /// `token_endpoint`. Permanent.
    MissingField {
        /// The document's URL, as shown.
        url: String,
        /// The member's name.
        field: &'static str,
    },
    /// A member the client reads is of the wrong kind: a URL that does not
    /// parse or is not `http` or `https`, a list that is not an array of
    /// strings. Permanent.
    InvalidField {
        /// The document's URL, as shown.
        url: String,
        /// The member's name, such as `mtls_endpoint_aliases.token_endpoint`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The document names another issuer than the configured one.
    /// Permanent.
    IssuerMismatch {
        /// The document's URL, as shown.
        url: String,
        /// The configured issuer, as shown.
        expected: String,
        /// The issuer the document names, as it names it (through
        /// [`redact_url`](crate::redact_url) if it holds a user name or password), on one line
        /// and at most 256 characters (cut with `…`).
        found: String,
    },
    /// The discovery task stopped before it finished: there is no Tokio
    /// runtime, or it is shutting down. Transient.
    Interrupted,
}

impl DiscoveryError {
    /// Whether asking again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DiscoveryError::Transport { .. }
            | DiscoveryError::Timeout { .. }
            | DiscoveryError::HttpStatus { .. }
            | DiscoveryError::Interrupted => true,
            DiscoveryError::NotFound {
                openid_answer,
                oauth_answer,
                ..
            } => openid_answer.is_transient() || oauth_answer.is_transient(),
            DiscoveryError::InvalidIssuer { .. }
            | DiscoveryError::TooLarge { .. }
            | DiscoveryError::MissingField { .. }
            | DiscoveryError::InvalidField { .. }
            | DiscoveryError::IssuerMismatch { .. } => false,
        }
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::InvalidIssuer { issuer, reason } => {
                write!(f, "the issuer {issuer:?} cannot be discovered: {reason}")
            }
            // Why is the source chain's to say.
            DiscoveryError::Transport { url, .. } => {
                write!(
                    f,
                    "the authorization server metadata at {url} could not be fetched"
                )
            }
            DiscoveryError::Timeout { after } => write!(
                f,
                "the authorization server metadata could not be fetched within {after:?}"
            ),
            DiscoveryError::HttpStatus { url, status } => write!(
                f,
                "the authorization server metadata at {url} is unavailable: HTTP {status}"
            ),
            DiscoveryError::NotFound {
                openid_url,
                openid_answer,
                oauth_url,
                oauth_answer,
            } => write!(
                f,
                "no authorization server metadata at {openid_url} ({openid_answer}) \
                 nor at {oauth_url} ({oauth_answer}); check the issuer URL"
            ),
            DiscoveryError::TooLarge { url, limit } => write!(
                f,
                "the authorization server metadata at {url} is longer than {limit} bytes"
            ),
            DiscoveryError::MissingField { url, field } => {
                write!(
                    f,
                    "the authorization server metadata at {url} has no {field}"
                )
            }
            DiscoveryError::InvalidField { url, field, reason } => write!(
                f,
                "the {field} in the authorization server metadata at {url} is {reason}"
            ),
            DiscoveryError::IssuerMismatch {
                url,
                expected,
                found,
            } => write!(
                f,
                "the metadata at {url} names the issuer {found:?}, not {expected:?} \
                 (they must be equal: configure the issuer exactly as the provider names it)"
            ),
            DiscoveryError::Interrupted => f.write_str(
                "the discovery of the token endpoint stopped before it finished \
                 (no Tokio runtime, or it is shutting down)",
            ),
        }
    }
}

impl std::error::Error for DiscoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DiscoveryError::Transport { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

mod document;
mod flight;
#[cfg(test)]
mod tests;

pub(crate) use flight::Discovery;
