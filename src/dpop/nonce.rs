//! The nonces servers gave (RFC 9449 section 8): one slot per origin, read
//! without a lock on every proof, replaced when a response brings a new
//! `DPoP-Nonce`.

use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption, Guard};
use http::HeaderValue;

use super::{MAX_NONCE_BYTES, MAX_NONCE_ORIGINS};
use crate::request::Target;

/// The nonce one origin gave, if any.
#[derive(Default)]
pub(crate) struct NonceSlot {
    // `Arc<str>` is unsized and arc-swap wants a thin pointer, hence the
    // second `Arc`; it is made once per nonce the server sends.
    held: ArcSwapOption<Arc<str>>,
}

/// A nonce as read for one proof: no reference count touched.
pub(crate) struct HeldNonce(Guard<Option<Arc<Arc<str>>>>);

impl HeldNonce {
    pub(crate) fn as_str(&self) -> Option<&str> {
        self.0.as_deref().map(|nonce| &**nonce)
    }
}

impl NonceSlot {
    /// The nonce held, if any.
    #[cfg(test)]
    pub(crate) fn get(&self) -> Option<Arc<str>> {
        self.held.load().as_deref().cloned()
    }

    /// Takes the `DPoP-Nonce` an answer's `headers` give, if any (see
    /// [`offer`](Self::offer)). Returns whether they gave a valid one, new
    /// or not: a `use_dpop_nonce` challenge is met by it.
    pub(crate) fn take_from(&self, headers: &http::HeaderMap) -> bool {
        let Some(value) = headers.get(super::DPOP_NONCE) else {
            return false;
        };
        self.offer(value);
        self.read().as_str().map(str::as_bytes) == Some(value.as_bytes())
    }

    /// The nonce held, for the moment a proof is written. Lock-free.
    pub(crate) fn read(&self) -> HeldNonce {
        HeldNonce(self.held.load())
    }

    /// Takes the `DPoP-Nonce` header `value` if it is a valid nonce (see
    /// [`is_valid_nonce`]) and differs from the one held. Returns whether
    /// the held nonce changed: of two responses bringing the same new
    /// nonce at once, only one sees a change, so a nonce is counted (and
    /// answered with a retry) once.
    pub(crate) fn offer(&self, value: &HeaderValue) -> bool {
        let bytes = value.as_bytes();
        if !is_valid_nonce(bytes) {
            // Without the value: it is the server's, and may be anything.
            tracing::debug!(
                len = bytes.len(),
                "ignored a DPoP-Nonce header that is not a valid nonce"
            );
            return false;
        }
        let same = |held: &Option<Arc<Arc<str>>>| {
            held.as_deref().is_some_and(|held| held.as_bytes() == bytes)
        };
        if same(&self.held.load()) {
            return false;
        }
        // Only visible ASCII, as just checked.
        let Ok(text) = std::str::from_utf8(bytes) else {
            return false;
        };
        let new = Some(Arc::new(Arc::<str>::from(text)));
        let mut changed = false;
        self.held.rcu(|held| {
            changed = !same(held);
            if changed { new.clone() } else { held.clone() }
        });
        changed
    }
}

impl fmt::Debug for NonceSlot {
    // Whether one is held only: the layer's logs need no more.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceSlot")
            .field("held", &self.held.load().is_some())
            .finish()
    }
}

