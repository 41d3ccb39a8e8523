//! The token endpoint's answer: status, headers and body in, a [`Token`] or
//! a [`ClientCredentialsError`] out. Pure: nothing here does I/O.
//!
//! An answer that carries an OAuth2 `error` is an error, whatever its status
//! and whatever else it carries, an `access_token` included (as Go's
//! x/oauth2 reads it): a provider that says no is not overruled. Only a
//! blank `error` beside a token is read as no error at all.

use std::time::{Duration, SystemTime};

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::fields::{Field, TextField, parse_fields};
use super::{ClientCredentialsError, MAX_BODY_EXCERPT_BYTES, MAX_RESPONSE_BYTES, ResponseProblem};
use crate::cache::MAX_LIFETIME;
use crate::redact::{self, Secrets};
use crate::source::jwt_exp;
use crate::token::Token;

/// The longest provider-supplied text (`error`, `error_description`,
/// `error_uri`) kept in an error.
const MAX_PROVIDER_TEXT: usize = 512;

/// The registered OAuth2 error codes a token endpoint may send (RFC 6749
/// sections 4.1.2.1 and 5.2, RFC 8628, RFC 8707, RFC 9449).
const REGISTERED_ERROR_CODES: [&str; 16] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    "authorization_pending",
    "slow_down",
    "expired_token",
    "invalid_target",
    "invalid_dpop_proof",
    "use_dpop_nonce",
];

/// The members of a token response that hold secrets of its own.
const ANSWER_SECRETS: [&str; 3] = ["access_token", "refresh_token", "id_token"];

/// `Retry-After` as delay-seconds or an HTTP-date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// What the endpoint answered, as far as it was read.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
    /// Reading stopped at [`MAX_RESPONSE_BYTES`]: `body` is the start of a
    /// longer one.
    pub(super) cut: bool,
}

/// Turns the endpoint's answer into a token or an error. `secrets` are the
/// source's own: they never reach an error's text.
pub(super) fn interpret(
    answer: &Answer,
    secrets: &Secrets,
) -> Result<Token, ClientCredentialsError> {
    let status = answer.status;
    let (body, cut) = (answer.body.as_slice(), answer.cut);
    let header = |name| answer.headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = header(RETRY_AFTER).and_then(parse_retry_after);
    let content_type = header(CONTENT_TYPE)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let fields = parse_fields(&content_type, body, cut);
    // The answer's own tokens are hidden wherever else they show (under
    // another key, in an error's text), as they were sent.
    let mut all_secrets = secrets.clone();
    // One value each, the one read (a server could repeat a member
    // thousands of times).
    if let Ok(fields) = &fields {
        for name in ANSWER_SECRETS {
            match fields.get(name) {
                Some(Field::Unreadable(raw)) => {
                    let raw = String::from_utf8_lossy(raw);
                    all_secrets.add_verbatim(raw.trim().trim_matches('"'));
                }
                Some(field) => {
                    if let TextField::Text(value) = field.text() {
                        all_secrets.add_verbatim(value.trim());
                    }
                }
                None => {}
            }
        }
    }
    let secrets = &all_secrets;
    let excerpt = || body_excerpt(body, cut, secrets);
    let text = |name: &str| match &fields {
        Ok(fields) => fields.text(name),
        Err(_) => TextField::Absent,
    };
    let provider = |name: &str| match text(name) {
        TextField::Text(text) => Some(provider_text(&text, secrets)),
        TextField::Absent | TextField::NotText => None,
    };
    // A registered code is kept as sent: scrubbing a short secret out of
    // it must not turn `temporarily_unavailable` into a permanent error, nor
    // `invalid_client` into a code no caller knows.
    let error_code = match text("error") {
        TextField::Text(code) if REGISTERED_ERROR_CODES.contains(&code.trim()) => {
            Some(code.trim().to_owned())
        }
        _ => provider("error"),
    };
    // A blank `error` beside a token says nothing; any other wins over it.
    let has_token =
        matches!(text("access_token"), TextField::Text(token) if !token.trim().is_empty());
    if let Some(error) = error_code.filter(|e| !e.is_empty())
        && (!error.trim().is_empty() || !status.is_success() || !has_token)
    {
        return Err(ClientCredentialsError::ErrorResponse {
            status,
            error,
            error_description: provider("error_description"),
            error_uri: provider("error_uri"),
            retry_after,
        });
    }
    if !status.is_success() {
        return Err(ClientCredentialsError::HttpStatus {
            status,
            body: excerpt(),
            retry_after,
        });
    }
    if cut {
        // Never a token from a body cut short: only say what it was.
        return Err(if fields.is_ok() {
            ClientCredentialsError::BodyTooLarge {
                status,
                limit: MAX_RESPONSE_BYTES,
            }
        } else {
            ClientCredentialsError::InvalidResponse {
                status,
                problem: ResponseProblem::NotATokenResponse,
                body: excerpt(),
            }
        });
    }
    let invalid = |problem| ClientCredentialsError::InvalidResponse {
        status,
        problem,
        body: excerpt(),
    };
    let fields = fields.map_err(invalid)?;
    let access_token = match fields.text("access_token") {
        TextField::Text(token) if token.trim().is_empty() => {
            return Err(invalid(ResponseProblem::EmptyAccessToken));
        }
        TextField::Text(token) => token.trim().to_owned(),
        TextField::Absent => return Err(invalid(ResponseProblem::MissingAccessToken)),
        TextField::NotText => return Err(invalid(ResponseProblem::AccessTokenNotAString)),
    };
    let token_type = match fields.text("token_type") {
        TextField::Absent => "Bearer".to_owned(),
        TextField::Text(kind) if kind.trim().is_empty() => {
            return Err(invalid(ResponseProblem::EmptyTokenType));
        }
        TextField::Text(kind) => kind.trim().to_owned(),
        TextField::NotText => return Err(invalid(ResponseProblem::TokenTypeNotAString)),
    };
    // No usable `expires_in`: a JWT's own `exp`, read for timing only.
    let lifetime = lifetime(fields.number("expires_in"))
        .or_else(|| jwt_exp::lifetime(&access_token, SystemTime::now()));
    let token = Token::new(access_token, &token_type);
    Ok(match lifetime {
        Some(lifetime) => token.with_lifetime(lifetime),
        None => token,
    })
}

