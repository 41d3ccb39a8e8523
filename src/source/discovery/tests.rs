use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::document::*;
use super::flight::*;
use super::*;
use crate::redact::at_most;

// The same loopback server the integration tests use.
#[path = "../../../tests/support/server.rs"]
#[allow(dead_code)]
mod server;
use server::{TestServer, respond};

/// A guard against a hang, never a means of synchronisation.
const GUARD: Duration = Duration::from_secs(10);

/// The integration tests' loopback server, with URLs on it as [`Url`]s.
struct Server(TestServer);

impl Server {
    async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        Server(TestServer::start(handler).await)
    }

    /// A URL on this server.
    fn url(&self, path: &str) -> Url {
        Url::parse(&self.0.url(path)).unwrap()
    }

    /// `url(path)` as text, without the `/` `Url` adds to an empty path.
    fn text(&self, path: &str) -> String {
        self.0.url(path)
    }

    fn addr(&self) -> SocketAddr {
        self.0.addr()
    }
}

type Routes = Arc<Mutex<HashMap<String, (u16, String)>>>;

/// A provider that answers its routes, 404 elsewhere, and records the
/// paths asked for.
struct Idp {
    server: Server,
    routes: Routes,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Idp {
    async fn start() -> Self {
        let routes = Routes::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let server = Server::start({
            let routes = Arc::clone(&routes);
            let seen = Arc::clone(&seen);
            move |req: Request<Incoming>| {
                let path = req.uri().path().to_owned();
                seen.lock().unwrap().push(path.clone());
                let answer = routes.lock().unwrap().get(&path).cloned();
                async move {
                    match answer {
                        Some((status, body)) => respond(status, body),
                        None => respond(404, "<html>Not Found</html>"),
                    }
                }
            }
        })
        .await;
        Self {
            server,
            routes,
            seen,
        }
    }

    fn route(&self, path: &str, status: u16, body: impl Into<String>) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body.into()));
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn discovery(&self, issuer_path: &str) -> Discovery {
        discovery(self.server.url(issuer_path), Duration::from_secs(5))
    }

    async fn metadata(&self, issuer_path: &str) -> Outcome {
        self.discovery(issuer_path).metadata().await
    }
}

fn discovery(issuer: Url, timeout: Duration) -> Discovery {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    Discovery::new(issuer, client, timeout)
}

/// A minimal document for `issuer`.
fn document(issuer: &str) -> String {
    serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "jwks_uri": format!("{issuer}/keys"),
    })
    .to_string()
}

const OPENID: &str = "/.well-known/openid-configuration";
const OAUTH: &str = "/.well-known/oauth-authorization-server";

#[test]
fn well_known_urls_insert_the_segment_per_spec() {
    for (issuer, openid, oauth) in [
        (
            "https://idp.example.com",
            "https://idp.example.com/.well-known/openid-configuration",
            "https://idp.example.com/.well-known/oauth-authorization-server",
        ),
        (
            "https://idp.example.com:8443/tenant1",
            "https://idp.example.com:8443/tenant1/.well-known/openid-configuration",
            "https://idp.example.com:8443/.well-known/oauth-authorization-server/tenant1",
        ),
        (
            "https://idp.example.com/a/b/",
            "https://idp.example.com/a/b/.well-known/openid-configuration",
            "https://idp.example.com/.well-known/oauth-authorization-server/a/b",
        ),
        (
            "https://u:pw@idp.example.com/t%20x",
            "https://u:pw@idp.example.com/t%20x/.well-known/openid-configuration",
            "https://u:pw@idp.example.com/.well-known/oauth-authorization-server/t%20x",
        ),
    ] {
        let urls = well_known_urls(&Url::parse(issuer).unwrap()).unwrap();
        assert_eq!(urls.openid.as_str(), openid, "{issuer}");
        assert_eq!(urls.oauth.as_str(), oauth, "{issuer}");
    }
    for (issuer, reason) in [
        ("https://idp.example.com/?tenant=1", "it has a query"),
        ("https://idp.example.com/#x", "it has a fragment"),
        ("ftp://idp.example.com/", "it is not an https URL"),
        ("mailto:idp@example.com", "it is not an https URL"),
    ] {
        match well_known_urls(&Url::parse(issuer).unwrap()) {
            Err(DiscoveryError::InvalidIssuer { reason: r, .. }) => assert_eq!(r, reason),
            _ => panic!("{issuer} should be refused"),
        }
    }
}

