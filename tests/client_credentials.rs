//! The client-credentials source against real token endpoints served
//! in-process on 127.0.0.1.
#![cfg(feature = "client-credentials")]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::source::client_credentials::{
    AuthStyle, BuildError, ClientCredentials, ClientCredentialsError, MAX_BODY_EXCERPT_BYTES,
    MAX_RESPONSE_BYTES, RESERVED_HEADERS, ResponseProblem,
};
use tower_bearer::{BearerAuthLayer, Error, ErrorClass, TokenSource};

type Body = BoxBody<Bytes, Infallible>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Arc<dyn Fn() -> BoxFuture<http::Response<Body>> + Send + Sync>;

/// One request as the token endpoint saw it.
#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: String,
}

impl Recorded {
    fn form(&self) -> HashMap<String, String> {
        serde_urlencoded::from_str(&self.body).expect("the body is a form")
    }
}

/// A token endpoint on 127.0.0.1 that records every request; stopped on drop.
struct Endpoint {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which ends every connection.
        self.task.abort();
    }
}

impl Endpoint {
    async fn start(handler: Handler) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let handler = Arc::clone(&handler);
                let recorded = Arc::clone(&recorded);
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let handler = Arc::clone(&handler);
                    let recorded = Arc::clone(&recorded);
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        recorded.lock().unwrap().push(Recorded {
                            method: parts.method,
                            path: parts.uri.path().to_owned(),
                            headers: parts.headers,
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                        Ok::<_, Infallible>(handler().await)
                    }
                });
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Endpoint {
            addr,
            requests,
            task,
        }
    }

    /// An endpoint that always gives the same answer.
    async fn answering(status: u16, headers: &[(&str, &str)], body: &str) -> Endpoint {
        let status = StatusCode::from_u16(status).unwrap();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let body = body.to_owned();
        Endpoint::start(Arc::new(move || {
            let mut res = http::Response::builder().status(status);
            for (n, v) in &headers {
                res = res.header(n, v);
            }
            let res = res.body(full(&body)).unwrap();
            Box::pin(async move { res })
        }))
        .await
    }

    fn url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn full(body: &str) -> Body {
    Full::new(Bytes::from(body.to_owned())).boxed()
}

const TOKEN_JSON: &str =
    r#"{"access_token":"tok-SECRET-value","token_type":"Bearer","expires_in":3600}"#;
const ID: &str = "my client";
const SECRET: &str = "p+ss w%rd:x/y";

async fn fetch_from(
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<tower_bearer::Token, ClientCredentialsError> {
    let endpoint = Endpoint::answering(status, headers, body).await;
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .client_secret(SECRET)
        .build()
        .unwrap();
    source.fetch().await
}

/// The error a request gets through `BearerAuthLayer` when `source` fails.
async fn refused_through_the_layer(source: tower_bearer::ClientCredentials) -> Error<Infallible> {
    ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service_fn(|_req: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(()))
        })
        .oneshot(http::Request::new(()))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn basic_auth_request_is_exact() {
    let endpoint =
        Endpoint::answering(200, &[("content-type", "application/json")], TOKEN_JSON).await;
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .client_secret(SECRET)
        .scope("orders.read")
        .scope("orders.write")
        .param("audience", "https://api.example.com")
        .header("x-api-key", "key-SECRET-value")
        .build()
        .unwrap();

    let token = source.fetch().await.unwrap();
    assert_eq!(token.access_token().secret(), "tok-SECRET-value");
    assert_eq!(token.token_type(), "Bearer");
    assert_eq!(token.lifetime(), Some(Duration::from_secs(3600)));

    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, "/oauth/token");
    assert_eq!(
        req.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(req.headers["accept"], "application/json");
    assert_eq!(req.headers["x-api-key"], "key-SECRET-value");
    // base64("my+client:p%2Bss+w%25rd%3Ax%2Fy"): each part form-encoded first (RFC 6749 2.3.1).
    assert_eq!(
        req.headers["authorization"],
        "Basic bXkrY2xpZW50OnAlMkJzcyt3JTI1cmQlM0F4JTJGeQ=="
    );
    let form = req.form();
    assert_eq!(form.len(), 3, "{form:?}");
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], "orders.read orders.write");
    assert_eq!(form["audience"], "https://api.example.com");
}

#[tokio::test]
async fn request_body_style_puts_the_credentials_in_the_form_and_omits_an_empty_scope() {
    let endpoint = Endpoint::answering(200, &[], TOKEN_JSON).await;
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .client_secret(SECRET)
        .auth_style(AuthStyle::RequestBody)
        .build()
        .unwrap();
    source.fetch().await.unwrap();

    let req = &endpoint.requests()[0];
    assert!(!req.headers.contains_key("authorization"));
    let form = req.form();
    assert_eq!(form.len(), 3, "{form:?}");
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], ID);
    assert_eq!(form["client_secret"], SECRET);
    assert!(!form.contains_key("scope"));
}

#[tokio::test]
async fn a_client_without_a_secret_sends_its_id_in_the_form() {
    let endpoint = Endpoint::answering(200, &[], TOKEN_JSON).await;
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .build()
        .unwrap();
    source.fetch().await.unwrap();
    let req = &endpoint.requests()[0];
    assert!(!req.headers.contains_key("authorization"));
    assert_eq!(req.form()["client_id"], ID);
    assert!(!req.form().contains_key("client_secret"));
}

