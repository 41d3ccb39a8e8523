//! The key a DPoP client proves possession of: generated in memory, or read
//! once from PEM; its public JWK, its RFC 7638 thumbprint, and the proof
//! header, worked out once when the key is made.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
    Signature,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivateKeyDer;

use crate::source::client_auth::MAX_KEY_FILE_BYTES;
use crate::source::client_auth::pem::{self, KeyProblem, ReadError};

/// The algorithm a DPoP key signs its proofs with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DpopAlgorithm {
    /// ECDSA on P-256 with SHA-256 (`ES256`): the one every DPoP server
    /// supports.
    #[default]
    Es256,
    /// Ed25519 (`EdDSA`): smaller and faster, where the server lists it in
    /// `dpop_signing_alg_values_supported`.
    EdDsa,
}

impl DpopAlgorithm {
    /// The JWS name: `ES256` or `EdDSA`.
    pub fn as_str(self) -> &'static str {
        match self {
            DpopAlgorithm::Es256 => "ES256",
            DpopAlgorithm::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for DpopAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DpopAlgorithm {
    type Err = UnknownDpopAlgorithm;

    /// Reads `ES256` or `EdDSA`, in any case (configuration is often
    /// written by hand).
    fn from_str(name: &str) -> Result<Self, UnknownDpopAlgorithm> {
        if name.eq_ignore_ascii_case("ES256") {
            Ok(DpopAlgorithm::Es256)
        } else if name.eq_ignore_ascii_case("EdDSA") {
            Ok(DpopAlgorithm::EdDsa)
        } else {
            Err(UnknownDpopAlgorithm(name.chars().take(32).collect()))
        }
    }
}

/// A name that is not one of the [`DpopAlgorithm`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownDpopAlgorithm(String);

impl fmt::Display for UnknownDpopAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a supported DPoP algorithm (ES256, EdDSA)",
            self.0
        )
    }
}

impl std::error::Error for UnknownDpopAlgorithm {}

/// Why a DPoP key could not be had. Its text never quotes the file or any
/// key bytes.
#[derive(Debug)]
#[non_exhaustive]
pub enum DpopKeyError {
    /// The key file could not be read; the operating system's error is the
    /// [`source`](std::error::Error::source).
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why, as the operating system says it.
        source: io::Error,
    },
    /// The key file is longer than [`MAX_KEY_FILE_BYTES`].
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The PEM holds no private key (it may hold a certificate or a public
    /// key instead).
    NoPrivateKey,
    /// The PEM is broken (a section without its END line, base64 that does
    /// not decode), or holds more than one private key.
    Malformed {
        /// What is wrong, in words that quote nothing of the file.
        reason: &'static str,
    },
    /// The key is encrypted: decrypt it first (`openssl pkcs8 -in key.pem
    /// -out plain.pem`, kept where only this process can read it).
    Encrypted,
    /// The key is not one DPoP proofs are signed with here: EC P-256
    /// (PKCS#8 or SEC1) or Ed25519 (PKCS#8).
    Unsupported {
        /// What the PEM holds instead, such as `an RSA key`.
        found: &'static str,
    },
    /// No key could be generated: the system's random source failed.
    GenerationFailed,
}

impl fmt::Display for DpopKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The OS's words are the source, so a chain prints them once.
            DpopKeyError::Unreadable { path, .. } => {
                write!(f, "the DPoP key file {} could not be read", path.display())
            }
            DpopKeyError::TooLarge { path } => write!(
                f,
                "the DPoP key file {} is longer than {MAX_KEY_FILE_BYTES} bytes: not a PEM private key",
                path.display()
            ),
            DpopKeyError::NoPrivateKey => f.write_str(
                "no PEM private key found (expected BEGIN PRIVATE KEY or BEGIN EC PRIVATE KEY)",
            ),
            DpopKeyError::Malformed { reason } => {
                write!(f, "the DPoP key's PEM is malformed: {reason}")
            }
            DpopKeyError::Encrypted => f.write_str(
                "the DPoP private key is encrypted; encrypted keys are not read: decrypt it first",
            ),
            DpopKeyError::Unsupported { found } => write!(
                f,
                "the PEM holds {found}; a DPoP key must be EC P-256 (ES256) or Ed25519 (EdDSA), \
                 as PKCS#8 (BEGIN PRIVATE KEY) or, for EC, SEC1 (BEGIN EC PRIVATE KEY)"
            ),
            DpopKeyError::GenerationFailed => {
                f.write_str("no DPoP key could be generated: the system's random source failed")
            }
        }
    }
}

