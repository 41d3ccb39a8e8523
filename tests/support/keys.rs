//! Signing keys made at test time, in the encodings a client might be
//! configured with: PKCS#8, the traditional per-algorithm forms (PKCS#1 for
//! RSA, SEC1 / RFC 5915 for EC) and the SPKI public key.
//!
//! Generated with aws-lc-rs, so no key material is checked in. RSA generation
//! takes a moment: [`TestKey::shared`] makes one key per kind per test binary;
//! [`TestKey::generate`] makes a fresh one (a "wrong key", a rotated key).

use std::sync::OnceLock;

use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// The kinds of asymmetric key a client assertion can be signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// RSA 2048, for RS256 and PS256.
    Rsa,
    /// ECDSA on P-256, for ES256.
    EcP256,
    /// Ed25519, for EdDSA.
    Ed25519,
}

impl KeyKind {
    /// Every kind, for tests that cover them all.
    pub const ALL: [KeyKind; 3] = [KeyKind::Rsa, KeyKind::EcP256, KeyKind::Ed25519];

    /// The JWS algorithm this kind usually signs with (RSA also does PS256).
    pub fn default_algorithm(self) -> Algorithm {
        match self {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::EcP256 => Algorithm::ES256,
            KeyKind::Ed25519 => Algorithm::EdDSA,
        }
    }
}

/// A private key and its public half, kept as DER and handed out as PEM.
#[derive(Clone)]
pub struct TestKey {
    /// Which kind of key this is.
    pub kind: KeyKind,
    pkcs8: Vec<u8>,
    traditional: Option<Vec<u8>>,
    spki: Vec<u8>,
}