#[test]
fn extra_params_cannot_overwrite_the_standard_ones() {
    for name in ["grant_type", "client_id", "client_secret", "scope"] {
        let err = ClientCredentials::builder("https://login.example.com/token", ID)
            .param("audience", "a")
            .param(name, "sneaky")
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            BuildError::ReservedParam {
                name: name.to_owned()
            }
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn invalid_extra_headers_are_refused_without_showing_their_value() {
    let err = ClientCredentials::builder("https://login.example.com/token", ID)
        .header("x-api-key", "bad\r\nvalue-SECRET")
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidHeaderValue { .. }));
    assert!(err.to_string().contains("line break"), "{err}");
    assert!(!format!("{err} {err:?}").contains("SECRET"));
    let err = ClientCredentials::builder("https://login.example.com/token", ID)
        .header("bad name", "v")
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidHeaderName { .. }));
}

#[test]
fn the_token_url_must_be_https_except_on_loopback() {
    let build = |url: &str| ClientCredentials::builder(url, ID).build();
    assert!(build("https://example.com/token").is_ok());
    for url in [
        "http://127.0.0.1:8080/token",
        "http://[::1]:8080/token",
        "http://localhost/token",
    ] {
        assert!(build(url).is_ok(), "{url}");
    }
    let err = build("http://example.com/token").unwrap_err();
    assert_eq!(
        err,
        BuildError::InsecureUrl {
            host: "example.com".into()
        }
    );
    assert!(err.to_string().contains("https"), "{err}");
    assert!(
        ClientCredentials::builder("http://example.com/token", ID)
            .allow_insecure_http(true)
            .build()
            .is_ok()
    );
    assert!(matches!(
        build("ftp://example.com/token").unwrap_err(),
        BuildError::UnsupportedScheme { .. }
    ));
    let err = build("not a url").unwrap_err();
    assert!(matches!(err, BuildError::InvalidUrl { .. }));
    assert!(
        err.to_string().ends_with("relative URL without a base"),
        "{err}"
    );
    let err = build("https://idp.example.com:99999/token").unwrap_err();
    assert!(err.to_string().ends_with("invalid port number"), "{err}");
}

#[tokio::test]
async fn json_is_read_whatever_the_content_type() {
    let token = fetch_from(200, &[("content-type", "text/plain")], TOKEN_JSON)
        .await
        .unwrap();
    assert_eq!(token.access_token().secret(), "tok-SECRET-value");
    assert_eq!(token.lifetime(), Some(Duration::from_secs(3600)));
}

#[tokio::test]
async fn form_encoded_answers_are_read() {
    for content_type in [
        "application/x-www-form-urlencoded",
        "text/plain; charset=utf-8",
    ] {
        let token = fetch_from(
            200,
            &[("content-type", content_type)],
            "access_token=form-tok&token_type=bearer&expires_in=60",
        )
        .await
        .unwrap();
        assert_eq!(token.access_token().secret(), "form-tok");
        assert_eq!(token.token_type(), "Bearer");
        assert_eq!(token.lifetime(), Some(Duration::from_secs(60)));
    }
}

