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
//! Errors show URLs through [`redact_url`], and never the body. The one
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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::StatusCode;
use reqwest::Url;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::redact::{one_line, redact_url};

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
/// URLs are shown through [`redact_url`]; bodies are never shown.
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
        /// [`redact_url`] if it holds a user name or password), on one line
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

/// One issuer's discovery, run once for any number of callers and kept
/// after it succeeds. Cheap to clone: clones share the discovery.
///
/// Concurrent callers share one attempt, which runs on a task of its own:
/// each gets its outcome, success or error, and a caller that gives up
/// (its future dropped) stops nothing. A failure is remembered until its
/// retry time ([`retry_delay`]): calls until then get its error without a
/// request, and the first call after it starts a new attempt.
#[derive(Clone)]
pub(crate) struct Discovery {
    shared: Arc<Shared>,
}

struct Shared {
    issuer: Url,
    /// The two well-known URLs, or why the issuer has none.
    urls: Result<WellKnown, DiscoveryError>,
    client: reqwest::Client,
    timeout: Duration,
    state: Mutex<State>,
}

struct WellKnown {
    openid: Url,
    oauth: Url,
}

type Outcome = Result<Arc<ProviderMetadata>, DiscoveryError>;

struct State {
    phase: Phase,
    /// Failed attempts in a row: 0 at first and after a success.
    failures: u32,
}

enum Phase {
    /// Nothing found yet, and no attempt running.
    Idle,
    /// An attempt runs; its outcome comes on this channel.
    Running(watch::Receiver<Option<Outcome>>),
    /// The last attempt failed: its error is every call's answer until
    /// `retry_at`.
    Failed {
        error: DiscoveryError,
        retry_at: Instant,
    },
    /// Found, for good.
    Found(Arc<ProviderMetadata>),
}

impl Discovery {
    /// Discovery for `issuer`, with `client` (redirects off: the caller's
    /// job), each attempt limited to `timeout` in all.
    ///
    /// The document must name `issuer` as [`Url`] writes it: lowercase
    /// scheme and host, no default port. A `Url` cannot tell
    /// `https://idp.example.com` from `https://idp.example.com/`, so an
    /// issuer without a path matches either; any other path must match
    /// exactly, trailing `/` included.
    pub(crate) fn new(issuer: Url, client: reqwest::Client, timeout: Duration) -> Self {
        let urls = well_known_urls(&issuer);
        Self {
            shared: Arc::new(Shared {
                issuer,
                urls,
                client,
                timeout,
                state: Mutex::new(State {
                    phase: Phase::Idle,
                    failures: 0,
                }),
            }),
        }
    }

    /// The issuer's metadata: found before, or found now by the one attempt
    /// that all concurrent callers share; or the last attempt's error, until
    /// its retry time.
    ///
    /// Needs a Tokio runtime ([`DiscoveryError::Interrupted`] otherwise).
    pub(crate) async fn metadata(&self) -> Outcome {
        if let Err(error) = &self.shared.urls {
            return Err(error.clone());
        }
        let (mut receiver, start) = {
            let mut state = self.shared.lock();
            match &state.phase {
                Phase::Found(metadata) => return Ok(Arc::clone(metadata)),
                Phase::Running(receiver) => (receiver.clone(), None),
                Phase::Failed { error, retry_at } if Instant::now() < *retry_at => {
                    return Err(error.clone());
                }
                Phase::Idle | Phase::Failed { .. } => {
                    let runtime = tokio::runtime::Handle::try_current()
                        .map_err(|_| DiscoveryError::Interrupted)?;
                    let (sender, receiver) = watch::channel(None);
                    state.phase = Phase::Running(receiver.clone());
                    let attempt = Attempt {
                        shared: Arc::clone(&self.shared),
                        sender: Some(sender),
                    };
                    (receiver, Some((runtime, attempt)))
                }
            }
        };
        if let Some((runtime, attempt)) = start {
            // Outside the lock: a runtime that is shutting down drops the
            // task inside `spawn`, and the attempt's guard takes the lock.
            runtime.spawn(attempt.run());
        }
        // Bounded here too: the attempt's own timeout runs only while its
        // runtime is driven, and this caller may be on another.
        let deadline = self.shared.timeout + Duration::from_secs(1);
        match tokio::time::timeout(deadline, receiver.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => outcome.clone().unwrap_or(Err(DiscoveryError::Interrupted)),
            // The attempt was dropped unfinished (its guard made the state
            // idle again).
            Ok(Err(_)) => Err(DiscoveryError::Interrupted),
            Err(_) => Err(DiscoveryError::Timeout {
                after: self.shared.timeout,
            }),
        }
    }

    /// Puts a remembered failure's retry time an hour off.
    #[cfg(test)]
    fn put_off_retry(&self) {
        if let Phase::Failed { retry_at, .. } = &mut self.shared.lock().phase {
            *retry_at = Instant::now() + Duration::from_secs(3600);
        }
    }

    /// The metadata, if found.
    pub(crate) fn found(&self) -> Option<Arc<ProviderMetadata>> {
        match &self.shared.lock().phase {
            Phase::Found(metadata) => Some(Arc::clone(metadata)),
            _ => None,
        }
    }

    /// How long the remembered failure still answers calls; `None` when
    /// none does.
    pub(crate) fn retry_in(&self) -> Option<Duration> {
        match &self.shared.lock().phase {
            Phase::Failed { retry_at, .. } => {
                Some(retry_at.saturating_duration_since(Instant::now()))
            }
            _ => None,
        }
    }
}

/// The issuer a document names, for an error: the provider's public
/// string as it is (through [`redact_url`] it could read like the
/// configured one, a query or a trailing blank dropped), unless it holds a
/// user name or password; on one line and bounded.
fn shown_issuer(found: &str) -> String {
    let credentials = Url::parse(found.trim())
        .is_ok_and(|url| !url.username().is_empty() || url.password().is_some());
    let shown = if credentials {
        redact_url(found)
    } else {
        one_line(found)
    };
    at_most(&shown, MAX_SHOWN_CHARS)
}

/// How long a failure is remembered when it is the `failures`-th in a row
/// (from 1): [`FIRST_RETRY_DELAY`], doubled for each failure before it, at
/// most [`MAX_RETRY_DELAY`].
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    FIRST_RETRY_DELAY
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_DELAY)
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("issuer", &redact_url(self.shared.issuer.as_str()))
            .field("timeout", &self.shared.timeout)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every step under the lock leaves the state whole, so a poisoned
        // lock holds a consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The one attempt running: it sets the state and tells the waiters when it
