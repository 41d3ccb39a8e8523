//! The one rule for what is a secret, and how it is hidden: in URLs shown in
//! logs and errors ([`redact_url`]: the token source, the store key's
//! `Debug` and the demo use it), in parameter and JSON key names
//! (`secret_key`), in text a server sends back (`cut_at_secret_words`), and
//! a source's own secret values in any encoding (`Secrets`).

#[cfg(feature = "client-credentials")]
mod secrets;

#[cfg(feature = "client-credentials")]
pub(crate) use secrets::Secrets;

/// What a hidden secret becomes.
#[cfg(feature = "client-credentials")]
pub(crate) const REDACTED: &str = "[redacted]";

/// The longest URL [`redact_url`] shows, in characters.
const MAX_URL_CHARS: usize = 200;

/// What [`redact_url`] shows for text whose credentials it cannot tell apart.
const NOT_SHOWN: &str = "[not shown: it may hold credentials]";

/// A URL fit for logs and error messages: without its user info, query and
/// fragment, which may hold credentials, and at most 200 characters (then
/// `…`).
///
/// It reads the text as URL parsers do (blanks and control characters
/// around it, and tabs and line breaks in it, do not count). Text that
/// holds an `@` it cannot place is not shown at all: text that is not a URL,
/// a URL without an authority, and a URL with a `@` after an authority
/// holding a `:` (a password with a `/`, `?` or `#` in it; this hides, too,
/// a URL with a port and an `@` in its path). A user name without a
/// password is read as parsers read it: `https://a/b@host` has no user
/// name, and is shown.
///
/// ```
/// use tower_bearer::redact_url;
///
/// assert_eq!(
///     redact_url("https://id:secret@idp.example.com/token?api_key=k#x"),
///     "https://idp.example.com/token"
/// );
/// assert_eq!(
///     redact_url("https://id:se/cret@idp.example.com/token"),
///     "[not shown: it may hold credentials]"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let url: String = url
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let not_a_url = || {
        if url.contains('@') {
            NOT_SHOWN.to_owned()
        } else {
            at_most(
                &url[..url.find(['?', '#']).unwrap_or(url.len())],
                MAX_URL_CHARS + 1,
            )
        }
    };
    let Some((scheme, rest)) = split_scheme(&url) else {
        return not_a_url();
    };
    // Special schemes read `\` as `/`; others (`redis:`) take it as data.
    let special = ["http", "https", "ws", "wss", "ftp", "file"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme));
    let separator = |c: char| c == '/' || (special && c == '\\');
    let after_slashes = rest.trim_start_matches(separator);
    let slashes = &rest[..rest.len() - after_slashes.len()];
    if slashes.is_empty() {
        // No authority (`mailto:`, or `id:secret@host` read as scheme `id`).
        return not_a_url();
    }
    let authority_end = after_slashes
        .find(|c| separator(c) || c == '?' || c == '#')
        .unwrap_or(after_slashes.len());
    let (authority, tail) = after_slashes.split_at(authority_end);
    if authority.contains(':') && tail.contains('@') {
        return NOT_SHOWN.to_owned();
    }
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = &tail[..tail.find(['?', '#']).unwrap_or(tail.len())];
    at_most(
        &format!("{scheme}:{slashes}{host}{path}"),
        MAX_URL_CHARS + 1,
    )
}

/// The scheme of `url` and what follows its `:`, if it starts with one.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once(':')?;
    let mut bytes = scheme.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    valid.then_some((scheme, rest))
}

/// `text`, cut to `max` characters (at least 1), the last of them a `…`,
/// when longer.
pub(crate) fn at_most(text: &str, max: usize) -> String {
    if text.chars().nth(max).is_none() {
        return text.to_owned();
    }
    let end = text.char_indices().nth(max - 1).map_or(0, |(at, _)| at);
    format!("{}…", &text[..end])
}

/// Words that say a secret is near: in a key or parameter name, or in text
/// that is not JSON.
const SECRET_WORDS: [&str; 9] = [
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "assertion",
    "credential",
    "signature",
    "key",
];

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
        const HIDDEN: &str = NOT_SHOWN;
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
                "HTTPS://u:p@h@idp.example.com/t",
                "HTTPS://idp.example.com/t",
            ),
            (
                "https://u@idp.example.com/a@b",
                "https://idp.example.com/a@b",
            ),
            ("https://idp.example.com/a@b", "https://idp.example.com/a@b"),
            ("https://[::1]:8443/t?k=v", "https://[::1]:8443/t"),
            ("https://user:pw word@exa mple", "https://exa mple"),
            ("http:/\\u:p@host/x", "http:/\\host/x"),
            ("redis://:pw@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("redis://:p\\ss@host:6379/0", "redis://host:6379/0"),
            (" https://id:PW@idp/token\n", "https://idp/token"),
            ("https://id:P\tW@idp/token", "https://idp/token"),
            ("not a url?key=abc", "not a url"),
            ("", ""),
            // An `@` that cannot be placed hides the whole text.
            ("https://id:pa/ss@idp/t", HIDDEN),
            ("https://id:pa?ss@idp/t", HIDDEN),
            ("https://id:pa#ss@idp/t", HIDDEN),
            ("//u:p@host/x", HIDDEN),
            ("u:p@host/x?y", HIDDEN),
            ("mailto:u:p@host", HIDDEN),
            ("my_scheme://u:p@h", HIDDEN),
            ("not a url: u:p@host", HIDDEN),
        ] {
            assert_eq!(redact_url(url), shown, "{url:?}");
        }
        let long = redact_url(&format!("https://h/{}", "é".repeat(500)));
        assert_eq!(long.chars().count(), MAX_URL_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    #[cfg(feature = "client-credentials")]
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