#[tokio::test]
async fn expires_in_shapes() {
    let cases = [
        (r#""expires_in":3600"#, Some(Duration::from_secs(3600))),
        (r#""expires_in":"3600""#, Some(Duration::from_secs(3600))),
        // Rounded down to whole seconds, as providers stamp expiry.
        (r#""expires_in":1.5"#, Some(Duration::from_secs(1))),
        (r#""expires_in":null"#, None),
        (r#""unrelated":1"#, None),
        // Zero, negative and non-numeric mean "unknown": the cache's default applies.
        (r#""expires_in":0"#, None),
        (r#""expires_in":-30"#, None),
        // Below one second rounds to zero: unknown, not a fetch per request.
        (r#""expires_in":0.0001"#, None),
        (r#""expires_in":"0.001""#, None),
        (r#""expires_in":"an hour""#, None),
        // Absurd values are clamped to about a year.
        (
            r#""expires_in":1e18"#,
            Some(tower_bearer::cache::MAX_LIFETIME),
        ),
    ];
    for (field, expected) in cases {
        let body = format!(r#"{{"access_token":"t",{field}}}"#);
        let token = fetch_from(200, &[], &body).await.unwrap();
        assert_eq!(token.lifetime(), expected, "{field}");
    }
}

#[tokio::test]
async fn a_sub_second_expires_in_does_not_make_every_request_fetch() {
    let endpoint =
        Endpoint::answering(200, &[], r#"{"access_token":"t","expires_in":0.001}"#).await;
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .client_secret(SECRET)
        .build()
        .unwrap();
    let mut api = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service_fn(|_req: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(()))
        });
    for _ in 0..20 {
        api.ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap();
    }
    // The cache's default lifetime (minutes) applies: one fetch in all.
    assert_eq!(endpoint.requests().len(), 1);
}

#[tokio::test]
async fn token_type_is_case_insensitive_and_defaults_to_bearer() {
    let token = fetch_from(200, &[], r#"{"access_token":"t","token_type":"BEARER"}"#)
        .await
        .unwrap();
    assert_eq!(token.token_type(), "Bearer");
    let token = fetch_from(200, &[], r#"{"access_token":"t"}"#)
        .await
        .unwrap();
    assert_eq!(token.token_type(), "Bearer");
}

#[tokio::test]
async fn an_empty_or_missing_access_token_is_an_error() {
    for body in [
        r#"{"access_token":"","token_type":"Bearer"}"#,
        r#"{"token_type":"Bearer","expires_in":3600}"#,
        r#"{"access_token":42}"#,
    ] {
        let err = fetch_from(200, &[], body).await.unwrap_err();
        assert!(
            matches!(err, ClientCredentialsError::InvalidResponse { .. }),
            "{body}: {err:?}"
        );
        assert_eq!(err.class(), ErrorClass::Permanent, "{body}");
        assert!(err.to_string().contains("access_token"), "{err}");
    }
}

#[tokio::test]
async fn an_oauth_error_response_says_what_the_provider_said() {
    let err = fetch_from(
        400,
        &[("content-type", "application/json")],
        r#"{"error":"invalid_client","error_description":"Invalid client secret","error_uri":"https://docs.example.com/e"}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the token endpoint refused the request: invalid_client: Invalid client secret \
         (see https://docs.example.com/e) (HTTP 400)"
    );
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn an_error_sent_with_status_200_is_an_error() {
    let err = fetch_from(200, &[], r#"{"error":"invalid_scope"}"#)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the token endpoint refused the request: invalid_scope (HTTP 200)"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    let err = fetch_from(200, &[], "error=unauthorized_client&error_description=nope")
        .await
        .unwrap_err();
    assert_eq!(err.oauth_error(), Some("unauthorized_client"));
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn server_errors_and_429_are_transient_and_keep_retry_after() {
    let err = fetch_from(500, &[("retry-after", "7")], "upstream exploded")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientCredentialsError::HttpStatus { .. }));
    assert_eq!(
        err.class(),
        ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(
        err.to_string(),
        "the token endpoint answered HTTP 500 Internal Server Error: upstream exploded"
    );

    let err = fetch_from(
        429,
        &[("retry-after", "30")],
        r#"{"error":"rate_limited","error_description":"slow down"}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(err.oauth_error(), Some("rate_limited"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert!(err.class().is_transient());

    // A date in the past means "now".
    let err = fetch_from(503, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], "")
        .await
        .unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::Transient {
            retry_after: Some(Duration::ZERO)
        }
    );
}

#[tokio::test]
async fn other_client_errors_are_permanent() {
    let err = fetch_from(404, &[("content-type", "text/html")], "<h1>Not Found</h1>")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("<h1>Not Found</h1>"), "{err}");
}

#[tokio::test]
async fn a_long_failure_answer_is_judged_by_its_status() {
    // A maintenance page bigger than the cap: still transient, Retry-After kept.
    let page = format!(
        "<html>down for maintenance{}</html>",
        " ".repeat(100 * 1024)
    );
    let err = fetch_from(503, &[("retry-after", "30")], &page)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientCredentialsError::HttpStatus { .. }),
        "{err:?}"
    );
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        err.class(),
        ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(30))
        }
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    let shown = err.to_string();
    assert!(
        shown.starts_with(
            "the token endpoint answered HTTP 503 Service Unavailable: <html>down for maintenance"
        ),
        "{shown}"
    );
    assert!(
        shown.ends_with(&format!("(reading stopped at {MAX_RESPONSE_BYTES} bytes)")),
        "{shown}"
    );
    assert!(
        shown.len() < MAX_BODY_EXCERPT_BYTES + 200,
        "{}",
        shown.len()
    );

    // Other statuses keep their class too.
    let err = fetch_from(429, &[("retry-after", "5")], &page)
        .await
        .unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(5))
        }
    );
    let err = fetch_from(400, &[], &page).await.unwrap_err();
    assert!(
        matches!(err, ClientCredentialsError::HttpStatus { .. }),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);

    // A success answer over the cap that is not a token response is what a
    // short one is: a page from something in between, transient.
    let err = fetch_from(200, &[("content-type", "text/html")], &page)
        .await
        .unwrap_err();
    assert_a_long_page_that_is_not_a_token_response(&err);
    assert!(
        err.to_string().contains("<html>down for maintenance"),
        "{err}"
    );

    // A token response, or any JSON object, over the cap is refused for
    // good, as a short object without a token is: it would come again.
    let huge_token = format!(
        r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
        "x".repeat(MAX_RESPONSE_BYTES)
    );
    for body in [
        huge_token,
        format!(r#"{{"access_token":"t","padding":"{page}"}}"#),
        format!(r#"{{"data":["{page}"]}}"#),
    ] {
        let err = fetch_from(200, &[], &body).await.unwrap_err();
        assert!(
            matches!(err, ClientCredentialsError::BodyTooLarge { .. }),
            "{err:?}"
        );
        assert_eq!(err.class(), ErrorClass::Permanent);
    }
}

#[tokio::test]
async fn an_endless_failure_answer_is_cut_and_judged_by_its_status() {
    let endpoint = Endpoint::start(Arc::new(|| {
        Box::pin(async {
            http::Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .header("retry-after", "3")
                .body(Endless::default().boxed())
                .unwrap()
        })
    }))
    .await;
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .build()
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY));
    assert_eq!(
        err.class(),
        ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(3))
        }
    );
}

#[tokio::test]
async fn a_garbage_body_is_kept_truncated() {
    let garbage = format!("<html>{}</html>", "maintenance ".repeat(500));
    let err = fetch_from(200, &[("content-type", "text/html")], &garbage)
        .await
        .unwrap_err();
    let ClientCredentialsError::InvalidResponse { body, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(body.starts_with("<html>maintenance"), "{body}");
    assert!(body.len() <= MAX_BODY_EXCERPT_BYTES + 32, "{}", body.len());
    assert!(
        body.ends_with(&format!("({} bytes in all)", garbage.len())),
        "{body}"
    );
    // Proxies and maintenance pages pass: try again later.
    assert!(err.class().is_transient());
}

#[tokio::test]
async fn a_broken_body_holding_a_token_never_shows_it() {
    for body in [
        r#"{"access_token":"tok-SECRET-value","token_type":17}"#,
        r#"{"access_token":"tok-SECRET-value","token_type":""}"#,
        // Unterminated: no member can be read.
        r#"{"access_token":"tok-SECRET-value"#,
    ] {
        let err = fetch_from(200, &[], body).await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let endpoint = Endpoint::answering(302, &[("location", "/elsewhere")], "").await;
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .client_secret(SECRET)
        .build()
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::FOUND));
    assert_eq!(endpoint.requests().len(), 1);
}

/// A success answer over the cap that is not a token response: judged as
/// a short one would be, transient, its start kept.
fn assert_a_long_page_that_is_not_a_token_response(err: &ClientCredentialsError) {
    assert!(
        matches!(
            err,
            ClientCredentialsError::InvalidResponse {
                problem: ResponseProblem::NotATokenResponse,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::TRANSIENT);
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("reading stopped at {MAX_RESPONSE_BYTES} bytes")),
        "{shown}"
    );
}

/// A body that never ends: `start`, then 16 KiB chunks of `a`, forever.
#[derive(Default)]
struct Endless {
    start: Option<&'static [u8]>,
}

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunk = self.start.take().unwrap_or(&[b'a'; 16 * 1024]);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(chunk)))))
    }
}

