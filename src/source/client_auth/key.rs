//! A private key in this process that signs client assertions: read from
//! PEM once ([`PrivateKey`]), or from a file on every fetch
//! ([`PrivateKeyFile`]), for keys that are rotated on disk.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair,
};
use rustls_pki_types::PrivateKeyDer;
use zeroize::Zeroizing;

use super::pem::{self, KeyProblem, ReadError};
use super::signer::{AssertionSigner, SignError, SignFuture, SigningAlgorithm};

/// The most of a key file that is read: 64 KiB. A PEM private key is a few
/// kilobytes; anything longer is not one.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The kind of a private key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// RSA: signs RS256 (the default) or PS256.
    Rsa,
    /// ECDSA on P-256: signs ES256.
    EcP256,
    /// Ed25519: signs EdDSA.
    Ed25519,
}

impl KeyType {
    /// The algorithm a key of this type signs with unless told otherwise:
    /// RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA.
    pub fn default_algorithm(self) -> SigningAlgorithm {
        match self {
            KeyType::Rsa => SigningAlgorithm::RS256,
            KeyType::EcP256 => SigningAlgorithm::ES256,
            KeyType::Ed25519 => SigningAlgorithm::EdDSA,
        }
    }

    /// Whether a key of this type can sign with `algorithm`.
    pub fn fits(self, algorithm: SigningAlgorithm) -> bool {
        matches!(
            (self, algorithm),
            (
                KeyType::Rsa,
                SigningAlgorithm::RS256 | SigningAlgorithm::PS256
            ) | (KeyType::EcP256, SigningAlgorithm::ES256)
                | (KeyType::Ed25519, SigningAlgorithm::EdDSA)
        )
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Rsa => "RSA",
            KeyType::EcP256 => "EC P-256",
            KeyType::Ed25519 => "Ed25519",
        })
    }
}

/// Why a private key could not be read. Its text never holds key material.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why, as the operating system says it.
        reason: String,
    },
    /// The key file is longer than [`MAX_KEY_FILE_BYTES`].
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The PEM holds no private key (it may hold a certificate or a public
    /// key instead).
    NoPrivateKey,
    /// The PEM is broken (a section without its END line, a malformed
    /// BEGIN line, base64 that does not decode), or holds more than one
    /// private key.
    Malformed {
        /// What is wrong, in words that quote nothing of the file.
        reason: &'static str,
    },
    /// The key is encrypted (`ENCRYPTED PRIVATE KEY`, or a `Proc-Type:
    /// 4,ENCRYPTED` header). Encrypted keys are not read: decrypt it first,
    /// for example with `openssl pkcs8 -in key.pem -out plain.pem` (keep
    /// the result where only this process can read it), or keep the key in
    /// a KMS behind an [`AssertionSigner`].
    Encrypted,
    /// The PEM block is not a key this crate can read: RSA, EC P-256 or
    /// Ed25519, as PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or
    /// SEC1 (`EC PRIVATE KEY`). Other curves (P-384, P-521) are not
    /// supported.
    Unsupported {
        /// The PEM label, such as `PRIVATE KEY`.
        label: &'static str,
    },
    /// The key cannot sign with the algorithm asked for.
    AlgorithmMismatch {
        /// The algorithm.
        algorithm: SigningAlgorithm,
        /// The key's type.
        key_type: KeyType,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Unreadable { path, reason } => {
                write!(f, "the key file {} could not be read: {reason}", path.display())
            }
            KeyError::TooLarge { path } => write!(
                f,
                "the key file {} is longer than {MAX_KEY_FILE_BYTES} bytes: not a PEM private key",
                path.display()
            ),
            KeyError::NoPrivateKey => f.write_str(
                "no PEM private key found (expected BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)",
            ),
            KeyError::Malformed { reason } => write!(f, "the PEM is malformed: {reason}"),
            KeyError::Encrypted => f.write_str(
                "the private key is encrypted; encrypted keys are not read: decrypt it first, or sign with a KMS",
            ),
            KeyError::Unsupported { label } => write!(
                f,
                "the {label} PEM block is not an RSA, EC P-256 or Ed25519 private key this crate can read"
            ),
            KeyError::AlgorithmMismatch {
                algorithm,
                key_type,
            } => write!(f, "an {key_type} key cannot sign {algorithm}"),
        }
    }
}

impl std::error::Error for KeyError {}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Pair {
    fn key_type(&self) -> KeyType {
        match self {
            Pair::Rsa(_) => KeyType::Rsa,
            Pair::Ec(_) => KeyType::EcP256,
            Pair::Ed(_) => KeyType::Ed25519,
        }
    }

