//! Reading the challenges a server sends in `WWW-Authenticate`.
//!
//! A resource server that refuses a request says why in a `WWW-Authenticate`
//! challenge (RFC 6750 §3). Its `error` parameter tells whether a new token
//! would help:
//!
//! - `invalid_token`: the token is expired, revoked or malformed. Drop it
//!   and fetch a new one.
//! - `insufficient_scope`: the token is fine, the request needs more scope
//!   than it grants. A refetch would bring the same grant, so don't; the
//!   `scope` parameter names what is needed.
//!
//! [`Challenge::bearer`] finds the Bearer challenge among a response's
//! headers:
//!
//! ```
//! use tower_bearer::Challenge;
//!
//! let res = http::Response::builder()
//!     .status(403)
//!     .header(
//!         "www-authenticate",
//!         r#"Bearer error="insufficient_scope", scope="orders:read orders:write""#,
//!     )
//!     .body(())
//!     .unwrap();
//!
//! let challenge = Challenge::bearer(res.headers()).expect("a Bearer challenge");
//! assert!(challenge.is_insufficient_scope());
//! assert_eq!(challenge.scopes().collect::<Vec<_>>(), ["orders:read", "orders:write"]);
//! ```
//!
//! # Parsing
//!
//! The grammar is RFC 9110 §11.6.1. One header value may hold several
//! challenges (`Basic realm="a", Bearer error="x"`); a new challenge starts
//! where a token is not followed by `=`. Parameter names are matched without
//! regard to case; values are kept as sent, with quoted-string escapes
//! undone. Of repeated parameters the first counts. A challenge in the
//! token68 form (`Negotiate YWJj==`) is kept, with no parameters.
//!
//! Parsing never panics and its work is bounded: a value is read up to
//! [`MAX_VALUE_LEN`] bytes, [`MAX_CHALLENGES`] challenges and
//! [`MAX_PARAMS`] parameters per challenge. Malformed input (or too many
//! parameters) ends the reading of that value: the challenges complete
//! before it are kept, the one it falls in is dropped. So is the challenge
//! a [`MAX_VALUE_LEN`] cut falls in, since its end is unknown.
//! [`Challenge::find`] skips header values that are not visible ASCII.

use http::HeaderMap;
use http::header::WWW_AUTHENTICATE;

/// How many bytes of each header value are read.
pub const MAX_VALUE_LEN: usize = 8 * 1024;
/// How many challenges are read from one header value.
pub const MAX_CHALLENGES: usize = 16;
/// How many parameters a challenge may have, repeats included; one with
/// more is malformed.
pub const MAX_PARAMS: usize = 32;

/// One challenge read from a response's `WWW-Authenticate` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    // Names lowercased, values unescaped, no name twice.
    params: Vec<(String, String)>,
}

impl Challenge {
    /// The first challenge whose auth-scheme is `scheme` (ASCII
    /// case-insensitive), across every `WWW-Authenticate` value in
    /// `headers`, in order.
    pub fn find(headers: &HeaderMap, scheme: &str) -> Option<Challenge> {
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(Challenge::parse_all)
            .find(|challenge| challenge.scheme.eq_ignore_ascii_case(scheme))
    }

    /// The first `Bearer` challenge in `headers`: `find(headers, "Bearer")`.
    pub fn bearer(headers: &HeaderMap) -> Option<Challenge> {
        Challenge::find(headers, "Bearer")
    }

    /// Every challenge in one header value, in order, within the limits of
    /// the [module docs](self#parsing).
    pub fn parse_all(value: &str) -> Vec<Challenge> {
        let (input, cut) = head(value);
        let mut parser = Parser { input, pos: 0 };
        let mut done = Vec::new();
        let mut open: Option<Open> = None;
        loop {
            parser.skip_separators();
            if parser.at_end() {
                // A cut may have fallen inside the open challenge.
                if !cut {
                    done.extend(open.map(|open| open.challenge));
                }
                break;
            }
            if let Some((name, value)) = parser.auth_param() {
                let Some(current) = open.as_mut().filter(|current| !current.token68) else {
                    break; // A parameter with no challenge to belong to.
                };
                if !current.add(name, value) || !parser.element_ends() {
                    break;
                }
                continue;
            }
            let Some(scheme) = parser.token() else { break };
            let spaced = parser.skip_whitespace();
            if parser.peek() == Some(b'=') {
                break; // A broken parameter, not a new scheme.
            }
            done.extend(open.take().map(|open| open.challenge));
            if done.len() == MAX_CHALLENGES {
                break;
            }
            let mut current = Open::new(scheme);
            if spaced && !parser.element_ends() {
                // What follows the scheme: its first parameter, or a token68.
                if let Some((name, value)) = parser.auth_param() {
                    current.add(name, value);
                } else if parser.token68() {
                    current.token68 = true;
                } else {
                    break;
                }
            }
            if !parser.element_ends() {
                break;
            }
            open = Some(current);
        }
        done
    }