/// An endless body that starts with `start`.
fn endless_after(start: &'static [u8]) -> Body {
    Endless { start: Some(start) }.boxed()
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_cap() {
    let endpoint = Endpoint::start(Arc::new(|| {
        Box::pin(async { http::Response::new(Endless::default().boxed()) })
    }))
    .await;
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .build()
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert_a_long_page_that_is_not_a_token_response(&err);

    // An endless token response: too large, whatever follows.
    let endpoint = Endpoint::start(Arc::new(|| {
        Box::pin(async {
            let start = endless_after(br#"{"access_token":"t","padding":""#);
            http::Response::new(start)
        })
    }))
    .await;
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .build()
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientCredentialsError::BodyTooLarge { limit, .. } if limit == MAX_RESPONSE_BYTES
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("longer than 65536 bytes"), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    let endpoint = Endpoint::start(Arc::new(|| Box::pin(std::future::pending()))).await;
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(
        matches!(err, ClientCredentialsError::Timeout { .. }),
        "{err:?}"
    );
    assert!(err.class().is_transient());
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transient_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let source = ClientCredentials::builder(format!("http://{addr}/token"), ID)
        .build()
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(
        matches!(err, ClientCredentialsError::Transport { .. }),
        "{err:?}"
    );
    assert!(err.class().is_transient());
    assert_eq!(err.to_string(), "the token endpoint could not be reached");
    // The why is the source chain's, each layer once, down to the
    // operating system's refusal; through the layer's error too.
    let chain = |error: &(dyn std::error::Error + 'static)| {
        let mut layers = Vec::new();
        let mut next = Some(error);
        while let Some(layer) = next {
            layers.push(layer.to_string());
            next = layer.source();
        }
        layers
    };
    let layers = chain(&err);
    assert!(
        layers
            .iter()
            .any(|l| l.to_lowercase().contains("connection refused")),
        "{layers:?}"
    );
    let mut counted = layers.clone();
    counted.dedup();
    assert_eq!(counted, layers, "a layer repeats");
    let refused_io = std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .find_map(|e| e.downcast_ref::<std::io::Error>());
    assert_eq!(
        refused_io.map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    let token_error = tower_bearer::TokenCache::new(source)
        .refresh()
        .await
        .unwrap_err();
    let layers = chain(&token_error);
    assert_eq!(
        layers[0],
        "no token could be had: the token source failed: the token endpoint could not be reached"
    );
    assert!(layers.len() > 2, "{layers:?}");
    for window in layers.windows(2) {
        assert!(!window[0].ends_with(&window[1]), "{layers:?}");
    }
}

#[tokio::test]
async fn no_secret_shows_in_debug_or_display() {
    let endpoint = Endpoint::answering(
        401,
        &[],
        r#"{"error":"invalid_client","error_description":"bad credentials"}"#,
    )
    .await;
    let builder = ClientCredentials::builder(endpoint.url(), ID)
        .client_secret("client-SECRET-value")
        .header("x-api-key", "key-SECRET-value");
    let source = builder.clone().build().unwrap();
    let body_style = builder
        .clone()
        .auth_style(AuthStyle::RequestBody)
        .build()
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    let err_body_style = body_style.fetch().await.unwrap_err();
    let token_err = fetch_from(
        200,
        &[],
        r#"{"access_token":"tok-SECRET-value","token_type":[]}"#,
    )
    .await
    .unwrap_err();
    let shown = format!(
        "{builder:?} {source:?} {body_style:?} {err} {err:?} {err_body_style} {err_body_style:?} {token_err} {token_err:?}"
    );
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(shown.contains("x-api-key"), "{shown}");
}

const API_KEY: &str = "key-ECHOED-1";
/// SECRET as it travels in the form.
const SECRET_FORM: &str = "p%2Bss+w%25rd%3Ax%2Fy";
/// base64 of "my+client:p%2Bss+w%25rd%3Ax%2Fy", the Basic credentials.
const BASIC: &str = "bXkrY2xpZW50OnAlMkJzcyt3JTI1cmQlM0F4JTJGeQ==";

fn assert_no_secret(shown: &str) {
    for secret in [SECRET, SECRET_FORM, BASIC, API_KEY] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[tokio::test]
async fn an_endpoint_echoing_the_secrets_cannot_put_them_in_an_error() {
    let cases = [
        // A text page echoing the request form.
        (
            400,
            "text/html",
            format!(
                "rejected {SECRET_FORM} with key {API_KEY}; request was \
                 grant_type=client_credentials&client_id=my+client&client_secret={SECRET_FORM}"
            ),
            "rejected [redacted] with key [redacted]; request was",
        ),
        // The raw values and the Basic header, on a transient page.
        (
            503,
            "text/plain",
            format!("upstream saw {SECRET} / {API_KEY} / Authorization: Basic {BASIC}"),
            "upstream saw [redacted] / [redacted] / Authorization: Basic [redacted]",
        ),
        // An OAuth2 error whose text repeats them.
        (
            401,
            "application/json",
            serde_json::json!({
                "error": "invalid_client",
                "error_description": format!("client secret '{SECRET}' with key '{API_KEY}' is wrong"),
                "error_uri": format!("https://docs.example.com/e?key={API_KEY}"),
            })
            .to_string(),
            "invalid_client: client secret '[redacted]' with key '[redacted]' is wrong \
             (see https://docs.example.com/e?key=[redacted])",
        ),
    ];
    for (status, content_type, body, kept) in cases {
        let endpoint = Endpoint::answering(status, &[("content-type", content_type)], &body).await;
        for style in [AuthStyle::RequestBody, AuthStyle::Basic] {
            let source = ClientCredentials::builder(endpoint.url(), ID)
                .client_secret(SECRET)
                .auth_style(style)
                .header("x-api-key", API_KEY)
                .build()
                .unwrap();
            let err = source.fetch().await.unwrap_err();
            let shown = format!("{err} {err:?}");
            assert_no_secret(&shown);
            // What is not secret stays, to say what went wrong.
            assert!(err.to_string().contains(kept), "{err}");

            // Through the cache, the shared TokenError says no more.
            let err = refused_through_the_layer(source).await;
            let Error::Token(token_err) = &err else {
                panic!("{err:?}")
            };
            let shown = format!("{err} {err:?} {token_err} {token_err:?}");
            assert_no_secret(&shown);
            assert!(shown.contains("[redacted]"), "{shown}");
        }
    }
}

#[tokio::test]
async fn json_values_under_secret_keys_are_hidden() {
    let err = fetch_from(
        400,
        &[],
        r#"{"message":"bad request","client_assertion":"eyJ-HIDDEN","password":"pw-HIDDEN","api_key":"k-HIDDEN"}"#,
    )
    .await
    .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("HIDDEN"), "{shown}");
    assert!(shown.contains("bad request"), "{shown}");
}

#[tokio::test]
async fn extra_parameters_show_by_name_only() {
    let endpoint = Endpoint::answering(
        400,
        &[("content-type", "text/plain")],
        "grant refused: eyJ-ASSERT-value has expired",
    )
    .await;
    let builder = ClientCredentials::builder(endpoint.url(), ID)
        .param(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .param("client_assertion", "eyJ-ASSERT-value")
        .param("audience", "aud-VALUE");
    let source = builder.clone().build().unwrap();
    for shown in [format!("{builder:?}"), format!("{source:?}")] {
        for name in ["client_assertion_type", "client_assertion", "audience"] {
            assert!(shown.contains(name), "{name} not in {shown}");
        }
        for value in ["jwt-bearer", "ASSERT", "aud-VALUE"] {
            assert!(!shown.contains(value), "{value} in {shown}");
        }
    }
    // The values are still sent, and a secret-named one is scrubbed if echoed.
    let err = source.fetch().await.unwrap_err();
    assert_eq!(
        endpoint.requests()[0].form()["client_assertion"],
        "eyJ-ASSERT-value"
    );
    assert_eq!(
        err.to_string(),
        "the token endpoint answered HTTP 400 Bad Request: grant refused: [redacted] has expired"
    );
}

#[tokio::test]
async fn avionte_preset_sends_what_avionte_expects() {
    // The preset, pointed at a local endpoint: same shape, loopback URL.
    let endpoint = Endpoint::answering(200, &[], TOKEN_JSON).await;
    let preset = ClientCredentials::avionte("api-key-1", "client-1", "secret-1")
        .build()
        .unwrap();
    assert_eq!(
        preset.token_url().unwrap().as_str(),
        "https://api.avionte.com/authorize/token"
    );
    assert_eq!(preset.auth_style(), Some(AuthStyle::RequestBody));
    let local = ClientCredentials::builder(endpoint.url(), preset.client_id())
        .client_secret("secret-1")
        .auth_style(preset.auth_style().unwrap())
        .scopes(preset.scopes().to_vec())
        .header("x-api-key", "api-key-1")
        .build()
        .unwrap();
    local.fetch().await.unwrap();
    let req = &endpoint.requests()[0];
    assert_eq!(req.headers["x-api-key"], "api-key-1");
    let form = req.form();
    assert_eq!(form["client_id"], "client-1");
    assert_eq!(form["client_secret"], "secret-1");
    assert_eq!(form["scope"], "avionte.aero.compasintegrationservice");
    assert_eq!(local.kind(), "client_credentials");
}

#[tokio::test]
async fn through_the_layer_the_token_reaches_the_api_and_refusals_stay_permanent() {
    let endpoint = Endpoint::answering(200, &[], TOKEN_JSON).await;
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .client_secret(SECRET)
        .build()
        .unwrap();
    let mut api = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service_fn(|req: http::Request<()>| async move {
            Ok::<_, Infallible>(http::Response::new(req.headers()["authorization"].clone()))
        });
    let res = api
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(res.body(), "Bearer tok-SECRET-value");

    let refusing = Endpoint::answering(400, &[], r#"{"error":"invalid_client"}"#).await;
    let source = ClientCredentials::builder(refusing.url(), ID)
        .build()
        .unwrap();
    let err = refused_through_the_layer(source).await;
    let Error::Token(token_err) = &err else {
        panic!("{err:?}")
    };
    assert!(!token_err.is_transient());
    let source_err = token_err
        .source_error()
        .and_then(|e| e.downcast_ref::<ClientCredentialsError>())
        .expect("the source's own error");
    assert_eq!(source_err.oauth_error(), Some("invalid_client"));
}

/// `text` percent-encoded, every byte but ASCII letters, digits and `keep`,
/// in uppercase or lowercase hex, with a space as `%20`.
fn percent_encoded(text: &str, keep: &str, lowercase: bool) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || keep.as_bytes().contains(&b) {
                (b as char).to_string()
            } else if lowercase {
                format!("%{b:02x}")
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn a_secret_echoed_in_any_url_encoding_is_scrubbed() {
    // An Azure-style secret: `~` and `.` in it, plus a space and a slash.
    const AZURE_SECRET: &str = "Az8Q~x.Y_z-w/v u";
    const KEY: &str = "key~with spaces/and+plus";
    let basic = {
        use base64::Engine as _;
        let pair = format!(
            "my+client:{}",
            percent_encoded(AZURE_SECRET, "*-._", false).replace("%20", "+")
        );
        base64::engine::general_purpose::STANDARD.encode(pair)
    };
    let encodings = |value: &str| {
        vec![
            // RFC 3986 unreserved kept (encodeURIComponent keeps `~` too).
            percent_encoded(value, "-._~", false),
            percent_encoded(value, "-._~!*'()", false),
            // Python's quote: `/` kept as well.
            percent_encoded(value, "-._~/", false),
            // Lowercase hex, of each.
            percent_encoded(value, "-._~", true),
            percent_encoded(value, "", true),
        ]
    };
    let mut echoed: Vec<String> = encodings(AZURE_SECRET);
    echoed.extend(encodings(KEY));
    echoed.extend(encodings(&basic));
    for style in [AuthStyle::Basic, AuthStyle::RequestBody] {
        for shown_as in &echoed {
            for (status, content_type, body, expected) in [
                (
                    400,
                    "text/plain",
                    format!("you sent {shown_as}, which is wrong"),
                    "the token endpoint answered HTTP 400 Bad Request: you sent [redacted], which is wrong",
                ),
                (
                    401,
                    "application/json",
                    serde_json::json!({"error": "invalid_client", "error_description": format!("bad {shown_as}")})
                        .to_string(),
                    "the token endpoint refused the request: invalid_client: bad [redacted] (HTTP 401)",
                ),
            ] {
                let endpoint =
                    Endpoint::answering(status, &[("content-type", content_type)], &body).await;
                let source = ClientCredentials::builder(endpoint.url(), ID)
                    .client_secret(AZURE_SECRET)
                    .auth_style(style)
                    .header("x-api-key", KEY)
                    .build()
                    .unwrap();
                let err = source.fetch().await.unwrap_err();
                // Whole: not a character of the secret is left.
                assert_eq!(err.to_string(), expected, "{shown_as}");
                let shown = format!("{err:?}");
                assert!(!shown.contains(shown_as.as_str()), "{shown_as} in {shown}");
            }
        }
    }
}

#[tokio::test]
async fn an_extra_header_naming_a_built_in_one_is_refused() {
    // Every one, in capitals, and some as they are usually written.
    let usual = ["Authorization", "Content-Type", "Transfer-Encoding"].map(String::from);
    for name in RESERVED_HEADERS
        .map(str::to_ascii_uppercase)
        .into_iter()
        .chain(usual)
    {
        let err = ClientCredentials::builder("https://idp.example.com/token", ID)
            .client_secret(SECRET)
            .header(name.clone(), "value-SECRET")
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            BuildError::ReservedHeader {
                name: name.to_ascii_lowercase()
            }
        );
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("sets itself"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}

#[tokio::test]
async fn accept_and_a_repeated_header_replace_instead_of_duplicating() {
    let endpoint = Endpoint::answering(200, &[], TOKEN_JSON).await;
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .client_secret(SECRET)
        .header("Accept", "application/json;charset=utf-8")
        .header("x-api-key", "first")
        .header("X-Api-Key", "second")
        .build()
        .unwrap();
    source.fetch().await.unwrap();
    let request = &endpoint.requests()[0];
    let all = |name: &str| {
        request
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(all("accept"), ["application/json;charset=utf-8"]);
    assert_eq!(all("x-api-key"), ["second"]);
    assert_eq!(all("content-type"), ["application/x-www-form-urlencoded"]);
    assert_eq!(all("authorization").len(), 1);
}

#[tokio::test]
async fn credentials_in_the_token_url_are_refused() {
    let endpoint = Endpoint::answering(200, &[], TOKEN_JSON).await;
    for userinfo in ["user:url-PASSWORD@", "user@", ":url-PASSWORD@"] {
        let url = format!("http://{userinfo}{}/oauth/token", endpoint.addr);
        for style in [AuthStyle::Basic, AuthStyle::RequestBody] {
            let err = ClientCredentials::builder(&url, ID)
                .client_secret(SECRET)
                .auth_style(style)
                .build()
                .unwrap_err();
            assert!(
                matches!(err, BuildError::CredentialsInUrl { .. }),
                "{err:?}"
            );
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("PASSWORD"), "{shown}");
            assert!(
                !shown.contains("user:") && !shown.contains("user@"),
                "{shown}"
            );
            assert!(shown.contains("user name or password"), "{shown}");
        }
    }
    assert!(endpoint.requests().is_empty());
}

#[tokio::test]
async fn quirks_elsewhere_in_a_token_response_keep_the_token() {
    let hour = Some(Duration::from_secs(3600));
    let cases: [(&[u8], Option<Duration>); 16] = [
        // A byte order mark.
        (
            b"\xEF\xBB\xBF{\"access_token\":\"t\",\"expires_in\":3600}",
            hour,
        ),
        // A trailing comma.
        (br#"{"access_token":"t","expires_in":3600,}"#, hour),
        // Text after the object.
        (
            b"{\"access_token\":\"t\",\"expires_in\":3600}\n<!-- served by edge-7 -->",
            hour,
        ),
        // A number out of f64's range: clamped, like any absurd lifetime.
        (
            br#"{"access_token":"t","expires_in":1e999}"#,
            Some(tower_bearer::cache::MAX_LIFETIME),
        ),
        // A lone surrogate, and an escape JSON does not have, in other members.
        (
            br#"{"access_token":"t","note":"\ud800","expires_in":3600}"#,
            hour,
        ),
        (
            br#"{"access_token":"t","note":"\x41","expires_in":3600}"#,
            hour,
        ),
        // Values that run on past their end, or are missing, in other members.
        (
            br#"{"note":"say "hi"","access_token":"t","expires_in":3600}"#,
            hour,
        ),
        (br#"{"scope":,"access_token":"t","expires_in":3600}"#, hour),
        (br#"{ x, "access_token":"t","expires_in":3600}"#, hour),
        (br#"{"access_token":"t","expires_in":3600 s}"#, None),
        // A raw control character in another member.
        (
            b"{\"access_token\":\"t\",\"note\":\"a\tb\",\"expires_in\":3600}",
            hour,
        ),
        // Bytes that are not UTF-8 in another member.
        (
            b"{\"access_token\":\"t\",\"note\":\"\xff\xfe\",\"expires_in\":3600}",
            hour,
        ),
        // Not JSON after the token: what came before it is kept.
        (
            br#"{"access_token":"t","token_type":"bearer","expires_in":NaN}"#,
            None,
        ),
        // A repeated member: the last one counts.
        (
            br#"{"access_token":"old","access_token":"t","expires_in":3600}"#,
            hour,
        ),
        // Whitespace around the values.
        (
            b"{\"access_token\":\" t\\n\",\"token_type\":\" Bearer \",\"expires_in\":\" 3600 \"}",
            hour,
        ),
        // Ended by the server after the token (the 64 KiB cap is another matter).
        (br#"{"access_token":"t","expires_in":3600"#, hour),
    ];
    for (body, lifetime) in cases {
        let endpoint = Endpoint::start(Arc::new(move || {
            let body = Full::new(Bytes::from_static(body)).boxed();
            Box::pin(async move { http::Response::new(body) })
        }))
        .await;
        let source = ClientCredentials::builder(endpoint.url(), ID)
            .build()
            .unwrap();
        let shown = String::from_utf8_lossy(body);
        let token = source
            .fetch()
            .await
            .unwrap_or_else(|e| panic!("{shown}: {e}"));
        assert_eq!(token.access_token().secret(), "t", "{shown}");
        assert_eq!(token.token_type(), "Bearer", "{shown}");
        assert_eq!(token.lifetime(), lifetime, "{shown}");
    }
}

#[tokio::test]
async fn error_messages_name_the_actual_problem() {
    let cases = [
        (
            r#"{"access_token":"t","token_type":""}"#,
            ResponseProblem::EmptyTokenType,
            "the token_type is empty",
        ),
        (
            r#"{"access_token":"t","token_type":17}"#,
            ResponseProblem::TokenTypeNotAString,
            "the token_type is not a string",
        ),
        (
            r#"{"access_token":"  ","token_type":"Bearer"}"#,
            ResponseProblem::EmptyAccessToken,
            "the access_token is empty",
        ),
        (
            r#"{"access_token":["t"]}"#,
            ResponseProblem::AccessTokenNotAString,
            "the access_token is not a string",
        ),
        (
            r#"{"access_token":null}"#,
            ResponseProblem::MissingAccessToken,
            "there is no access_token",
        ),
        (
            r#"[{"access_token":"t"}]"#,
            ResponseProblem::NotAnObject,
            "the body is JSON, but not an object",
        ),
        ("", ResponseProblem::EmptyBody, "the body is empty"),
        (
            r#"{"description":"nothing of a token response in it"}"#,
            ResponseProblem::MissingAccessToken,
            "there is no access_token",
        ),
        (
            "<html>Sign in to the hotel Wi-Fi</html>",
            ResponseProblem::NotATokenResponse,
            "neither JSON nor a form",
        ),
    ];
    for (body, expected, words) in cases {
        let err = fetch_from(200, &[], body).await.unwrap_err();
        let ClientCredentialsError::InvalidResponse { problem, .. } = &err else {
            panic!("{body}: {err:?}")
        };
        assert_eq!(*problem, expected, "{body}");
        assert!(err.to_string().contains(words), "{body}: {err}");
        let class = if expected.is_transient() {
            ErrorClass::TRANSIENT
        } else {
            ErrorClass::Permanent
        };
        assert_eq!(err.class(), class, "{body}");
    }
}

#[tokio::test]
async fn provider_text_stays_on_one_line_whatever_its_line_breaks() {
    let breaks = "a\r\nb\nc\rd\u{85}e\u{2028}f\u{2029}g\u{b}h\u{c}i";
    let json = serde_json::json!({
        "error": format!("invalid_client{breaks}"),
        "error_description": breaks,
        "error_uri": format!("https://docs.example.com/{breaks}"),
    })
    .to_string();
    for (status, body) in [
        (401, json.clone()),
        (503, breaks.to_owned()),
        (200, format!("<p>{breaks}</p>")),
    ] {
        let err = fetch_from(status, &[], &body).await.unwrap_err();
        let shown = err.to_string();
        assert_eq!(shown.lines().count(), 1, "{shown:?}");
        assert!(
            !shown.contains([
                '\r', '\n', '\u{85}', '\u{2028}', '\u{2029}', '\u{b}', '\u{c}'
            ]),
            "{shown:?}"
        );
        assert!(shown.contains("a  b c d e f g h i"), "{shown:?}");
    }
}

#[tokio::test]
async fn the_answers_own_token_never_shows_in_an_error_whatever_its_key() {
    for body in [
        // Refused for its empty type; the token shows again under another key.
        r#"{"access_token":"T-SECRET-1","token_type":"","data":{"jwt":"T-SECRET-1"}}"#,
        // Not strict JSON (a trailing comma), keys escaped: read member by member.
        r#"{"access_\u0074oken":"T-SECRET-1","\u0074oken_type":"",}"#,
    ] {
        let err = fetch_from(200, &[], body).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientCredentialsError::InvalidResponse {
                    problem: ResponseProblem::EmptyTokenType,
                    ..
                }
            ),
            "{body}: {err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("T-SECRET"), "{shown}");
    }
}

#[tokio::test]
async fn a_transient_error_code_stays_transient_when_a_short_secret_is_scrubbed() {
    let endpoint = Endpoint::answering(
        400,
        &[("content-type", "application/json")],
        r#"{"error":"temporarily_unavailable"}"#,
    )
    .await;
    // A header value of one letter, which the codes happen to hold.
    let source = ClientCredentials::builder(endpoint.url(), ID)
        .header("x-region", "a")
        .build()
        .unwrap();
    let err = source.fetch().await.unwrap_err();
    assert_eq!(err.oauth_error(), Some("temporarily_unavailable"));
    assert!(err.class().is_transient(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the token endpoint refused the request: temporarily_unavailable (HTTP 400)"
    );

    // Any registered code is kept as sent; one that is not is scrubbed.
    for (code, shown) in [
        ("invalid_client", "invalid_client"),
        ("bad_region_a", "b[redacted]d_region_[redacted]"),
    ] {
        let endpoint = Endpoint::answering(401, &[], &format!(r#"{{"error":"{code}"}}"#)).await;
        let source = ClientCredentials::builder(endpoint.url(), ID)
            .header("x-region", "a")
            .build()
            .unwrap();
        let err = source.fetch().await.unwrap_err();
        assert_eq!(err.oauth_error(), Some(shown));
        assert_eq!(err.class(), ErrorClass::Permanent);
    }
}
