//! The token request: the source's settings in, an [`http::Request`] out.
//! Pure: nothing here sends anything.
//!
//! `POST` to the token URL with `content-type:
//! application/x-www-form-urlencoded`, `accept: application/json`, the extra
//! headers, and the form `grant_type=client_credentials` (or another
//! [`Grant`]'s type and parameters), the client's credentials as its
//! [`AuthStyle`] puts them, `scope` (the scopes joined by spaces, left out
//! when there are none), and the extra parameters.

use std::net::IpAddr;

use base64::Engine as _;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use reqwest::Url;

use super::{BuildError, ClientSecret};
use crate::redact::{self, Secrets};
use crate::source::client_auth::ClientAuth;

/// Form parameters the source sets itself, which
/// [`param`](super::ClientCredentialsBuilder::param) may not overwrite.
/// `client_assertion` and `client_assertion_type` are reserved too when the
/// source makes its own assertions (`private_key_jwt`, `client_secret_jwt`);
/// otherwise a pre-made assertion may go in them (a federated workload
/// token, say).
pub const RESERVED_PARAMS: [&str; 4] = ["grant_type", "client_id", "client_secret", "scope"];

/// The parameters a source that makes its own assertions sends.
const ASSERTION_PARAMS: [&str; 2] = ["client_assertion", "client_assertion_type"];

/// Headers the source sets itself, or that HTTP's framing and connection
/// handling own: [`header`](super::ClientCredentialsBuilder::header) may not
/// name them (`accept` it may: it replaces the default).
pub const RESERVED_HEADERS: [&str; 10] = [
    "authorization",
    "dpop",
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
];

/// How the client authenticates to the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`,
    /// RFC 6749 section 2.3.1; the form carries neither. The default, and
    /// what the RFC asks every server to support.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form (`client_secret_post`),
    /// as Avionté and some other providers require.
    RequestBody,
}

/// The grant a token request asks with: `client_credentials` unless a
/// source of another grant (RFC 8693 token exchange) says otherwise.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    /// The `grant_type`.
    pub(crate) grant_type: &'static str,
    /// The grant's own parameters, the same on every request (RFC 8693's
    /// token types), sent after `grant_type`.
    pub(crate) params: Vec<(&'static str, String)>,
    /// Parameters the grant sets itself, on every request or per fetch:
    /// refused as extra parameters, as [`RESERVED_PARAMS`] are.
    pub(crate) reserved: &'static [&'static str],
}

/// RFC 6749 section 4.4: no parameters of its own.
pub(crate) static CLIENT_CREDENTIALS: Grant = Grant {
    grant_type: "client_credentials",
    params: Vec::new(),
    reserved: &[],
};

/// What a token request is made of, as the builder was given it.
pub(super) struct Settings<'a> {
    pub(super) grant: &'a Grant,
    /// `None` only for a public client of a grant that needs no client id
    /// (token exchange): every other method was refused without one.
    pub(super) client_id: Option<&'a str>,
    pub(super) auth: &'a ClientAuth,
    pub(super) scopes: &'a [String],
    pub(super) extra_params: &'a [(String, String)],
    pub(super) headers: &'a [(String, ClientSecret)],
}

/// A checked token request, the same every time it is sent.
#[derive(Clone)]
pub(super) struct TokenRequest {
    url: Url,
    // The same, as `http` reads it: checked once, when built.
    uri: Uri,
    // Content type, accept, extra headers, Basic credentials: all ready.
    headers: HeaderMap,
    // The encoded form; it may hold the client secret.
    body: ClientSecret,
}

