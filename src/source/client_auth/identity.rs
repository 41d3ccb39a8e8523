//! The client certificate and key for mutual TLS (RFC 8705): its story
//! and example are on [`ClientIdentity`], which rustdoc shows (this module
//! is private).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::{Zeroize, Zeroizing};

use super::pem::{self, KeyProblem, ReadError};
use crate::error::Chain;

/// The most of a certificate chain or key file that
/// [`ClientIdentity::from_files`] reads: 1 MiB. A PEM chain is a few
/// kilobytes, a key less; a longer file (or a device such as `/dev/zero`)
/// is refused with [`IdentityError::TooLarge`] rather than read to the end.
pub const MAX_IDENTITY_FILE_BYTES: u64 = 1024 * 1024;

/// A client certificate chain and its private key, for mutual TLS
/// (RFC 8705).
///
/// With `tls_client_auth` (RFC 8705 section 2) a client proves who it is by
/// the certificate it presents in the TLS handshake with the token endpoint,
/// not by a secret in the request. The authorization server may then bind
/// the token to that certificate (section 3): the API accepts the token only
/// over a connection made with the same certificate, so the client that
/// calls the API must present it too.
///
/// [`from_pem`](Self::from_pem) and [`from_files`](Self::from_files) check
/// the pair once, up front: the PEM parses, there is one unencrypted private
/// key, and it belongs to the first (leaf) certificate. Mistakes show up
/// there, as an [`IdentityError`], rather than as a handshake failure at the
/// first token fetch.
///
/// Cloning is cheap (one reference count). `Debug` shows the certificate's
/// thumbprint, never the key.
///
/// ```no_run
/// use tower_bearer::source::client_auth::ClientIdentity;
///
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let identity = ClientIdentity::from_files("client.crt", "client.key")?;
///
/// // The `x5t#S256` value a certificate-bound token carries in its `cnf`
/// // claim: compare it with what the authorization server registered.
/// println!("client certificate: {}", identity.certificate_thumbprint());
///
/// // A token bound to the certificate is only accepted over a connection
/// // made with it: give the client that calls the API the same identity.
/// let api = reqwest::Client::builder()
///     .identity(identity.reqwest_identity())
///     .build()?;
/// # drop(api);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    thumbprint: String,
    // Holds the key; reqwest hands it to rustls for each client built.
    identity: reqwest::Identity,
}

impl ClientIdentity {
    /// Builds an identity from a PEM certificate chain and a PEM private
    /// key.
    ///
    /// `certificate_chain_pem` holds one or more `CERTIFICATE` sections,
    /// the client's own (leaf) certificate first, then any intermediates.
    /// `private_key_pem` holds the leaf's private key as `PRIVATE KEY`
    /// (PKCS #8), `RSA PRIVATE KEY` (PKCS #1) or `EC PRIVATE KEY` (SEC1);
    /// other sections in either input are ignored, so one file holding both
    /// can be passed twice.
    ///
    /// # Errors
    ///
    /// [`IdentityError`]: no certificate, no key or more than one, an
    /// encrypted key (decrypt it first, for instance with
    /// `openssl pkey -in key.pem -out plain.pem`), malformed PEM, a key type
    /// rustls cannot sign with, or a key that is not the leaf certificate's.
    pub fn from_pem(
        certificate_chain_pem: &[u8],
        private_key_pem: &[u8],
    ) -> Result<Self, IdentityError> {
        let chain = parse_chain(certificate_chain_pem)?;
        let key = parse_key(private_key_pem)?;
        check_key_matches(&chain[0], &key)?;

        // reqwest reads an identity only from PEM; this one is rebuilt from
        // what was parsed, so it holds exactly the chain and the one key.
        let pem = identity_pem(&chain, &key);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|err| IdentityError::Tls {
            // reqwest's own `Display` says only "builder error".
            reason: Chain(&err).to_string(),
        })?;