/// ends, and sets the state idle again if it is dropped unfinished (a
/// panic, a runtime shutting down).
struct Attempt {
    shared: Arc<Shared>,
    sender: Option<watch::Sender<Option<Outcome>>>,
}

impl Attempt {
    async fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let outcome = match &shared.urls {
            Ok(urls) => {
                let discover = discover(&shared.client, &shared.issuer, urls);
                match tokio::time::timeout(shared.timeout, discover).await {
                    Ok(result) => result.map(Arc::new),
                    Err(_) => Err(DiscoveryError::Timeout {
                        after: shared.timeout,
                    }),
                }
            }
            Err(error) => Err(error.clone()),
        };
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        // The state first, and nothing but the state under the lock: a
        // caller that comes after the waiters are told must find the
        // metadata, or the error until its retry time.
        let failures = {
            let mut state = self.shared.lock();
            match &outcome {
                Ok(metadata) => {
                    state.failures = 0;
                    state.phase = Phase::Found(Arc::clone(metadata));
                }
                Err(error) => {
                    state.failures = state.failures.saturating_add(1);
                    state.phase = Phase::Failed {
                        error: error.clone(),
                        retry_at: Instant::now() + retry_delay(state.failures),
                    };
                }
            }
            state.failures
        };
        // Then the waiters; `send_replace` stores the outcome even when no
        // caller waits. The sender is taken only now, so a guard dropped
        // before this point still finds it and sets the state idle.
        if let Some(sender) = self.sender.take() {
            sender.send_replace(Some(outcome.clone()));
        }
        match &outcome {
            Ok(metadata) => tracing::debug!(
                document = %redact_url(metadata.document_url.as_str()),
                "authorization server metadata found"
            ),
            Err(error) => tracing::debug!(
                %error,
                failures,
                retry_in = ?retry_delay(failures),
                "authorization server metadata not found"
            ),
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.sender.is_some() {
            // Unfinished, so no failure to remember: the waiters see the
            // channel close, and the next call starts afresh.
            self.shared.lock().phase = Phase::Idle;
        }
    }
}

/// The OpenID Connect and RFC 8414 URLs of `issuer`.
fn well_known_urls(issuer: &Url) -> Result<WellKnown, DiscoveryError> {
    let invalid = |reason| DiscoveryError::InvalidIssuer {
        issuer: redact_url(issuer.as_str()),
        reason,
    };
    if !matches!(issuer.scheme(), "https" | "http") || issuer.cannot_be_a_base() {
        return Err(invalid("it is not an https URL"));
    }
    if issuer.query().is_some() {
        return Err(invalid("it has a query"));
    }
    if issuer.fragment().is_some() {
        return Err(invalid("it has a fragment"));
    }
    // RFC 8414 section 3.1: "any terminating / MUST be removed", for both.
    let path = issuer.path().trim_end_matches('/');
    let mut openid = issuer.clone();
    openid.set_path(&format!("{path}{OPENID_CONFIGURATION}"));
    let mut oauth = issuer.clone();
    oauth.set_path(&format!("{OAUTH_AUTHORIZATION_SERVER}{path}"));
    Ok(WellKnown { openid, oauth })
}

/// Reads the metadata from the OpenID Connect URL, or else the RFC 8414 one.
async fn discover(
    client: &reqwest::Client,
    issuer: &Url,
    urls: &WellKnown,
) -> Result<ProviderMetadata, DiscoveryError> {
    let openid_answer = match fetch(client, &urls.openid).await? {
        Fetched::Document(document) => return read_metadata(document, &urls.openid, issuer),
        Fetched::NoDocument(answer) => answer,
    };
    tracing::debug!(
        url = %redact_url(urls.openid.as_str()),
        answer = %openid_answer,
        "no OpenID Connect metadata; trying RFC 8414"
    );
    match fetch(client, &urls.oauth).await? {
        Fetched::Document(document) => read_metadata(document, &urls.oauth, issuer),
        Fetched::NoDocument(oauth_answer) => Err(DiscoveryError::NotFound {
            openid_url: redact_url(urls.openid.as_str()),
            openid_answer,
            oauth_url: redact_url(urls.oauth.as_str()),
            oauth_answer,
        }),
    }
}

/// What a well-known URL held.
enum Fetched {
    Document(Map<String, Value>),
    NoDocument(NoDocument),
}

/// GETs `url` and reads at most [`MAX_DOCUMENT_BYTES`] of its body.
async fn fetch(client: &reqwest::Client, url: &Url) -> Result<Fetched, DiscoveryError> {
    let transport = |error: reqwest::Error| DiscoveryError::Transport {
        url: redact_url(url.as_str()),
        // The URL is in the error already.
        source: Arc::new(error.without_url()),
    };
    let mut response = client
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if transient_status(status) {
        return Err(DiscoveryError::HttpStatus {
            url: redact_url(url.as_str()),
            status,
        });
    }
    if !status.is_success() {
        return Ok(Fetched::NoDocument(NoDocument::Status(status)));
    }
    let mut body = Vec::new();
    let mut cut = false;
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            body.extend_from_slice(&chunk[..MAX_DOCUMENT_BYTES - body.len()]);
            cut = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&body);
    if cut {
        // What was read says what the answer is: only a JSON object is a
        // document too large; a long page is no document at all.
        return match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Err(DiscoveryError::TooLarge {
                url: redact_url(url.as_str()),
                limit: MAX_DOCUMENT_BYTES,
            }),
            Some(b'[') => Ok(Fetched::NoDocument(NoDocument::NotAnObject)),
            _ => Ok(Fetched::NoDocument(NoDocument::NotJson)),
        };
    }
    Ok(match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(document)) => Fetched::Document(document),
        Ok(_) => Fetched::NoDocument(NoDocument::NotAnObject),
        Err(_) => Fetched::NoDocument(NoDocument::NotJson),
    })
}