/// RFC 9449 section 8: `nonce = 1*NQCHAR`, where NQCHAR is `%x21 / %x23-5B
/// / %x5D-7E` (visible ASCII but `"` and `\`), and at most
/// [`MAX_NONCE_BYTES`] of them.
pub(crate) fn is_valid_nonce(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_NONCE_BYTES
        && bytes
            .iter()
            .all(|&b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// The nonce slots, one per origin: scheme, host and port, the scheme and
/// host compared without regard to case, the port defaulted from the
/// scheme. At most [`MAX_NONCE_ORIGINS`]; past that the oldest-created is
/// dropped.
pub(crate) struct Nonces {
    // Read on every proof without a lock; replaced whole when an origin is
    // added, which happens once per origin.
    origins: ArcSwap<Vec<Arc<Origin>>>,
    // Additions one at a time, so that none is lost to another.
    adding: Mutex<()>,
}

struct Origin {
    /// Lowercase.
    scheme: Box<str>,
    /// Lowercase, an IPv6 address without its brackets.
    host: Box<str>,
    port: Option<u16>,
    slot: Arc<NonceSlot>,
}

impl Origin {
    fn is(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.port == port
            && self.scheme.eq_ignore_ascii_case(scheme)
            && self.host.eq_ignore_ascii_case(host)
    }
}

impl Nonces {
    pub(crate) fn new() -> Nonces {
        Nonces {
            origins: ArcSwap::from_pointee(Vec::new()),
            adding: Mutex::new(()),
        }
    }

    /// The slot for `target`'s origin, created on first use (the only
    /// allocation, once per origin). `None` when the target has no scheme
    /// or host.
    pub(crate) fn slot(&self, target: &Target<'_>) -> Option<Arc<NonceSlot>> {
        let scheme = target.scheme()?;
        let host = unbracketed(target.host()?);
        let port = target.port();
        let find = |origins: &[Arc<Origin>]| {
            origins
                .iter()
                .find(|o| o.is(scheme, host, port))
                .map(|o| Arc::clone(&o.slot))
        };
        if let Some(slot) = find(&self.origins.load()) {
            return Some(slot);
        }
        // Nothing held under this lock can panic; a poisoned one is as good.
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let origins = self.origins.load_full();
        if let Some(slot) = find(&origins) {
            return Some(slot);
        }
        let slot = Arc::new(NonceSlot::default());
        // Oldest first: past the bound, the first goes.
        let keep = origins.len().min(MAX_NONCE_ORIGINS - 1);
        let mut next = Vec::with_capacity(keep + 1);
        next.extend(origins[origins.len() - keep..].iter().cloned());
        next.push(Arc::new(Origin {
            scheme: scheme.to_ascii_lowercase().into(),
            host: host.to_ascii_lowercase().into(),
            port,
            slot: Arc::clone(&slot),
        }));
        self.origins.store(Arc::new(next));
        Some(slot)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.origins.load().len()
    }
}

impl fmt::Debug for Nonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nonces")
            .field("origins", &self.origins.load().len())
            .finish()
    }
}