        Ok(Self {
            inner: Arc::new(Inner {
                thumbprint: thumbprint(&chain[0]),
                identity,
            }),
        })
    }

    /// Reads the certificate chain and the private key from two PEM files
    /// (they may be the same file), then builds the identity as
    /// [`from_pem`](Self::from_pem) does.
    ///
    /// Reads the files synchronously: call it while setting up, not on a
    /// busy runtime thread.
    ///
    /// # Errors
    ///
    /// [`IdentityError::Unreadable`], naming the file, when a file cannot be
    /// read, [`IdentityError::TooLarge`] when it is longer than
    /// [`MAX_IDENTITY_FILE_BYTES`]; otherwise as [`from_pem`](Self::from_pem).
    pub fn from_files(
        certificate_chain_path: impl AsRef<Path>,
        private_key_path: impl AsRef<Path>,
    ) -> Result<Self, IdentityError> {
        let chain = read(certificate_chain_path.as_ref())?;
        let key = read(private_key_path.as_ref())?;
        Self::from_pem(&chain, &key)
    }

    /// The leaf certificate's SHA-256 thumbprint, base64url without
    /// padding: the `x5t#S256` confirmation value of RFC 8705 section 3.1,
    /// which a certificate-bound token carries as `cnf`.
    pub fn certificate_thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// The identity for a `reqwest::ClientBuilder`
    /// ([`identity`](reqwest::ClientBuilder::identity)), such as the client
    /// that calls the API with a certificate-bound token.
    ///
    /// Each call copies the key (reqwest takes the identity by value).
    pub fn reqwest_identity(&self) -> reqwest::Identity {
        self.inner.identity.clone()
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificate_thumbprint", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

/// Why a [`ClientIdentity`] could not be built.
///
/// Its `Display` is one line; no variant holds or shows key material.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// A file could not be read.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the operating system said, such as
        /// `No such file or directory (os error 2)`.
        reason: String,
    },
    /// A file is longer than [`MAX_IDENTITY_FILE_BYTES`]: reading stopped
    /// there.
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The certificate chain holds no `CERTIFICATE` section.
    NoCertificate,
    /// The private key input holds no `PRIVATE KEY`, `RSA PRIVATE KEY` or
    /// `EC PRIVATE KEY` section.
    NoPrivateKey,
    /// The private key is encrypted (`ENCRYPTED PRIVATE KEY`, or a
    /// `Proc-Type: 4,ENCRYPTED` header). It must be decrypted first.
    EncryptedKey,
    /// An input is not well-formed: broken PEM, more than one private key,
    /// or a leaf certificate that is not X.509.
    Malformed {
        /// What is wrong, and in which input.
        reason: String,
    },
    /// The private key parses as PEM, but not as an RSA, ECDSA or EdDSA key
    /// that rustls can sign with.
    UnsupportedKey,
    /// The private key is not the one of the leaf (first) certificate.
    KeyDoesNotMatchCertificate,
    /// reqwest refused the certificate and key.
    Tls {
        /// What reqwest said.
        reason: String,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::Unreadable { path, reason } => {
                write!(f, "cannot read {}: {reason}", path.display())
            }
            IdentityError::TooLarge { path } => write!(
                f,
                "{} is longer than {MAX_IDENTITY_FILE_BYTES} bytes: not a PEM certificate chain or key",
                path.display()
            ),
            IdentityError::NoCertificate => {
                f.write_str("the certificate chain holds no PEM CERTIFICATE section")
            }
            IdentityError::NoPrivateKey => f.write_str(
                "the private key input holds no PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section",
            ),
            IdentityError::EncryptedKey => f.write_str(
                "the private key is encrypted, which is not supported: decrypt it first \
                 (for instance `openssl pkey -in key.pem -out plain.pem`)",
            ),
            IdentityError::Malformed { reason } => write!(f, "malformed client identity: {reason}"),
            IdentityError::UnsupportedKey => f.write_str(
                "the private key is not an RSA, ECDSA or EdDSA key that rustls can sign with",
            ),
            IdentityError::KeyDoesNotMatchCertificate => f.write_str(
                "the private key does not belong to the first (leaf) certificate of the chain",
            ),
            IdentityError::Tls { reason } => {
                write!(f, "the TLS client refused the identity: {reason}")
            }
        }
    }
}