    /// Reads the one private key in `pem`.
    fn from_pem(pem: &[u8]) -> Result<Pair, KeyError> {
        // The DER is the key itself: wiped when dropped.
        let der = pem::one_private_key(pem).map_err(|problem| match problem {
            KeyProblem::Encrypted => KeyError::Encrypted,
            KeyProblem::None => KeyError::NoPrivateKey,
            KeyProblem::Several => KeyError::Malformed {
                reason: "it holds more than one private key",
            },
            KeyProblem::Malformed(reason) => KeyError::Malformed { reason },
        })?;
        match &*der {
            PrivateKeyDer::Pkcs1(key) => RsaKeyPair::from_der(key.secret_pkcs1_der())
                .map(Pair::Rsa)
                .map_err(|_| KeyError::Unsupported {
                    label: "RSA PRIVATE KEY",
                }),
            PrivateKeyDer::Sec1(key) => EcdsaKeyPair::from_private_key_der(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                key.secret_sec1_der(),
            )
            .map(Pair::Ec)
            .map_err(|_| KeyError::Unsupported {
                label: "EC PRIVATE KEY",
            }),
            PrivateKeyDer::Pkcs8(key) => {
                let der = key.secret_pkcs8_der();
                if let Ok(rsa) = RsaKeyPair::from_pkcs8(der) {
                    Ok(Pair::Rsa(rsa))
                } else if let Ok(ec) =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                {
                    Ok(Pair::Ec(ec))
                } else if let Ok(ed) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                    Ok(Pair::Ed(ed))
                } else {
                    Err(KeyError::Unsupported {
                        label: "PRIVATE KEY",
                    })
                }
            }
            _ => Err(KeyError::Unsupported {
                label: "PRIVATE KEY",
            }),
        }
    }

    fn sign(&self, algorithm: SigningAlgorithm, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let failed = |_| SignError::new(format!("the {algorithm} signature could not be made"));
        match (self, algorithm) {
            (Pair::Rsa(rsa), SigningAlgorithm::RS256 | SigningAlgorithm::PS256) => {
                let padding: &'static dyn signature::RsaEncoding =
                    if algorithm == SigningAlgorithm::RS256 {
                        &signature::RSA_PKCS1_SHA256
                    } else {
                        &signature::RSA_PSS_SHA256
                    };
                let mut signature = vec![0; rsa.public_modulus_len()];
                rsa.sign(padding, &SystemRandom::new(), message, &mut signature)
                    .map_err(failed)?;
                Ok(signature)
            }
            (Pair::Ec(ec), SigningAlgorithm::ES256) => ec
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(failed),
            (Pair::Ed(ed), SigningAlgorithm::EdDSA) => Ok(ed.sign(message).as_ref().to_vec()),
            (pair, algorithm) => Err(SignError::new(
                KeyError::AlgorithmMismatch {
                    algorithm,
                    key_type: pair.key_type(),
                }
                .to_string(),
            )),
        }
    }
}

/// The algorithm asked for, or the key type's default; an error when the
/// key cannot sign it.
fn algorithm_for(
    key_type: KeyType,
    asked: Option<SigningAlgorithm>,
) -> Result<SigningAlgorithm, KeyError> {
    let algorithm = asked.unwrap_or(key_type.default_algorithm());
    if key_type.fits(algorithm) {
        Ok(algorithm)
    } else {
        Err(KeyError::AlgorithmMismatch {
            algorithm,
            key_type,
        })
    }
}

/// A private key that signs client assertions (`private_key_jwt`): RSA
/// (RS256, PS256), EC P-256 (ES256) or Ed25519 (EdDSA), read once from PEM.
/// Cheap to clone.
///
/// The key lives in AWS-LC's memory, which clears it when freed; the DER
/// decoded from the PEM is wiped, and neither is kept. `Debug` shows the key type, algorithm and
/// key id only.
///
/// ```
/// use tower_bearer::source::client_auth::{KeyError, PrivateKey};
///
/// let pem = b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n";
/// assert_eq!(PrivateKey::from_pem(pem).unwrap_err(), KeyError::NoPrivateKey);
/// ```
#[derive(Clone)]
pub struct PrivateKey {
    pair: Arc<Pair>,
    algorithm: SigningAlgorithm,
    key_id: Option<Arc<str>>,
}

