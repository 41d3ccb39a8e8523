//! A token's lifetime from its own `exp` claim, when the token endpoint
//! gave no `expires_in` and the access token is a JWT.
//!
//! The claim is decoded for timing only: the signature is not checked and
//! nothing else in the token is read or trusted. The worst a forged `exp`
//! can do is make the cache keep a token too long, and a token the API
//! refuses is dropped on its first 401 anyway.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::cache::MAX_LIFETIME;

/// How long `token` lives from `now`, by its `exp` claim: `None` when it is
/// not a JWT (three base64url segments, the second a JSON object), has no
/// numeric `exp`, or has expired already (the cache's default lifetime then
/// applies, as for a missing `expires_in`). Clamped to [`MAX_LIFETIME`].
pub(crate) fn lifetime(token: &str, now: SystemTime) -> Option<Duration> {
    let mut segments = token.split('.');
    let (_header, claims, _signature) = (segments.next()?, segments.next()?, segments.next()?);
    if segments.next().is_some() {
        return None;
    }
    // Padding is not base64url's, but some issuers leave it on.
    let claims = URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?;
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&claims).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    let left = (exp - now).floor();
    if !left.is_finite() || left < 1.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        left.min(MAX_LIFETIME.as_secs_f64()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    const NOW: u64 = 1_800_000_000;

    fn at_now(token: &str) -> Option<Duration> {
        lifetime(token, UNIX_EPOCH + Duration::from_secs(NOW))
    }

    #[test]
    fn exp_gives_the_time_left() {
        let token = jwt(&format!(r#"{{"exp":{},"sub":"x"}}"#, NOW + 3600));
        assert_eq!(at_now(&token), Some(Duration::from_secs(3600)));
        // A fraction rounds down; padding is read past.
        let token = jwt(&format!(r#"{{"exp":{}.9}}"#, NOW + 60));
        assert_eq!(at_now(&token), Some(Duration::from_secs(60)));
        let padded = format!(
            "h.{}.s",
            base64::engine::general_purpose::URL_SAFE.encode(format!(r#"{{"exp":{}}}"#, NOW + 7))
        );
        assert_eq!(at_now(&padded), Some(Duration::from_secs(7)));
        let far = jwt(r#"{"exp":1e300}"#);
        assert_eq!(at_now(&far), Some(MAX_LIFETIME));
    }

    #[test]
    fn anything_else_is_unknown() {
        for token in [
            "opaque-token".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            jwt("not json"),
            jwt("[1,2]"),
            jwt(r#"{"sub":"x"}"#),
            jwt(r#"{"exp":"1800003600"}"#),
            jwt(&format!(r#"{{"exp":{NOW}}}"#)),
            jwt(&format!(r#"{{"exp":{}}}"#, NOW - 10)),
            jwt(r#"{"exp":-1e300}"#),
            "..".to_owned(),
            "%%.%%.%%".to_owned(),
        ] {
            assert_eq!(at_now(&token), None, "{token}");
        }
    }
}
