//! Tokens sealed at rest: AES-256-GCM with a fleet-wide key, rotated by id.
//!
//! ```
//! use tower_bearer::store::{Encryption, EncryptionKey, RedisStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 32 random bytes, base64: `openssl rand -base64 32`, kept in a secret store.
//! let current = EncryptionKey::from_base64("2026-11", "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k=")?;
//! let previous = EncryptionKey::from_base64("2026-05", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
//! let store = RedisStore::builder("redis://127.0.0.1:6379/")?
//!     .encryption(Encryption::new(current).also_read(previous))
//!     .build();
//! # drop(store);
//! # Ok(()) }
//! ```
//!
//! Every value is sealed with the write key under a fresh random nonce. The
//! key's id, the Redis key and the value's bookkeeping (its id, the writer's
//! margin, the token's end) are bound in as associated data: a value copied
//! under another Redis key, or altered in any byte, fails to open and is a
//! miss, never a token.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;

/// The length of an AES-256 key: 32 bytes.
pub const KEY_LEN: usize = 32;
/// The longest key id: 64 characters.
const MAX_KEY_ID_LEN: usize = 64;

/// One AES-256-GCM key and its id. The key material never leaves it: not in
/// `Debug`, not in errors.
pub struct EncryptionKey {
    id: String,
    key: RandomizedNonceKey,
}

impl EncryptionKey {
    /// A key from its 32 raw bytes. `id` names it in every value it seals,
    /// so that readers pick the right key during a rotation: 1 to 64
    /// characters of `A-Z a-z 0-9 . _ -`.
    pub fn new(id: impl Into<String>, bytes: &[u8]) -> Result<Self, EncryptionKeyError> {
        let id = id.into();
        let id_ok = !id.is_empty()
            && id.len() <= MAX_KEY_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err(EncryptionKeyError::BadId);
        }
        if bytes.len() != KEY_LEN {
            return Err(EncryptionKeyError::WrongLength {
                id,
                len: bytes.len(),
            });
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes)
            .map_err(|_| EncryptionKeyError::Rejected { id: id.clone() })?;
        Ok(Self { id, key })
    }

    /// A key from the standard base64 of its 32 bytes (padded or not), as
    /// `openssl rand -base64 32` prints it. Surrounding whitespace is ignored.
    pub fn from_base64(id: impl Into<String>, encoded: &str) -> Result<Self, EncryptionKeyError> {
        let id = id.into();
        let trimmed = encoded.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
            .map_err(|_| EncryptionKeyError::NotBase64 { id: id.clone() })?;
        Self::new(id, &bytes)
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be made. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncryptionKeyError {
    /// The id is empty, too long, or has characters outside `A-Z a-z 0-9 . _ -`.
    BadId,
    /// The key is not 32 bytes long.
    WrongLength {
        /// The key's id.
        id: String,
        /// How many bytes it has.
        len: usize,
    },
    /// The text is not base64.
    NotBase64 {
        /// The key's id.
        id: String,
    },
    /// The cryptographic library refused the key.
    Rejected {
        /// The key's id.
        id: String,
    },
}

impl fmt::Display for EncryptionKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadId => write!(
                f,
                "an encryption key id is 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 . _ -"
            ),
            Self::WrongLength { id, len } => write!(
                f,
                "encryption key {id:?} is {len} bytes long; AES-256 needs {KEY_LEN} (openssl rand -base64 32)"
            ),
            Self::NotBase64 { id } => write!(f, "encryption key {id:?} is not valid base64"),
            Self::Rejected { id } => write!(f, "encryption key {id:?} was refused"),
        }
    }
}

impl std::error::Error for EncryptionKeyError {}

/// How the store seals tokens: one key to write, any number to read.
///
/// To rotate: add the new key as a read key everywhere
/// ([`also_read`](Self::also_read)), then make it the write key everywhere
/// with the old one as a read key, then drop the old key once the tokens it
/// sealed have expired (a token's lifetime at most). A value sealed with a
/// key a process does not have is a miss for that process, which then
/// fetches and writes its own token over it.
pub struct Encryption {
    write: EncryptionKey,
    read: Vec<EncryptionKey>,
}

impl Encryption {
    /// Seals with `write_key`, and opens what it sealed.
    pub fn new(write_key: EncryptionKey) -> Self {
        Self {
            write: write_key,
            read: Vec::new(),
        }
    }

    /// Opens values sealed with `key` too: an older key during a rotation,
    /// or a newer one not yet used for writing. A key with the write key's
    /// id is ignored.
    pub fn also_read(mut self, key: EncryptionKey) -> Self {
        if key.id != self.write.id {
            self.read.retain(|known| known.id != key.id);
            self.read.push(key);
        }
        self
    }

    /// The id of the key that seals.
    pub(crate) fn write_key_id(&self) -> &str {
        &self.write.id
    }