/// `expires_in` as a lifetime: see the module docs for the choices.
fn lifetime(seconds: Option<f64>) -> Option<Duration> {
    // Whole seconds: `0.001` would otherwise mean a fetch per request.
    let seconds = seconds?.floor();
    if seconds.is_nan() || seconds < 1.0 {
        return None;
    }
    if seconds >= MAX_LIFETIME.as_secs_f64() {
        return Some(MAX_LIFETIME);
    }
    Some(Duration::from_secs(seconds as u64))
}

/// Provider text for an error message: scrubbed of the source's secrets,
/// bounded, on one line.
fn provider_text(text: &str, secrets: &Secrets) -> String {
    redact::one_line(&truncate(&secrets.scrub(text), MAX_PROVIDER_TEXT, false))
}

/// The start of a body for an error message: the source's secrets, token
/// values and other secret-looking values removed, bounded, on one line.
fn body_excerpt(body: &[u8], cut: bool, secrets: &Secrets) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            redact::redact_secret_keys(&mut value);
            secrets.scrub_json(&mut value);
            // Serializing escapes again; scrub that form too.
            secrets.scrub(&value.to_string())
        }
        // Not JSON: cut before anything that may be a secret value.
        Err(_) => redact::cut_at_secret_words(&secrets.scrub(&String::from_utf8_lossy(body))),
    };
    redact::one_line(&truncate(&text, MAX_BODY_EXCERPT_BYTES, cut))
}