    /// The auth-scheme, as sent.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The value of the parameter `name` (ASCII case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(have, _)| have.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The `realm` parameter.
    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    /// The `error` parameter: an RFC 6750 error code such as
    /// `invalid_token`.
    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }

    /// The `error_description` parameter, meant for developers, not users.
    pub fn error_description(&self) -> Option<&str> {
        self.param("error_description")
    }

    /// The `error_uri` parameter.
    pub fn error_uri(&self) -> Option<&str> {
        self.param("error_uri")
    }

    /// The `scope` parameter as sent: scopes separated by spaces.
    pub fn scope(&self) -> Option<&str> {
        self.param("scope")
    }

    /// The scopes in the `scope` parameter; none when it is absent.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope()
            .into_iter()
            .flat_map(str::split_ascii_whitespace)
    }

    /// Whether `error` is `invalid_token`: a new token may succeed.
    pub fn is_invalid_token(&self) -> bool {
        self.error() == Some("invalid_token")
    }

    /// Whether `error` is `insufficient_scope`: the token is valid but
    /// grants too little, and a new one would grant the same.
    pub fn is_insufficient_scope(&self) -> bool {
        self.error() == Some("insufficient_scope")
    }
}

/// The first [`MAX_VALUE_LEN`] bytes of `value`, on a char boundary, and
/// whether anything was cut.
fn head(value: &str) -> (&str, bool) {
    let mut end = value.len().min(MAX_VALUE_LEN);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    (value.get(..end).unwrap_or_default(), end < value.len())
}

/// A challenge whose parameters are still being read.
struct Open {
    challenge: Challenge,
    params_read: usize,
    // A token68 challenge takes no parameters.
    token68: bool,
}

impl Open {
    fn new(scheme: &str) -> Open {
        let challenge = Challenge {
            scheme: scheme.to_owned(),
            params: Vec::new(),
        };
        Open {
            challenge,
            params_read: 0,
            token68: false,
        }
    }

    /// Adds a parameter unless its name is taken; false past [`MAX_PARAMS`].
    fn add(&mut self, name: &str, value: String) -> bool {
        self.params_read += 1;
        if self.params_read > MAX_PARAMS {
            return false;
        }
        let params = &mut self.challenge.params;
        if !params
            .iter()
            .any(|(have, _)| have.eq_ignore_ascii_case(name))
        {
            params.push((name.to_ascii_lowercase(), value));
        }
        true
    }
}