impl std::error::Error for DpopKeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DpopKeyError::Unreadable { source, .. } => Some(source),
            _ => None,
        }
    }
}

enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl Pair {
    fn algorithm(&self) -> DpopAlgorithm {
        match self {
            Pair::Es256(_) => DpopAlgorithm::Es256,
            Pair::EdDsa(_) => DpopAlgorithm::EdDsa,
        }
    }
}

/// The key a client proves possession of with DPoP proofs: EC P-256
/// (`ES256`, the default) or Ed25519 (`EdDSA`). Cheap to clone.
///
/// The private key lives in AWS-LC's memory, which clears it when freed;
/// the DER decoded from a PEM is wiped. `Debug` shows the algorithm and
/// the thumbprint, never key material.
///
/// ```
/// use tower_bearer::dpop::{DpopAlgorithm, DpopKey};
///
/// let key = DpopKey::generate_with(DpopAlgorithm::EdDsa)?;
/// assert!(key.public_jwk().starts_with(r#"{"kty":"OKP","crv":"Ed25519","x":""#));
/// // The value a server binds tokens to (`cnf.jkt`).
/// assert_eq!(key.thumbprint().len(), 43);
/// # Ok::<(), tower_bearer::dpop::DpopKeyError>(())
/// ```
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    pair: Pair,
    public_jwk: Box<str>,
    thumbprint: Box<str>,
    /// base64url of the proof's JOSE header, the same for every proof.
    proof_header: Box<str>,
}

impl DpopKey {
    /// A fresh random EC P-256 key (`ES256`). It lives as long as the
    /// process: tokens bound to it are worthless to anyone else, and die
    /// with it.
    pub fn generate() -> Result<DpopKey, DpopKeyError> {
        DpopKey::generate_with(DpopAlgorithm::Es256)
    }

    /// A fresh random key for `algorithm`.
    pub fn generate_with(algorithm: DpopAlgorithm) -> Result<DpopKey, DpopKeyError> {
        let pair = match algorithm {
            DpopAlgorithm::Es256 => {
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map(Pair::Es256)
            }
            DpopAlgorithm::EdDsa => Ed25519KeyPair::generate().map(Pair::EdDsa),
        };
        DpopKey::new(pair.map_err(|_| DpopKeyError::GenerationFailed)?)
    }

