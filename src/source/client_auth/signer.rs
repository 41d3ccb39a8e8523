//! What signs a client assertion: a key in this process, or one held
//! elsewhere (a KMS, an HSM) behind the [`AssertionSigner`] trait.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A JWS algorithm a client assertion may be signed with (RFC 7518, RFC 8037).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    PS256,
    /// ECDSA on P-256 with SHA-256; the signature is `r || s`, 64 bytes.
    ES256,
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// HMAC with SHA-256: `client_secret_jwt`, keyed with the client secret.
    HS256,
}

impl SigningAlgorithm {
    /// The name in a JWS header, such as `RS256`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::RS256 => "RS256",
            SigningAlgorithm::PS256 => "PS256",
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::EdDSA => "EdDSA",
            SigningAlgorithm::HS256 => "HS256",
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SigningAlgorithm {
    type Err = UnknownAlgorithm;

    /// Reads a JWS algorithm name, exactly as written (`RS256`, `PS256`,
    /// `ES256`, `EdDSA`, `HS256`).
    fn from_str(name: &str) -> Result<Self, UnknownAlgorithm> {
        Ok(match name {
            "RS256" => SigningAlgorithm::RS256,
            "PS256" => SigningAlgorithm::PS256,
            "ES256" => SigningAlgorithm::ES256,
            "EdDSA" => SigningAlgorithm::EdDSA,
            "HS256" => SigningAlgorithm::HS256,
            _ => return Err(UnknownAlgorithm(name.chars().take(32).collect())),
        })
    }
}

/// A name that is not one of the [`SigningAlgorithm`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownAlgorithm(String);

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a supported signing algorithm (RS256, PS256, ES256, EdDSA, HS256)",
            self.0
        )
    }
}

impl StdError for UnknownAlgorithm {}

/// The future [`AssertionSigner::sign`] returns.
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, SignError>> + Send + 'a>>;

/// Signs client assertions (`private_key_jwt`).
///
/// [`PrivateKey`](super::PrivateKey) and [`PrivateKeyFile`](super::PrivateKeyFile)
/// implement it with a key in this process. Implement it to keep the key
/// in a KMS or an HSM: [`sign`](Self::sign) gets the bytes to sign (the
/// JWS signing input, `base64url(header) "." base64url(claims)`) and
/// returns the raw signature, as the algorithm defines it (for ES256, the
/// 64 bytes `r || s`, not DER).
///
/// ```
/// use tower_bearer::source::client_auth::{AssertionSigner, SignError, SignFuture, SigningAlgorithm};
///
/// struct Kms { key_id: String }
///
/// impl AssertionSigner for Kms {
///     fn algorithm(&self) -> SigningAlgorithm { SigningAlgorithm::PS256 }
///     fn key_id(&self) -> Option<&str> { Some(&self.key_id) }
///     fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a> {
///         Box::pin(async move {
///             // Call the KMS here; a failure that may pass is transient.
///             Err(SignError::transient("the KMS is unreachable"))
///         })
///     }
/// }
/// ```
pub trait AssertionSigner: Send + Sync + 'static {
    /// The algorithm: the header's `alg`.
    fn algorithm(&self) -> SigningAlgorithm;

    /// The key id: the header's `kid`, left out when `None`.
    fn key_id(&self) -> Option<&str>;

    /// Signs `message`.
    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a>;
}

/// Why an assertion could not be signed.
///
/// Its text must not hold key material: [`SignError::new`] takes what
/// went wrong in words, and a source error whose text is the signer's own.
pub struct SignError {
    message: String,
    transient: bool,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl SignError {
    /// A failure that asking again will not mend, such as a key that does
    /// not fit the algorithm.
    pub fn new(message: impl Into<String>) -> Self {
        SignError {
            message: message.into(),
            transient: false,
            source: None,
        }
    }

    /// A failure that may pass, such as an unreachable KMS or a key file
    /// being replaced: the token cache retries after its backoff.
    pub fn transient(message: impl Into<String>) -> Self {
        SignError {
            transient: true,
            ..SignError::new(message)
        }
    }

    /// Adds the error that caused this one.
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Whether asking again may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl fmt::Debug for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignError")
            .field("message", &self.message)
            .field("transient", &self.transient)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for SignError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}
