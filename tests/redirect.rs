//! tower-http's `FollowRedirect` outside the bearer layer, over a hyper-util
//! client: every hop passes through the layer again, so the scope decides
//! afresh for each URI.

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{TestServer, authorization, respond};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, Scope, Token, source::StaticSource};
use tower_http::follow_redirect::FollowRedirectLayer;

/// Server A (the API) redirects every request to server B (another port,
/// so another origin). Each records the `authorization` values it was sent.
struct RedirectPair {
    api: TestServer,
    api_seen: Arc<Mutex<Vec<String>>>,
    elsewhere_seen: Arc<Mutex<Vec<String>>>,
    _elsewhere: TestServer,
}

impl RedirectPair {
    async fn start() -> Self {
        let elsewhere_seen = Arc::new(Mutex::new(Vec::new()));
        let log = elsewhere_seen.clone();
        let elsewhere = TestServer::start(move |req| {
            log.lock().unwrap().push(authorization(&req));
            async move { respond(200, "landed") }
        })
        .await;
        let location = elsewhere.url("/landing");
        let api_seen = Arc::new(Mutex::new(Vec::new()));
        let log = api_seen.clone();
        let api = TestServer::start(move |req| {
            log.lock().unwrap().push(authorization(&req));
            let location = location.clone();
            async move {
                http::Response::builder()
                    .status(StatusCode::FOUND)
                    .header(http::header::LOCATION, location)
                    .body(Full::default())
                    .unwrap()
            }
        })
        .await;
        Self {
            api,
            api_seen,
            elsewhere_seen,
            _elsewhere: elsewhere,
        }
    }

    /// Sends one GET to A through `FollowRedirect` outside `layer`.
    async fn follow(&self, layer: BearerAuthLayer) {
        let mut client = ServiceBuilder::new()
            .layer(FollowRedirectLayer::new())
            .layer(layer)
            .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
        let request = Request::get(self.api.url("/v1/moved"))
            .body(Full::default())
            .unwrap();
        let response = client.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

fn bearer_layer() -> BearerAuthLayer {
    BearerAuthLayer::new(StaticSource::new(Token::bearer("hop-t0k3n")))
}

#[tokio::test]
async fn with_an_origin_allow_list_the_redirect_target_does_not_get_the_token() {
    let pair = RedirectPair::start().await;
    let scope = Scope::origins([pair.api.origin()]).unwrap();

    pair.follow(bearer_layer().scope(scope)).await;

    assert_eq!(*pair.api_seen.lock().unwrap(), ["Bearer hop-t0k3n"]);
    assert_eq!(*pair.elsewhere_seen.lock().unwrap(), [""]);
}

#[tokio::test]
async fn without_a_scope_every_hop_gets_the_token() {
    // The layer attaches the token to each hop afresh, below FollowRedirect,
    // so FollowRedirect's own credential filter never sees it: only a scope
    // keeps the token on its origin.
    let pair = RedirectPair::start().await;

    pair.follow(bearer_layer()).await;

    assert_eq!(*pair.api_seen.lock().unwrap(), ["Bearer hop-t0k3n"]);
    assert_eq!(*pair.elsewhere_seen.lock().unwrap(), ["Bearer hop-t0k3n"]);
}
