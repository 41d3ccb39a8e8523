//! The value stored under a token's key: the token, in the clear or sealed,
//! and the bookkeeping every reader needs.

use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::encryption::Encryption;
use crate::cache::{MAX_LIFETIME, clamped_margin, token_lifetime};
use crate::token::{Token, header_safe};

/// The format version written in every stored value.
const FORMAT_VERSION: u32 = 1;
/// A stored value longer than this is garbage: it is never shipped back.
pub(super) const MAX_VALUE_LEN: usize = 64 * 1024;
/// The marker the read script returns for a value of the wrong type or size.
pub(super) const GARBAGE_MARKER: &[u8] = b"!";
/// The longest value id a reader accepts.
const MAX_ID_LEN: usize = 64;
/// How far past a sealed value's end a reader still opens it: room for the
/// clocks of the writer and the reader to differ.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60);

/// How values are written and read: the settings they depend on.
pub(super) struct Format<'a> {
    /// The writer's margin: the key's TTL is the token's life less this.
    pub(super) expiry_margin: Duration,
    /// The lifetime of a token whose source did not say.
    pub(super) default_lifetime: Duration,
    /// Seals values when set; then only sealed values are read.
    pub(super) encryption: Option<&'a Encryption>,
    /// The Redis key, bound into sealed values.
    pub(super) redis_key: &'a str,
    /// Now, in milliseconds since the Unix epoch: when a sealed value ends.
    pub(super) unix_now_ms: u64,
}

/// A value to write.
pub(super) struct Encoded {
    pub(super) value: String,
    /// The value's id, distinct for every write.
    pub(super) id: String,
    /// The key's TTL.
    pub(super) ttl_ms: u64,
    /// The margin between the TTL's end and the token's.
    pub(super) margin_ms: u64,
}

/// A token read from Redis.
pub(super) struct Shared {
    pub(super) token: Token,
    pub(super) id: String,
    pub(super) remaining: Duration,
}

/// What a value that is not a usable token still tells: its id, when it has
/// one, so that a write may replace it.
pub(super) struct Unreadable {
    pub(super) id: Option<String>,
}

/// The stored value. Its fields other than `sealed` are public knowledge:
/// anyone reading Redis sees them, and the scripts read `id`.
#[derive(Serialize, Deserialize)]
struct StoredValue {
    v: u32,
    /// Identifies this write, so a process can tell a token it has already
    /// served from a newer one.
    id: String,
    /// The margin subtracted from the token's life for the key's TTL: the
    /// remaining life is the TTL plus this.
    margin_ms: u64,
    /// In the clear, without encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_type: Option<String>,
    /// With encryption: the key that sealed `sealed`, and `sealed` itself
    /// (base64 of nonce, ciphertext and tag of a [`SealedToken`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
    /// With encryption: when the token ends, in milliseconds since the Unix
    /// epoch on the writer's clock, bound into `sealed`, so that nobody can
    /// stretch a sealed value's life with a longer TTL or put back one that
    /// has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ends_at_ms: Option<u64>,
}

/// The id of a value that is not a [`StoredValue`], so that a write may
/// replace it.
#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// What is sealed.
#[derive(Serialize, Deserialize)]
struct SealedToken {
    access_token: String,
    token_type: String,
}