/// At most `max` bytes of `text`; `cut` says the text is itself the start
/// of a longer body, whose full length is unknown.
fn truncate(text: &str, max: usize, cut: bool) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if cut {
        format!(
            "{}… (reading stopped at {MAX_RESPONSE_BYTES} bytes)",
            &text[..end]
        )
    } else if end < text.len() {
        format!("{}… ({} bytes in all)", &text[..end], text.len())
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, content_type: &str, body: &str) -> Answer {
        let mut headers = HeaderMap::new();
        if !content_type.is_empty() {
            headers.insert(CONTENT_TYPE, content_type.parse().unwrap());
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: body.as_bytes().to_vec(),
            cut: false,
        }
    }

    fn ok(body: &str) -> Result<Token, ClientCredentialsError> {
        interpret(&answer(200, "application/json", body), &Secrets::default())
    }

    fn excerpt(body: &[u8]) -> String {
        body_excerpt(body, false, &Secrets::default())
    }

    /// What an answer becomes, in a word: the token and its type, or the
    /// error's kind and detail.
    fn outcome(status: u16, content_type: &str, body: &str) -> String {
        match interpret(&answer(status, content_type, body), &Secrets::default()) {
            Ok(token) => format!(
                "token {} {}",
                token.token_type(),
                token.access_token().secret()
            ),
            Err(ClientCredentialsError::ErrorResponse { error, .. }) => format!("oauth {error}"),
            Err(ClientCredentialsError::HttpStatus { status, .. }) => {
                format!("status {}", status.as_u16())
            }
            Err(ClientCredentialsError::InvalidResponse { problem, .. }) => {
                format!("invalid {problem:?}")
            }
            Err(other) => format!("other {other}"),
        }
    }

    #[test]
    fn answers_become_tokens_or_errors() {
        let json = "application/json";
        let form = "application/x-www-form-urlencoded";
        for (status, content_type, body, expected) in [
            (
                200,
                json,
                r#"{"access_token":"t","token_type":"bearer"}"#,
                "token Bearer t",
            ),
            (
                200,
                "text/html",
                r#"{"access_token":"t"}"#,
                "token Bearer t",
            ),
            (200, form, "access_token=t&token_type=mac", "token mac t"),
            (200, "", "access_token=t", "token Bearer t"),
            (
                200,
                "text/html",
                "access_token=t",
                "invalid NotATokenResponse",
            ),
            (
                200,
                json,
                "\u{feff} {\"access_token\":\"t\",}",
                "token Bearer t",
            ),
            (
                200,
                json,
                r#"{"access_token":"t","expires_in":NaN}"#,
                "token Bearer t",
            ),
            // An error is an error, whatever comes with it and whatever the status.
            (
                400,
                json,
                r#"{"error":"invalid_client"}"#,
                "oauth invalid_client",
            ),
            (
                200,
                json,
                r#"{"error":"invalid_scope"}"#,
                "oauth invalid_scope",
            ),
            (
                200,
                json,
                r#"{"access_token":"t","error":"invalid_scope"}"#,
                "oauth invalid_scope",
            ),
            (
                400,
                form,
                "error=invalid_grant&access_token=t",
                "oauth invalid_grant",
            ),
            // An empty or blank error beside a token says nothing.
            (
                200,
                json,
                r#"{"error":"","access_token":"t"}"#,
                "token Bearer t",
            ),
            (
                200,
                json,
                r#"{"error":" ","access_token":"t"}"#,
                "token Bearer t",
            ),
            (200, json, r#"{"error":" "}"#, "oauth  "),
            (400, json, r#"{"error":" ","access_token":"t"}"#, "oauth  "),
            (503, "text/html", "<h1>down</h1>", "status 503"),
            (200, json, "", "invalid EmptyBody"),
            (
                200,
                "text/html",
                "<h1>hello</h1>",
                "invalid NotATokenResponse",
            ),
            (200, json, "[1,2]", "invalid NotAnObject"),
            (
                200,
                json,
                r#"{"token_type":"bearer"}"#,
                "invalid MissingAccessToken",
            ),
            (
                200,
                json,
                r#"{"access_token":" "}"#,
                "invalid EmptyAccessToken",
            ),
            (
                200,
                json,
                r#"{"access_token":42}"#,
                "invalid AccessTokenNotAString",
            ),
            (
                200,
                json,
                r#"{"access_token":"t","token_type":""}"#,
                "invalid EmptyTokenType",
            ),
            (
                200,
                json,
                r#"{"access_token":"t","token_type":1}"#,
                "invalid TokenTypeNotAString",
            ),
        ] {
            assert_eq!(
                outcome(status, content_type, body),
                expected,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_from_the_headers() {
        let mut refused = answer(429, "application/json", r#"{"error":"slow_down"}"#);
        refused.headers.insert(RETRY_AFTER, "30".parse().unwrap());
        let error = interpret(&refused, &Secrets::default()).unwrap_err();
        assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn expires_in_variants() {
        let life = |v: &str| {
            ok(&format!(r#"{{"access_token":"t","expires_in":{v}}}"#))
                .unwrap()
                .lifetime()
        };
        assert_eq!(life("3600"), Some(Duration::from_secs(3600)));
        assert_eq!(life("\"3600\""), Some(Duration::from_secs(3600)));
        // Rounded down to whole seconds; below one second is unknown.
        assert_eq!(life("3599.5"), Some(Duration::from_secs(3599)));
        assert_eq!(life("1.999"), Some(Duration::from_secs(1)));
        assert_eq!(life("0.999"), None);
        assert_eq!(life("0.0001"), None);
        assert_eq!(life("\"0.001\""), None);
        assert_eq!(life("\" 60 \""), Some(Duration::from_secs(60)));
        assert_eq!(life("null"), None);
        assert_eq!(life("0"), None);
        assert_eq!(life("-5"), None);
        assert_eq!(life("\"soon\""), None);
        assert_eq!(life("true"), None);
        assert_eq!(life("1e300"), Some(MAX_LIFETIME));
        assert_eq!(life("1e999"), Some(MAX_LIFETIME));
        assert_eq!(life("\"1e999\""), Some(MAX_LIFETIME));
        assert_eq!(life("\"inf\""), None);
        assert_eq!(life("\"NaN\""), None);
        assert_eq!(life("99999999999999999999"), Some(MAX_LIFETIME));
        assert_eq!(ok(r#"{"access_token":"t"}"#).unwrap().lifetime(), None);
    }

    #[test]
    fn a_jwt_access_token_without_expires_in_lives_until_its_exp() {
        use base64::Engine as _;
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let jwt = |exp: u64| {
            let claims = format!(r#"{{"exp":{exp}}}"#);
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!("{}.{}.sig", b64.encode("{}"), b64.encode(claims))
        };
        let life = |extra: &str| {
            let token = jwt(now + 600);
            ok(&format!(r#"{{"access_token":"{token}"{extra}}}"#))
                .unwrap()
                .lifetime()
        };
        // From exp, give or take the second that may tick meanwhile.
        let from_exp = life("").unwrap().as_secs();
        assert!((598..=600).contains(&from_exp), "{from_exp}");
        // An unusable expires_in is no expires_in.
        let from_exp = life(r#","expires_in":0"#).unwrap().as_secs();
        assert!((598..=600).contains(&from_exp), "{from_exp}");
        // A usable one wins.
        assert_eq!(life(r#","expires_in":60"#), Some(Duration::from_secs(60)));
        // An opaque token, or one past its exp, has no lifetime.
        assert_eq!(ok(r#"{"access_token":"opaque"}"#).unwrap().lifetime(), None);
        let past = jwt(now - 10);
        let body = format!(r#"{{"access_token":"{past}"}}"#);
        assert_eq!(ok(&body).unwrap().lifetime(), None);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(61));
        let d = parse_retry_after(&in_a_minute).unwrap();
        assert!(
            d > Duration::from_secs(55) && d <= Duration::from_secs(61),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("later"), None);
    }

    #[test]
    fn excerpts_never_keep_token_values() {
        let json = br#"{"access_token":"SECRET1","nested":{"refresh_token":"SECRET2"},"token_type":"bearer"}"#;
        let kept = excerpt(json);
        assert!(!kept.contains("SECRET"), "{kept}");
        assert!(kept.contains("bearer"), "{kept}");
        let broken = br#"{"access_token": "SECRET3", "expires_in": "#;
        let kept = excerpt(broken);
        assert!(!kept.contains("SECRET"), "{kept}");
        let form = b"x=1&access_token=SECRET4";
        assert!(!excerpt(form).contains("SECRET"));
    }

    #[test]
    fn excerpts_hide_values_under_secret_keys() {
        let json = br#"{"message":"bad","client_secret":"V1","Password":"V2","client_assertion":"V3","x":{"api_key":"V4","apiKey":"V5"}}"#;
        let kept = excerpt(json);
        assert!(!kept.contains('V'), "{kept}");
        assert!(kept.contains(r#""message":"bad""#), "{kept}");
        for (text, kept_part) in [
            ("rejected: client_secret=V1", "rejected: client_secret"),
            ("bad PASSWORD V2", "bad PASSWORD"),
            ("id=a&token V3", "id=a&token"),
        ] {
            assert_eq!(
                excerpt(text.as_bytes()),
                format!("{kept_part} [rest redacted]")
            );
        }
    }

    #[test]
    fn excerpts_and_provider_text_are_scrubbed_of_the_sources_secrets() {
        let mut secrets = Secrets::default();
        secrets.add("p+ss w\"rd");
        secrets.add("key-1");
        // Every encoding is `redact`'s; here, that excerpts and provider
        // text go through it.
        let json = br#"{"message":"got p+ss w\"rd and key-1"}"#;
        let kept = body_excerpt(json, false, &secrets);
        assert_eq!(kept, r#"{"message":"got [redacted] and [redacted]"}"#);
        assert_eq!(provider_text("bad key-1", &secrets), "bad [redacted]");
    }

    #[test]
    fn a_cut_body_says_reading_stopped() {
        let kept = body_excerpt(&[b'x'; 100], true, &Secrets::default());
        assert_eq!(
            kept,
            format!("{}… (reading stopped at 65536 bytes)", "x".repeat(100))
        );
    }

    #[test]
    fn excerpts_are_bounded_and_on_one_line() {
        let long = "é\n".repeat(10_000);
        let kept = excerpt(long.as_bytes());
        assert!(kept.len() < MAX_BODY_EXCERPT_BYTES + 64, "{}", kept.len());
        assert!(!kept.contains('\n'));
        assert!(kept.ends_with("(30000 bytes in all)"), "{kept}");
    }
}