/// The metadata in `document`, read from `url`, if it names `issuer`.
fn read_metadata(
    mut document: Map<String, Value>,
    url: &Url,
    issuer: &Url,
) -> Result<ProviderMetadata, DiscoveryError> {
    let shown = || redact_url(url.as_str());
    let missing = |field| DiscoveryError::MissingField {
        url: shown(),
        field,
    };
    let invalid = |field, reason: &str| DiscoveryError::InvalidField {
        url: shown(),
        field,
        reason: reason.to_owned(),
    };

    let found = match document.remove("issuer") {
        Some(Value::String(found)) => found,
        None | Some(Value::Null) => return Err(missing("issuer")),
        Some(_) => return Err(invalid("issuer", "not a string")),
    };
    if !issuer_matches(issuer, &found) {
        return Err(DiscoveryError::IssuerMismatch {
            url: shown(),
            expected: redact_url(issuer.as_str()),
            found: shown_issuer(&found),
        });
    }

    let token_endpoint = match document.get("token_endpoint") {
        None | Some(Value::Null) => return Err(missing("token_endpoint")),
        Some(value) => endpoint(value).map_err(|reason| invalid("token_endpoint", &reason))?,
    };

    const MTLS_FIELD: &str = "mtls_endpoint_aliases.token_endpoint";
    let mtls_token_endpoint = match document.get("mtls_endpoint_aliases") {
        None | Some(Value::Null) => None,
        Some(Value::Object(aliases)) => match aliases.get("token_endpoint") {
            None | Some(Value::Null) => None,
            Some(value) => Some(endpoint(value).map_err(|reason| invalid(MTLS_FIELD, &reason))?),
        },
        Some(_) => return Err(invalid("mtls_endpoint_aliases", "not an object")),
    };

    const METHODS_FIELD: &str = "token_endpoint_auth_methods_supported";
    let auth_methods = match document.remove(METHODS_FIELD) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .into_iter()
                .map(|item| match item {
                    Value::String(method) => Ok(method),
                    _ => Err(invalid(METHODS_FIELD, "not an array of strings")),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(invalid(METHODS_FIELD, "not an array of strings")),
    };

    Ok(ProviderMetadata {
        issuer: found,
        token_endpoint,
        mtls_token_endpoint,
        auth_methods,
        document_url: url.clone(),
    })
}

/// An endpoint member: an absolute `http` or `https` URL. Whether plain
/// http is allowed is the caller's rule, as for a configured token URL.
fn endpoint(value: &Value) -> Result<Url, String> {
    let Value::String(text) = value else {
        return Err("not a string".to_owned());
    };
    let url = Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err("not an http or https URL".to_owned());
    }
    Ok(url)
}

/// Whether the document's issuer is the configured one: equal strings, but
/// for an issuer without a path, which `Url` always writes with a `/`.
fn issuer_matches(issuer: &Url, found: &str) -> bool {
    let expected = issuer.as_str();
    found == expected || (issuer.path() == "/" && expected.strip_suffix('/') == Some(found))
}

/// `text`, cut to `max` characters (at least 1), the last of them a `…`,
/// when longer.
fn at_most(text: &str, max: usize) -> String {
    if text.chars().nth(max).is_none() {
        return text.to_owned();
    }
    let end = text.char_indices().nth(max - 1).map_or(0, |(at, _)| at);
    format!("{}…", &text[..end])
}