#[test]
fn issuer_comparison_is_exact_but_for_an_empty_path() {
    let root = Url::parse("https://idp.example.com").unwrap();
    assert!(issuer_matches(&root, "https://idp.example.com"));
    assert!(issuer_matches(&root, "https://idp.example.com/"));
    assert!(!issuer_matches(&root, "https://idp.example.com//"));
    assert!(!issuer_matches(&root, "https://IDP.example.com"));
    assert!(!issuer_matches(&root, "https://idp.example.com:443"));
    assert!(!issuer_matches(&root, "http://idp.example.com"));
    let path = Url::parse("https://idp.example.com/tenant1").unwrap();
    assert!(issuer_matches(&path, "https://idp.example.com/tenant1"));
    assert!(!issuer_matches(&path, "https://idp.example.com/tenant1/"));
    assert!(!issuer_matches(&path, "https://idp.example.com/"));
    let slash = Url::parse("https://idp.example.com/tenant1/").unwrap();
    assert!(issuer_matches(&slash, "https://idp.example.com/tenant1/"));
    assert!(!issuer_matches(&slash, "https://idp.example.com/tenant1"));
}

#[tokio::test]
async fn finds_the_openid_connect_document() {
    let idp = Idp::start().await;
    let issuer = idp.server.text("");
    idp.route(OPENID, 200, document(&issuer));
    let discovery = idp.discovery("");
    let metadata = discovery.metadata().await.unwrap();
    assert_eq!(metadata.issuer(), issuer);
    assert_eq!(
        metadata.token_endpoint().as_str(),
        format!("{issuer}/oauth2/token")
    );
    assert_eq!(metadata.document_url(), &idp.server.url(OPENID));
    assert_eq!(metadata.mtls_token_endpoint(), None);
    assert_eq!(metadata.token_endpoint_auth_methods_supported(), None);
    // Absent list: the RFC 8414 default only, but nothing ruled out.
    assert!(metadata.supports_auth_method("client_secret_basic"));
    assert!(!metadata.supports_auth_method("client_secret_post"));
    assert_eq!(metadata.lists_auth_method("client_secret_post"), None);
    assert_eq!(idp.seen(), [OPENID]);

    // Kept: a second call asks nothing.
    let again = discovery.metadata().await.unwrap();
    assert!(Arc::ptr_eq(&metadata, &again));
    assert_eq!(idp.seen(), [OPENID]);
}

#[tokio::test]
async fn falls_back_to_rfc_8414_with_the_segment_before_the_path() {
    let idp = Idp::start().await;
    let issuer = idp.server.text("/tenant1");
    let rfc8414 = format!("{OAUTH}/tenant1");
    idp.route(&rfc8414, 200, document(&issuer));
    let metadata = idp.metadata("/tenant1").await.unwrap();
    assert_eq!(metadata.issuer(), issuer);
    assert_eq!(metadata.document_url(), &idp.server.url(&rfc8414));
    assert_eq!(idp.seen(), [format!("/tenant1{OPENID}"), rfc8414.clone()]);

    // A trailing slash is removed for both URLs; the issuer still must
    // match as configured.
    let idp = Idp::start().await;
    let issuer = idp.server.text("/tenant1/");
    idp.route(&rfc8414, 200, document(&issuer));
    let metadata = idp.metadata("/tenant1/").await.unwrap();
    assert_eq!(metadata.issuer(), issuer);
    assert_eq!(idp.seen(), [format!("/tenant1{OPENID}"), rfc8414]);
}

#[tokio::test]
async fn statuses_that_say_not_there_fall_back() {
    for status in [400, 401, 403, 404, 405, 410, 301, 302] {
        let idp = Idp::start().await;
        let issuer = idp.server.text("");
        idp.route(OPENID, status, "nope");
        idp.route(OAUTH, 200, document(&issuer));
        let metadata = idp.metadata("").await.unwrap();
        assert_eq!(metadata.document_url(), &idp.server.url(OAUTH), "{status}");
    }
}