impl std::fmt::Debug for TestKey {
    // Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl TestKey {
    /// One key per kind, made on first use and shared by the whole test binary.
    pub fn shared(kind: KeyKind) -> &'static TestKey {
        static RSA: OnceLock<TestKey> = OnceLock::new();
        static EC: OnceLock<TestKey> = OnceLock::new();
        static ED: OnceLock<TestKey> = OnceLock::new();
        let cell = match kind {
            KeyKind::Rsa => &RSA,
            KeyKind::EcP256 => &EC,
            KeyKind::Ed25519 => &ED,
        };
        cell.get_or_init(|| TestKey::generate(kind))
    }

    /// A fresh key, different from the shared one.
    pub fn generate(kind: KeyKind) -> TestKey {
        match kind {
            KeyKind::Rsa => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("generate RSA key");
                let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&pair)
                    .expect("RSA key as PKCS#8")
                    .as_ref()
                    .to_vec();
                let pkcs1 = pkcs1_from_pkcs8(&pkcs8).to_vec();
                let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
                    .expect("RSA public key as SPKI")
                    .as_ref()
                    .to_vec();
                TestKey {
                    kind,
                    pkcs8,
                    traditional: Some(pkcs1),
                    spki,
                }
            }
            KeyKind::EcP256 => {
                let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("generate P-256 key");
                let pkcs8 = pair
                    .to_pkcs8v1()
                    .expect("EC key as PKCS#8")
                    .as_ref()
                    .to_vec();
                let sec1 = AsDer::<EcPrivateKeyRfc5915Der>::as_der(&pair.private_key())
                    .expect("EC key as RFC 5915")
                    .as_ref()
                    .to_vec();
                let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
                    .expect("EC public key as SPKI")
                    .as_ref()
                    .to_vec();
                TestKey {
                    kind,
                    pkcs8,
                    traditional: Some(sec1),
                    spki,
                }
            }
            KeyKind::Ed25519 => {
                let pair = Ed25519KeyPair::generate().expect("generate Ed25519 key");
                // v1: the plain PrivateKeyInfo `openssl genpkey` writes.
                let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&pair)
                    .expect("Ed25519 key as PKCS#8")
                    .as_ref()
                    .to_vec();
                let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
                    .expect("Ed25519 public key as SPKI")
                    .as_ref()
                    .to_vec();
                TestKey {
                    kind,
                    pkcs8,
                    traditional: None,
                    spki,
                }
            }
        }
    }

    /// The private key as PKCS#8 DER (`PrivateKeyInfo`).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The private key as PKCS#8 PEM, `-----BEGIN PRIVATE KEY-----`.
    pub fn pkcs8_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    /// The private key in its kind's traditional DER: PKCS#1 `RSAPrivateKey`
    /// for RSA, SEC1 / RFC 5915 `ECPrivateKey` for EC; none for Ed25519.
    pub fn traditional_der(&self) -> Option<&[u8]> {
        self.traditional.as_deref()
    }

    /// The private key in its kind's traditional PEM:
    /// `-----BEGIN RSA PRIVATE KEY-----` or `-----BEGIN EC PRIVATE KEY-----`;
    /// none for Ed25519, which has no such form.
    pub fn traditional_pem(&self) -> Option<String> {
        let label = match self.kind {
            KeyKind::Rsa => "RSA PRIVATE KEY",
            KeyKind::EcP256 => "EC PRIVATE KEY",
            KeyKind::Ed25519 => return None,
        };
        self.traditional.as_deref().map(|der| pem(label, der))
    }

    /// The public key as SPKI DER (`SubjectPublicKeyInfo`).
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    /// The public key as SPKI PEM, `-----BEGIN PUBLIC KEY-----`.
    pub fn public_key_pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki)
    }

    /// The public key, for verifying with jsonwebtoken.
    pub fn decoding_key(&self) -> DecodingKey {
        let pem = self.public_key_pem();
        match self.kind {
            KeyKind::Rsa => DecodingKey::from_rsa_pem(pem.as_bytes()),
            KeyKind::EcP256 => DecodingKey::from_ec_pem(pem.as_bytes()),
            KeyKind::Ed25519 => DecodingKey::from_ed_pem(pem.as_bytes()),
        }
        .expect("jsonwebtoken reads the SPKI public key")
    }

    /// The private key, for signing with jsonwebtoken (from the PKCS#8 PEM).
    pub fn encoding_key(&self) -> EncodingKey {
        let pem = self.pkcs8_pem();
        match self.kind {
            KeyKind::Rsa => EncodingKey::from_rsa_pem(pem.as_bytes()),
            KeyKind::EcP256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            KeyKind::Ed25519 => EncodingKey::from_ed_pem(pem.as_bytes()),
        }
        .expect("jsonwebtoken reads the PKCS#8 private key")
    }
}

/// PEM armour: base64 at 64 columns between BEGIN and END lines, with a
/// final newline.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`:
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, ... }`.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> &[u8] {
    let (tag, info, rest) = der_tlv(pkcs8);
    assert_eq!(tag, 0x30, "PrivateKeyInfo is a SEQUENCE");
    assert!(rest.is_empty(), "nothing after PrivateKeyInfo");
    let (tag, _version, info) = der_tlv(info);
    assert_eq!(tag, 0x02, "version is an INTEGER");
    let (tag, _algorithm, info) = der_tlv(info);
    assert_eq!(tag, 0x30, "algorithm is a SEQUENCE");
    let (tag, private_key, _attributes) = der_tlv(info);
    assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
    private_key
}

/// One DER tag-length-value: (tag, contents, what follows). Single-byte
/// tags and definite lengths only, which is all DER keys use.
fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let (&tag, input) = input.split_first().expect("DER: a tag");
    let (&first, mut input) = input.split_first().expect("DER: a length");
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        assert!((1..=4).contains(&count), "DER: a definite length");
        let (bytes, rest) = input.split_at(count);
        input = rest;
        bytes.iter().fold(0, |n, &b| (n << 8) | usize::from(b))
    };
    assert!(len <= input.len(), "DER: contents within the input");
    let (contents, rest) = input.split_at(len);
    (tag, contents, rest)
}
