//! hyper-util's legacy `Client` under the bearer layer, against a real hyper
//! server on loopback.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::{TestServer, authorization, counting_source, respond};
use tower::retry::RetryLayer;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, RetryOnUnauthorized, Token, source::StaticSource};

fn hyper_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A server that echoes the request's `authorization` header and answers 401
/// unless it is `Bearer <accepted>`.
async fn api_accepting(accepted: &'static str) -> TestServer {
    TestServer::start(move |req| async move {
        let auth = authorization(&req);
        if auth == format!("Bearer {accepted}") {
            respond(200, auth)
        } else {
            respond(401, auth)
        }
    })
    .await
}

async fn body_text(body: hyper::body::Incoming) -> String {
    let bytes = body.collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn the_server_receives_the_bearer_token() {
    let server = api_accepting("s3cr3t").await;
    let layer = BearerAuthLayer::new(StaticSource::new(Token::bearer("s3cr3t")));
    let cache = layer.cache().clone();
    let mut client = ServiceBuilder::new().layer(layer).service(hyper_client());

    for _ in 0..3 {
        let request = Request::get(server.url("/v1/me"))
            .body(Full::default())
            .unwrap();
        let response = client.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response.into_body()).await, "Bearer s3cr3t");
    }
    // One fetch serves every request.
    assert_eq!(cache.stats().fetches_started, 1);
}

#[tokio::test]
async fn a_401_throws_the_token_away_and_the_next_request_fetches_a_new_one() {
    let server = api_accepting("second").await;
    let (source, fetches) = counting_source(&["first", "second"]);
    let layer = BearerAuthLayer::new(source);
    let cache = layer.cache().clone();
    let mut client = ServiceBuilder::new().layer(layer).service(hyper_client());

    let get = || {
        Request::get(server.url("/v1/me"))
            .body(Full::default())
            .unwrap()
    };

    let rejected = client.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(rejected.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_text(rejected.into_body()).await, "Bearer first");
    assert_eq!(cache.stats().invalidations, 1);

    let accepted = client.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(body_text(accepted.into_body()).await, "Bearer second");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // The new token is kept: no further fetch.
    let again = client.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_on_unauthorized_resends_a_replayable_request_once_with_a_new_token() {
    // The server records each request's token and body.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let log = seen.clone();
    let server = TestServer::start(move |req| {
        let log = log.clone();
        async move {
            let auth = authorization(&req);
            let body = body_text(req.into_body()).await;
            log.lock().unwrap().push((auth.clone(), body));
            respond(if auth == "Bearer second" { 200 } else { 401 }, auth)
        }
    })
    .await;
    let (source, fetches) = counting_source(&["first", "second"]);
    let mut client = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryOnUnauthorized::default()))
        .layer(BearerAuthLayer::new(source))
        .service(hyper_client());

    let request = Request::builder()
        .method(Method::POST)
        .uri(server.url("/v1/orders"))
        .body(Full::new(Bytes::from_static(b"{\"qty\":1}")))
        .unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response.into_body()).await, "Bearer second");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("Bearer first".to_owned(), "{\"qty\":1}".to_owned()),
            ("Bearer second".to_owned(), "{\"qty\":1}".to_owned()),
        ]
    );
}

#[tokio::test]
async fn retry_on_unauthorized_gives_up_after_one_retry() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let server = TestServer::start(move |req| {
        let auth = authorization(&req);
        log.lock().unwrap().push(auth.clone());
        async move { respond(401, auth) }
    })
    .await;
    let (source, _fetches) = counting_source(&["first", "second", "third"]);
    let layer = BearerAuthLayer::new(source);
    let cache = layer.cache().clone();
    let mut client = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryOnUnauthorized::default()))
        .layer(layer)
        .service(hyper_client());

    let request = Request::get(server.url("/v1/me"))
        .body(Full::default())
        .unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();

    // The second 401 comes back to the caller as it is: no retry loop.
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_text(response.into_body()).await, "Bearer second");
    assert_eq!(*seen.lock().unwrap(), ["Bearer first", "Bearer second"]);
    // The first rejected token was thrown away; the second rejection came
    // within the invalidation cooldown, so a fresh token is not refetched
    // again on every 401.
    assert_eq!(cache.stats().invalidations, 1);
}