#[tokio::test]
async fn a_page_at_the_openid_url_falls_back() {
    let idp = Idp::start().await;
    let issuer = idp.server.text("");
    // A single-page app answers every path with its index.
    idp.route(OPENID, 200, "<!doctype html><html>app</html>");
    idp.route(OAUTH, 200, document(&issuer));
    let metadata = idp.metadata("").await.unwrap();
    assert_eq!(metadata.document_url(), &idp.server.url(OAUTH));
}

#[tokio::test]
async fn neither_document_names_both_urls() {
    let idp = Idp::start().await;
    let error = idp.metadata("/tenant1").await.unwrap_err();
    let DiscoveryError::NotFound {
        openid_url,
        openid_answer,
        oauth_url,
        oauth_answer,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(openid_url, &idp.server.text(&format!("/tenant1{OPENID}")));
    assert_eq!(oauth_url, &idp.server.text(&format!("{OAUTH}/tenant1")));
    assert_eq!(*openid_answer, NoDocument::Status(StatusCode::NOT_FOUND));
    assert_eq!(*oauth_answer, NoDocument::Status(StatusCode::NOT_FOUND));
    assert!(!error.is_transient());
    let shown = error.to_string();
    assert!(
        shown.contains(openid_url) && shown.contains(oauth_url),
        "{shown}"
    );
    assert!(shown.contains("HTTP 404 Not Found"), "{shown}");
}

#[tokio::test]
async fn html_pages_are_transient() {
    let idp = Idp::start().await;
    idp.route(OPENID, 200, "<html>Log in to the hotel wifi</html>");
    idp.route(OAUTH, 200, "<html>Log in to the hotel wifi</html>");
    let error = idp.metadata("").await.unwrap_err();
    assert!(
        matches!(
            error,
            DiscoveryError::NotFound {
                openid_answer: NoDocument::NotJson,
                oauth_answer: NoDocument::NotJson,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert!(!error.to_string().contains("hotel"), "{error}");
}

#[tokio::test]
async fn a_json_array_is_not_a_document() {
    let idp = Idp::start().await;
    idp.route(OPENID, 200, r#"[{"issuer": "x"}]"#);
    let error = idp.metadata("").await.unwrap_err();
    assert!(
        matches!(
            error,
            DiscoveryError::NotFound {
                openid_answer: NoDocument::NotAnObject,
                oauth_answer: NoDocument::Status(StatusCode::NOT_FOUND),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_transient());
}

#[tokio::test]
async fn another_issuer_is_refused_without_falling_back() {
    let idp = Idp::start().await;
    let issuer = idp.server.text("/tenant1");
    idp.route(
        &format!("/tenant1{OPENID}"),
        200,
        document(&idp.server.text("/tenant2")),
    );
    idp.route(&format!("{OAUTH}/tenant1"), 200, document(&issuer));
    let error = idp.metadata("/tenant1").await.unwrap_err();
    let DiscoveryError::IssuerMismatch {
        expected, found, ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(expected, &issuer);
    assert_eq!(found, &idp.server.text("/tenant2"));
    assert!(!error.is_transient());
    let shown = error.to_string();
    assert!(
        shown.contains(&issuer) && shown.contains("/tenant2"),
        "{shown}"
    );
    assert_eq!(idp.seen().len(), 1);

    // A trailing slash is a different issuer.
    let idp = Idp::start().await;
    idp.route(
        &format!("/tenant1{OPENID}"),
        200,
        document(&idp.server.text("/tenant1/")),
    );
    let error = idp.metadata("/tenant1").await.unwrap_err();
    assert!(
        matches!(error, DiscoveryError::IssuerMismatch { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_issuer_a_document_names_is_shown_on_one_line_and_bounded() {
    let long_path = format!("https://evil.example/{}", "a".repeat(10_000));
    let lines = "evil\r\nissuer\u{2028}\u{85}\t\u{b}\u{c}x ".repeat(2_000);
    let wide = "é✓🦀".repeat(1_000);
    for named in [long_path, lines, wide] {
        let idp = Idp::start().await;
        idp.route(
            OPENID,
            200,
            serde_json::json!({"issuer": named, "token_endpoint": "https://t/"}).to_string(),
        );
        let error = idp.metadata("").await.unwrap_err();
        let DiscoveryError::IssuerMismatch { found, .. } = &error else {
            panic!("{error:?}");
        };
        assert!(found.chars().count() <= MAX_SHOWN_CHARS, "{found}");
        assert!(found.ends_with('…'), "{found}");
        let shown = error.to_string();
        assert!(shown.chars().count() < 2 * MAX_SHOWN_CHARS, "{shown}");
        assert!(
            !shown
                .chars()
                .any(|c| c.is_control() || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}')),
            "{shown:?}"
        );
    }
}

#[test]
fn at_most_cuts_on_a_char_boundary_and_marks_the_cut() {
    assert_eq!(at_most("", 3), "");
    assert_eq!(at_most("abc", 3), "abc");
    assert_eq!(at_most("abcd", 3), "ab…");
    assert_eq!(at_most("ééé", 3), "ééé");
    assert_eq!(at_most("éééé", 3), "éé…");
    assert_eq!(at_most("🦀🦀", 1), "…");
    let long = "✓".repeat(MAX_SHOWN_CHARS + 1);
    assert_eq!(
        at_most(&long, MAX_SHOWN_CHARS).chars().count(),
        MAX_SHOWN_CHARS
    );
}

#[tokio::test]
async fn an_issuer_without_a_path_matches_with_or_without_its_slash() {
    for slash in ["", "/"] {
        let idp = Idp::start().await;
        let named = idp.server.text(slash);
        idp.route(OPENID, 200, document(&named));
        let metadata = idp.metadata("").await.unwrap();
        assert_eq!(metadata.issuer(), named);
    }
}

#[tokio::test]
async fn user_info_never_shows() {
    let idp = Idp::start().await;
    idp.route(
        OPENID,
        200,
        serde_json::json!({"issuer": "https://u:hunter2@evil.example/?k=hunter2\n"}).to_string(),
    );
    let issuer = Url::parse(&format!("http://me:s3cret@{}/", idp.server.addr())).unwrap();
    let discovery = discovery(issuer, Duration::from_secs(5));
    assert!(!format!("{discovery:?}").contains("s3cret"));
    let error = discovery.metadata().await.unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(
        matches!(error, DiscoveryError::IssuerMismatch { .. }),
        "{shown}"
    );
    assert!(
        !shown.contains("s3cret") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[tokio::test]
async fn fields_the_client_reads_must_be_there_and_well_formed() {
    let idp = Idp::start().await;
    let issuer = idp.server.text("");
    for (document, error) in [
        (
            serde_json::json!({"issuer": issuer}),
            "MissingField token_endpoint",
        ),
        (
            serde_json::json!({"issuer": issuer, "token_endpoint": null}),
            "MissingField token_endpoint",
        ),
        (
            serde_json::json!({"token_endpoint": "https://idp/token"}),
            "MissingField issuer",
        ),
        (
            serde_json::json!({"issuer": 7, "token_endpoint": "https://idp/token"}),
            "InvalidField issuer",
        ),
        (
            serde_json::json!({"issuer": issuer, "token_endpoint": 42}),
            "InvalidField token_endpoint",
        ),
        (
            serde_json::json!({"issuer": issuer, "token_endpoint": "/oauth2/token"}),
            "InvalidField token_endpoint",
        ),
        (
            serde_json::json!({"issuer": issuer, "token_endpoint": "javascript:alert(1)"}),
            "InvalidField token_endpoint",
        ),
        (
            serde_json::json!({"issuer": issuer, "token_endpoint": "https://idp/token",
                "mtls_endpoint_aliases": "https://mtls/token"}),
            "InvalidField mtls_endpoint_aliases",
        ),
        (
            serde_json::json!({"issuer": issuer, "token_endpoint": "https://idp/token",
                "mtls_endpoint_aliases": {"token_endpoint": ["x"]}}),
            "InvalidField mtls_endpoint_aliases.token_endpoint",
        ),
        (
            serde_json::json!({"issuer": issuer, "token_endpoint": "https://idp/token",
                "token_endpoint_auth_methods_supported": "client_secret_post"}),
            "InvalidField token_endpoint_auth_methods_supported",
        ),
        (
            serde_json::json!({"issuer": issuer, "token_endpoint": "https://idp/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", 1]}),
            "InvalidField token_endpoint_auth_methods_supported",
        ),
    ] {
        idp.route(OPENID, 200, document.to_string());
        let got = match idp.metadata("").await.unwrap_err() {
            e @ DiscoveryError::MissingField { field, .. } => {
                assert!(!e.is_transient());
                assert!(e.to_string().contains(field), "{e}");
                format!("MissingField {field}")
            }
            e @ DiscoveryError::InvalidField { field, .. } => {
                assert!(!e.is_transient());
                assert!(e.to_string().contains(field), "{e}");
                format!("InvalidField {field}")
            }
            other => format!("{other:?}"),
        };
        assert_eq!(got, error, "{document}");
    }
    // No fallback for a document that is wrong.
    assert!(idp.seen().iter().all(|path| path == OPENID));
}

#[tokio::test]
async fn reads_the_mtls_alias_and_the_auth_methods() {
    let idp = Idp::start().await;
    let issuer = idp.server.text("");
    idp.route(
        OPENID,
        200,
        serde_json::json!({
            "issuer": issuer,
            "token_endpoint": "https://idp.example.com/token",
            "mtls_endpoint_aliases": {
                "token_endpoint": "https://mtls.idp.example.com/token",
                "revocation_endpoint": "https://mtls.idp.example.com/revoke",
            },
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"],
            "grant_types_supported": ["client_credentials"],
        })
        .to_string(),
    );
    let metadata = idp.metadata("").await.unwrap();
    assert_eq!(
        metadata.token_endpoint().as_str(),
        "https://idp.example.com/token"
    );
    assert_eq!(
        metadata.mtls_token_endpoint().map(Url::as_str),
        Some("https://mtls.idp.example.com/token")
    );
    assert_eq!(
        metadata.token_endpoint_auth_methods_supported(),
        Some(&["private_key_jwt".to_owned(), "tls_client_auth".to_owned()][..])
    );
    assert!(metadata.supports_auth_method("private_key_jwt"));
    assert!(!metadata.supports_auth_method("client_secret_basic"));
    assert_eq!(metadata.lists_auth_method("tls_client_auth"), Some(true));
    assert_eq!(
        metadata.lists_auth_method("client_secret_post"),
        Some(false)
    );
    let debug = format!("{metadata:?}");
    assert!(
        debug.contains("https://mtls.idp.example.com/token"),
        "{debug}"
    );

    // An alias object without a token endpoint is no alias.
    idp.route(
        OPENID,
        200,
        serde_json::json!({
            "issuer": issuer,
            "token_endpoint": "https://idp.example.com/token",
            "mtls_endpoint_aliases": {"revocation_endpoint": "https://mtls/revoke"},
        })
        .to_string(),
    );
    assert_eq!(idp.metadata("").await.unwrap().mtls_token_endpoint(), None);
}

#[tokio::test]
async fn an_oversized_document_is_refused() {
    let idp = Idp::start().await;
    let issuer = idp.server.text("");
    let padded = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/token"),
        "padding": "x".repeat(MAX_DOCUMENT_BYTES),
    });
    idp.route(OPENID, 200, padded.to_string());
    idp.route(OAUTH, 200, document(&issuer));
    let error = idp.metadata("").await.unwrap_err();
    assert!(
        matches!(
            error,
            DiscoveryError::TooLarge {
                limit: MAX_DOCUMENT_BYTES,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert_eq!(idp.seen(), [OPENID]);

    // Exactly at the limit is read.
    let mut exact = document(&issuer);
    exact.push_str(&" ".repeat(MAX_DOCUMENT_BYTES - exact.len()));
    idp.route(OPENID, 200, exact);
    idp.metadata("").await.unwrap();

    // A long page is no document: the other URL is asked.
    idp.route(OPENID, 200, "<html>".repeat(MAX_DOCUMENT_BYTES));
    let metadata = idp.metadata("").await.unwrap();
    assert_eq!(metadata.document_url(), &idp.server.url(OAUTH));
}

#[tokio::test]
async fn odd_bodies_do_not_panic() {
    let idp = Idp::start().await;
    let issuer = idp.server.text("");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!(
        r#"{{"issuer": {issuer:?}, "x": {}1{}, "token_endpoint": "https://t/"}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    for body in [
        String::new(),
        "null".to_owned(),
        "\"text\"".to_owned(),
        "{".to_owned(),
        deep,
        deep_object,
        String::from_utf8_lossy(b"{\"issuer\": \"\xff\xfe\"}").into_owned(),
        format!(r#"{{"issuer": {issuer:?}, "token_endpoint": "https://[::1"}}"#),
    ] {
        idp.route(OPENID, 200, body);
        let _ = idp.metadata("").await;
    }
    // A byte order mark is read past.
    idp.route(OPENID, 200, format!("\u{feff}{}", document(&issuer)));
    idp.metadata("").await.unwrap();
}

#[tokio::test]
async fn transient_statuses_do_not_fall_back() {
    for status in [500, 502, 503, 408, 429] {
        let idp = Idp::start().await;
        let issuer = idp.server.text("");
        idp.route(OPENID, status, "down");
        idp.route(OAUTH, 200, document(&issuer));
        let error = idp.metadata("").await.unwrap_err();
        let DiscoveryError::HttpStatus { url, status: got } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(got.as_u16(), status);
        assert_eq!(url, &idp.server.text(OPENID));
        assert!(error.is_transient());
        assert_eq!(idp.seen(), [OPENID]);
    }
    // At the second URL, too.
    let idp = Idp::start().await;
    idp.route(OAUTH, 503, "down");
    let error = idp.metadata("").await.unwrap_err();
    assert!(
        matches!(&error, DiscoveryError::HttpStatus { url, .. } if url == &idp.server.text(OAUTH)),
        "{error:?}"
    );
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_transport_failure_is_transient() {
    // A server that hangs up on every connection, holding its port.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hang_up = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let issuer = Url::parse(&format!("http://{addr}/")).unwrap();
    let error = discovery(issuer, GUARD).metadata().await.unwrap_err();
    hang_up.abort();
    assert!(
        matches!(error, DiscoveryError::Transport { .. }),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let server = Server::start(|_req| std::future::pending()).await;
    let timeout = Duration::from_millis(200);
    let error = discovery(server.url(""), timeout)
        .metadata()
        .await
        .unwrap_err();
    assert!(
        matches!(error, DiscoveryError::Timeout { after } if after == timeout),
        "{error:?}"
    );
    assert!(error.is_transient());
}

/// A provider whose answers wait for a gate, counting requests.
struct Gated {
    server: Server,
    requests: Arc<AtomicUsize>,
    gate: watch::Sender<bool>,
    answer: Arc<Mutex<(u16, String)>>,
}

impl Gated {
    async fn start() -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let (gate, opened) = watch::channel(false);
        let answer = Arc::new(Mutex::new((503, "down".to_owned())));
        let server = Server::start({
            let requests = Arc::clone(&requests);
            let answer = Arc::clone(&answer);
            move |_req| {
                requests.fetch_add(1, Ordering::SeqCst);
                let mut opened = opened.clone();
                let answer = Arc::clone(&answer);
                async move {
                    let _ = opened.wait_for(|open| *open).await;
                    let (status, body) = answer.lock().unwrap().clone();
                    respond(status, body)
                }
            }
        })
        .await;
        Self {
            server,
            requests,
            gate,
            answer,
        }
    }

    fn answer(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn open(&self, open: bool) {
        self.gate.send_replace(open);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

type Call = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// `n` calls, each polled once: all of them are in flight.
async fn in_flight(discovery: &Discovery, n: usize) -> Vec<Call> {
    let mut calls: Vec<Call> = (0..n)
        .map(|_| {
            let discovery = discovery.clone();
            Box::pin(async move { discovery.metadata().await }) as Call
        })
        .collect();
    std::future::poll_fn(|cx| {
        for call in &mut calls {
            assert!(call.as_mut().poll(cx).is_pending());
        }
        Poll::Ready(())
    })
    .await;
    calls
}

async fn all(calls: Vec<Call>) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(
            tokio::time::timeout(GUARD, call)
                .await
                .expect("a caller hangs"),
        );
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_discovery() {
    let idp = Gated::start().await;
    idp.answer(200, document(&idp.server.text("")));
    let discovery = discovery(idp.server.url(""), GUARD);
    let calls = in_flight(&discovery, 20).await;
    idp.open(true);
    let outcomes = all(calls).await;
    let first = outcomes[0].as_ref().unwrap();
    for outcome in &outcomes {
        assert!(Arc::ptr_eq(first, outcome.as_ref().unwrap()));
    }
    assert_eq!(idp.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_failure_which_is_remembered() {
    let idp = Gated::start().await;
    let discovery = discovery(idp.server.url(""), GUARD);
    let calls = in_flight(&discovery, 20).await;
    idp.open(true);
    for outcome in all(calls).await {
        let error = outcome.unwrap_err();
        assert!(
            matches!(error, DiscoveryError::HttpStatus { status, .. } if status == 503),
            "{error:?}"
        );
    }
    assert_eq!(idp.requests(), 1);

    // Until the retry time (tested below, on a paused clock), callers,
    // concurrent or not, get the failure without a request, even if the
    // provider is back. The retry time is put off here, so that a slow
    // machine cannot reach it.
    discovery.put_off_retry();
    idp.answer(200, document(&idp.server.text("")));
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let discovery = discovery.clone();
            tokio::spawn(async move { discovery.metadata().await })
        })
        .collect();
    for caller in callers {
        let outcome = tokio::time::timeout(GUARD, caller)
            .await
            .expect("a caller hangs");
        let error = outcome.unwrap().unwrap_err();
        assert!(
            matches!(error, DiscoveryError::HttpStatus { status, .. } if status == 503),
            "{error:?}"
        );
    }
    assert_eq!(idp.requests(), 1);
}

/// Awaits `future` with the clock running, then pauses it again: real
/// network IO under a paused clock would let it jump to the next timer
/// (the attempt's timeout) whenever the runtime waits on a socket.
async fn with_clock_running<T>(future: impl Future<Output = T>) -> T {
    tokio::time::resume();
    let output = future.await;
    tokio::time::pause();
    output
}

/// The Debug of `outcome`'s error: the same value shows the same.
fn shown(outcome: Outcome) -> String {
    format!("{:?}", outcome.unwrap_err())
}

/// Checks that `discovery` remembers its last failure for about
/// `delay` (the clock ran from the failure until it was paused), answers
/// it without a request until then, and lets the next call ask after.
async fn remembered_for(discovery: &Discovery, requests: impl Fn() -> usize, delay: Duration) {
    let asked = requests();
    let left = discovery.retry_in().expect("a failure is remembered");
    assert!(left <= delay && left > delay / 2, "{left:?}, not {delay:?}");
    let error = shown(discovery.metadata().await);
    tokio::time::advance(left - Duration::from_millis(1)).await;
    for _ in 0..5 {
        assert_eq!(shown(discovery.metadata().await), error);
    }
    assert_eq!(requests(), asked, "no request until the retry time");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(discovery.retry_in(), Some(Duration::ZERO));
}

#[test]
fn the_retry_delay_doubles_up_to_its_cap() {
    let secs: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(retry_delay(0), FIRST_RETRY_DELAY);
    assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
}

#[tokio::test]
async fn a_failure_is_the_answer_without_a_request_until_its_retry_time() {
    let idp = Idp::start().await;
    let issuer = idp.server.text("");
    idp.route(OPENID, 503, "down");
    let discovery = idp.discovery("");
    tokio::time::pause();
    let error = with_clock_running(discovery.metadata()).await.unwrap_err();
    assert!(
        matches!(error, DiscoveryError::HttpStatus { status, .. } if status == 503),
        "{error:?}"
    );
    assert_eq!(idp.seen(), [OPENID]);
    // The provider is back, but the failure is remembered.
    idp.route(OPENID, 200, document(&issuer));
    assert_eq!(shown(discovery.metadata().await), format!("{error:?}"));
    let seen = || idp.seen().len();
    remembered_for(&discovery, seen, FIRST_RETRY_DELAY).await;
    assert_eq!(idp.seen(), [OPENID]);

    // After it, the next call asks again.
    let metadata = with_clock_running(discovery.metadata()).await.unwrap();
    assert_eq!(idp.seen(), [OPENID, OPENID]);
    assert_eq!(discovery.retry_in(), None);
    let again = discovery.metadata().await.unwrap();
    assert!(Arc::ptr_eq(&metadata, &again));
    assert_eq!(idp.seen(), [OPENID, OPENID]);
}

#[tokio::test]
async fn failures_in_a_row_double_the_delay_and_a_success_resets_it() {
    let idp = Idp::start().await;
    let issuer = idp.server.text("");
    let discovery = idp.discovery("");
    let seen = || idp.seen().len();
    // Whatever the failure, transient or permanent, it counts; the one
    // remembered is the last.
    tokio::time::pause();
    idp.route(OPENID, 503, "down");
    with_clock_running(discovery.metadata()).await.unwrap_err();
    remembered_for(&discovery, seen, Duration::from_secs(1)).await;
    idp.route(OPENID, 200, document(&idp.server.text("/other")));
    let error = with_clock_running(discovery.metadata()).await.unwrap_err();
    assert!(
        matches!(error, DiscoveryError::IssuerMismatch { .. }),
        "{error:?}"
    );
    remembered_for(&discovery, seen, Duration::from_secs(2)).await;
    idp.route(OPENID, 429, "slow down");
    with_clock_running(discovery.metadata()).await.unwrap_err();
    remembered_for(&discovery, seen, Duration::from_secs(4)).await;
    assert_eq!(discovery.failures(), 3);
    assert_eq!(seen(), 3, "one request per attempt");

    idp.route(OPENID, 200, document(&issuer));
    with_clock_running(discovery.metadata()).await.unwrap();
    assert_eq!(discovery.failures(), 0);
    assert_eq!(discovery.retry_in(), None);
    assert_eq!(seen(), 4);
}

#[tokio::test]
async fn the_delay_stops_growing_at_its_cap() {
    let idp = Idp::start().await;
    idp.route(OPENID, 500, "down");
    let discovery = idp.discovery("");
    tokio::time::pause();
    let seen = || idp.seen().len();
    for failures in 1..=8 {
        with_clock_running(discovery.metadata()).await.unwrap_err();
        remembered_for(&discovery, seen, retry_delay(failures)).await;
    }
    assert_eq!(retry_delay(8), MAX_RETRY_DELAY);
    assert_eq!(seen(), 8);
}

#[tokio::test]
async fn a_remembered_transport_failure_is_the_same_error() {
    // A server that hangs up on every connection, holding its port.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let hang_up = tokio::spawn({
        let connections = Arc::clone(&connections);
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        }
    });
    let issuer = Url::parse(&format!("http://{addr}/")).unwrap();
    let discovery = discovery(issuer, GUARD);
    let first = discovery.metadata().await.unwrap_err();
    // However slow the machine, the retry time is not reached.
    discovery.put_off_retry();
    let again = discovery.metadata().await.unwrap_err();
    hang_up.abort();
    let (
        DiscoveryError::Transport { source: first, .. },
        DiscoveryError::Transport { source: again, .. },
    ) = (&first, &again)
    else {
        panic!("{first:?} {again:?}");
    };
    assert!(Arc::ptr_eq(first, again), "the one error, remembered");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_caller_leaves_the_others_an_answer() {
    let idp = Gated::start().await;
    idp.answer(200, document(&idp.server.text("")));
    let discovery = discovery(idp.server.url(""), GUARD);
    let mut calls = in_flight(&discovery, 2).await;
    // The caller that started the attempt gives up.
    drop(calls.remove(0));
    idp.open(true);
    let outcomes = all(calls).await;
    assert!(outcomes[0].is_ok());
    assert_eq!(idp.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_nobody_waits_for_still_lands() {
    let idp = Gated::start().await;
    idp.answer(200, document(&idp.server.text("")));
    let discovery = discovery(idp.server.url(""), GUARD);
    drop(in_flight(&discovery, 3).await);
    // A newcomer joins the attempt still running.
    let late = in_flight(&discovery, 1).await;
    idp.open(true);
    assert!(all(late).await[0].is_ok());
    assert_eq!(idp.requests(), 1);
}

#[test]
fn without_a_runtime_the_caller_is_told() {
    let discovery = discovery(
        Url::parse("http://127.0.0.1:1").unwrap(),
        Duration::from_secs(1),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A runtime that shuts down drops the attempt unfinished.
    let mut calls = runtime.block_on(in_flight(&discovery, 1));
    let call = calls.pop().unwrap();
    drop(runtime);
    let error = block_on_without_runtime(call).unwrap_err();
    assert!(matches!(error, DiscoveryError::Interrupted), "{error:?}");
    // And the state is idle again: no runtime now.
    let error = block_on_without_runtime(Box::pin(discovery.metadata())).unwrap_err();
    assert!(matches!(error, DiscoveryError::Interrupted), "{error:?}");
}

/// Polls `future` to completion on this thread, without a runtime.
fn block_on_without_runtime<F: Future + Unpin>(mut future: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    loop {
        if let Poll::Ready(output) = Pin::new(&mut future).poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}