/// Statuses that mean "later": 408, 429 and 5xx.
fn transient_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Poll;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::{Request, Response};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use tokio::net::TcpListener;
    use tokio::task::{JoinHandle, JoinSet};

    use super::*;

    /// A guard against a hang, never a means of synchronisation.
    const GUARD: Duration = Duration::from_secs(10);

    /// An HTTP server on `127.0.0.1:0`, stopped when dropped (as in
    /// `tests/support/server.rs`).
    struct Server {
        addr: SocketAddr,
        task: JoinHandle<()>,
    }

    impl Server {
        async fn start<F, Fut>(handler: F) -> Self
        where
            F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
        {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let task = tokio::spawn(async move {
                let mut connections = JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let handler = handler.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let response = handler(req);
                            async move { Ok::<_, Infallible>(response.await) }
                        });
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Self { addr, task }
        }

        /// A URL on this server.
        fn url(&self, path: &str) -> Url {
            Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
        }

        /// `url(path)` as text, without the `/` `Url` adds to an empty path.
        fn text(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn respond(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
        Response::builder()
            .status(status)
            .body(Full::new(body.into()))
            .unwrap()
    }

    type Routes = Arc<Mutex<HashMap<String, (u16, String)>>>;

    /// A provider that answers its routes, 404 elsewhere, and records the
    /// paths asked for.
    struct Idp {
        server: Server,
        routes: Routes,
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl Idp {
        async fn start() -> Self {
            let routes = Routes::default();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let server = Server::start({
                let routes = Arc::clone(&routes);
                let seen = Arc::clone(&seen);
                move |req: Request<Incoming>| {
                    let path = req.uri().path().to_owned();
                    seen.lock().unwrap().push(path.clone());
                    let answer = routes.lock().unwrap().get(&path).cloned();
                    async move {
                        match answer {
                            Some((status, body)) => respond(status, body),
                            None => respond(404, "<html>Not Found</html>"),
                        }
                    }
                }
            })
            .await;
            Self {
                server,
                routes,
                seen,
            }
        }

        fn route(&self, path: &str, status: u16, body: impl Into<String>) {
            self.routes
                .lock()
                .unwrap()
                .insert(path.to_owned(), (status, body.into()));
        }

        fn seen(&self) -> Vec<String> {
            self.seen.lock().unwrap().clone()
        }

        fn discovery(&self, issuer_path: &str) -> Discovery {
            discovery(self.server.url(issuer_path), Duration::from_secs(5))
        }

        async fn metadata(&self, issuer_path: &str) -> Outcome {
            self.discovery(issuer_path).metadata().await
        }
    }

    fn discovery(issuer: Url, timeout: Duration) -> Discovery {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        Discovery::new(issuer, client, timeout)
    }

    /// A minimal document for `issuer`.
    fn document(issuer: &str) -> String {
        serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/oauth2/token"),
            "jwks_uri": format!("{issuer}/keys"),
        })
        .to_string()
    }

    const OPENID: &str = "/.well-known/openid-configuration";
    const OAUTH: &str = "/.well-known/oauth-authorization-server";

    #[test]
    fn well_known_urls_insert_the_segment_per_spec() {
        for (issuer, openid, oauth) in [
            (
                "https://idp.example.com",
                "https://idp.example.com/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/oauth-authorization-server",
            ),
            (
                "https://idp.example.com:8443/tenant1",
                "https://idp.example.com:8443/tenant1/.well-known/openid-configuration",
                "https://idp.example.com:8443/.well-known/oauth-authorization-server/tenant1",
            ),
            (
                "https://idp.example.com/a/b/",
                "https://idp.example.com/a/b/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/oauth-authorization-server/a/b",
            ),
            (
                "https://u:pw@idp.example.com/t%20x",
                "https://u:pw@idp.example.com/t%20x/.well-known/openid-configuration",
                "https://u:pw@idp.example.com/.well-known/oauth-authorization-server/t%20x",
            ),
        ] {
            let urls = well_known_urls(&Url::parse(issuer).unwrap()).unwrap();
            assert_eq!(urls.openid.as_str(), openid, "{issuer}");
            assert_eq!(urls.oauth.as_str(), oauth, "{issuer}");
        }
        for (issuer, reason) in [
            ("https://idp.example.com/?tenant=1", "it has a query"),
            ("https://idp.example.com/#x", "it has a fragment"),
            ("ftp://idp.example.com/", "it is not an https URL"),
            ("mailto:idp@example.com", "it is not an https URL"),
        ] {
            match well_known_urls(&Url::parse(issuer).unwrap()) {
                Err(DiscoveryError::InvalidIssuer { reason: r, .. }) => assert_eq!(r, reason),
                _ => panic!("{issuer} should be refused"),
            }
        }
    }

    #[test]
    fn issuer_comparison_is_exact_but_for_an_empty_path() {
        let root = Url::parse("https://idp.example.com").unwrap();
        assert!(issuer_matches(&root, "https://idp.example.com"));
        assert!(issuer_matches(&root, "https://idp.example.com/"));
        assert!(!issuer_matches(&root, "https://idp.example.com//"));
        assert!(!issuer_matches(&root, "https://IDP.example.com"));
        assert!(!issuer_matches(&root, "https://idp.example.com:443"));
        assert!(!issuer_matches(&root, "http://idp.example.com"));
        let path = Url::parse("https://idp.example.com/tenant1").unwrap();
        assert!(issuer_matches(&path, "https://idp.example.com/tenant1"));
        assert!(!issuer_matches(&path, "https://idp.example.com/tenant1/"));
        assert!(!issuer_matches(&path, "https://idp.example.com/"));
        let slash = Url::parse("https://idp.example.com/tenant1/").unwrap();
        assert!(issuer_matches(&slash, "https://idp.example.com/tenant1/"));
        assert!(!issuer_matches(&slash, "https://idp.example.com/tenant1"));
    }

    #[tokio::test]
    async fn finds_the_openid_connect_document() {
        let idp = Idp::start().await;
        let issuer = idp.server.text("");
        idp.route(OPENID, 200, document(&issuer));
        let discovery = idp.discovery("");
        let metadata = discovery.metadata().await.unwrap();
        assert_eq!(metadata.issuer(), issuer);
        assert_eq!(
            metadata.token_endpoint().as_str(),
            format!("{issuer}/oauth2/token")
        );
        assert_eq!(metadata.document_url(), &idp.server.url(OPENID));
        assert_eq!(metadata.mtls_token_endpoint(), None);
        assert_eq!(metadata.token_endpoint_auth_methods_supported(), None);
        // Absent list: the RFC 8414 default only, but nothing ruled out.
        assert!(metadata.supports_auth_method("client_secret_basic"));
        assert!(!metadata.supports_auth_method("client_secret_post"));
        assert_eq!(metadata.lists_auth_method("client_secret_post"), None);
        assert_eq!(idp.seen(), [OPENID]);

        // Kept: a second call asks nothing.
        let again = discovery.metadata().await.unwrap();
        assert!(Arc::ptr_eq(&metadata, &again));
        assert_eq!(idp.seen(), [OPENID]);
    }

    #[tokio::test]
    async fn falls_back_to_rfc_8414_with_the_segment_before_the_path() {
        let idp = Idp::start().await;
        let issuer = idp.server.text("/tenant1");
        let rfc8414 = format!("{OAUTH}/tenant1");
        idp.route(&rfc8414, 200, document(&issuer));
        let metadata = idp.metadata("/tenant1").await.unwrap();
        assert_eq!(metadata.issuer(), issuer);
        assert_eq!(metadata.document_url(), &idp.server.url(&rfc8414));
        assert_eq!(idp.seen(), [format!("/tenant1{OPENID}"), rfc8414.clone()]);

        // A trailing slash is removed for both URLs; the issuer still must
        // match as configured.
        let idp = Idp::start().await;
        let issuer = idp.server.text("/tenant1/");
        idp.route(&rfc8414, 200, document(&issuer));
        let metadata = idp.metadata("/tenant1/").await.unwrap();
        assert_eq!(metadata.issuer(), issuer);
        assert_eq!(idp.seen(), [format!("/tenant1{OPENID}"), rfc8414]);
    }

    #[tokio::test]
    async fn statuses_that_say_not_there_fall_back() {
        for status in [400, 401, 403, 404, 405, 410, 301, 302] {
            let idp = Idp::start().await;
            let issuer = idp.server.text("");
            idp.route(OPENID, status, "nope");
            idp.route(OAUTH, 200, document(&issuer));
            let metadata = idp.metadata("").await.unwrap();
            assert_eq!(metadata.document_url(), &idp.server.url(OAUTH), "{status}");
        }
    }

    #[tokio::test]
    async fn a_page_at_the_openid_url_falls_back() {
        let idp = Idp::start().await;
        let issuer = idp.server.text("");
        // A single-page app answers every path with its index.
        idp.route(OPENID, 200, "<!doctype html><html>app</html>");
        idp.route(OAUTH, 200, document(&issuer));
        let metadata = idp.metadata("").await.unwrap();
        assert_eq!(metadata.document_url(), &idp.server.url(OAUTH));
    }

    #[tokio::test]
    async fn neither_document_names_both_urls() {
        let idp = Idp::start().await;
        let error = idp.metadata("/tenant1").await.unwrap_err();
        let DiscoveryError::NotFound {
            openid_url,
            openid_answer,
            oauth_url,
            oauth_answer,
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(openid_url, &idp.server.text(&format!("/tenant1{OPENID}")));
        assert_eq!(oauth_url, &idp.server.text(&format!("{OAUTH}/tenant1")));
        assert_eq!(*openid_answer, NoDocument::Status(StatusCode::NOT_FOUND));
        assert_eq!(*oauth_answer, NoDocument::Status(StatusCode::NOT_FOUND));
        assert!(!error.is_transient());
        let shown = error.to_string();
        assert!(
            shown.contains(openid_url) && shown.contains(oauth_url),
            "{shown}"
        );
        assert!(shown.contains("HTTP 404 Not Found"), "{shown}");
    }

    #[tokio::test]
    async fn html_pages_are_transient() {
        let idp = Idp::start().await;
        idp.route(OPENID, 200, "<html>Log in to the hotel wifi</html>");
        idp.route(OAUTH, 200, "<html>Log in to the hotel wifi</html>");
        let error = idp.metadata("").await.unwrap_err();
        assert!(
            matches!(
                error,
                DiscoveryError::NotFound {
                    openid_answer: NoDocument::NotJson,
                    oauth_answer: NoDocument::NotJson,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.is_transient());
        assert!(!error.to_string().contains("hotel"), "{error}");
    }

    #[tokio::test]
    async fn a_json_array_is_not_a_document() {
        let idp = Idp::start().await;
        idp.route(OPENID, 200, r#"[{"issuer": "x"}]"#);
        let error = idp.metadata("").await.unwrap_err();
        assert!(
            matches!(
                error,
                DiscoveryError::NotFound {
                    openid_answer: NoDocument::NotAnObject,
                    oauth_answer: NoDocument::Status(StatusCode::NOT_FOUND),
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn another_issuer_is_refused_without_falling_back() {
        let idp = Idp::start().await;
        let issuer = idp.server.text("/tenant1");
        idp.route(
            &format!("/tenant1{OPENID}"),
            200,
            document(&idp.server.text("/tenant2")),
        );
        idp.route(&format!("{OAUTH}/tenant1"), 200, document(&issuer));
        let error = idp.metadata("/tenant1").await.unwrap_err();
        let DiscoveryError::IssuerMismatch {
            expected, found, ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(expected, &issuer);
        assert_eq!(found, &idp.server.text("/tenant2"));
        assert!(!error.is_transient());
        let shown = error.to_string();
        assert!(
            shown.contains(&issuer) && shown.contains("/tenant2"),
            "{shown}"
        );
        assert_eq!(idp.seen().len(), 1);

        // A trailing slash is a different issuer.
        let idp = Idp::start().await;
        idp.route(
            &format!("/tenant1{OPENID}"),
            200,
            document(&idp.server.text("/tenant1/")),
        );
        let error = idp.metadata("/tenant1").await.unwrap_err();
        assert!(
            matches!(error, DiscoveryError::IssuerMismatch { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn the_issuer_a_document_names_is_shown_on_one_line_and_bounded() {
        let long_path = format!("https://evil.example/{}", "a".repeat(10_000));
        let lines = "evil\r\nissuer\u{2028}\u{85}\t\u{b}\u{c}x ".repeat(2_000);
        let wide = "é✓🦀".repeat(1_000);
        for named in [long_path, lines, wide] {
            let idp = Idp::start().await;
            idp.route(
                OPENID,
                200,
                serde_json::json!({"issuer": named, "token_endpoint": "https://t/"}).to_string(),
            );
            let error = idp.metadata("").await.unwrap_err();
            let DiscoveryError::IssuerMismatch { found, .. } = &error else {
                panic!("{error:?}");
            };
            assert!(found.chars().count() <= MAX_SHOWN_CHARS, "{found}");
            assert!(found.ends_with('…'), "{found}");
            let shown = error.to_string();
            assert!(shown.chars().count() < 2 * MAX_SHOWN_CHARS, "{shown}");
            assert!(
                !shown
                    .chars()
                    .any(|c| c.is_control() || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}')),
                "{shown:?}"
            );
        }
    }

    #[test]
    fn at_most_cuts_on_a_char_boundary_and_marks_the_cut() {
        assert_eq!(at_most("", 3), "");
        assert_eq!(at_most("abc", 3), "abc");
        assert_eq!(at_most("abcd", 3), "ab…");
        assert_eq!(at_most("ééé", 3), "ééé");
        assert_eq!(at_most("éééé", 3), "éé…");
        assert_eq!(at_most("🦀🦀", 1), "…");
        let long = "✓".repeat(MAX_SHOWN_CHARS + 1);
        assert_eq!(
            at_most(&long, MAX_SHOWN_CHARS).chars().count(),
            MAX_SHOWN_CHARS
        );
    }

    #[tokio::test]
    async fn an_issuer_without_a_path_matches_with_or_without_its_slash() {
        for slash in ["", "/"] {
            let idp = Idp::start().await;
            let named = idp.server.text(slash);
            idp.route(OPENID, 200, document(&named));
            let metadata = idp.metadata("").await.unwrap();
            assert_eq!(metadata.issuer(), named);
        }
    }

    #[tokio::test]
    async fn user_info_never_shows() {
        let idp = Idp::start().await;
        idp.route(
            OPENID,
            200,
            serde_json::json!({"issuer": "https://u:hunter2@evil.example/?k=hunter2\n"})
                .to_string(),
        );
        let issuer = Url::parse(&format!("http://me:s3cret@{}/", idp.server.addr)).unwrap();
        let discovery = discovery(issuer, Duration::from_secs(5));
        assert!(!format!("{discovery:?}").contains("s3cret"));
        let error = discovery.metadata().await.unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(
            matches!(error, DiscoveryError::IssuerMismatch { .. }),
            "{shown}"
        );
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn fields_the_client_reads_must_be_there_and_well_formed() {
        let idp = Idp::start().await;
        let issuer = idp.server.text("");
        for (document, error) in [
            (
                serde_json::json!({"issuer": issuer}),
                "MissingField token_endpoint",
            ),
            (
                serde_json::json!({"issuer": issuer, "token_endpoint": null}),
                "MissingField token_endpoint",
            ),
            (
                serde_json::json!({"token_endpoint": "https://idp/token"}),
                "MissingField issuer",
            ),
            (
                serde_json::json!({"issuer": 7, "token_endpoint": "https://idp/token"}),
                "InvalidField issuer",
            ),
            (
                serde_json::json!({"issuer": issuer, "token_endpoint": 42}),
                "InvalidField token_endpoint",
            ),
            (
                serde_json::json!({"issuer": issuer, "token_endpoint": "/oauth2/token"}),
                "InvalidField token_endpoint",
            ),
            (
                serde_json::json!({"issuer": issuer, "token_endpoint": "javascript:alert(1)"}),
                "InvalidField token_endpoint",
            ),
            (
                serde_json::json!({"issuer": issuer, "token_endpoint": "https://idp/token",
                    "mtls_endpoint_aliases": "https://mtls/token"}),
                "InvalidField mtls_endpoint_aliases",
            ),
            (
                serde_json::json!({"issuer": issuer, "token_endpoint": "https://idp/token",
                    "mtls_endpoint_aliases": {"token_endpoint": ["x"]}}),
                "InvalidField mtls_endpoint_aliases.token_endpoint",
            ),
            (
                serde_json::json!({"issuer": issuer, "token_endpoint": "https://idp/token",
                    "token_endpoint_auth_methods_supported": "client_secret_post"}),
                "InvalidField token_endpoint_auth_methods_supported",
            ),
            (
                serde_json::json!({"issuer": issuer, "token_endpoint": "https://idp/token",
                    "token_endpoint_auth_methods_supported": ["client_secret_post", 1]}),
                "InvalidField token_endpoint_auth_methods_supported",
            ),
        ] {
            idp.route(OPENID, 200, document.to_string());
            let got = match idp.metadata("").await.unwrap_err() {
                e @ DiscoveryError::MissingField { field, .. } => {
                    assert!(!e.is_transient());
                    assert!(e.to_string().contains(field), "{e}");
                    format!("MissingField {field}")
                }
                e @ DiscoveryError::InvalidField { field, .. } => {
                    assert!(!e.is_transient());
                    assert!(e.to_string().contains(field), "{e}");
                    format!("InvalidField {field}")
                }
                other => format!("{other:?}"),
            };
            assert_eq!(got, error, "{document}");
        }
        // No fallback for a document that is wrong.
        assert!(idp.seen().iter().all(|path| path == OPENID));
    }

    #[tokio::test]
    async fn reads_the_mtls_alias_and_the_auth_methods() {
        let idp = Idp::start().await;
        let issuer = idp.server.text("");
        idp.route(
            OPENID,
            200,
            serde_json::json!({
                "issuer": issuer,
                "token_endpoint": "https://idp.example.com/token",
                "mtls_endpoint_aliases": {
                    "token_endpoint": "https://mtls.idp.example.com/token",
                    "revocation_endpoint": "https://mtls.idp.example.com/revoke",
                },
                "token_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"],
                "grant_types_supported": ["client_credentials"],
            })
            .to_string(),
        );
        let metadata = idp.metadata("").await.unwrap();
        assert_eq!(
            metadata.token_endpoint().as_str(),
            "https://idp.example.com/token"
        );
        assert_eq!(
            metadata.mtls_token_endpoint().map(Url::as_str),
            Some("https://mtls.idp.example.com/token")
        );
        assert_eq!(
            metadata.token_endpoint_auth_methods_supported(),
            Some(&["private_key_jwt".to_owned(), "tls_client_auth".to_owned()][..])
        );
        assert!(metadata.supports_auth_method("private_key_jwt"));
        assert!(!metadata.supports_auth_method("client_secret_basic"));
        assert_eq!(metadata.lists_auth_method("tls_client_auth"), Some(true));
        assert_eq!(
            metadata.lists_auth_method("client_secret_post"),
            Some(false)
        );
        let debug = format!("{metadata:?}");
        assert!(
            debug.contains("https://mtls.idp.example.com/token"),
            "{debug}"
        );

        // An alias object without a token endpoint is no alias.
        idp.route(
            OPENID,
            200,
            serde_json::json!({
                "issuer": issuer,
                "token_endpoint": "https://idp.example.com/token",
                "mtls_endpoint_aliases": {"revocation_endpoint": "https://mtls/revoke"},
            })
            .to_string(),
        );
        assert_eq!(idp.metadata("").await.unwrap().mtls_token_endpoint(), None);
    }

    #[tokio::test]
    async fn an_oversized_document_is_refused() {
        let idp = Idp::start().await;
        let issuer = idp.server.text("");
        let padded = serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/token"),
            "padding": "x".repeat(MAX_DOCUMENT_BYTES),
        });
        idp.route(OPENID, 200, padded.to_string());
        idp.route(OAUTH, 200, document(&issuer));
        let error = idp.metadata("").await.unwrap_err();
        assert!(
            matches!(
                error,
                DiscoveryError::TooLarge {
                    limit: MAX_DOCUMENT_BYTES,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(!error.is_transient());
        assert_eq!(idp.seen(), [OPENID]);

        // Exactly at the limit is read.
        let mut exact = document(&issuer);
        exact.push_str(&" ".repeat(MAX_DOCUMENT_BYTES - exact.len()));
        idp.route(OPENID, 200, exact);
        idp.metadata("").await.unwrap();

        // A long page is no document: the other URL is asked.
        idp.route(OPENID, 200, "<html>".repeat(MAX_DOCUMENT_BYTES));
        let metadata = idp.metadata("").await.unwrap();
        assert_eq!(metadata.document_url(), &idp.server.url(OAUTH));
    }

    #[tokio::test]
    async fn odd_bodies_do_not_panic() {
        let idp = Idp::start().await;
        let issuer = idp.server.text("");
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_object = format!(
            r#"{{"issuer": {issuer:?}, "x": {}1{}, "token_endpoint": "https://t/"}}"#,
            "[".repeat(5_000),
            "]".repeat(5_000)
        );
        for body in [
            String::new(),
            "null".to_owned(),
            "\"text\"".to_owned(),
            "{".to_owned(),
            deep,
            deep_object,
            String::from_utf8_lossy(b"{\"issuer\": \"\xff\xfe\"}").into_owned(),
            format!(r#"{{"issuer": {issuer:?}, "token_endpoint": "https://[::1"}}"#),
        ] {
            idp.route(OPENID, 200, body);
            let _ = idp.metadata("").await;
        }
        // A byte order mark is read past.
        idp.route(OPENID, 200, format!("\u{feff}{}", document(&issuer)));
        idp.metadata("").await.unwrap();
    }

    #[tokio::test]
    async fn transient_statuses_do_not_fall_back() {
        for status in [500, 502, 503, 408, 429] {
            let idp = Idp::start().await;
            let issuer = idp.server.text("");
            idp.route(OPENID, status, "down");
            idp.route(OAUTH, 200, document(&issuer));
            let error = idp.metadata("").await.unwrap_err();
            let DiscoveryError::HttpStatus { url, status: got } = &error else {
                panic!("{error:?}");
            };
            assert_eq!(got.as_u16(), status);
            assert_eq!(url, &idp.server.text(OPENID));
            assert!(error.is_transient());
            assert_eq!(idp.seen(), [OPENID]);
        }
        // At the second URL, too.
        let idp = Idp::start().await;
        idp.route(OAUTH, 503, "down");
        let error = idp.metadata("").await.unwrap_err();
        assert!(
            matches!(&error, DiscoveryError::HttpStatus { url, .. } if url == &idp.server.text(OAUTH)),
            "{error:?}"
        );
        assert!(error.is_transient());
    }

    #[tokio::test]
    async fn a_transport_failure_is_transient() {
        // A server that hangs up on every connection, holding its port.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hang_up = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let issuer = Url::parse(&format!("http://{addr}/")).unwrap();
        let error = discovery(issuer, GUARD).metadata().await.unwrap_err();
        hang_up.abort();
        assert!(
            matches!(error, DiscoveryError::Transport { .. }),
            "{error:?}"
        );
        assert!(error.is_transient());
        assert!(std::error::Error::source(&error).is_some());
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let server = Server::start(|_req| std::future::pending()).await;
        let timeout = Duration::from_millis(200);
        let error = discovery(server.url(""), timeout)
            .metadata()
            .await
            .unwrap_err();
        assert!(
            matches!(error, DiscoveryError::Timeout { after } if after == timeout),
            "{error:?}"
        );
        assert!(error.is_transient());
    }

    /// A provider whose answers wait for a gate, counting requests.
    struct Gated {
        server: Server,
        requests: Arc<AtomicUsize>,
        gate: watch::Sender<bool>,
        answer: Arc<Mutex<(u16, String)>>,
    }

    impl Gated {
        async fn start() -> Self {
            let requests = Arc::new(AtomicUsize::new(0));
            let (gate, opened) = watch::channel(false);
            let answer = Arc::new(Mutex::new((503, "down".to_owned())));
            let server = Server::start({
                let requests = Arc::clone(&requests);
                let answer = Arc::clone(&answer);
                move |_req| {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let mut opened = opened.clone();
                    let answer = Arc::clone(&answer);
                    async move {
                        let _ = opened.wait_for(|open| *open).await;
                        let (status, body) = answer.lock().unwrap().clone();
                        respond(status, body)
                    }
                }
            })
            .await;
            Self {
                server,
                requests,
                gate,
                answer,
            }
        }

        fn answer(&self, status: u16, body: String) {
            *self.answer.lock().unwrap() = (status, body);
        }

        fn open(&self, open: bool) {
            self.gate.send_replace(open);
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    type Call = Pin<Box<dyn Future<Output = Outcome> + Send>>;

    /// `n` calls, each polled once: all of them are in flight.
    async fn in_flight(discovery: &Discovery, n: usize) -> Vec<Call> {
        let mut calls: Vec<Call> = (0..n)
            .map(|_| {
                let discovery = discovery.clone();
                Box::pin(async move { discovery.metadata().await }) as Call
            })
            .collect();
        std::future::poll_fn(|cx| {
            for call in &mut calls {
                assert!(call.as_mut().poll(cx).is_pending());
            }
            Poll::Ready(())
        })
        .await;
        calls
    }

    async fn all(calls: Vec<Call>) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(
                tokio::time::timeout(GUARD, call)
                    .await
                    .expect("a caller hangs"),
            );
        }
        outcomes
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_discovery() {
        let idp = Gated::start().await;
        idp.answer(200, document(&idp.server.text("")));
        let discovery = discovery(idp.server.url(""), GUARD);
        let calls = in_flight(&discovery, 20).await;
        idp.open(true);
        let outcomes = all(calls).await;
        let first = outcomes[0].as_ref().unwrap();
        for outcome in &outcomes {
            assert!(Arc::ptr_eq(first, outcome.as_ref().unwrap()));
        }
        assert_eq!(idp.requests(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_failure_which_is_remembered() {
        let idp = Gated::start().await;
        let discovery = discovery(idp.server.url(""), GUARD);
        let calls = in_flight(&discovery, 20).await;
        idp.open(true);
        for outcome in all(calls).await {
            let error = outcome.unwrap_err();
            assert!(
                matches!(error, DiscoveryError::HttpStatus { status, .. } if status == 503),
                "{error:?}"
            );
        }
        assert_eq!(idp.requests(), 1);

        // Until the retry time (tested below, on a paused clock), callers,
        // concurrent or not, get the failure without a request, even if the
        // provider is back. The retry time is put off here, so that a slow
        // machine cannot reach it.
        discovery.put_off_retry();
        idp.answer(200, document(&idp.server.text("")));
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let discovery = discovery.clone();
                tokio::spawn(async move { discovery.metadata().await })
            })
            .collect();
        for caller in callers {
            let outcome = tokio::time::timeout(GUARD, caller)
                .await
                .expect("a caller hangs");
            let error = outcome.unwrap().unwrap_err();
            assert!(
                matches!(error, DiscoveryError::HttpStatus { status, .. } if status == 503),
                "{error:?}"
            );
        }
        assert_eq!(idp.requests(), 1);
    }

    /// Awaits `future` with the clock running, then pauses it again: real
    /// network IO under a paused clock would let it jump to the next timer
    /// (the attempt's timeout) whenever the runtime waits on a socket.
    async fn with_clock_running<T>(future: impl Future<Output = T>) -> T {
        tokio::time::resume();
        let output = future.await;
        tokio::time::pause();
        output
    }

    /// The Debug of `outcome`'s error: the same value shows the same.
    fn shown(outcome: Outcome) -> String {
        format!("{:?}", outcome.unwrap_err())
    }

    /// Checks that `discovery` remembers its last failure for about
    /// `delay` (the clock ran from the failure until it was paused), answers
    /// it without a request until then, and lets the next call ask after.
    async fn remembered_for(discovery: &Discovery, requests: impl Fn() -> usize, delay: Duration) {
        let asked = requests();
        let left = discovery.retry_in().expect("a failure is remembered");
        assert!(left <= delay && left > delay / 2, "{left:?}, not {delay:?}");
        let error = shown(discovery.metadata().await);
        tokio::time::advance(left - Duration::from_millis(1)).await;
        for _ in 0..5 {
            assert_eq!(shown(discovery.metadata().await), error);
        }
        assert_eq!(requests(), asked, "no request until the retry time");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(discovery.retry_in(), Some(Duration::ZERO));
    }

    #[test]
    fn the_retry_delay_doubles_up_to_its_cap() {
        let secs: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(0), FIRST_RETRY_DELAY);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }

    #[tokio::test]
    async fn a_failure_is_the_answer_without_a_request_until_its_retry_time() {
        let idp = Idp::start().await;
        let issuer = idp.server.text("");
        idp.route(OPENID, 503, "down");
        let discovery = idp.discovery("");
        tokio::time::pause();
        let error = with_clock_running(discovery.metadata()).await.unwrap_err();
        assert!(
            matches!(error, DiscoveryError::HttpStatus { status, .. } if status == 503),
            "{error:?}"
        );
        assert_eq!(idp.seen(), [OPENID]);
        // The provider is back, but the failure is remembered.
        idp.route(OPENID, 200, document(&issuer));
        assert_eq!(shown(discovery.metadata().await), format!("{error:?}"));
        let seen = || idp.seen().len();
        remembered_for(&discovery, seen, FIRST_RETRY_DELAY).await;
        assert_eq!(idp.seen(), [OPENID]);

        // After it, the next call asks again.
        let metadata = with_clock_running(discovery.metadata()).await.unwrap();
        assert_eq!(idp.seen(), [OPENID, OPENID]);
        assert_eq!(discovery.retry_in(), None);
        let again = discovery.metadata().await.unwrap();
        assert!(Arc::ptr_eq(&metadata, &again));
        assert_eq!(idp.seen(), [OPENID, OPENID]);
    }

    #[tokio::test]
    async fn failures_in_a_row_double_the_delay_and_a_success_resets_it() {
        let idp = Idp::start().await;
        let issuer = idp.server.text("");
        let discovery = idp.discovery("");
        let seen = || idp.seen().len();
        // Whatever the failure, transient or permanent, it counts; the one
        // remembered is the last.
        tokio::time::pause();
        idp.route(OPENID, 503, "down");
        with_clock_running(discovery.metadata()).await.unwrap_err();
        remembered_for(&discovery, seen, Duration::from_secs(1)).await;
        idp.route(OPENID, 200, document(&idp.server.text("/other")));
        let error = with_clock_running(discovery.metadata()).await.unwrap_err();
        assert!(
            matches!(error, DiscoveryError::IssuerMismatch { .. }),
            "{error:?}"
        );
        remembered_for(&discovery, seen, Duration::from_secs(2)).await;
        idp.route(OPENID, 429, "slow down");
        with_clock_running(discovery.metadata()).await.unwrap_err();
        remembered_for(&discovery, seen, Duration::from_secs(4)).await;
        assert_eq!(discovery.shared.lock().failures, 3);
        assert_eq!(seen(), 3, "one request per attempt");

        idp.route(OPENID, 200, document(&issuer));
        with_clock_running(discovery.metadata()).await.unwrap();
        assert_eq!(discovery.shared.lock().failures, 0);
        assert_eq!(discovery.retry_in(), None);
        assert_eq!(seen(), 4);
    }

    #[tokio::test]
    async fn the_delay_stops_growing_at_its_cap() {
        let idp = Idp::start().await;
        idp.route(OPENID, 500, "down");
        let discovery = idp.discovery("");
        tokio::time::pause();
        let seen = || idp.seen().len();
        for failures in 1..=8 {
            with_clock_running(discovery.metadata()).await.unwrap_err();
            remembered_for(&discovery, seen, retry_delay(failures)).await;
        }
        assert_eq!(retry_delay(8), MAX_RETRY_DELAY);
        assert_eq!(seen(), 8);
    }

    #[tokio::test]
    async fn a_remembered_transport_failure_is_the_same_error() {
        // A server that hangs up on every connection, holding its port.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let hang_up = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                }
            }
        });
        let issuer = Url::parse(&format!("http://{addr}/")).unwrap();
        let discovery = discovery(issuer, GUARD);
        let first = discovery.metadata().await.unwrap_err();
        // However slow the machine, the retry time is not reached.
        discovery.put_off_retry();
        let again = discovery.metadata().await.unwrap_err();
        hang_up.abort();
        let (
            DiscoveryError::Transport { source: first, .. },
            DiscoveryError::Transport { source: again, .. },
        ) = (&first, &again)
        else {
            panic!("{first:?} {again:?}");
        };
        assert!(Arc::ptr_eq(first, again), "the one error, remembered");
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_caller_leaves_the_others_an_answer() {
        let idp = Gated::start().await;
        idp.answer(200, document(&idp.server.text("")));
        let discovery = discovery(idp.server.url(""), GUARD);
        let mut calls = in_flight(&discovery, 2).await;
        // The caller that started the attempt gives up.
        drop(calls.remove(0));
        idp.open(true);
        let outcomes = all(calls).await;
        assert!(outcomes[0].is_ok());
        assert_eq!(idp.requests(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_attempt_nobody_waits_for_still_lands() {
        let idp = Gated::start().await;
        idp.answer(200, document(&idp.server.text("")));
        let discovery = discovery(idp.server.url(""), GUARD);
        drop(in_flight(&discovery, 3).await);
        // A newcomer joins the attempt still running.
        let late = in_flight(&discovery, 1).await;
        idp.open(true);
        assert!(all(late).await[0].is_ok());
        assert_eq!(idp.requests(), 1);
    }

    #[test]
    fn without_a_runtime_the_caller_is_told() {
        let discovery = discovery(
            Url::parse("http://127.0.0.1:1").unwrap(),
            Duration::from_secs(1),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A runtime that shuts down drops the attempt unfinished.
        let mut calls = runtime.block_on(in_flight(&discovery, 1));
        let call = calls.pop().unwrap();
        drop(runtime);
        let error = block_on_without_runtime(call).unwrap_err();
        assert!(matches!(error, DiscoveryError::Interrupted), "{error:?}");
        // And the state is idle again: no runtime now.
        let error = block_on_without_runtime(Box::pin(discovery.metadata())).unwrap_err();
        assert!(matches!(error, DiscoveryError::Interrupted), "{error:?}");
    }

    /// Polls `future` to completion on this thread, without a runtime.
    fn block_on_without_runtime<F: Future + Unpin>(mut future: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        loop {
            if let Poll::Ready(output) = Pin::new(&mut future).poll(&mut cx) {
                return output;
            }
            std::thread::yield_now();
        }
    }
}
