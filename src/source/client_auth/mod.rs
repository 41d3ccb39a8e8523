//! How a client proves who it is to the token endpoint: a client secret
//! (`client_secret_basic`, `client_secret_post`), a signed client assertion
//! (`private_key_jwt`, `client_secret_jwt`, RFC 7523), or a client
//! certificate (`tls_client_auth`, RFC 8705).
//!
//! ```no_run
//! use tower_bearer::ClientCredentials;
//! use tower_bearer::source::client_auth::{PrivateKeyFile, SigningAlgorithm};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // private_key_jwt: a fresh assertion signed with the key on every fetch;
//! // the file is read again each time, so a rotated key is picked up.
//! let key = PrivateKeyFile::new("/etc/secrets/client-key.pem")?
//!     .with_algorithm(SigningAlgorithm::PS256)?
//!     .with_key_id("2026-11");
//! let source = ClientCredentials::builder("https://login.example.com/oauth2/token", "my-client")
//!     .private_key_jwt(key)
//!     .scope("orders.read")
//!     .build()?;
//! # drop(source);
//! # Ok(()) }
//! ```

mod assertion;
#[cfg(feature = "rustls")]
mod identity;
mod key;
pub(crate) mod pem;
mod signer;

use std::fmt;
use std::sync::Arc;

use crate::source::client_credentials::{AuthStyle, ClientSecret};

pub use assertion::{ASSERTION_LIFETIME, JWT_BEARER_ASSERTION_TYPE};
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub use identity::{ClientIdentity, IdentityError, MAX_IDENTITY_FILE_BYTES};
pub use key::{KeyError, KeyType, MAX_KEY_FILE_BYTES, PrivateKey, PrivateKeyFile};
pub use signer::{AssertionSigner, SignError, SignFuture, SigningAlgorithm, UnknownAlgorithm};

pub(crate) use assertion::{make as make_assertion, secret_signer};

/// A client authentication method, by its registered name (RFC 8414's
/// `token_endpoint_auth_methods_supported`, OpenID Connect Core section 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// HTTP Basic with the client id and secret.
    ClientSecretBasic,
    /// The client id and secret in the form.
    ClientSecretPost,
    /// An HS256 assertion keyed with the client secret.
    ClientSecretJwt,
    /// An assertion signed with the client's private key.
    PrivateKeyJwt,
    /// A client certificate on the TLS connection (RFC 8705 section 2.1).
    TlsClientAuth,
    /// No authentication: a public client names itself.
    None,
}

impl AuthMethod {
    /// The registered name, such as `private_key_jwt`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretJwt => "client_secret_jwt",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::TlsClientAuth => "tls_client_auth",
            AuthMethod::None => "none",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `aud` of a client assertion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssertionAudience {
    /// The token endpoint's URL, as the request is sent to it (RFC 7523
    /// section 3; what OpenID Connect Core section 9 asks for). The default.
    #[default]
    TokenEndpoint,
    /// The issuer the source was discovered from, as its metadata names it
    /// (RFC 7523 allows it; some providers ask for it). Only for a source
    /// built with discovery.
    Issuer,
    /// This value.
    Other(String),
}

/// A client assertion's signer and audience: `private_key_jwt` or
/// `client_secret_jwt`.
#[derive(Clone)]
pub(crate) struct Assertion {
    pub(crate) signer: Arc<dyn AssertionSigner>,
    pub(crate) audience: AssertionAudience,
    pub(crate) method: AuthMethod,
    /// The client secret of `client_secret_jwt`: a secret to scrub from
    /// anything the endpoint echoes.
    pub(crate) secret: Option<ClientSecret>,
}

impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assertion")
            .field("method", &self.method)
            .field("algorithm", &self.signer.algorithm())
            .field("key_id", &self.signer.key_id())
            .field("audience", &self.audience)
            .finish()
    }
}

/// How the client authenticates, as its builder settled it.
#[derive(Clone, Debug)]
pub(crate) enum ClientAuth {
    /// A public client: its id in the form, nothing else.
    Public,
    /// The client secret, in a Basic header or in the form.
    Secret {
        secret: ClientSecret,
        style: AuthStyle,
    },
    /// A client assertion, made fresh for every request.
    Assertion(Assertion),
    /// A client certificate on the connection (the HTTP client presents
    /// it); the id in the form.
    #[cfg(feature = "rustls")]
    Tls,
}

impl ClientAuth {
    /// The registered name of the method.
    pub(crate) fn method(&self) -> AuthMethod {
        match self {
            ClientAuth::Public => AuthMethod::None,
            ClientAuth::Secret {
                style: AuthStyle::Basic,
                ..
            } => AuthMethod::ClientSecretBasic,
            ClientAuth::Secret {
                style: AuthStyle::RequestBody,
                ..
            } => AuthMethod::ClientSecretPost,
            ClientAuth::Assertion(assertion) => assertion.method,
            #[cfg(feature = "rustls")]
            ClientAuth::Tls => AuthMethod::TlsClientAuth,
        }
    }
}