/// `::1` for `[::1]`: `http::Uri` and `url::Url` give IPv6 hosts in
/// brackets, a hand-made [`Target`] may not.
pub(crate) fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &http::Uri) -> Target<'_> {
        Target::new(uri.scheme_str(), uri.host(), uri.port_u16()).with_path(uri.path())
    }

    fn slot_for(nonces: &Nonces, uri: &str) -> Option<Arc<NonceSlot>> {
        nonces.slot(&target(&uri.parse().unwrap()))
    }

    #[test]
    fn valid_nonces_are_nqchar_runs_of_at_most_1024_bytes() {
        for ok in [
            "eyJ7S_zG.eyJH0-Z.HX4w-7v",
            "!",
            "~",
            "a#$%&'()*+,-./0123456789:;<=>?@[]^_`{|}~",
        ] {
            assert!(is_valid_nonce(ok.as_bytes()), "{ok}");
        }
        assert!(is_valid_nonce(&[b'n'; MAX_NONCE_BYTES]));
        for bad in [
            &b""[..],
            b"with\"quote",
            b"back\\slash",
            b"with space",
            b"tab\there",
            b"del\x7f",
            "caf\u{e9}".as_bytes(),
            &[b'n'; MAX_NONCE_BYTES + 1],
        ] {
            assert!(!is_valid_nonce(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_slot_takes_valid_new_nonces_only() {
        let slot = NonceSlot::default();
        assert_eq!(slot.get(), None);
        assert!(slot.read().as_str().is_none());

        assert!(slot.offer(&HeaderValue::from_static("first")));
        assert_eq!(slot.get().as_deref(), Some("first"));
        assert_eq!(slot.read().as_str(), Some("first"));
        // The same again is no change.
        assert!(!slot.offer(&HeaderValue::from_static("first")));

        for bad in [
            HeaderValue::from_static("has space"),
            HeaderValue::from_static("q\"uote"),
            HeaderValue::from_static("back\\slash"),
            HeaderValue::from_static(""),
            HeaderValue::from_bytes("n\u{f6}nce".as_bytes()).unwrap(),
            HeaderValue::from_bytes(&[b'n'; MAX_NONCE_BYTES + 1]).unwrap(),
        ] {
            assert!(!slot.offer(&bad), "{bad:?}");
            assert_eq!(slot.get().as_deref(), Some("first"));
        }

        assert!(slot.offer(&HeaderValue::from_static("second")));
        assert_eq!(slot.get().as_deref(), Some("second"));
        let longest = HeaderValue::from_bytes(&[b'n'; MAX_NONCE_BYTES]).unwrap();
        assert!(slot.offer(&longest));
        assert_eq!(slot.get().unwrap().len(), MAX_NONCE_BYTES);
    }

    #[test]
    fn a_new_nonce_offered_twice_at_once_changes_it_once() {
        let slot = Arc::new(NonceSlot::default());
        let changes: usize = std::thread::scope(|s| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let slot = Arc::clone(&slot);
                    s.spawn(move || slot.offer(&HeaderValue::from_static("same")))
                })
                .collect();
            threads
                .into_iter()
                .map(|t| usize::from(t.join().unwrap()))
                .sum()
        });
        assert_eq!(changes, 1);
    }

    #[test]
    fn origins_are_compared_without_case_and_with_default_ports() {
        let nonces = Nonces::new();
        let a = slot_for(&nonces, "https://API.example.com/a").unwrap();
        a.offer(&HeaderValue::from_static("n1"));
        for same in [
            "https://api.example.com/b?q=1",
            "HTTPS://api.EXAMPLE.com:443/",
            "https://api.example.com:443",
        ] {
            let slot = slot_for(&nonces, same).unwrap();
            assert!(Arc::ptr_eq(&a, &slot), "{same}");
        }
        for other in [
            "http://api.example.com/",
            "https://api.example.com:8443/",
            "https://example.com/",
        ] {
            let slot = slot_for(&nonces, other).unwrap();
            assert!(!Arc::ptr_eq(&a, &slot), "{other}");
            assert_eq!(slot.get(), None);
        }
        let http = slot_for(&nonces, "http://api.example.com/").unwrap();
        assert!(Arc::ptr_eq(
            &http,
            &slot_for(&nonces, "http://api.example.com:80/x").unwrap()
        ));
        assert_eq!(nonces.len(), 4);
    }

    #[test]
    fn ipv6_hosts_with_or_without_brackets_are_one_origin() {
        let nonces = Nonces::new();
        let uri = "https://[::1]:8443/p".parse::<http::Uri>().unwrap();
        let a = nonces.slot(&target(&uri)).unwrap();
        let b = nonces
            .slot(&Target::new(Some("https"), Some("::1"), Some(8443)))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let upper = nonces
            .slot(&Target::new(Some("https"), Some("[::ABCD]"), None))
            .unwrap();
        let lower = nonces
            .slot(&Target::new(Some("https"), Some("[::abcd]"), Some(443)))
            .unwrap();
        assert!(Arc::ptr_eq(&upper, &lower));
    }

    #[test]
    fn a_relative_target_has_no_slot() {
        let nonces = Nonces::new();
        assert!(slot_for(&nonces, "/v1/orders").is_none());
        assert!(
            nonces
                .slot(&Target::new(None, Some("host"), None))
                .is_none()
        );
        assert!(
            nonces
                .slot(&Target::new(Some("https"), None, None))
                .is_none()
        );
        assert_eq!(nonces.len(), 0);
    }

    #[test]
    fn at_most_max_origins_are_kept_oldest_dropped_first() {
        let nonces = Nonces::new();
        let first = slot_for(&nonces, "https://h0.example/").unwrap();
        let second = slot_for(&nonces, "https://h1.example/").unwrap();
        for i in 2..MAX_NONCE_ORIGINS {
            slot_for(&nonces, &format!("https://h{i}.example/")).unwrap();
        }
        assert_eq!(nonces.len(), MAX_NONCE_ORIGINS);
        // Still there: looking one up does not add it again.
        assert!(Arc::ptr_eq(
            &first,
            &slot_for(&nonces, "https://h0.example/").unwrap()
        ));
        assert_eq!(nonces.len(), MAX_NONCE_ORIGINS);

        // One more: the oldest-created goes, though it was just used.
        slot_for(&nonces, "https://one-more.example/").unwrap();
        assert_eq!(nonces.len(), MAX_NONCE_ORIGINS);
        let again = slot_for(&nonces, "https://h0.example/").unwrap();
        assert!(!Arc::ptr_eq(&first, &again));
        // Making h0 again dropped h1, the next oldest.
        assert_eq!(nonces.len(), MAX_NONCE_ORIGINS);
        assert!(!Arc::ptr_eq(
            &second,
            &slot_for(&nonces, "https://h1.example/").unwrap()
        ));
        assert_eq!(nonces.len(), MAX_NONCE_ORIGINS);
    }
}