    /// Reads the one private key in `pem` (certificates and `EC
    /// PARAMETERS` beside it are skipped; a second key is an error): EC
    /// P-256 as PKCS#8 (`BEGIN PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE
    /// KEY`), or Ed25519 as PKCS#8. RSA keys, other curves and encrypted
    /// keys are refused.
    pub fn from_pem(pem: &[u8]) -> Result<DpopKey, DpopKeyError> {
        // The DER is the key itself: wiped when dropped.
        let der = pem::one_private_key(pem).map_err(|problem| match problem {
            KeyProblem::Encrypted => DpopKeyError::Encrypted,
            KeyProblem::None => DpopKeyError::NoPrivateKey,
            KeyProblem::Several => DpopKeyError::Malformed {
                reason: "it holds more than one private key",
            },
            KeyProblem::Malformed(reason) => DpopKeyError::Malformed { reason },
        })?;
        let pair = match &*der {
            PrivateKeyDer::Pkcs1(_) => return Err(unsupported("an RSA key")),
            PrivateKeyDer::Sec1(key) => {
                let der = key.secret_sec1_der();
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map(Pair::Es256)
                    .map_err(|_| unsupported(other_key(der)))?
            }
            PrivateKeyDer::Pkcs8(key) => {
                let der = key.secret_pkcs8_der();
                if let Ok(ec) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
                    Pair::Es256(ec)
                } else if let Ok(ed) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                    Pair::EdDsa(ed)
                } else {
                    return Err(unsupported(other_key(der)));
                }
            }
            _ => return Err(unsupported("a key of a kind this crate does not read")),
        };
        DpopKey::new(pair)
    }

    /// Reads the key in a PEM file (at most [`MAX_KEY_FILE_BYTES`], into a
    /// buffer wiped afterwards), once.
    pub fn from_file(path: impl AsRef<Path>) -> Result<DpopKey, DpopKeyError> {
        let path = path.as_ref();
        let pem = pem::read_file(path, MAX_KEY_FILE_BYTES).map_err(|e| match e {
            ReadError::Io(source) => DpopKeyError::Unreadable {
                path: path.to_owned(),
                source,
            },
            ReadError::TooLarge => DpopKeyError::TooLarge {
                path: path.to_owned(),
            },
        })?;
        DpopKey::from_pem(&pem)
    }

    /// The algorithm its proofs are signed with.
    pub fn algorithm(&self) -> DpopAlgorithm {
        self.inner.pair.algorithm()
    }

    /// The RFC 7638 JWK SHA-256 thumbprint of the public key, base64url
    /// without padding: the `dpop_jkt` a client may send in an
    /// authorization request, and the `cnf.jkt` a server binds tokens to.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// The public key as a JWK, in JSON: `{"kty":"EC","crv":"P-256","x":…,"y":…}`
    /// or `{"kty":"OKP","crv":"Ed25519","x":…}`. Every proof carries it in
    /// its header.
    pub fn public_jwk(&self) -> &str {
        &self.inner.public_jwk
    }

    /// base64url of the proof header (`typ`, `alg`, `jwk`): the first part
    /// of every proof.
    pub(crate) fn proof_header(&self) -> &str {
        &self.inner.proof_header
    }

    /// Signs a proof's signing input. Both algorithms' signatures are
    /// [`SIGNATURE_BYTES`] long (ES256 as `r || s`, not DER).
    pub(crate) fn sign(&self, message: &[u8]) -> Option<Signature> {
        match &self.inner.pair {
            Pair::Es256(ec) => ec.sign(&SystemRandom::new(), message).ok(),
            Pair::EdDsa(ed) => Some(ed.sign(message)),
        }
    }

    fn new(pair: Pair) -> Result<DpopKey, DpopKeyError> {
        // The JWK as proofs carry it, and the RFC 7638 form hashed for the
        // thumbprint: the required members only, in lexicographic order,
        // no whitespace.
        let (public_jwk, canonical) = match &pair {
            Pair::Es256(ec) => {
                // An uncompressed point: 0x04, then x and y, 32 bytes each.
                let (x, y) = match ec.public_key().as_ref() {
                    [0x04, xy @ ..] if xy.len() == 64 => xy.split_at(32),
                    _ => return Err(unsupported("an EC key whose public point is not P-256")),
                };
                let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
                (
                    format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}"#),
                    format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
                )
            }
            Pair::EdDsa(ed) => {
                // RFC 8037 section 2.
                let x = URL_SAFE_NO_PAD.encode(ed.public_key());
                (
                    format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}"#),
                    format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
                )
            }
        };
        let thumbprint = URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes()));
        let alg = pair.algorithm();
        let header = format!(r#"{{"typ":"dpop+jwt","alg":"{alg}","jwk":{public_jwk}}}"#);
        Ok(DpopKey {
            inner: Arc::new(Inner {
                pair,
                public_jwk: public_jwk.into(),
                thumbprint: thumbprint.into(),
                proof_header: URL_SAFE_NO_PAD.encode(header).into(),
            }),
        })
    }
}

