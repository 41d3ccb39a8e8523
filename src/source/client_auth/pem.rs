//! What reading a PEM private key takes, for a signing key and a client
//! certificate's key alike: the file read with a bound into one buffer
//! wiped on drop, and the one private key in it, in words that never quote
//! the file.

use std::io::Read as _;
use std::path::Path;

use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::{self, PemObject as _};
use zeroize::Zeroizing;

/// Why a file could not be read.
pub(crate) enum ReadError {
    /// As the operating system says it.
    Io(std::io::Error),
    /// Longer than the bound.
    TooLarge,
}

/// The file's bytes, at most `max`, in a buffer wiped when dropped.
pub(crate) fn read_file(path: &Path, max: u64) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    // Room for one byte past the bound, allocated once: the buffer is never
    // reallocated, so no copy of the key is left behind unwiped, and a file
    // that fills it is too long.
    let capacity = usize::try_from(max).map_or(usize::MAX, |max| max.saturating_add(1));
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

/// Why a PEM holds no one private key.
pub(crate) enum KeyProblem {
    /// An encrypted key (`ENCRYPTED PRIVATE KEY`, or a `Proc-Type:
    /// 4,ENCRYPTED` header).
    Encrypted,
    /// No private key.
    None,
    /// More than one: taking either could sign with the wrong one, silently.
    Several,
    /// Broken PEM; see [`malformed`].
    Malformed(&'static str),
}

/// The one private key in `pem`, wiped when dropped; other blocks
/// (certificates, `EC PARAMETERS`) are skipped.
pub(crate) fn one_private_key(pem: &[u8]) -> Result<Zeroizing<PrivateKeyDer<'static>>, KeyProblem> {
    // The PEM parser skips labels it does not know, so an encrypted key
    // would read as "no key"; a legacy encrypted one as broken base64.
    if contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(pem, b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(KeyProblem::Encrypted);
    }
    let broken = |e: pem::Error| KeyProblem::Malformed(malformed(&e));
    let mut keys = PrivateKeyDer::pem_slice_iter(pem);
    let key = match keys.next() {
        None => return Err(KeyProblem::None),
        Some(key) => Zeroizing::new(key.map_err(broken)?),
    };
    match keys.next() {
        None => Ok(key),
        Some(Ok(other)) => {
            drop(Zeroizing::new(other));
            Err(KeyProblem::Several)
        }
        Some(Err(e)) => Err(broken(e)),
    }
}

/// What is wrong with a PEM, in words of our own: the parser's messages can
/// quote a line of the input, which may be the key.
pub(crate) fn malformed(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "the base64 does not decode",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "it does not parse",
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