impl TokenRequest {
    /// The request `settings` describe, to `url`, and the secrets it holds:
    /// what must never come back in an error.
    pub(super) fn new(url: Url, settings: &Settings<'_>) -> Result<(Self, Secrets), BuildError> {
        // `url` accepts a few URLs `http` does not (longer than 64 KiB,
        // some characters in a host): refused here, not on every fetch.
        let uri = Uri::try_from(url.as_str()).map_err(|e| BuildError::InvalidUrl {
            url: redact::redact_url(url.as_str()),
            reason: e.to_string(),
        })?;
        let makes_assertions = matches!(settings.auth, ClientAuth::Assertion(_));
        if let Some((name, _)) = settings.extra_params.iter().find(|(name, _)| {
            RESERVED_PARAMS.contains(&name.as_str())
                || settings.grant.reserved.contains(&name.as_str())
                || (makes_assertions && ASSERTION_PARAMS.contains(&name.as_str()))
        }) {
            return Err(BuildError::ReservedParam { name: name.clone() });
        }
        let mut secrets = Secrets::default();
        let mut headers = extra_headers(settings.headers, &mut secrets)?;
        for (name, value) in settings.extra_params {
            if redact::secret_key(name) {
                secrets.add(value);
            }
        }
        let mut form: Vec<(&str, &str)> = vec![("grant_type", settings.grant.grant_type)];
        form.extend(settings.grant.params.iter().map(|(k, v)| (*k, v.as_str())));
        // The builder refused a method that needs a client id without one.
        let client_id = settings.client_id.unwrap_or_default();
        match settings.auth {
            ClientAuth::Secret { secret, style } => {
                let basic = basic_credentials(client_id, secret.secret());
                secrets.add(secret.secret());
                // Whatever the style: the Basic form reveals the secret too,
                // with its padding or without.
                secrets.add(&basic);
                secrets.add(basic.trim_end_matches('='));
                match style {
                    AuthStyle::Basic => {
                        let mut value = HeaderValue::try_from(format!("Basic {basic}"))
                            .expect("base64 is a valid header value");
                        value.set_sensitive(true);
                        headers.insert(AUTHORIZATION, value);
                    }
                    AuthStyle::RequestBody => {
                        form.push(("client_id", client_id));
                        form.push(("client_secret", secret.secret()));
                    }
                }
            }
            ClientAuth::Assertion(assertion) => {
                if let Some(secret) = &assertion.secret {
                    secrets.add(secret.secret());
                }
                // The assertion itself is added when sent: it is new each time.
                form.push(("client_id", client_id));
            }
            // A public client, or one whose certificate says who it is,
            // names itself in the form (a public client of a token exchange
            // may have no id to name).
            _ => form.extend(settings.client_id.map(|id| ("client_id", id))),
        }
        let scope = settings.scopes.join(" ");
        if !settings.scopes.is_empty() {
            form.push(("scope", &scope));
        }
        form.extend(
            settings
                .extra_params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let body = serde_urlencoded::to_string(&form).expect("pairs of strings always encode");
        let request = TokenRequest {
            url,
            uri,
            headers,
            body: ClientSecret::new(body),
        };
        Ok((request, secrets))
    }

    /// The token URL.
    pub(super) fn url(&self) -> &Url {
        &self.url
    }

    /// The names of the headers given to the builder, for `Debug`.
    pub(super) fn extra_header_names(&self) -> Vec<&HeaderName> {
        self.headers
            .keys()
            .filter(|k| ![CONTENT_TYPE, ACCEPT, AUTHORIZATION].contains(k))
            .collect()
    }

    /// The same request to another URL: a discovered token endpoint.
    pub(super) fn with_url(&self, url: Url) -> Result<TokenRequest, BuildError> {
        let uri = Uri::try_from(url.as_str()).map_err(|e| BuildError::InvalidUrl {
            url: redact::redact_url(url.as_str()),
            reason: e.to_string(),
        })?;
        Ok(TokenRequest {
            url,
            uri,
            ..self.clone()
        })
    }

    /// The request to send, with `more` form parameters after the others.
    pub(super) fn to_http_with(&self, more: &[(&str, &str)]) -> http::Request<String> {
        let mut body = self.body.secret().to_owned();
        if !more.is_empty() {
            body.push('&');
            body.push_str(
                &serde_urlencoded::to_string(more).expect("pairs of strings always encode"),
            );
        }
        let mut request = http::Request::new(body);
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// The fixed headers and the extra ones, checked; their values go to
/// `secrets` (`accept`'s excepted).
fn extra_headers(
    extra: &[(String, ClientSecret)],
    secrets: &mut Secrets,
) -> Result<HeaderMap, BuildError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    for (name, value) in extra {
        let header_name = HeaderName::try_from(name.as_str())
            .map_err(|_| BuildError::InvalidHeaderName { name: name.clone() })?;
        if RESERVED_HEADERS.contains(&header_name.as_str()) {
            return Err(BuildError::ReservedHeader {
                name: header_name.as_str().to_owned(),
            });
        }
        let mut header_value = HeaderValue::try_from(value.secret())
            .map_err(|_| BuildError::InvalidHeaderValue { name: name.clone() })?;
        header_value.set_sensitive(true);
        // One value per name: a later one, and `accept`, replace.
        if header_name != ACCEPT {
            secrets.add(value.secret());
        }
        headers.insert(header_name, header_value);
    }
    Ok(headers)
}

/// `base64(urlencode(id) ":" urlencode(secret))`, RFC 6749 section 2.3.1.
fn basic_credentials(client_id: &str, secret: &str) -> String {
    let pair = format!("{}:{}", form_urlencode(client_id), form_urlencode(secret));
    base64::engine::general_purpose::STANDARD.encode(pair)
}

/// The token URL, checked: it parses, it is `https` (or `http` on a
/// loopback host, or anywhere when `allow_insecure_http`), and it holds no
/// user name or password.
pub(super) fn token_url(text: &str, allow_insecure_http: bool) -> Result<Url, BuildError> {
    let url = Url::parse(text).map_err(|e| BuildError::InvalidUrl {
        url: redact::redact_url(text),
        // The parser's reason never quotes the input.
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure_http || is_loopback(&url) => {}
        "http" => {
            return Err(BuildError::InsecureUrl {
                host: host_of(&url).to_owned(),
            });
        }
        other => {
            return Err(BuildError::UnsupportedScheme {
                scheme: other.to_owned(),
            });
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BuildError::CredentialsInUrl {
            url: redact::redact_url(url.as_str()),
        });
    }
    Ok(url)
}

/// The issuer URL, checked as a token URL is, and without a query or a
/// fragment (RFC 8414 section 2).
pub(super) fn issuer_url(text: &str, allow_insecure_http: bool) -> Result<Url, BuildError> {
    let invalid = |reason: String| BuildError::InvalidIssuer {
        issuer: redact::redact_url(text),
        reason,
    };
    let url = token_url(text, allow_insecure_http).map_err(|e| match e {
        BuildError::InvalidUrl { reason, .. } => invalid(reason),
        BuildError::InsecureUrl { .. } => invalid(
            "it must use https (only loopback hosts are exempt unless insecure http is allowed)"
                .into(),
        ),
        BuildError::CredentialsInUrl { .. } => invalid("it holds a user name or password".into()),
        BuildError::UnsupportedScheme { scheme } => {
            invalid(format!("it must use https, not {scheme:?}"))
        }
        other => other,
    })?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("an issuer has no query or fragment".into()));
    }
    Ok(url)
}

fn host_of(url: &Url) -> &str {
    url.host_str().unwrap_or_default()
}

/// Whether `url` names a loopback host.
pub(super) fn is_loopback(url: &Url) -> bool {
    is_loopback_host(host_of(url))
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    // RFC 6761: `localhost` and its subdomains resolve to loopback.
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// `application/x-www-form-urlencoded` byte serialization (WHATWG URL), as
/// RFC 6749 section 2.3.1 asks for the id and secret before Basic.
fn form_urlencode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for &byte in input.as_bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings<'static> {
        Settings {
            grant: &CLIENT_CREDENTIALS,
            client_id: Some("my client"),
            auth: &ClientAuth::Public,
            scopes: &[],
            extra_params: &[],
            headers: &[],
        }
    }

