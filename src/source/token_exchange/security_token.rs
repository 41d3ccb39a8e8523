//! Where a subject or actor token comes from: a file read again on every
//! fetch, or another [`TokenSource`]; and its type.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::error::{TokenExchangeError, TokenFileProblem, TokenRole};
use crate::source::client_auth::pem::{ReadError, read_file};
use crate::source::{BoxTokenSource, TokenSource};

/// The most of a token file that is read: 64 KiB. A service-account JWT is
/// a kilobyte or two; a longer file is not a token.
pub const MAX_TOKEN_FILE_BYTES: usize = 64 * 1024;

/// The token type URIs RFC 8693 section 3 registers, for
/// [`SecurityToken::with_type`] and
/// [`requested_token_type`](super::TokenExchangeBuilder::requested_token_type).
///
/// ```
/// use tower_bearer::source::token_exchange::{SecurityToken, token_type};
///
/// let id_token = SecurityToken::file("/run/ci/oidc-token").with_type(token_type::ID_TOKEN);
/// assert_eq!(id_token.token_type(), "urn:ietf:params:oauth:token-type:id_token");
/// ```
pub mod token_type {
    /// An OAuth 2.0 access token.
    pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    /// An OAuth 2.0 refresh token.
    pub const REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
    /// An OpenID Connect ID token.
    pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
    /// A base64url-encoded SAML 1.1 assertion.
    pub const SAML1: &str = "urn:ietf:params:oauth:token-type:saml1";
    /// A base64url-encoded SAML 2.0 assertion.
    pub const SAML2: &str = "urn:ietf:params:oauth:token-type:saml2";
    /// A JWT (RFC 7519): a Kubernetes service-account token, a CI
    /// provider's OIDC token. The default.
    pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
}

/// A subject or actor token (RFC 8693 calls both "security tokens"): where
/// it comes from, and its type. Cheap to clone.
///
/// Its type defaults to [`token_type::JWT`]; name another with
/// [`with_type`](Self::with_type) (a source's opaque access token is
/// [`token_type::ACCESS_TOKEN`]). The token is never kept between fetches,
/// and never shown: `Debug` names the file or the source's kind, and the
/// type.
///
/// ```
/// use tower_bearer::Token;
/// use tower_bearer::source::FnSource;
/// use tower_bearer::source::token_exchange::{SecurityToken, token_type};
///
/// // Kubernetes' projected service-account token: a JWT, the default type.
/// let subject = SecurityToken::file("/var/run/secrets/tokens/sts-token");
/// assert_eq!(subject.token_type(), token_type::JWT);
///
/// // Another source's access token, said to be one.
/// let actor = SecurityToken::source(FnSource::new(|| async {
///     Ok::<_, std::io::Error>(Token::bearer("from-the-gateway"))
/// }))
/// .with_type(token_type::ACCESS_TOKEN);
/// // Debug names where the token comes from, never the token.
/// assert_eq!(
///     format!("{actor:?}"),
///     r#"SecurityToken { source: "fn", token_type: "urn:ietf:params:oauth:token-type:access_token" }"#
/// );
/// ```
#[derive(Clone)]
pub struct SecurityToken {
    from: Origin,
    token_type: Arc<str>,
}

#[derive(Clone)]
enum Origin {
    File(Arc<Path>),
    Source(BoxTokenSource),
}

impl SecurityToken {
    /// The token in the file at `path`, read again on every fetch (off the
    /// async threads), so that a token rotated on disk is sent from the
    /// next fetch on: Kubernetes replaces a projected service-account token
    /// well before it expires. Whitespace around it (a trailing newline) is
    /// left out; at most [`MAX_TOKEN_FILE_BYTES`] are read, into a buffer
    /// wiped when dropped.
    ///
    /// Nothing is read before the first fetch. A file that is missing,
    /// unreadable, empty or not UTF-8 text fails that fetch, transiently
    /// (a rotation may be under way): the cache backs off and asks again.
    pub fn file(path: impl Into<PathBuf>) -> SecurityToken {
        SecurityToken::new(Origin::File(path.into().into()))
    }

    /// The token `source` yields, asked for on every fetch: another
    /// identity provider's token, a [`ClientCredentials`](crate::ClientCredentials)
    /// source's, an [`FnSource`](crate::source::FnSource)'s. Its failure
    /// fails the fetch, retried as the source classifies it.
    pub fn source(source: impl TokenSource) -> SecurityToken {
        SecurityToken::new(Origin::Source(BoxTokenSource::new(source)))
    }