impl std::error::Error for IdentityError {}

/// The file's bytes, at most [`MAX_IDENTITY_FILE_BYTES`], wiped when
/// dropped (either file may hold the key).
fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
    pem::read_file(path, MAX_IDENTITY_FILE_BYTES).map_err(|e| match e {
        ReadError::Io(e) => IdentityError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        ReadError::TooLarge => IdentityError::TooLarge {
            path: path.to_owned(),
        },
    })
}

fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let mut chain = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, mut der) = section.map_err(|err| malformed_pem("certificate chain", &err))?;
        match kind {
            SectionKind::Certificate => chain.push(CertificateDer::from(der)),
            // A combined file may hold the key too; it is taken from the
            // key input only, and this copy is wiped.
            _ => der.zeroize(),
        }
    }
    if chain.is_empty() {
        return Err(IdentityError::NoCertificate);
    }
    Ok(chain)
}

fn parse_key(pem: &[u8]) -> Result<Zeroizing<PrivateKeyDer<'static>>, IdentityError> {
    pem::one_private_key(pem).map_err(|problem| match problem {
        KeyProblem::Encrypted => IdentityError::EncryptedKey,
        KeyProblem::None => IdentityError::NoPrivateKey,
        KeyProblem::Several => IdentityError::Malformed {
            reason: "the private key input holds more than one private key".into(),
        },
        KeyProblem::Malformed(problem) => IdentityError::Malformed {
            reason: format!("the private key PEM is malformed: {problem}"),
        },
    })
}

fn check_key_matches(
    leaf: &CertificateDer<'static>,
    key: &PrivateKeyDer<'static>,
) -> Result<(), IdentityError> {
    let signer = any_supported_type(key).map_err(|_| IdentityError::UnsupportedKey)?;
    match CertifiedKey::new(vec![leaf.clone()], signer).keys_match() {
        // Unknown: the key cannot say its public key; the handshake will.
        Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(IdentityError::KeyDoesNotMatchCertificate)
        }
        Err(err) => Err(IdentityError::Malformed {
            reason: format!("the first certificate of the chain does not parse as X.509: {err}"),
        }),
    }
}

/// base64url (no padding) of the SHA-256 of a certificate's DER.
fn thumbprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The chain, then the key, as PEM, in a buffer wiped on drop.
fn identity_pem(chain: &[CertificateDer<'_>], key: &PrivateKeyDer<'_>) -> Zeroizing<Vec<u8>> {
    let label = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    let sections: Vec<(&str, &[u8])> = chain
        .iter()
        .map(|cert| ("CERTIFICATE", cert.as_ref()))
        .chain([(label, key.secret_der())])
        .collect();
    // Sized up front: a buffer that grew would leave unwiped copies of the
    // key behind.
    let len = sections
        .iter()
        .map(|(label, der)| pem_len(label, der.len()))
        .sum();
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    for (label, der) in sections {
        push_pem(&mut out, label, der);
    }
    debug_assert_eq!(out.len(), len);
    out
}

const PEM_LINE_BYTES: usize = 48; // 64 base64 characters

fn pem_len(label: &str, der_len: usize) -> usize {
    let lines = der_len.div_ceil(PEM_LINE_BYTES);
    let base64 = der_len.div_ceil(3) * 4;
    "-----BEGIN -----\n".len() + "-----END -----\n".len() + 2 * label.len() + base64 + lines
}

fn push_pem(out: &mut Vec<u8>, label: &str, der: &[u8]) {
    out.extend_from_slice(b"-----BEGIN ");
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"-----\n");
    for line in der.chunks(PEM_LINE_BYTES) {
        let start = out.len();
        out.resize(start + line.len().div_ceil(3) * 4, 0);
        let written = STANDARD
            .encode_slice(line, &mut out[start..])
            .expect("sized for the encoding");
        debug_assert_eq!(start + written, out.len());
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END ");
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"-----\n");
}

