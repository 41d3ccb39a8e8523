//! The server-side composition: the axum proxy of `examples/proxy.rs`, run on
//! loopback in front of a real upstream server.

mod support;

// The example's own app, so that the test proves the example's code.
#[allow(dead_code)]
#[path = "../examples/proxy.rs"]
mod proxy_example;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::header::AUTHORIZATION;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{TestServer, authorization, counting_source, failing_source, respond};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_bearer::{BearerAuthLayer, ErrorClass, SourceError};

/// What the upstream was sent: `(authorization, path and query)` per request.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

async fn upstream() -> (TestServer, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let server = TestServer::start(move |req| {
        log.lock()
            .unwrap()
            .push((authorization(&req), req.uri().to_string()));
        async move { respond(200, "from upstream") }
    })
    .await;
    (server, seen)
}

/// The proxy app on `127.0.0.1:0`, stopped when dropped.
struct ProxyServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ProxyServer {
    async fn start(upstream: &TestServer, layer: BearerAuthLayer) -> Self {
        let app = proxy_example::router(&upstream.origin().parse().unwrap(), layer);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, task }
    }

    /// Sends a GET for `path` to the proxy, with extra `headers`; returns the
    /// status and body.
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let mut request = Request::get(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let client = Client::builder(TokioExecutor::new()).build_http::<String>();
        let response = client
            .request(request.body(String::new()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_request_without_a_token_reaches_the_upstream_with_one() {
    let (upstream, seen) = upstream().await;
    let (source, _) = counting_source(&["upstream-token"]);
    let proxy = ProxyServer::start(&upstream, BearerAuthLayer::new(source)).await;

    let (status, body) = proxy.get("/api/v1/users?active=true", &[]).await;

    assert_eq!((status, body.as_str()), (StatusCode::OK, "from upstream"));
    assert_eq!(
        *seen.lock().unwrap(),
        [(
            "Bearer upstream-token".to_owned(),
            "/v1/users?active=true".to_owned()
        )]
    );
}

#[tokio::test]
async fn the_clients_own_authorization_does_not_leak_upstream() {
    let (upstream, seen) = upstream().await;
    let (source, _) = counting_source(&["upstream-token"]);
    // The layer's default keeps a header the request already has: the proxy
    // must strip the inbound one for this to be safe.
    let proxy = ProxyServer::start(&upstream, BearerAuthLayer::new(source)).await;

    let (status, _) = proxy
        .get("/api/v1/me", &[("authorization", "Bearer browser-session")])
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        *seen.lock().unwrap(),
        [("Bearer upstream-token".to_owned(), "/v1/me".to_owned())]
    );
}

#[tokio::test]
async fn without_a_token_the_proxy_answers_itself_and_sends_nothing_upstream() {
    let (upstream, seen) = upstream().await;
    let transient = failing_source(SourceError::new(
        "the identity provider answered 503",
        ErrorClass::TRANSIENT,
    ));
    let proxy = ProxyServer::start(&upstream, BearerAuthLayer::new(transient)).await;

    let (status, body) = proxy
        .get(
            "/api/v1/me",
            &[(AUTHORIZATION.as_str(), "Bearer browser-session")],
        )
        .await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "upstream credentials unavailable");
    assert!(seen.lock().unwrap().is_empty());

    let permanent = failing_source(SourceError::new("invalid_client", ErrorClass::Permanent));
    let proxy = ProxyServer::start(&upstream, BearerAuthLayer::new(permanent)).await;
    let (status, _) = proxy.get("/api/v1/me", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(seen.lock().unwrap().is_empty());
}