    fn new(from: Origin) -> SecurityToken {
        SecurityToken {
            from,
            token_type: Arc::from(token_type::JWT),
        }
    }

    /// The token's type, a URI such as those in [`token_type`]. Defaults
    /// to [`token_type::JWT`].
    pub fn with_type(mut self, token_type: impl Into<Arc<str>>) -> SecurityToken {
        self.token_type = token_type.into();
        self
    }

    /// The token's type.
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// The file the token is read from, if it is.
    pub fn path(&self) -> Option<&Path> {
        match &self.from {
            Origin::File(path) => Some(path),
            Origin::Source(_) => None,
        }
    }

    /// The token, now: the file read, or the source asked.
    pub(super) async fn read(
        &self,
        role: TokenRole,
    ) -> Result<Zeroizing<String>, TokenExchangeError> {
        match &self.from {
            Origin::File(path) => {
                let file = Arc::clone(path);
                let read = tokio::task::spawn_blocking(move || read_token_file(&file))
                    .await
                    .unwrap_or_else(|_| {
                        Err(TokenFileProblem::Unreadable {
                            reason: "reading it was cancelled".into(),
                        })
                    });
                read.map_err(|problem| TokenExchangeError::TokenFile {
                    role,
                    path: path.to_path_buf(),
                    problem,
                })
            }
            Origin::Source(source) => match source.fetch().await {
                Ok(token) => Ok(Zeroizing::new(token.access_token().secret().to_owned())),
                Err(source) => Err(TokenExchangeError::TokenSource { role, source }),
            },
        }
    }
}

/// The token in the file, without the whitespace around it.
fn read_token_file(path: &Path) -> Result<Zeroizing<String>, TokenFileProblem> {
    let bytes = read_file(path, MAX_TOKEN_FILE_BYTES as u64).map_err(|e| match e {
        ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => TokenFileProblem::Missing,
        ReadError::Io(e) => TokenFileProblem::Unreadable {
            reason: e.to_string(),
        },
        ReadError::TooLarge => TokenFileProblem::TooLarge {
            limit: MAX_TOKEN_FILE_BYTES,
        },
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| TokenFileProblem::NotText)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenFileProblem::Empty);
    }
    Ok(Zeroizing::new(token.to_owned()))
}

impl fmt::Debug for SecurityToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("SecurityToken");
        match &self.from {
            Origin::File(path) => debug.field("file", path),
            Origin::Source(source) => debug.field("source", &source.kind()),
        };
        debug.field("token_type", &self.token_type).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "tower-bearer-security-token-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn a_token_file_is_read_trimmed_and_its_problems_named() {
        let token = temp_file("token", b"  eyJ.a.b\r\n");
        assert_eq!(
            read_token_file(&token).ok().as_deref().map(|t| t.as_str()),
            Some("eyJ.a.b")
        );
        for (contents, expected) in [
            (&b""[..], TokenFileProblem::Empty),
            (b" \n\t", TokenFileProblem::Empty),
            (b"\xff\xfe", TokenFileProblem::NotText),
        ] {
            let path = temp_file("bad", contents);
            assert_eq!(read_token_file(&path).err(), Some(expected));
            std::fs::remove_file(path).unwrap();
        }
        let long = temp_file("long", &vec![b'a'; MAX_TOKEN_FILE_BYTES + 1]);
        assert_eq!(
            read_token_file(&long).err(),
            Some(TokenFileProblem::TooLarge {
                limit: MAX_TOKEN_FILE_BYTES
            })
        );
        let exactly = temp_file("exact", &vec![b'a'; MAX_TOKEN_FILE_BYTES]);
        assert_eq!(
            read_token_file(&exactly).unwrap().len(),
            MAX_TOKEN_FILE_BYTES
        );
        let missing = token.with_extension("missing");
        assert_eq!(
            read_token_file(&missing).err(),
            Some(TokenFileProblem::Missing)
        );
        for path in [token, long, exactly] {
            std::fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn debug_names_the_file_and_the_type() {
        let token = SecurityToken::file("/var/run/secrets/token").with_type(token_type::ID_TOKEN);
        assert_eq!(
            format!("{token:?}"),
            r#"SecurityToken { file: "/var/run/secrets/token", token_type: "urn:ietf:params:oauth:token-type:id_token" }"#
        );
        assert_eq!(token.path(), Some(Path::new("/var/run/secrets/token")));
    }
}
