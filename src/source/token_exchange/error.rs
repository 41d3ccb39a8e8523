//! Why a token exchange gave no token: the subject or actor token could
//! not be had, or the token endpoint said no.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;

use crate::error::{ErrorClass, SourceError};
use crate::source::client_credentials::ClientCredentialsError;

/// Which of the exchange's input tokens: the subject's or the actor's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRole {
    /// The `subject_token`: who the new token is for.
    Subject,
    /// The `actor_token`: who acts for the subject.
    Actor,
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenRole::Subject => "subject",
            TokenRole::Actor => "actor",
        })
    }
}

/// What is wrong with a token file. Nothing here quotes the file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenFileProblem {
    /// There is no such file (yet: a rotation may be replacing it).
    Missing,
    /// It could not be read, as the operating system says.
    Unreadable {
        /// The operating system's reason, such as `permission denied`.
        reason: String,
    },
    /// It holds nothing but whitespace (a rotation may be writing it).
    Empty,
    /// It is not UTF-8 text.
    NotText,
    /// It is longer than a token is
    /// ([`MAX_TOKEN_FILE_BYTES`](super::MAX_TOKEN_FILE_BYTES)).
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
}

impl fmt::Display for TokenFileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenFileProblem::Missing => f.write_str("it does not exist"),
            TokenFileProblem::Unreadable { reason } => write!(f, "it could not be read: {reason}"),
            TokenFileProblem::Empty => f.write_str("it is empty"),
            TokenFileProblem::NotText => f.write_str("it is not UTF-8 text"),
            TokenFileProblem::TooLarge { limit } => {
                write!(f, "it is longer than {limit} bytes, too long for a token")
            }
        }
    }
}

/// Why a [`TokenExchange`](super::TokenExchange) gave no token.
///
/// Neither the subject nor the actor token ever shows in it, nor does any
/// other secret of the source's, even when the token endpoint echoes them.
#[derive(Debug)]
#[non_exhaustive]
pub enum TokenExchangeError {
    /// A token file could not be read. Transient (the cache backs off and
    /// reads it again: a rotation may be under way, a volume not mounted
    /// yet), except for a file too long to be a token, which is permanent.
    TokenFile {
        /// Whose token.
        role: TokenRole,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: TokenFileProblem,
    },
    /// The source of the subject or actor token failed; its error is the
    /// `source()`, and its class is the source's.
    TokenSource {
        /// Whose token.
        role: TokenRole,
        /// The source's error, with its class.
        source: SourceError,
    },
    /// The token request failed, as typed as for the client-credentials
    /// source: the endpoint could not be discovered or reached, refused the
    /// request (a subject token it does not take is `invalid_grant`,
    /// `invalid_request` or `invalid_target`, permanent), or answered
    /// without a usable token; or a key's parameters make no request.
    /// `Display` and `source()` are the inner error's.
    TokenEndpoint(ClientCredentialsError),
}

impl TokenExchangeError {
    /// How the cache should retry: see each variant.
    pub fn class(&self) -> ErrorClass {
        match self {
            TokenExchangeError::TokenFile { problem, .. } => match problem {
                TokenFileProblem::TooLarge { .. } => ErrorClass::Permanent,
                _ => ErrorClass::TRANSIENT,
            },
            TokenExchangeError::TokenSource { source, .. } => source.class(),
            TokenExchangeError::TokenEndpoint(error) => error.class(),
        }
    }

    /// The token endpoint's OAuth2 `error` code, such as `invalid_grant`,
    /// when it sent one.
    pub fn oauth_error(&self) -> Option<&str> {
        self.endpoint_error()?.oauth_error()
    }

    /// The token endpoint's HTTP status, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        self.endpoint_error()?.status()
    }

    /// The token endpoint's `Retry-After` delay, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.endpoint_error()?.retry_after()
    }

    /// The token endpoint's error, when the failure is there.
    pub fn endpoint_error(&self) -> Option<&ClientCredentialsError> {
        match self {
            TokenExchangeError::TokenEndpoint(error) => Some(error),
            _ => None,
        }
    }

    /// Whose token could not be had, when the failure is there.
    pub fn role(&self) -> Option<TokenRole> {
        match self {
            TokenExchangeError::TokenFile { role, .. }
            | TokenExchangeError::TokenSource { role, .. } => Some(*role),
            TokenExchangeError::TokenEndpoint(_) => None,
        }
    }
}

impl fmt::Display for TokenExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenExchangeError::TokenFile {
                role,
                path,
                problem,
            } => write!(
                f,
                "the {role} token file {} cannot be used: {problem}",
                path.display()
            ),
            // What failed is the source's to say, in the chain.
            TokenExchangeError::TokenSource { role, .. } => {
                write!(f, "the {role} token's source failed")
            }
            TokenExchangeError::TokenEndpoint(error) => fmt::Display::fmt(error, f),
        }
    }
}

impl std::error::Error for TokenExchangeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TokenExchangeError::TokenFile { .. } => None,
            TokenExchangeError::TokenSource { source, .. } => Some(source),
            // Transparent: Display already printed the endpoint's error.
            TokenExchangeError::TokenEndpoint(error) => error.source(),
        }
    }
}

impl From<ClientCredentialsError> for TokenExchangeError {
    fn from(error: ClientCredentialsError) -> Self {
        TokenExchangeError::TokenEndpoint(error)
    }
}
