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

/// A proof's origin slot and the nonce the proof carried: where the nonce
/// its answer gives goes, and whether that answer is newer than what the
/// slot holds.
pub(crate) struct NonceWatch {
    pub(super) slot: Arc<NonceSlot>,
    sent: Option<Arc<Arc<str>>>,
}

impl fmt::Debug for NonceWatch {
    // Whether a nonce was sent only, as for the slot.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceWatch")
            .field("slot", &self.slot)
            .field("sent", &self.sent.is_some())
            .finish()
    }
}

impl NonceWatch {
    pub(super) fn new(slot: Arc<NonceSlot>, sent: HeldNonce) -> NonceWatch {
        NonceWatch {
            slot,
            sent: Guard::into_inner(sent.0),
        }
    }

    /// Takes the `DPoP-Nonce` an answer's `headers` give, if it is a valid
    /// nonce: a `use_dpop_nonce` challenge's always (the server says which
    /// nonce is current), another answer's only while the slot still holds
    /// the nonce this request was sent with, so that the answer to an older
    /// request, arriving late, does not undo a newer nonce. Returns whether
    /// the slot now holds the nonce given: a challenge is met by it.
    pub(crate) fn take_from(&self, headers: &http::HeaderMap, challenged: bool) -> bool {
        let Some(value) = headers.get(super::DPOP_NONCE) else {
            return false;
        };
        if challenged {
            self.slot.offer(value);
        } else {
            self.slot.offer_in_place_of(value, &self.sent);
        }
        self.slot.read().as_str().map(str::as_bytes) == Some(value.as_bytes())
    }
}

impl NonceSlot {
    /// The nonce held, if any.
    #[cfg(test)]
    pub(crate) fn get(&self) -> Option<Arc<str>> {
        self.held.load().as_deref().cloned()
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
        let Some(new) = self.new_nonce(value) else {
            return false;
        };
        let mut changed = false;
        self.held.rcu(|held| {
            changed = !same_nonce(held, value);
            if changed { new.clone() } else { held.clone() }
        });
        changed
    }

    /// [`offer`](Self::offer), but only in place of `sent`: the slot is
    /// left as it is when it holds another nonce by now.
    fn offer_in_place_of(&self, value: &HeaderValue, sent: &Option<Arc<Arc<str>>>) -> bool {
        let Some(new) = self.new_nonce(value) else {
            return false;
        };
        let before = self.held.compare_and_swap(sent, new);
        let ptr = |nonce: &Option<Arc<Arc<str>>>| nonce.as_ref().map(Arc::as_ptr);
        ptr(&before) == ptr(sent)
    }

    /// `value` as a nonce to store: `None` when it is not a valid nonce, or
    /// the nonce held already.
    fn new_nonce(&self, value: &HeaderValue) -> Option<Option<Arc<Arc<str>>>> {
        let bytes = value.as_bytes();
        if !is_valid_nonce(bytes) {
            // Without the value: it is the server's, and may be anything.
            tracing::debug!(
                len = bytes.len(),
                "ignored a DPoP-Nonce header that is not a valid nonce"
            );
            return None;
        }
        if same_nonce(&self.held.load(), value) {
            return None;
        }
        // Only visible ASCII, as just checked.
        let text = std::str::from_utf8(bytes).ok()?;
        Some(Some(Arc::new(Arc::<str>::from(text))))
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

/// Whether `held` is the nonce `value` names.
fn same_nonce(held: &Option<Arc<Arc<str>>>, value: &HeaderValue) -> bool {
    held.as_deref()
        .is_some_and(|held| held.as_bytes() == value.as_bytes())
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
    fn a_late_answer_to_an_older_request_does_not_undo_a_newer_nonce() {
        let slot = Arc::new(NonceSlot::default());
        slot.offer(&HeaderValue::from_static("n1"));
        let headers = |nonce: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(super::super::DPOP_NONCE, HeaderValue::from_static(nonce));
            headers
        };
        // Two requests sent with n1; the server rotates between them.
        let older = NonceWatch::new(Arc::clone(&slot), slot.read());
        let newer = NonceWatch::new(Arc::clone(&slot), slot.read());
        assert!(newer.take_from(&headers("n2"), false));
        assert_eq!(slot.get().as_deref(), Some("n2"));
        // The older request's answer, made before the rotation, comes last.
        assert!(!older.take_from(&headers("n1"), false));
        assert_eq!(slot.get().as_deref(), Some("n2"));
        // A challenge says which nonce is current, whatever was sent.
        assert!(older.take_from(&headers("n3"), true));
        assert_eq!(slot.get().as_deref(), Some("n3"));
        // An answer naming the nonce held already meets a challenge.
        let current = NonceWatch::new(Arc::clone(&slot), slot.read());
        assert!(current.take_from(&headers("n3"), true));
        assert!(current.take_from(&headers("n3"), false));
        // No header, or an invalid one: nothing taken.
        assert!(!current.take_from(&http::HeaderMap::new(), true));
        assert!(!current.take_from(&headers("bad nonce"), true));
        assert_eq!(slot.get().as_deref(), Some("n3"));
        // A request sent before any nonce: its answer's is taken.
        let empty = Arc::new(NonceSlot::default());
        let first = NonceWatch::new(Arc::clone(&empty), empty.read());
        assert!(first.take_from(&headers("n1"), false));
        assert_eq!(empty.get().as_deref(), Some("n1"));
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