/// The length of a signature of either algorithm: ES256's `r || s` and
/// Ed25519's are both 64 bytes.
pub(crate) const SIGNATURE_BYTES: usize = 64;

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("algorithm", &self.algorithm())
            .field("thumbprint", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

fn unsupported(found: &'static str) -> DpopKeyError {
    DpopKeyError::Unsupported { found }
}

/// What a key that is neither EC P-256 nor Ed25519 is, so that the error
/// names it. Only on the error path: an RSA parse is slow.
fn other_key(der: &[u8]) -> &'static str {
    if EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_FIXED_SIGNING, der).is_ok() {
        "an EC P-384 key"
    } else if EcdsaKeyPair::from_private_key_der(&ECDSA_P521_SHA512_FIXED_SIGNING, der).is_ok() {
        "an EC P-521 key"
    } else if RsaKeyPair::from_pkcs8(der).is_ok() {
        "an RSA key"
    } else {
        "a key of a kind this crate does not read"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn rcgen_pem(alg: &'static rcgen::SignatureAlgorithm) -> String {
        rcgen::KeyPair::generate_for(alg).unwrap().serialize_pem()
    }

    fn pem_block(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// The RFC 7638 thumbprint, worked out here from the JWK's members.
    fn thumbprint_of(jwk: &str) -> String {
        let jwk: serde_json::Value = serde_json::from_str(jwk).unwrap();
        let canonical = match jwk["kty"].as_str().unwrap() {
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                jwk["crv"].as_str().unwrap(),
                jwk["x"].as_str().unwrap(),
                jwk["y"].as_str().unwrap()
            ),
            "OKP" => format!(
                r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
                jwk["crv"].as_str().unwrap(),
                jwk["x"].as_str().unwrap()
            ),
            other => panic!("unexpected kty {other}"),
        };
        URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes()))
    }

    #[test]
    fn algorithm_names_round_trip() {
        for alg in [DpopAlgorithm::Es256, DpopAlgorithm::EdDsa] {
            assert_eq!(alg.to_string().parse::<DpopAlgorithm>(), Ok(alg));
        }
        assert_eq!("es256".parse(), Ok(DpopAlgorithm::Es256));
        assert_eq!("EDDSA".parse(), Ok(DpopAlgorithm::EdDsa));
        assert_eq!(DpopAlgorithm::default(), DpopAlgorithm::Es256);
        let err = "RS256".parse::<DpopAlgorithm>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#""RS256" is not a supported DPoP algorithm (ES256, EdDSA)"#
        );
    }

    #[test]
    fn generated_keys_have_their_jwk_and_thumbprint() {
        let ec = DpopKey::generate().unwrap();
        assert_eq!(ec.algorithm(), DpopAlgorithm::Es256);
        let jwk: serde_json::Value = serde_json::from_str(ec.public_jwk()).unwrap();
        assert_eq!((&jwk["kty"], &jwk["crv"]), (&"EC".into(), &"P-256".into()));
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["y"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(ec.thumbprint(), thumbprint_of(ec.public_jwk()));

        let ed = DpopKey::generate_with(DpopAlgorithm::EdDsa).unwrap();
        assert_eq!(ed.algorithm(), DpopAlgorithm::EdDsa);
        let jwk: serde_json::Value = serde_json::from_str(ed.public_jwk()).unwrap();
        assert_eq!(jwk.as_object().unwrap().len(), 3);
        assert_eq!(
            (&jwk["kty"], &jwk["crv"]),
            (&"OKP".into(), &"Ed25519".into())
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(ed.thumbprint(), thumbprint_of(ed.public_jwk()));

        // Fresh randomness each time.
        assert_ne!(DpopKey::generate().unwrap().thumbprint(), ec.thumbprint());
    }

    #[test]
    fn the_thumbprint_matches_jsonwebtokens() {
        for key in [
            DpopKey::generate().unwrap(),
            DpopKey::generate_with(DpopAlgorithm::EdDsa).unwrap(),
        ] {
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(key.public_jwk()).unwrap();
            assert_eq!(
                key.thumbprint(),
                jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            );
        }
    }

    #[test]
    fn the_rfc_7638_example_thumbprint() {
        // RFC 7638 section 3.1 works an RSA key; RFC 8037 appendix A.3 an
        // Ed25519 one, which is what this crate can hold.
        let canonical =
            r#"{"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        assert_eq!(
            URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes())),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        let jwk =
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        assert_eq!(
            thumbprint_of(jwk),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn reads_pkcs8_ec_and_ed25519_keys() {
        let pem = rcgen_pem(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(pem.contains("BEGIN PRIVATE KEY"));
        let key = DpopKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), DpopAlgorithm::Es256);
        // The same key read twice has the same thumbprint.
        assert_eq!(
            DpopKey::from_pem(pem.as_bytes()).unwrap().thumbprint(),
            key.thumbprint()
        );

        let pem = rcgen_pem(&rcgen::PKCS_ED25519);
        let key = DpopKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), DpopAlgorithm::EdDsa);
        assert_eq!(key.thumbprint(), thumbprint_of(key.public_jwk()));
    }

    #[test]
    fn reads_a_sec1_ec_key_with_the_same_thumbprint_as_its_pkcs8_form() {
        use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let sec1: EcPrivateKeyRfc5915Der = pair.private_key().as_der().unwrap();
        let pem = pem_block("EC PRIVATE KEY", sec1.as_ref());
        let key = DpopKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), DpopAlgorithm::Es256);

        let pkcs8 = pair.to_pkcs8v1().unwrap();
        let again = DpopKey::from_pem(pem_block("PRIVATE KEY", pkcs8.as_ref()).as_bytes()).unwrap();
        assert_eq!(key.thumbprint(), again.thumbprint());
        assert_eq!(key.public_jwk(), again.public_jwk());
    }

    #[test]
    fn refuses_rsa_and_other_curves_naming_what_is_supported() {
        let pem = rcgen_pem(&rcgen::PKCS_RSA_SHA256);
        let err = DpopKey::from_pem(pem.as_bytes()).unwrap_err();
        assert!(matches!(
            err,
            DpopKeyError::Unsupported {
                found: "an RSA key"
            }
        ));
        let text = err.to_string();
        assert!(text.contains("RSA"), "{text}");
        assert!(
            text.contains("EC P-256 (ES256) or Ed25519 (EdDSA)"),
            "{text}"
        );

        // PKCS#1 is RSA by its label alone.
        let pkcs1 = pem_block("RSA PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(
            DpopKey::from_pem(pkcs1.as_bytes()),
            Err(DpopKeyError::Unsupported {
                found: "an RSA key"
            })
        ));

        let pem = rcgen_pem(&rcgen::PKCS_ECDSA_P384_SHA384);
        let err = DpopKey::from_pem(pem.as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the PEM holds an EC P-384 key; "),
            "{err}"
        );
    }

    #[test]
    fn refuses_garbage_encrypted_and_several_keys() {
        assert!(matches!(
            DpopKey::from_pem(b"not a pem at all"),
            Err(DpopKeyError::NoPrivateKey)
        ));
        let broken = "-----BEGIN PRIVATE KEY-----\nsecret!!material\n-----END PRIVATE KEY-----\n";
        let err = DpopKey::from_pem(broken.as_bytes()).unwrap_err();
        assert!(matches!(err, DpopKeyError::Malformed { .. }), "{err:?}");
        assert!(!err.to_string().contains("secret"));
        assert!(!format!("{err:?}").contains("secret"));

        // Well-formed DER of something that is not a key.
        let junk = pem_block("PRIVATE KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(
            DpopKey::from_pem(junk.as_bytes()),
            Err(DpopKeyError::Unsupported { .. })
        ));

        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(
            DpopKey::from_pem(encrypted.as_bytes()),
            Err(DpopKeyError::Encrypted)
        ));

        let two = rcgen_pem(&rcgen::PKCS_ECDSA_P256_SHA256) + &rcgen_pem(&rcgen::PKCS_ED25519);
        let err = DpopKey::from_pem(two.as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("more than one private key"),
            "{err}"
        );
    }

    /// A file in the temp directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> TempFile {
            let path = std::env::temp_dir()
                .join(format!("tower-bearer-dpop-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn reads_a_key_file() {
        let pem = rcgen_pem(&rcgen::PKCS_ECDSA_P256_SHA256);
        let file = TempFile::new("ok.pem", pem.as_bytes());
        let key = DpopKey::from_file(&file.0).unwrap();
        assert_eq!(
            key.thumbprint(),
            DpopKey::from_pem(pem.as_bytes()).unwrap().thumbprint()
        );
    }

    #[test]
    fn refuses_an_oversize_file() {
        let mut big = rcgen_pem(&rcgen::PKCS_ECDSA_P256_SHA256).into_bytes();
        big.resize(MAX_KEY_FILE_BYTES as usize + 1, b'\n');
        let file = TempFile::new("big.pem", &big);
        let err = DpopKey::from_file(&file.0).unwrap_err();
        assert!(matches!(&err, DpopKeyError::TooLarge { path } if *path == file.0));
        assert!(err.to_string().contains("longer than 65536 bytes"), "{err}");

        // Exactly at the bound is read.
        big.truncate(MAX_KEY_FILE_BYTES as usize);
        let file = TempFile::new("at-bound.pem", &big);
        assert!(DpopKey::from_file(&file.0).is_ok());
    }

    #[test]
    fn a_missing_file_names_the_path_and_keeps_the_io_error() {
        let path = std::env::temp_dir().join("tower-bearer-dpop-no-such-key.pem");
        let err = DpopKey::from_file(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the DPoP key file {} could not be read", path.display())
        );
        let io = err.source().unwrap().downcast_ref::<io::Error>().unwrap();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_file_that_is_not_a_key_is_not_quoted() {
        let file = TempFile::new(
            "cert.pem",
            b"-----BEGIN CERTIFICATE-----\nc2VjcmV0\n-----END CERTIFICATE-----\n",
        );
        let err = DpopKey::from_file(&file.0).unwrap_err();
        assert!(matches!(err, DpopKeyError::NoPrivateKey));
        assert!(!err.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let pem = rcgen_pem(&rcgen::PKCS_ECDSA_P256_SHA256);
        let key = DpopKey::from_pem(pem.as_bytes()).unwrap();
        let debug = format!("{key:?}");
        assert_eq!(
            debug,
            format!(
                "DpopKey {{ algorithm: Es256, thumbprint: {:?}, .. }}",
                key.thumbprint()
            )
        );
        let jwk: serde_json::Value = serde_json::from_str(key.public_jwk()).unwrap();
        assert!(!debug.contains(jwk["x"].as_str().unwrap()));
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!debug.contains(line));
        }
    }
}