    /// Seals `plaintext`: the nonce, then the ciphertext and its tag.
    /// `aad` must name the write key (see [`write_key_id`](Self::write_key_id)).
    pub(crate) fn seal(&self, mut plaintext: Vec<u8>, aad: &[u8]) -> Option<Vec<u8>> {
        let nonce = self
            .write
            .key
            .seal_in_place_append_tag(Aad::from(aad), &mut plaintext)
            .ok()?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len());
        sealed.extend_from_slice(nonce.as_ref());
        sealed.append(&mut plaintext);
        Some(sealed)
    }

    /// Opens what [`seal`](Self::seal) made with the key `key_id`, or `None`:
    /// an unknown key, or a value that is not exactly what was sealed with
    /// this `aad`.
    pub(crate) fn open(&self, key_id: &str, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let key = std::iter::once(&self.write)
            .chain(&self.read)
            .find(|key| key.id == key_id)?;
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = key
            .key
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .ok()?;
        Some(plaintext.to_vec())
    }
}

impl fmt::Debug for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encryption")
            .field("write_key", &self.write.id)
            .field(
                "read_keys",
                &self.read.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> EncryptionKey {
        EncryptionKey::new(id, &[byte; KEY_LEN]).unwrap()
    }

    #[test]
    fn seals_and_opens_with_the_same_associated_data_only() {
        let encryption = Encryption::new(key("k1", 7));
        let sealed = encryption.seal(b"secret-token".to_vec(), b"aad").unwrap();
        assert!(
            !sealed
                .windows(b"secret-token".len())
                .any(|w| w == b"secret-token")
        );
        assert_eq!(
            encryption.open("k1", &sealed, b"aad").unwrap(),
            b"secret-token"
        );
        assert!(encryption.open("k1", &sealed, b"other aad").is_none());
        assert!(encryption.open("k2", &sealed, b"aad").is_none());
        // Any byte changed: nonce, ciphertext or tag.
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert!(encryption.open("k1", &tampered, b"aad").is_none(), "{i}");
        }
        assert!(encryption.open("k1", &sealed[..10], b"aad").is_none());
        assert!(encryption.open("k1", &[], b"aad").is_none());
    }

    #[test]
    fn nonces_are_fresh() {
        let encryption = Encryption::new(key("k1", 7));
        let a = encryption.seal(b"t".to_vec(), b"").unwrap();
        let b = encryption.seal(b"t".to_vec(), b"").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn rotation_reads_old_and_new_and_writes_new() {
        let old = Encryption::new(key("old", 1));
        let sealed_old = old.seal(b"t1".to_vec(), b"a").unwrap();
        let rotated = Encryption::new(key("new", 2)).also_read(key("old", 1));
        assert_eq!(rotated.write_key_id(), "new");
        assert_eq!(rotated.open("old", &sealed_old, b"a").unwrap(), b"t1");
        let sealed_new = rotated.seal(b"t2".to_vec(), b"a").unwrap();
        assert_eq!(rotated.open("new", &sealed_new, b"a").unwrap(), b"t2");
        // A process that has only the old key cannot read the new values.
        assert!(old.open("new", &sealed_new, b"a").is_none());
        // Same id, other material: does not open.
        let impostor = Encryption::new(key("old", 9));
        assert!(impostor.open("old", &sealed_old, b"a").is_none());
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        assert_eq!(
            EncryptionKey::new("", &[0; KEY_LEN]).unwrap_err(),
            EncryptionKeyError::BadId
        );
        assert_eq!(
            EncryptionKey::new("a b", &[0; KEY_LEN]).unwrap_err(),
            EncryptionKeyError::BadId
        );
        let short = EncryptionKey::new("k", &[0; 16]).unwrap_err();
        assert!(short.to_string().contains("16 bytes"), "{short}");
        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA==";
        let wrong = EncryptionKey::from_base64("k", secret).unwrap_err();
        assert!(!wrong.to_string().contains(secret));
        let not = EncryptionKey::from_base64("k", "not base64 at all!").unwrap_err();
        assert_eq!(not, EncryptionKeyError::NotBase64 { id: "k".into() });
        let padded = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert!(EncryptionKey::from_base64("k", padded).is_ok());
        assert!(EncryptionKey::from_base64("k", padded.trim_end_matches('=')).is_ok());
        assert!(EncryptionKey::from_base64("k", &format!(" {padded}\n")).is_ok());
    }

    #[test]
    fn debug_shows_ids_only() {
        let encryption = Encryption::new(key("k2", 0xAB)).also_read(key("k1", 0xCD));
        let printed = format!("{encryption:?} {:?}", key("k3", 0xEF));
        assert!(printed.contains("k2") && printed.contains("k1") && printed.contains("k3"));
        assert!(!printed.contains("171") && !printed.to_lowercase().contains("abab"));
    }
}