impl Format<'_> {
    /// The value to write for `token`, fetched `elapsed` ago; `None` when it
    /// is too short-lived to share (or sealing failed).
    pub(super) fn encode(&self, token: &Token, elapsed: Duration) -> Option<Encoded> {
        let lifetime = token_lifetime(token.lifetime(), self.default_lifetime);
        let margin = clamped_margin(self.expiry_margin, lifetime);
        let ttl = lifetime.checked_sub(elapsed)?.checked_sub(margin)?;
        let ttl_ms = millis(ttl);
        if ttl_ms == 0 {
            return None;
        }
        let id = random_id();
        let margin_ms = millis(margin);
        let access_token = token.access_token().secret().to_owned();
        let token_type = token.token_type().to_owned();
        let stored = match self.encryption {
            None => StoredValue {
                v: FORMAT_VERSION,
                id: id.clone(),
                margin_ms,
                access_token: Some(access_token),
                token_type: Some(token_type),
                key_id: None,
                sealed: None,
                ends_at_ms: None,
            },
            Some(encryption) => {
                let key_id = encryption.write_key_id();
                let ends_at_ms = self
                    .unix_now_ms
                    .saturating_add(ttl_ms)
                    .saturating_add(margin_ms);
                let plaintext = serde_json::to_vec(&SealedToken {
                    access_token,
                    token_type,
                })
                .ok()?;
                let aad = self.aad(key_id, &id, margin_ms, ends_at_ms);
                let sealed = encryption.seal(plaintext, &aad)?;
                StoredValue {
                    v: FORMAT_VERSION,
                    id: id.clone(),
                    margin_ms,
                    access_token: None,
                    token_type: None,
                    key_id: Some(key_id.to_owned()),
                    sealed: Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(sealed)),
                    ends_at_ms: Some(ends_at_ms),
                }
            }
        };
        let value = serde_json::to_string(&stored).ok()?;
        Some(Encoded {
            value,
            id,
            ttl_ms,
            margin_ms,
        })
    }

    /// A usable token from a stored value and its key's TTL. Garbage (bad
    /// JSON, another version, a token that is not a valid header value, a key
    /// without a TTL), a value in the clear when this store seals, a sealed
    /// one it cannot open: all are unreadable.
    ///
    /// The token is handed to the cache with its full remaining life when the
    /// cache's margin on that life (taken to be this store's
    /// [`expiry_margin`](super::RedisStoreBuilder::expiry_margin)) is at
    /// least the writer's. Near the end of its life the cache would clamp its
    /// margin below the writer's, so it gets the life Redis keeps it instead
    /// (the TTL, the remaining life less the writer's margin): a little
    /// earlier than needed, never later than the writer's policy allows.
    pub(super) fn decode(&self, value: &[u8], pttl_ms: i64) -> Result<Shared, Unreadable> {
        if value == GARBAGE_MARKER || value.len() > MAX_VALUE_LEN {
            return Err(Unreadable { id: None });
        }
        let stored: StoredValue = serde_json::from_slice(value).map_err(|_| Unreadable {
            id: serde_json::from_slice::<IdOnly>(value)
                .ok()
                .map(|value| value.id)
                .filter(|id| id_ok(id)),
        })?;
        let unreadable = || Unreadable {
            id: id_ok(&stored.id).then(|| stored.id.clone()),
        };
        if stored.v != FORMAT_VERSION || !id_ok(&stored.id) || pttl_ms <= 0 {
            return Err(unreadable());
        }
        let (access_token, token_type) = match (self.encryption, &stored) {
            (
                None,
                StoredValue {
                    access_token: Some(access_token),
                    token_type: Some(token_type),
                    sealed: None,
                    ..
                },
            ) => (access_token.clone(), token_type.clone()),
            (
                Some(encryption),
                StoredValue {
                    access_token: None,
                    key_id: Some(key_id),
                    sealed: Some(sealed),
                    ends_at_ms: Some(ends_at_ms),
                    ..
                },
            ) => {
                let ended =
                    self.unix_now_ms > ends_at_ms.saturating_add(millis(CLOCK_SKEW_ALLOWANCE));
                if ended {
                    return Err(unreadable());
                }
                let sealed = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(sealed)
                    .map_err(|_| unreadable())?;
                let aad = self.aad(key_id, &stored.id, stored.margin_ms, *ends_at_ms);
                let plaintext = encryption
                    .open(key_id, &sealed, &aad)
                    .ok_or_else(unreadable)?;
                let opened: SealedToken =
                    serde_json::from_slice(&plaintext).map_err(|_| unreadable())?;
                (opened.access_token, opened.token_type)
            }
            _ => return Err(unreadable()),
        };
        if !header_safe(&access_token) || !header_safe(&token_type) {
            return Err(unreadable());
        }
        let kept = Duration::from_millis(pttl_ms.unsigned_abs()).min(MAX_LIFETIME);
        let writer_margin = Duration::from_millis(stored.margin_ms.min(millis(MAX_LIFETIME)));
        let remaining = (kept + writer_margin).min(MAX_LIFETIME);
        let lifetime = if clamped_margin(self.expiry_margin, remaining) >= writer_margin {
            remaining
        } else {
            kept
        };
        Ok(Shared {
            token: Token::new(access_token, &token_type).with_lifetime(lifetime),
            id: stored.id,
            remaining,
        })
    }

    /// What a sealed value is bound to: the format, the key that sealed it,
    /// the Redis key it lives under and its bookkeeping. No field can hold a
    /// NUL, so the fields cannot run into each other.
    fn aad(&self, key_id: &str, id: &str, margin_ms: u64, ends_at_ms: u64) -> Vec<u8> {
        format!(
            "tower-bearer/{FORMAT_VERSION}\0{key_id}\0{}\0{id}\0{margin_ms}\0{ends_at_ms}",
            self.redis_key
        )
        .into_bytes()
    }
}