impl PrivateKey {
    /// Reads the private key in `pem` (other blocks, such as certificates
    /// or `EC PARAMETERS`, are skipped; a second key is an error): PKCS#8 (`BEGIN PRIVATE KEY`),
    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`).
    /// Its algorithm is the type's default ([`KeyType::default_algorithm`]);
    /// it has no key id.
    pub fn from_pem(pem: &[u8]) -> Result<PrivateKey, KeyError> {
        let pair = Pair::from_pem(pem)?;
        Ok(PrivateKey {
            algorithm: pair.key_type().default_algorithm(),
            pair: Arc::new(pair),
            key_id: None,
        })
    }

    /// Reads the key in a PEM file, once.
    pub fn from_file(path: impl AsRef<Path>) -> Result<PrivateKey, KeyError> {
        PrivateKey::from_pem(&read_key_file(path.as_ref())?)
    }

    /// Signs with `algorithm` instead of the default; an error when the key
    /// cannot (RS256 and PS256 need an RSA key, ES256 an EC P-256 key,
    /// EdDSA an Ed25519 key).
    pub fn with_algorithm(mut self, algorithm: SigningAlgorithm) -> Result<PrivateKey, KeyError> {
        self.algorithm = algorithm_for(self.key_type(), Some(algorithm))?;
        Ok(self)
    }

    /// Names the key in the assertion's header (`kid`), as the provider
    /// registered it. Without one, no `kid` is sent.
    pub fn with_key_id(mut self, key_id: impl Into<Arc<str>>) -> PrivateKey {
        self.key_id = Some(key_id.into());
        self
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.pair.key_type()
    }
}

impl AssertionSigner for PrivateKey {
    fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a> {
        let signature = self.pair.sign(self.algorithm, message);
        Box::pin(std::future::ready(signature))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type())
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A private key read from a PEM file on every fetch, so that a key
/// rotated on disk (a Kubernetes secret, a renewed certificate's key) is
/// used from the next fetch on, without a restart.
///
/// [`new`](Self::new) reads the file once, so that a missing or malformed
/// key is an error before anything is sent, and takes the algorithm from
/// it: the algorithm (and the key id) stay fixed, as the provider
/// registered them, so a rotation replaces the key with one of the same
/// type. Each fetch reads the file again, off the async threads; a read
/// that fails is transient (the file may be mid-replacement), a key that no
/// longer fits the algorithm is not.
#[derive(Clone)]
pub struct PrivateKeyFile {
    path: Arc<Path>,
    algorithm: SigningAlgorithm,
    key_id: Option<Arc<str>>,
}

impl PrivateKeyFile {
    /// Checks the key in `path` now; reads it again on every fetch.
    pub fn new(path: impl Into<PathBuf>) -> Result<PrivateKeyFile, KeyError> {
        let path: PathBuf = path.into();
        let key = PrivateKey::from_file(&path)?;
        Ok(PrivateKeyFile {
            path: path.into(),
            algorithm: key.algorithm,
            key_id: None,
        })
    }

    /// Signs with `algorithm` instead of the key type's default; an error
    /// when the key in the file now cannot.
    pub fn with_algorithm(
        mut self,
        algorithm: SigningAlgorithm,
    ) -> Result<PrivateKeyFile, KeyError> {
        let key = PrivateKey::from_file(&self.path)?.with_algorithm(algorithm)?;
        self.algorithm = key.algorithm;
        Ok(self)
    }

    /// Names the key in the assertion's header (`kid`).
    pub fn with_key_id(mut self, key_id: impl Into<Arc<str>>) -> PrivateKeyFile {
        self.key_id = Some(key_id.into());
        self
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AssertionSigner for PrivateKeyFile {
    fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a> {
        let path = Arc::clone(&self.path);
        let algorithm = self.algorithm;
        Box::pin(async move {
            // Reading and parsing (an RSA key is checked as it is parsed)
            // are kept off the async threads.
            let parsed =
                tokio::task::spawn_blocking(move || Pair::from_pem(&read_key_file(&path)?))
                    .await
                    .map_err(|_| SignError::transient("reading the key file was cancelled"))?;
            let file = self.path.display();
            let pair = parsed.map_err(|e| match e {
                // Missing for a moment, as a rotation replaces it.
                KeyError::Unreadable { .. } => SignError::transient(e.to_string()),
                KeyError::TooLarge { .. } => SignError::new(e.to_string()),
                // Half-written by whoever rotates it.
                KeyError::NoPrivateKey
                | KeyError::Malformed { .. }
                | KeyError::Unsupported { .. } => {
                    SignError::transient(format!("the key file {file}: {e}"))
                }
                other => SignError::new(format!("the key file {file}: {other}")),
            })?;
            pair.sign(algorithm, message)
        })
    }
}

impl fmt::Debug for PrivateKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKeyFile")
            .field("path", &self.path)
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish()
    }
}

/// The file's bytes, at most [`MAX_KEY_FILE_BYTES`], wiped when dropped.
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    pem::read_file(path, MAX_KEY_FILE_BYTES).map_err(|e| match e {
        ReadError::Io(e) => KeyError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        ReadError::TooLarge => KeyError::TooLarge {
            path: path.to_owned(),
        },
    })
}