    fn build(settings: &Settings<'_>) -> Result<(http::Request<String>, Secrets), BuildError> {
        let url = Url::parse("https://idp.example.com/token").unwrap();
        TokenRequest::new(url, settings)
            .map(|(request, secrets)| (request.to_http_with(&[]), secrets))
    }

    fn secret_auth(secret: &ClientSecret, style: AuthStyle) -> ClientAuth {
        ClientAuth::Secret {
            secret: secret.clone(),
            style,
        }
    }

    fn header<'r>(request: &'r http::Request<String>, name: &str) -> Option<&'r str> {
        request.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn settings_make_the_exact_request() {
        let secret = ClientSecret::new("p+ss w%rd");
        let basic = secret_auth(&secret, AuthStyle::Basic);
        let post = secret_auth(&secret, AuthStyle::RequestBody);
        let scopes = ["read".to_owned(), "write".to_owned()];
        let params = [("audience".to_owned(), "https://api".to_owned())];
        let headers = [("x-api-key".to_owned(), ClientSecret::new("k"))];
        // (settings, authorization header, form)
        let cases = [
            (
                settings(),
                None,
                "grant_type=client_credentials&client_id=my+client",
            ),
            (
                Settings {
                    auth: &basic,
                    ..settings()
                },
                // base64("my+client:p%2Bss+w%25rd")
                Some("Basic bXkrY2xpZW50OnAlMkJzcyt3JTI1cmQ="),
                "grant_type=client_credentials",
            ),
            (
                Settings {
                    auth: &post,
                    ..settings()
                },
                None,
                "grant_type=client_credentials&client_id=my+client&client_secret=p%2Bss+w%25rd",
            ),
            (
                Settings {
                    scopes: &scopes,
                    extra_params: &params,
                    headers: &headers,
                    ..settings()
                },
                None,
                "grant_type=client_credentials&client_id=my+client&scope=read+write\
                 &audience=https%3A%2F%2Fapi",
            ),
        ];
        for (settings, authorization, form) in cases {
            let (request, _) = build(&settings).unwrap();
            assert_eq!(request.method(), Method::POST);
            assert_eq!(request.uri(), "https://idp.example.com/token");
            assert_eq!(request.body(), form);
            assert_eq!(header(&request, "authorization"), authorization);
            assert_eq!(
                header(&request, "content-type"),
                Some("application/x-www-form-urlencoded")
            );
            assert_eq!(header(&request, "accept"), Some("application/json"));
            let extra = settings.headers.len();
            assert_eq!(
                request.headers().len(),
                2 + extra + authorization.is_some() as usize
            );
        }
    }

    #[test]
    fn another_grant_sets_its_type_and_parameters_and_reserves_its_names() {
        let grant = Grant {
            grant_type: "urn:example:grant",
            params: vec![("subject_token_type", "urn:example:jwt".to_owned())],
            reserved: &["subject_token", "subject_token_type"],
        };
        let params = [("audience".to_owned(), "orders".to_owned())];
        // A public client without an id names none.
        let (request, _) = build(&Settings {
            grant: &grant,
            client_id: None,
            extra_params: &params,
            ..settings()
        })
        .unwrap();
        assert_eq!(
            request.body(),
            "grant_type=urn%3Aexample%3Agrant&subject_token_type=urn%3Aexample%3Ajwt&audience=orders"
        );
        for name in grant.reserved {
            let params = [(name.to_string(), "x".to_owned())];
            let refused = build(&Settings {
                grant: &grant,
                extra_params: &params,
                ..settings()
            });
            assert_eq!(
                refused.err(),
                Some(BuildError::ReservedParam {
                    name: name.to_string()
                })
            );
        }
    }

    #[test]
    fn extra_headers_are_sensitive_and_one_per_name() {
        let headers = [
            ("x-api-key".to_owned(), ClientSecret::new("first")),
            ("X-Api-Key".to_owned(), ClientSecret::new("second")),
            ("accept".to_owned(), ClientSecret::new("application/jwt")),
        ];
        let (request, secrets) = build(&Settings {
            headers: &headers,
            ..settings()
        })
        .unwrap();
        let keys: Vec<_> = request.headers().get_all("x-api-key").iter().collect();
        assert_eq!(keys, ["second"]);
        assert!(keys[0].is_sensitive());
        assert_eq!(header(&request, "accept"), Some("application/jwt"));
        // Both values are the source's secrets; `accept`'s is not.
        assert_eq!(
            secrets.scrub("first second application/jwt"),
            "[redacted] [redacted] application/jwt"
        );
    }

    #[test]
    fn the_secret_is_a_secret_in_every_form_it_takes() {
        let secret = ClientSecret::new("s3cret");
        let basic_auth = secret_auth(&secret, AuthStyle::Basic);
        let post_auth = secret_auth(&secret, AuthStyle::RequestBody);
        let params = [
            ("client_assertion".to_owned(), "jwt-value".to_owned()),
            ("audience".to_owned(), "aud-value".to_owned()),
        ];
        let (_, secrets) = build(&Settings {
            auth: &basic_auth,
            extra_params: &params,
            ..settings()
        })
        .unwrap();
        // base64("my+client:s3cret"), padded and not.
        let basic = "bXkrY2xpZW50OnMzY3JldA==";
        for shown in ["s3cret", basic, basic.trim_end_matches('='), "jwt-value"] {
            assert_eq!(secrets.scrub(shown), "[redacted]", "{shown}");
        }
        assert_eq!(secrets.scrub("aud-value"), "aud-value");
        // In the form, the Basic value is a secret still: it reveals the
        // secret wherever it shows.
        let (request, secrets) = build(&Settings {
            auth: &post_auth,
            ..settings()
        })
        .unwrap();
        assert_eq!(header(&request, "authorization"), None);
        for shown in ["s3cret", basic, basic.trim_end_matches('=')] {
            assert_eq!(secrets.scrub(shown), "[redacted]", "{shown}");
        }
    }

    #[test]
    fn settings_a_request_cannot_carry_are_refused() {
        let reserved_param = [("scope".to_owned(), "x".to_owned())];
        let reserved_header = [("Authorization".to_owned(), ClientSecret::new("x"))];
        let bad_name = [("bad name".to_owned(), ClientSecret::new("x"))];
        let bad_value = [("x-key".to_owned(), ClientSecret::new("a\r\nb"))];
        let cases = [
            (
                Settings {
                    extra_params: &reserved_param,
                    ..settings()
                },
                BuildError::ReservedParam {
                    name: "scope".into(),
                },
            ),
            (
                Settings {
                    headers: &reserved_header,
                    ..settings()
                },
                BuildError::ReservedHeader {
                    name: "authorization".into(),
                },
            ),
            (
                Settings {
                    headers: &bad_name,
                    ..settings()
                },
                BuildError::InvalidHeaderName {
                    name: "bad name".into(),
                },
            ),
            (
                Settings {
                    headers: &bad_value,
                    ..settings()
                },
                BuildError::InvalidHeaderValue {
                    name: "x-key".into(),
                },
            ),
        ];
        for (settings, expected) in cases {
            assert_eq!(build(&settings).err(), Some(expected));
        }
    }

    #[test]
    fn token_urls_are_checked() {
        let insecure = |host: &str| BuildError::InsecureUrl { host: host.into() };
        let cases: [(&str, bool, Result<&str, BuildError>); 9] = [
            (
                "https://idp.example.com/t",
                false,
                Ok("https://idp.example.com/t"),
            ),
            (
                "http://127.0.0.1:8080/t",
                false,
                Ok("http://127.0.0.1:8080/t"),
            ),
            ("http://[::1]/t", false, Ok("http://[::1]/t")),
            ("http://localhost/t", false, Ok("http://localhost/t")),
            (
                "http://idp.example.com/t",
                false,
                Err(insecure("idp.example.com")),
            ),
            (
                "http://idp.example.com/t",
                true,
                Ok("http://idp.example.com/t"),
            ),
            (
                "ftp://idp.example.com/t",
                false,
                Err(BuildError::UnsupportedScheme {
                    scheme: "ftp".into(),
                }),
            ),
            (
                "https://id:pw@idp.example.com/t?k=v",
                false,
                Err(BuildError::CredentialsInUrl {
                    url: "https://idp.example.com/t".into(),
                }),
            ),
            (
                "https://idp.example.com:99999/t",
                false,
                Err(BuildError::InvalidUrl {
                    url: "https://idp.example.com:99999/t".into(),
                    reason: "invalid port number".into(),
                }),
            ),
        ];
        for (text, allow_insecure_http, expected) in cases {
            let got = token_url(text, allow_insecure_http);
            assert_eq!(
                got.as_ref().map(Url::as_str).map_err(Clone::clone),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn a_url_http_cannot_carry_is_refused_when_built() {
        // The URL standard allows a backtick in a host; `http` does not.
        let url = Url::parse("https://idp`example.com/token").unwrap();
        let refused = TokenRequest::new(url, &settings()).err();
        assert!(
            matches!(&refused, Some(BuildError::InvalidUrl { url, .. }) if url == "https://idp`example.com/token"),
            "{refused:?}"
        );
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "localhost",
            "LOCALHOST",
            "a.localhost",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1",
            "[::2]",
            "localhost.example.com",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn form_urlencode_follows_the_form_rules() {
        assert_eq!(form_urlencode("my client"), "my+client");
        assert_eq!(form_urlencode("p+ss w%rd:x/y"), "p%2Bss+w%25rd%3Ax%2Fy");
        assert_eq!(form_urlencode("a-b_c.d*é"), "a-b_c.d*%C3%A9");
    }
}
