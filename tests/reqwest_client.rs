//! `reqwest::Client` (a `tower::Service<reqwest::Request>`) under the bearer
//! layer, against real servers on loopback.
#![cfg(feature = "reqwest")]

mod support;

use std::sync::{Arc, Mutex};

use http::StatusCode;
use support::{TestServer, authorization, respond};
use tower::retry::RetryLayer;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, RetryOnUnauthorized, Scope, Token, source::StaticSource};

fn reqwest_client() -> reqwest::Client {
    // Loopback only: no proxy from the environment.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn bearer_layer() -> BearerAuthLayer {
    BearerAuthLayer::new(StaticSource::new(Token::bearer("r3qw3st")))
}

/// A server that echoes the `authorization` header it was sent and records it.
async fn echo_server() -> (TestServer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = TestServer::start(move |req| {
        let auth = authorization(&req);
        log.lock().unwrap().push(auth.clone());
        async move { respond(200, auth) }
    })
    .await;
    (server, seen)
}

#[tokio::test]
async fn the_server_receives_the_bearer_token() {
    let (server, _) = echo_server().await;
    let http = reqwest_client();
    let mut client = ServiceBuilder::new()
        .layer(bearer_layer())
        .service(http.clone());

    let request = http.get(server.url("/v1/me")).build().unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "Bearer r3qw3st");
}

#[tokio::test]
async fn an_origin_allow_list_keeps_the_token_off_other_origins() {
    let (api, api_seen) = echo_server().await;
    let (elsewhere, elsewhere_seen) = echo_server().await;
    let http = reqwest_client();
    let scope = Scope::origins([api.origin()]).unwrap();
    let mut client = ServiceBuilder::new()
        .layer(bearer_layer().scope(scope))
        .service(http.clone());

    for url in [api.url("/v1/me"), elsewhere.url("/v1/me")] {
        let request = http.get(url).build().unwrap();
        let response = client.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    assert_eq!(*api_seen.lock().unwrap(), ["Bearer r3qw3st"]);
    // Same host, other port: another origin, so no token.
    assert_eq!(*elsewhere_seen.lock().unwrap(), [""]);
}

#[tokio::test]
async fn reqwest_drops_the_token_when_it_follows_a_redirect_to_another_origin() {
    // reqwest follows redirects inside the layer, so the layer sees only the
    // first URL; reqwest itself removes `authorization` on a cross-origin hop.
    let (elsewhere, elsewhere_seen) = echo_server().await;
    let location = elsewhere.url("/landing");
    let api = TestServer::start(move |_req| {
        let location = location.clone();
        async move {
            http::Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(http::header::LOCATION, location)
                .body(Default::default())
                .unwrap()
        }
    })
    .await;
    let http = reqwest_client();
    let mut client = ServiceBuilder::new()
        .layer(bearer_layer())
        .service(http.clone());

    let request = http.get(api.url("/v1/moved")).build().unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.url().as_str(), elsewhere.url("/landing"));
    assert_eq!(*elsewhere_seen.lock().unwrap(), [""]);
}

#[tokio::test]
async fn a_401_is_retried_once_with_a_new_token() {
    let (source, _fetches) = support::counting_source(&["first", "second"]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = TestServer::start(move |req| {
        let auth = authorization(&req);
        log.lock().unwrap().push(auth.clone());
        async move { respond(if auth == "Bearer second" { 200 } else { 401 }, auth) }
    })
    .await;
    let http = reqwest_client();
    let layer = BearerAuthLayer::new(source);
    let cache = layer.cache().clone();
    let mut client = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryOnUnauthorized::default()))
        .layer(layer)
        .service(http.clone());

    // A body held in memory can be replayed.
    let request = http
        .post(server.url("/v1/orders"))
        .body("{\"qty\":1}")
        .build()
        .unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(*seen.lock().unwrap(), ["Bearer first", "Bearer second"]);
    assert_eq!(cache.stats().invalidations, 1);
}