/// A value id as writers make them: hex, 64 characters at most. The write
/// script keeps only values with such an id.
fn id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// 128 random bits in hex: a lease value or a stored token's id. Only
/// uniqueness matters; neither is a secret.
pub(super) fn random_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{DEFAULT_EXPIRY_MARGIN, DEFAULT_LIFETIME};
    use crate::store::EncryptionKey;

    const KEY: &str = "tower-bearer:{abc}";

    fn format(encryption: Option<&Encryption>) -> Format<'_> {
        Format {
            expiry_margin: DEFAULT_EXPIRY_MARGIN,
            default_lifetime: DEFAULT_LIFETIME,
            encryption,
            redis_key: KEY,
            unix_now_ms: 1_800_000_000_000,
        }
    }

    fn encryption(id: &str, byte: u8) -> Encryption {
        Encryption::new(EncryptionKey::new(id, &[byte; 32]).unwrap())
    }

    #[test]
    fn stored_token_round_trips_with_its_remaining_life() {
        let token = Token::bearer("abc.def").with_lifetime(Duration::from_secs(3600));
        let encoded = format(None).encode(&token, Duration::from_secs(2)).unwrap();
        // Lifetime less the time the fetch took, less the margin.
        assert_eq!(encoded.ttl_ms, (3600 - 2 - 30) * 1000);
        let shared = format(None)
            .decode(encoded.value.as_bytes(), 1_000_000)
            .ok()
            .unwrap();
        assert_eq!(shared.token.access_token().secret(), "abc.def");
        assert_eq!(shared.token.token_type(), "Bearer");
        assert_eq!(shared.id, encoded.id);
        assert_eq!(shared.remaining, Duration::from_secs(1_030));
        assert_eq!(shared.token.lifetime(), Some(Duration::from_secs(1_030)));
    }

    #[test]
    fn a_token_near_the_end_of_its_life_keeps_the_writers_margin() {
        let token = Token::bearer("t").with_lifetime(Duration::from_secs(3600));
        let encoded = format(None).encode(&token, Duration::ZERO).unwrap();
        let cache_usable =
            |lifetime: Duration| lifetime - clamped_margin(DEFAULT_EXPIRY_MARGIN, lifetime);
        // 40 s left, 10 s of it in Redis: the cache must stop using the token
        // no later than the writer's 30 s margin before its end, i.e. within
        // 10 s; with 40 s it would clamp its margin to 10 s and use it for 30.
        let shared = format(None)
            .decode(encoded.value.as_bytes(), 10_000)
            .ok()
            .unwrap();
        assert_eq!(shared.remaining, Duration::from_secs(40));
        let lifetime = shared.token.lifetime().unwrap();
        assert_eq!(lifetime, Duration::from_secs(10));
        assert!(cache_usable(lifetime) <= Duration::from_secs(10));
        // Far from its end: the full remaining life, and the cache's own
        // margin equals the writer's.
        let shared = format(None)
            .decode(encoded.value.as_bytes(), 1_000_000)
            .ok()
            .unwrap();
        let lifetime = shared.token.lifetime().unwrap();
        assert_eq!(cache_usable(lifetime), Duration::from_secs(1_000));
    }

    #[test]
    fn short_unknown_and_zero_lifetimes() {
        let ttl = |token: Token, elapsed| {
            format(None)
                .encode(&token, elapsed)
                .map(|encoded| encoded.ttl_ms)
        };
        // A 3 s token keeps a 1 s margin, as the cache's own clamp does.
        let short = Token::bearer("t").with_lifetime(Duration::from_secs(3));
        assert_eq!(ttl(short, Duration::ZERO), Some(2_000));
        // Too short-lived to be worth sharing.
        let gone = Token::bearer("t").with_lifetime(Duration::from_millis(500));
        assert_eq!(ttl(gone, Duration::from_secs(1)), None);
        // No lifetime, or zero: the default lifetime, as in the cache.
        let unknown = Token::bearer("t");
        assert_eq!(ttl(unknown, Duration::ZERO), Some((300 - 30) * 1000));
        let zero = Token::bearer("t").with_lifetime(Duration::ZERO);
        assert_eq!(ttl(zero, Duration::ZERO), Some((300 - 30) * 1000));
    }

    #[test]
    fn garbage_is_rejected() {
        let good = |token: &str, ty: &str| {
            format!(
                r#"{{"v":1,"id":"ab","access_token":"{token}","token_type":"{ty}","margin_ms":5}}"#
            )
        };
        assert!(
            format(None)
                .decode(good("t", "Bearer").as_bytes(), 10)
                .is_ok()
        );
        let bad: Vec<(Vec<u8>, i64)> = vec![
            (b"!".to_vec(), 10),
            (b"not json".to_vec(), 10),
            (b"{}".to_vec(), 10),
            (vec![0xff, 0xfe], 10),
            (
                good("t", "Bearer")
                    .replace("\"v\":1", "\"v\":2")
                    .into_bytes(),
                10,
            ),
            (good("a\\r\\nx: y", "Bearer").into_bytes(), 10),
            (good("", "Bearer").into_bytes(), 10),
            (good("t", "Bear er").into_bytes(), 10),
            (
                good("t", "Bearer").replace("\"ab\"", "\"\"").into_bytes(),
                10,
            ),
            // No TTL, or the key just expired.
            (good("t", "Bearer").into_bytes(), -1),
            (good("t", "Bearer").into_bytes(), -2),
        ];
        for (value, pttl) in bad {
            assert!(
                format(None).decode(&value, pttl).is_err(),
                "{:?}",
                String::from_utf8_lossy(&value)
            );
        }
        // Unreadable, but with an id a write may replace: the script would
        // protect any value with a hex id.
        let id = |value: &str| format(None).decode(value.as_bytes(), 10).err().unwrap().id;
        assert_eq!(id(&good("a\\r\\nx: y", "Bearer")).as_deref(), Some("ab"));
        assert_eq!(id(r#"{"id":"abc"}"#).as_deref(), Some("abc"));
        assert_eq!(
            id(r#"{"v":1,"id":"abc","margin_ms":5}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(
            id(r#"{"v":1,"id":"abc","margin_ms":"x"}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(id(r#"{"id":"not hex"}"#), None);
        assert_eq!(id(&format!(r#"{{"id":"{}"}}"#, "a".repeat(65))), None);
        assert_eq!(id("[1,2]"), None);
    }

    #[test]
    fn a_sealed_value_is_never_read_past_its_end() {
        let keys = encryption("k1", 1);
        let token = Token::bearer("t").with_lifetime(Duration::from_secs(3600));
        let encoded = format(Some(&keys)).encode(&token, Duration::ZERO).unwrap();
        let ends_at = format(None).unix_now_ms + 3600 * 1000;
        assert!(
            encoded.value.contains(&format!("\"ends_at_ms\":{ends_at}")),
            "{}",
            encoded.value
        );
        let at = |unix_now_ms| Format {
            unix_now_ms,
            ..format(Some(&keys))
        };
        // A TTL stretched by someone who can write Redis: still opened
        // until the end plus the clock allowance, then never.
        let allowance = millis(CLOCK_SKEW_ALLOWANCE);
        assert!(
            at(ends_at + allowance)
                .decode(encoded.value.as_bytes(), 1_000_000)
                .is_ok()
        );
        assert!(
            at(ends_at + allowance + 1)
                .decode(encoded.value.as_bytes(), 1_000_000)
                .is_err()
        );
        // The end itself moved: the seal breaks.
        let moved = encoded
            .value
            .replace(&ends_at.to_string(), &(ends_at + 3_600_000).to_string());
        assert!(
            format(Some(&keys))
                .decode(moved.as_bytes(), 1_000_000)
                .is_err()
        );
        // Dropped from the value: a miss.
        let dropped = encoded
            .value
            .replace(&format!(",\"ends_at_ms\":{ends_at}"), "");
        assert_ne!(dropped, encoded.value);
        assert!(
            format(Some(&keys))
                .decode(dropped.as_bytes(), 1_000_000)
                .is_err()
        );
    }

    #[test]
    fn sealed_values_hold_no_token_and_open_only_where_written() {
        let keys = encryption("k1", 1);
        let token = Token::bearer("very-secret-token").with_lifetime(Duration::from_secs(3600));
        let encoded = format(Some(&keys)).encode(&token, Duration::ZERO).unwrap();
        assert!(
            !encoded.value.contains("very-secret-token"),
            "{}",
            encoded.value
        );
        assert!(encoded.value.contains("\"key_id\":\"k1\""));
        let shared = format(Some(&keys))
            .decode(encoded.value.as_bytes(), 1_000_000)
            .ok()
            .unwrap();
        assert_eq!(shared.token.access_token().secret(), "very-secret-token");
        assert_eq!(shared.id, encoded.id);

        // Under another Redis key: a miss.
        let elsewhere = Format {
            redis_key: "tower-bearer:{other}",
            ..format(Some(&keys))
        };
        let moved = elsewhere
            .decode(encoded.value.as_bytes(), 1_000_000)
            .err()
            .unwrap();
        assert_eq!(moved.id.as_deref(), Some(encoded.id.as_str()));
        // Its bookkeeping altered (a longer margin would stretch its life).
        let stretched = encoded
            .value
            .replace("\"margin_ms\":30000", "\"margin_ms\":90000");
        assert_ne!(stretched, encoded.value);
        assert!(
            format(Some(&keys))
                .decode(stretched.as_bytes(), 1_000_000)
                .is_err()
        );
        // Read with another key, or in the clear: a miss both ways.
        let other = encryption("k1", 2);
        assert!(
            format(Some(&other))
                .decode(encoded.value.as_bytes(), 1_000_000)
                .is_err()
        );
        assert!(
            format(None)
                .decode(encoded.value.as_bytes(), 1_000_000)
                .is_err()
        );
        let clear = format(None).encode(&token, Duration::ZERO).unwrap();
        assert!(
            format(Some(&keys))
                .decode(clear.value.as_bytes(), 1_000_000)
                .is_err()
        );
    }
}