/// What is wrong with a PEM input, in words that never quote it.
fn malformed_pem(input: &str, err: &rustls_pki_types::pem::Error) -> IdentityError {
    IdentityError::Malformed {
        reason: format!("the {input} PEM is malformed: {}", pem::malformed(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    use rcgen::{CertificateParams, DnType, KeyPair};

    struct Generated {
        cert_pem: String,
        cert_der: Vec<u8>,
        key: KeyPair,
    }

    fn generate(cn: &str) -> Generated {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        Generated {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
        }
    }

    /// The base64 body of a PEM, to look for in output that must not hold
    /// it (its first line is enough and avoids line-break differences).
    fn first_base64_line(pem: &str) -> &str {
        pem.lines().nth(1).unwrap()
    }

    #[test]
    fn thumbprint_is_base64url_sha256_without_padding() {
        // Known answers: `printf '' | openssl dgst -sha256 -binary | basenc --base64url`.
        assert_eq!(
            thumbprint(b""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert_eq!(
            thumbprint(b"abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }

    #[test]
    fn from_pem_accepts_a_pkcs8_key_and_its_certificate() {
        let g = generate("client-a");
        let identity =
            ClientIdentity::from_pem(g.cert_pem.as_bytes(), g.key.serialize_pem().as_bytes())
                .unwrap();
        let thumb = identity.certificate_thumbprint();
        assert_eq!(thumb.len(), 43);
        assert_eq!(thumb, thumbprint(&g.cert_der));

        let again =
            ClientIdentity::from_pem(g.cert_pem.as_bytes(), g.key.serialize_pem().as_bytes())
                .unwrap();
        assert_eq!(again.certificate_thumbprint(), thumb);
        let other = generate("client-a");
        let other = ClientIdentity::from_pem(
            other.cert_pem.as_bytes(),
            other.key.serialize_pem().as_bytes(),
        )
        .unwrap();
        assert_ne!(other.certificate_thumbprint(), thumb);
    }

    #[test]
    fn from_pem_accepts_a_sec1_ec_key() {
        let g = generate("client-sec1");
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, g.key.serialized_der())
                .unwrap();
        let sec1 = pair.private_key().as_der().unwrap();
        let mut pem = Vec::new();
        push_pem(&mut pem, "EC PRIVATE KEY", sec1.as_ref());
        let identity = ClientIdentity::from_pem(g.cert_pem.as_bytes(), &pem).unwrap();
        assert_eq!(identity.certificate_thumbprint(), thumbprint(&g.cert_der));
    }

    #[test]
    fn the_leaf_is_the_first_certificate_and_one_file_can_hold_everything() {
        let leaf = generate("leaf");
        let other = generate("intermediate");
        let combined = format!(
            "{}{}{}",
            leaf.cert_pem,
            leaf.key.serialize_pem(),
            other.cert_pem
        );
        let identity = ClientIdentity::from_pem(combined.as_bytes(), combined.as_bytes()).unwrap();
        assert_eq!(
            identity.certificate_thumbprint(),
            thumbprint(&leaf.cert_der)
        );

        // Leaf and key swapped against the chain's order: the key is checked
        // against the first certificate.
        let reversed = format!("{}{}", other.cert_pem, leaf.cert_pem);
        assert_eq!(
            ClientIdentity::from_pem(reversed.as_bytes(), leaf.key.serialize_pem().as_bytes())
                .unwrap_err(),
            IdentityError::KeyDoesNotMatchCertificate
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let a = generate("a");
        let b = generate("b");
        let err = ClientIdentity::from_pem(a.cert_pem.as_bytes(), b.key.serialize_pem().as_bytes())
            .unwrap_err();
        assert_eq!(err, IdentityError::KeyDoesNotMatchCertificate);
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn encrypted_keys_are_refused_with_a_hint() {
        let g = generate("enc");
        let pkcs8 = "-----BEGIN ENCRYPTED PRIVATE KEY-----\n\
                     MIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n\
                     -----END ENCRYPTED PRIVATE KEY-----\n";
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\n\
                      Proc-Type: 4,ENCRYPTED\n\
                      DEK-Info: AES-256-CBC,0123456789ABCDEF0123456789ABCDEF\n\
                      \n\
                      MIIEpAIBAAKCAQEA\n\
                      -----END RSA PRIVATE KEY-----\n";
        for key in [pkcs8, legacy] {
            let err = ClientIdentity::from_pem(g.cert_pem.as_bytes(), key.as_bytes()).unwrap_err();
            assert_eq!(err, IdentityError::EncryptedKey);
            assert!(err.to_string().contains("decrypt it first"), "{err}");
        }
    }

    #[test]
    fn garbage_gives_a_clear_error() {
        let g = generate("garbage");
        let key_pem = g.key.serialize_pem();
        let cert = g.cert_pem.as_bytes();
        let key = key_pem.as_bytes();

        assert_eq!(
            ClientIdentity::from_pem(b"", key).unwrap_err(),
            IdentityError::NoCertificate
        );
        assert_eq!(
            ClientIdentity::from_pem(b"\x00\xffnot pem at all", key).unwrap_err(),
            IdentityError::NoCertificate
        );
        assert_eq!(
            ClientIdentity::from_pem(cert, b"not pem").unwrap_err(),
            IdentityError::NoPrivateKey
        );
        // The certificate alone, as the key: no key in it.
        assert_eq!(
            ClientIdentity::from_pem(cert, cert).unwrap_err(),
            IdentityError::NoPrivateKey
        );

        let broken_base64 = "-----BEGIN PRIVATE KEY-----\n%%%%\n-----END PRIVATE KEY-----\n";
        let err = ClientIdentity::from_pem(cert, broken_base64.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, IdentityError::Malformed { reason } if reason.contains("private key")),
            "{err:?}"
        );
        let unterminated = key_pem.replace("-----END PRIVATE KEY-----", "");
        let err = ClientIdentity::from_pem(cert, unterminated.as_bytes()).unwrap_err();
        assert!(matches!(err, IdentityError::Malformed { .. }), "{err:?}");
        // Neither error quotes the input.
        assert!(!err.to_string().contains(first_base64_line(&key_pem)));

        let two_keys = format!("{key_pem}{}", generate("x").key.serialize_pem());
        let err = ClientIdentity::from_pem(cert, two_keys.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("more than one"), "{err}");

        // Valid base64 that is no key, and no certificate.
        let not_a_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            ClientIdentity::from_pem(cert, not_a_key.as_bytes()).unwrap_err(),
            IdentityError::UnsupportedKey
        );
        let not_a_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = ClientIdentity::from_pem(not_a_cert.as_bytes(), key).unwrap_err();
        assert!(matches!(err, IdentityError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn debug_and_errors_never_show_the_key() {
        let g = generate("secret-test");
        let key_pem = g.key.serialize_pem();
        let identity = ClientIdentity::from_pem(g.cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
        let debug = format!("{identity:?}");
        assert!(debug.contains(identity.certificate_thumbprint()), "{debug}");
        assert!(!debug.contains(first_base64_line(&key_pem)), "{debug}");
        assert!(!debug.contains("PRIVATE"), "{debug}");

        let other = generate("other");
        let err =
            ClientIdentity::from_pem(other.cert_pem.as_bytes(), key_pem.as_bytes()).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(first_base64_line(&key_pem)), "{shown}");
    }

    #[test]
    fn clones_share_one_identity() {
        let g = generate("clone");
        let identity =
            ClientIdentity::from_pem(g.cert_pem.as_bytes(), g.key.serialize_pem().as_bytes())
                .unwrap();
        let copy = identity.clone();
        assert!(Arc::ptr_eq(&identity.inner, &copy.inner));
        let _ = copy.reqwest_identity();
    }

    #[test]
    fn the_rebuilt_pem_is_sized_exactly_and_parses_back() {
        let g = generate("pem");
        let chain = parse_chain(g.cert_pem.as_bytes()).unwrap();
        let key = parse_key(g.key.serialize_pem().as_bytes()).unwrap();
        let pem = identity_pem(&chain, &key);
        assert_eq!(pem.len(), pem.capacity());
        assert_eq!(parse_chain(&pem).unwrap(), chain);
        assert_eq!(parse_key(&pem).unwrap().secret_der(), key.secret_der());
    }

    #[test]
    fn from_files_reads_both_and_names_an_unreadable_path() {
        let g = generate("files");
        let dir =
            std::env::temp_dir().join(format!("tower-bearer-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert_path = dir.join("client.crt");
        let key_path = dir.join("client.key");
        std::fs::write(&cert_path, &g.cert_pem).unwrap();
        std::fs::write(&key_path, g.key.serialize_pem()).unwrap();

        let identity = ClientIdentity::from_files(&cert_path, &key_path).unwrap();
        assert_eq!(identity.certificate_thumbprint(), thumbprint(&g.cert_der));

        let missing = dir.join("missing.key");
        let err = ClientIdentity::from_files(&cert_path, &missing).unwrap_err();
        assert!(
            matches!(&err, IdentityError::Unreadable { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("missing.key"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn from_files_refuses_a_file_longer_than_the_limit() {
        let g = generate("large");
        let dir = std::env::temp_dir().join(format!(
            "tower-bearer-identity-large-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cert_path = dir.join("client.crt");
        let key_path = dir.join("client.key");
        std::fs::write(&cert_path, &g.cert_pem).unwrap();

        // The key, padded past the limit with text PEM parsers skip.
        let key_pem = g.key.serialize_pem();
        let limit = MAX_IDENTITY_FILE_BYTES as usize;
        let mut padded = key_pem.clone().into_bytes();
        padded.resize(limit + 1, b'\n');
        std::fs::write(&key_path, &padded).unwrap();
        let err = ClientIdentity::from_files(&cert_path, &key_path).unwrap_err();
        assert!(
            matches!(&err, IdentityError::TooLarge { path } if *path == key_path),
            "{err:?}"
        );
        let shown = err.to_string();
        assert!(shown.contains("client.key"), "{shown}");
        assert!(
            shown.contains(&MAX_IDENTITY_FILE_BYTES.to_string()),
            "{shown}"
        );

        // A certificate chain too, and exactly at the limit is read.
        std::fs::write(&cert_path, &padded).unwrap();
        let err = ClientIdentity::from_files(&cert_path, &key_path).unwrap_err();
        assert!(
            matches!(&err, IdentityError::TooLarge { path } if *path == cert_path),
            "{err:?}"
        );
        let mut cert = g.cert_pem.clone().into_bytes();
        cert.resize(limit, b'\n');
        std::fs::write(&cert_path, &cert).unwrap();
        padded.truncate(limit);
        std::fs::write(&key_path, &padded).unwrap();
        let identity = ClientIdentity::from_files(&cert_path, &key_path).unwrap();
        assert_eq!(identity.certificate_thumbprint(), thumbprint(&g.cert_der));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn from_files_stops_reading_an_endless_file() {
        let err = ClientIdentity::from_files("/dev/zero", "/dev/zero").unwrap_err();
        assert!(
            matches!(&err, IdentityError::TooLarge { path } if path == Path::new("/dev/zero")),
            "{err:?}"
        );
    }

    #[test]
    fn the_read_buffer_is_allocated_once() {
        let dir = std::env::temp_dir().join(format!(
            "tower-bearer-identity-buffer-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("file.pem");
        let limit = MAX_IDENTITY_FILE_BYTES as usize;
        for len in [0, 1, 4096, limit, limit + 1, limit + 4096] {
            std::fs::write(&path, vec![b'-'; len]).unwrap();
            match read(&path) {
                Ok(pem) => {
                    assert_eq!(pem.len(), len);
                    assert_eq!(pem.capacity(), limit + 1, "{len}");
                }
                Err(err) => {
                    assert!(len > limit, "{len}: {err:?}");
                    assert!(matches!(err, IdentityError::TooLarge { .. }), "{err:?}");
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
