//! The one rule for what is a secret, and how it is hidden: in URLs shown in
//! logs and errors ([`redact_url`]), in parameter and JSON key names
//! (`secret_key`: the token source's error excerpts and the fleet store's
//! keys use the same), in text a server sends back (`cut_at_secret_words`),
//! and a source's own secret values in any encoding (`Secrets`).

#[cfg(feature = "client-credentials")]
mod secrets;

#[cfg(feature = "client-credentials")]
pub(crate) use secrets::Secrets;

/// What a hidden secret becomes.
#[cfg(feature = "client-credentials")]
pub(crate) const REDACTED: &str = "[redacted]";

/// The longest URL [`redact_url`] shows, in characters.
const MAX_URL_CHARS: usize = 200;

/// A URL fit for logs and error messages: without its user info, query and
/// fragment, which may hold credentials, and at most 200 characters. Text
/// that is not a URL is treated the same way: whatever precedes an `@` in
/// what would be its host part is left out.
///
/// ```
/// use tower_bearer::redact_url;
///
/// assert_eq!(
///     redact_url("https://id:secret@idp.example.com/token?api_key=k#x"),
///     "https://idp.example.com/token"
/// );
/// assert_eq!(redact_url("//id:secret@idp.example.com/token"), "//idp.example.com/token");
/// ```
pub fn redact_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    // The authority starts after the scheme's `:` and the slashes after it
    // (parsers read `\` as `/` too); without both, at the start: in
    // `id:secret@host` the colon is the user info's.
    let scheme_end = url
        .find(':')
        .filter(|&colon| {
            colon > 0
                && url[..colon]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                && url[colon + 1..].starts_with(['/', '\\'])
        })
        .map_or(0, |colon| colon + 1);
    let authority_start = url[scheme_end..]
        .find(|c| c != '/' && c != '\\')
        .map_or(url.len(), |i| scheme_end + i);
    let authority_end = url[authority_start..]
        .find(['/', '\\'])
        .map_or(url.len(), |i| authority_start + i);
    let shown = match url[authority_start..authority_end].rfind('@') {
        Some(at) => format!(
            "{}{}",
            &url[..authority_start],
            &url[authority_start + at + 1..]
        ),
        None => url.to_owned(),
    };
    shown.chars().take(MAX_URL_CHARS).collect()
}

/// Words that say a secret is near: in a key or parameter name, or in text
/// that is not JSON.
#[cfg(any(feature = "client-credentials", feature = "redis"))]
const SECRET_WORDS: [&str; 10] = [
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "assertion",
    "credential",
    "signature",
    "verifier",
    "key",
];

#[cfg(any(feature = "client-credentials", feature = "redis"))]
/// Whether a JSON key or parameter name names a secret: it holds one of
/// [`SECRET_WORDS`] (`key` at its end: `api_key`, `client_key`, not
/// `keyword`), and does not name a type (`token_type`,
/// `requested_token_type`, `token_type_hint`).
pub(crate) fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    if ["_type", "-type", "_type_hint"]
        .iter()
        .any(|suffix| key.ends_with(suffix))
    {
        return false;
    }
    key.ends_with("key")
        || SECRET_WORDS
            .iter()
            .any(|&word| word != "key" && key.contains(word))
}

#[cfg(feature = "client-credentials")]
/// Replaces every value under a [`secret_key`] with `[redacted]`.
pub(crate) fn redact_secret_keys(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if secret_key(key) {
                    *v = serde_json::Value::String(REDACTED.to_owned());
                } else {
                    redact_secret_keys(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_secret_keys),
        _ => {}
    }
}

#[cfg(feature = "client-credentials")]
/// Text that is not JSON, cut after the first of [`SECRET_WORDS`] (but
/// `key`, too common in prose to cut at) that may introduce a secret value.
pub(crate) fn cut_at_secret_words(text: &str) -> String {
    let at = SECRET_WORDS
        .iter()
        .filter(|&&word| word != "key")
        .filter_map(|word| find_ascii_case_insensitive(text, word).map(|at| at + word.len()))
        .min();
    match at {
        Some(at) => format!("{} [rest redacted]", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(feature = "client-credentials")]
fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(feature = "client-credentials")]
/// `text` on one line: every control character and every line or paragraph
/// break (`\r`, `\n`, NEL, U+2028, U+2029, vertical tab, form feed) becomes
/// a space.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || (c.is_whitespace() && c != ' ') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_user_info_query_and_fragment() {
        for (url, shown) in [
            (
                "https://idp.example.com/token",
                "https://idp.example.com/token",
            ),
            (
                "https://user:pw@example.com:8443/a/b?api_key=x#f",
                "https://example.com:8443/a/b",
            ),
            (
                "https://u:p@h@idp.example.com/t",
                "https://idp.example.com/t",
            ),
            ("https://idp.example.com/a@b", "https://idp.example.com/a@b"),
            ("https://user:pw word@exa mple", "https://exa mple"),
            ("http:/\\u:p@host/x", "http:/\\host/x"),
            ("//u:p@host/x", "//host/x"),
            ("u:p@host/x?y", "host/x"),
            ("mailto:u:p@host", "host"),
            ("not a url: u:p@host", "host"),
            ("not a url?key=abc", "not a url"),
            ("redis://:pw@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        assert_eq!(redact_url(&"x".repeat(500)).len(), MAX_URL_CHARS);
    }

    #[test]
    #[cfg(any(feature = "client-credentials", feature = "redis"))]
    fn secret_keys() {
        for key in [
            "access_token",
            "refresh_token",
            "client_secret",
            "Password",
            "client_assertion",
            "x-api-key",
            "apiKey",
            "pwd",
            "client_key",
            "private_key",
            "Ocp-Apim-Subscription-Key",
            "credentials",
            "signature",
            "id_token_hint",
        ] {
            assert!(secret_key(key), "{key}");
        }
        for key in [
            "token_type",
            "requested_token_type",
            "token_type_hint",
            "error",
            "expires_in",
            "scope",
            "keyword",
        ] {
            assert!(!secret_key(key), "{key}");
        }
    }

    #[test]
    #[cfg(feature = "client-credentials")]
    fn one_line_whatever_the_line_breaks() {
        assert_eq!(
            one_line("a\r\nb\nc\u{85}d\u{2028}e\u{2029}f\u{b}g\u{c}h\ti\0j"),
            "a  b c d e f g h i j"
        );
        assert_eq!(one_line("é ü"), "é ü");
    }

    #[test]
    #[cfg(feature = "client-credentials")]
    fn text_is_cut_after_words_that_may_introduce_a_secret() {
        assert_eq!(
            cut_at_secret_words("bad PASSWORD V2"),
            "bad PASSWORD [rest redacted]"
        );
        assert_eq!(
            cut_at_secret_words("user x, pwd hunter2"),
            "user x, pwd [rest redacted]"
        );
        assert_eq!(cut_at_secret_words("all fine"), "all fine");
    }
}