/// A cursor over one header value. Every read checks bounds: no panics.
struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            return true;
        }
        false
    }

    /// Reads bytes while `keep` holds; returns whether it read any.
    fn skip_while(&mut self, keep: impl Fn(u8) -> bool) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn skip_whitespace(&mut self) -> bool {
        self.skip_while(|b| b == b' ' || b == b'\t')
    }

    /// Skips whitespace and commas: the gaps between list elements,
    /// empty elements included.
    fn skip_separators(&mut self) {
        self.skip_while(|b| b == b' ' || b == b'\t' || b == b',');
    }

    /// Whether the element just read is followed by a comma or the end, as
    /// a list element must be.
    fn element_ends(&mut self) -> bool {
        self.skip_whitespace();
        self.at_end() || self.peek() == Some(b',')
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        self.skip_while(is_tchar);
        self.input
            .get(start..self.pos)
            .filter(|token| !token.is_empty())
    }

    /// `token BWS "=" BWS ( token / quoted-string )`, or nothing read.
    fn auth_param(&mut self) -> Option<(&'a str, String)> {
        let start = self.pos;
        let param = self.try_auth_param();
        if param.is_none() {
            self.pos = start;
        }
        param
    }

    fn try_auth_param(&mut self) -> Option<(&'a str, String)> {
        let name = self.token()?;
        self.skip_whitespace();
        if !self.eat(b'=') {
            return None;
        }
        self.skip_whitespace();
        let value = match self.peek() {
            Some(b'"') => self.quoted_string()?,
            _ => self.token()?.to_owned(),
        };
        Some((name, value))
    }

    /// A quoted string with its escapes undone; `None` if unterminated or
    /// holding a control character.
    fn quoted_string(&mut self) -> Option<String> {
        self.eat(b'"');
        let mut value = Vec::new();
        loop {
            let byte = self.peek()?;
            self.pos += 1;
            match byte {
                b'"' => return String::from_utf8(value).ok(),
                b'\\' => {
                    let escaped = self.peek().filter(|&b| is_text(b))?;
                    self.pos += 1;
                    value.push(escaped);
                }
                b if is_text(b) => value.push(b),
                _ => return None,
            }
        }
    }

    /// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`,
    /// ending its element; nothing read if not.
    fn token68(&mut self) -> bool {
        let start = self.pos;
        let is_t68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
        if self.skip_while(is_t68) {
            self.skip_while(|b| b == b'=');
            if self.element_ends() {
                return true;
            }
        }
        self.pos = start;
        false
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// What a quoted string may hold: HTAB, SP, visible ASCII, obs-text.
fn is_text(byte: u8) -> bool {
    byte == b'\t' || (byte >= b' ' && byte != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A challenge as (scheme, [(name, value)]), for tables.
    type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)]);

    fn challenge(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        let params = params
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Challenge {
            scheme: scheme.to_owned(),
            params,
        }
    }

    fn check(cases: &[(&str, &[Expected<'_>])]) {
        for (input, expected) in cases {
            let expected: Vec<_> = expected.iter().map(|(s, p)| challenge(s, p)).collect();
            assert_eq!(Challenge::parse_all(input), expected, "input: {input:?}");
        }
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(WWW_AUTHENTICATE, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn rfc_6750_examples() {
        check(&[
            (
                r#"Bearer realm="example""#,
                &[("Bearer", &[("realm", "example")])],
            ),
            (
                r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
                &[(
                    "Bearer",
                    &[
                        ("realm", "example"),
                        ("error", "invalid_token"),
                        ("error_description", "The access token expired"),
                    ],
                )],
            ),
            (
                r#"Bearer error="insufficient_scope", scope="read write""#,
                &[(
                    "Bearer",
                    &[("error", "insufficient_scope"), ("scope", "read write")],
                )],
            ),
        ]);
    }

    #[test]
    fn parameter_forms() {
        check(&[
            (
                "Bearer error=invalid_token",
                &[("Bearer", &[("error", "invalid_token")])],
            ),
            (
                r#"Bearer realm="a \"b\" \\c""#,
                &[("Bearer", &[("realm", r#"a "b" \c"#)])],
            ),
            (
                r#"Bearer realm = "a" ,error= b"#,
                &[("Bearer", &[("realm", "a"), ("error", "b")])],
            ),
            (
                r#"Bearer REALM="Mixed Case""#,
                &[("Bearer", &[("realm", "Mixed Case")])],
            ),
            (
                r#"Bearer realm="", a=b"#,
                &[("Bearer", &[("realm", ""), ("a", "b")])],
            ),
            (
                r#"Bearer realm="caf\é""#,
                &[("Bearer", &[("realm", "café")])],
            ),
            // Repeated names: the first counts, whatever its case.
            (
                "Bearer error=a, ERROR=b, error=c",
                &[("Bearer", &[("error", "a")])],
            ),
            // Empty list elements and stray whitespace.
            (
                " , Bearer , , realm=a ,, ",
                &[("Bearer", &[("realm", "a")])],
            ),
            ("Bearer\trealm=a", &[("Bearer", &[("realm", "a")])]),
            ("Bearer", &[("Bearer", &[])]),
            ("Bearer ,,,", &[("Bearer", &[])]),
        ]);
    }

    #[test]
    fn several_challenges_in_one_value() {
        check(&[
            (
                r#"Basic realm="a", Bearer error="invalid_token""#,
                &[
                    ("Basic", &[("realm", "a")]),
                    ("Bearer", &[("error", "invalid_token")]),
                ],
            ),
            // RFC 9110 §11.6.1's example.
            (
                r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
                &[
                    (
                        "Newauth",
                        &[
                            ("realm", "apps"),
                            ("type", "1"),
                            ("title", r#"Login to "apps""#),
                        ],
                    ),
                    ("Basic", &[("realm", "simple")]),
                ],
            ),
            ("Basic, Bearer", &[("Basic", &[]), ("Bearer", &[])]),
            // token68 challenges are kept, without parameters.
            (
                "Negotiate YWJj==, Bearer realm=x, Basic dXNlcg",
                &[
                    ("Negotiate", &[]),
                    ("Bearer", &[("realm", "x")]),
                    ("Basic", &[]),
                ],
            ),
            ("Negotiate YWJj=", &[("Negotiate", &[])]),
        ]);
    }

    #[test]
    fn malformed_input_keeps_complete_challenges() {
        check(&[
            (
                r#"Basic realm="a", Bearer error="x"#,
                &[("Basic", &[("realm", "a")])],
            ),
            // `error=` is a well-formed token68, so this Bearer has no params.
            (
                r#"Basic realm="a", Bearer error="#,
                &[("Basic", &[("realm", "a")]), ("Bearer", &[])],
            ),
            (
                r#"Basic realm="a", Bearer error=""#,
                &[("Basic", &[("realm", "a")])],
            ),
            (
                "Basic realm=a, Bearer error=x y=z",
                &[("Basic", &[("realm", "a")])],
            ),
            (
                r#"Basic realm=a, Bearer realm=b, error="x"#,
                &[("Basic", &[("realm", "a")])],
            ),
            (
                "Basic realm=a, Bearer=x",
                &[("Basic", &[("realm", "a"), ("bearer", "x")])],
            ),
            (
                "Basic realm=a, Bearer\"x\"",
                &[("Basic", &[("realm", "a")])],
            ),
            (
                "Basic realm=a, Negotiate YWJj==, x=y",
                &[("Basic", &[("realm", "a")])],
            ),
            (
                "Basic realm=a, Negotiate YWJj== x",
                &[("Basic", &[("realm", "a")])],
            ),
            (
                "Basic realm=a, Bearer realm=\"\u{1}\"",
                &[("Basic", &[("realm", "a")])],
            ),
            ("realm=a, Bearer", &[]),
        ]);
    }

    #[test]
    fn never_panics_on_malformed_input() {
        let long_quote = format!("Bearer realm=\"{}", "a".repeat(100_000));
        let long_token = "b".repeat(100_000);
        let many_commas = ",".repeat(100_000);
        let multibyte_at_cut = format!("Bearer realm=\"{}", "é".repeat(MAX_VALUE_LEN));
        let inputs = [
            "",
            "\"",
            "=",
            "==",
            ",",
            ",,,",
            " ",
            "\\",
            "Bearer ,,,",
            "Bearer error=",
            "Bearer error=\"",
            "Bearer error=\"\\",
            "Bearer error=\"a\\\"",
            "Bearer error==x",
            "Bearer =",
            "Bearer \"",
            "Bearer a=\"b\"c",
            "Bearer a b c",
            "Bearer ===",
            "Bearer /",
            "é",
            "Bearer é",
            "Bearer realm=é",
            "Bearer realm=\"é\\",
            ", =, \"",
            &long_quote,
            &long_token,
            &many_commas,
            &multibyte_at_cut,
        ];
        for input in inputs {
            let challenges = Challenge::parse_all(input);
            assert!(challenges.len() <= MAX_CHALLENGES, "input: {input:?}");
        }
        assert!(Challenge::parse_all(&long_quote).is_empty());

        // Every string of up to 6 of these characters: the grammar's corners.
        let alphabet = ['a', ' ', ',', '=', '"', '\\', '/'];
        let mut inputs = vec![String::new()];
        for _ in 0..6 {
            inputs = inputs
                .iter()
                .flat_map(|s| alphabet.map(|c| format!("{s}{c}")))
                .collect();
            for input in &inputs {
                for challenge in Challenge::parse_all(input) {
                    assert!(!challenge.scheme.is_empty(), "input: {input:?}");
                }
            }
        }
        assert!(Challenge::parse_all(&multibyte_at_cut).is_empty());
    }

    #[test]
    fn reading_stops_at_the_limits() {
        let many = vec!["Basic realm=a"; MAX_CHALLENGES + 4].join(", ");
        assert_eq!(Challenge::parse_all(&many).len(), MAX_CHALLENGES);

        let params = |n: usize| {
            (0..n)
                .map(|i| format!("p{i}=v"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let full = format!("Basic realm=a, Bearer {}", params(MAX_PARAMS));
        let parsed = Challenge::parse_all(&full);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].params.len(), MAX_PARAMS);
        let over = format!("Basic realm=a, Bearer {}", params(MAX_PARAMS + 1));
        assert_eq!(
            Challenge::parse_all(&over),
            [challenge("Basic", &[("realm", "a")])]
        );

        // The challenge a cut falls in is dropped, the ones before it kept.
        let padded = format!(
            "Basic realm=a, Bearer realm=\"{}\"",
            "x".repeat(MAX_VALUE_LEN)
        );
        assert_eq!(
            Challenge::parse_all(&padded),
            [challenge("Basic", &[("realm", "a")])]
        );
        let tail = format!(
            "Basic realm=a, Bearer realm=x,{}",
            " ".repeat(MAX_VALUE_LEN)
        );
        assert_eq!(
            Challenge::parse_all(&tail),
            [challenge("Basic", &[("realm", "a")])]
        );
        let exact = format!("Bearer realm={}", "x".repeat(MAX_VALUE_LEN - 13));
        assert_eq!(exact.len(), MAX_VALUE_LEN);
        assert_eq!(Challenge::parse_all(&exact).len(), 1);
    }

    #[test]
    fn find_reads_every_header_line_in_order() {
        let map = headers(&[
            r#"Basic realm="a""#,
            "Negotiate",
            r#"bearer error="invalid_token""#,
            r#"Bearer error="insufficient_scope""#,
        ]);
        let bearer = Challenge::bearer(&map).unwrap();
        assert_eq!(bearer.scheme(), "bearer");
        assert!(bearer.is_invalid_token());
        assert!(!bearer.is_insufficient_scope());
        assert_eq!(Challenge::find(&map, "basic").unwrap().realm(), Some("a"));
        assert_eq!(
            Challenge::find(&map, "NEGOTIATE").unwrap().scheme(),
            "Negotiate"
        );
        assert_eq!(Challenge::find(&map, "DPoP"), None);
        assert_eq!(Challenge::bearer(&HeaderMap::new()), None);

        let upper = headers(&[r#"BEARER realm="x""#]);
        assert_eq!(Challenge::bearer(&upper).unwrap().realm(), Some("x"));
    }

    #[test]
    fn find_skips_values_that_are_not_visible_ascii() {
        let mut map = HeaderMap::new();
        let opaque = http::HeaderValue::from_bytes(b"Bearer realm=\"caf\xc3\xa9\"").unwrap();
        map.append(WWW_AUTHENTICATE, opaque);
        map.append(WWW_AUTHENTICATE, "Bearer realm=plain".parse().unwrap());
        assert_eq!(Challenge::bearer(&map).unwrap().realm(), Some("plain"));
    }

    #[test]
    fn dpop_challenge() {
        let map = headers(&[r#"Bearer realm="api", DPoP error="use_dpop_nonce", algs="ES256""#]);
        let dpop = Challenge::find(&map, "DPoP").unwrap();
        assert_eq!(dpop.error(), Some("use_dpop_nonce"));
        assert_eq!(dpop.param("ALGS"), Some("ES256"));
        assert_eq!(dpop.realm(), None);
    }

    #[test]
    fn accessors() {
        let value = concat!(
            r#"Bearer realm="example", error="insufficient_scope", "#,
            r#"error_description="needs write", error_uri="https://example.com/e", "#,
            r#"scope="  read   write ""#,
        );
        let c = &Challenge::parse_all(value)[0];
        assert_eq!(c.realm(), Some("example"));
        assert_eq!(c.error(), Some("insufficient_scope"));
        assert_eq!(c.error_description(), Some("needs write"));
        assert_eq!(c.error_uri(), Some("https://example.com/e"));
        assert_eq!(c.scope(), Some("  read   write "));
        assert_eq!(c.scopes().collect::<Vec<_>>(), ["read", "write"]);
        assert!(c.is_insufficient_scope() && !c.is_invalid_token());
        let bare = challenge("Bearer", &[]);
        assert_eq!(bare.scopes().count(), 0);
        assert!(!bare.is_invalid_token() && !bare.is_insufficient_scope());
    }
}
