//! Many tokens through one layer and one HTTP client, against real servers
//! on loopback: a token endpoint that issues audience- and resource-bound
//! tokens, and APIs that accept only their own.
#![cfg(feature = "client-credentials")]

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::{TestServer, authorization, respond};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::{
    AuthStyle, BearerAuthLayer, ClientCredentials, ClientCredentialsError, TokenParams,
};

/// A token endpoint: each token names the `audience` or `resource`s it was
/// asked for (`tok.<audience or resources>.<n>`); resources under
/// `https://refused.test` get RFC 8707's `invalid_target`. It keeps every
/// form it was sent.
struct Idp {
    server: TestServer,
    forms: Arc<Mutex<Vec<Form>>>,
}

/// A token request's form, as sent.
type Form = Vec<(String, String)>;

impl Idp {
    async fn start() -> Idp {
        let forms: Arc<Mutex<Vec<Form>>> = Arc::default();
        let log = forms.clone();
        let server = TestServer::start(move |req| {
            let log = log.clone();
            async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let form: Form = serde_urlencoded::from_bytes(&body).unwrap();
                let values = |name: &str| -> Vec<String> {
                    form.iter()
                        .filter(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                        .collect()
                };
                let (audiences, resources) = (values("audience"), values("resource"));
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(form.clone());
                    log.len()
                };
                if resources.iter().any(|r| r.starts_with("https://refused.test")) {
                    return respond(
                        400,
                        r#"{"error":"invalid_target","error_description":"unknown resource"}"#,
                    );
                }
                let bound = [audiences, resources].concat().join("+");
                respond(
                    200,
                    format!(r#"{{"access_token":"tok.{bound}.{n}","token_type":"Bearer","expires_in":3600}}"#),
                )
            }
        })
        .await;
        Idp { server, forms }
    }

    fn source(&self) -> ClientCredentials {
        ClientCredentials::builder(self.server.url("/token"), "client")
            .client_secret("secret")
            .auth_style(AuthStyle::RequestBody)
            .scope("default.read")
            .build()
            .unwrap()
    }

    fn forms(&self) -> Vec<Form> {
        self.forms.lock().unwrap().clone()
    }

    /// How many fetches named `bound` (an audience, or resources joined by `+`).
    fn fetches_for(&self, bound: &str) -> usize {
        self.forms()
            .iter()
            .filter(|form| {
                let named: Vec<&str> = form
                    .iter()
                    .filter(|(n, _)| n == "audience" || n == "resource")
                    .map(|(_, v)| v.as_str())
                    .collect();
                named.join("+") == bound
            })
            .count()
    }
}

/// An API that accepts only tokens bound to `audience`: anything else gets
/// 401 `invalid_token`. It counts what it refused.
async fn api_for(audience: &'static str, refused: Arc<Mutex<usize>>) -> TestServer {
    TestServer::start(move |req| {
        let refused = refused.clone();
        async move {
            let auth = authorization(&req);
            if auth.starts_with(&format!("Bearer tok.{audience}.")) {
                return respond(200, auth);
            }
            *refused.lock().unwrap() += 1;
            let mut response = respond(401, auth);
            response.headers_mut().insert(
                "www-authenticate",
                r#"Bearer error="invalid_token""#.parse().unwrap(),
            );
            response
        }
    })
    .await
}

fn hyper_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_mixed_requests_make_one_fetch_per_key_and_no_rejection() {
    let idp = Idp::start().await;
    let refused = Arc::new(Mutex::new(0));
    let orders = api_for("orders", refused.clone()).await;
    let billing = api_for("billing", refused.clone()).await;
    let orders_port = orders.addr().port();
    let layer = BearerAuthLayer::keyed(idp.source()).token_for(move |target| {
        let audience = if target.port() == Some(orders_port) {
            "orders"
        } else {
            "billing"
        };
        Some(TokenParams::for_audience(audience))
    });
    let cache = layer.cache().clone();
    let client = ServiceBuilder::new().layer(layer).service(hyper_client());

    let mut requests = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let url = if i % 2 == 0 {
            orders.url("/orders")
        } else {
            billing.url("/invoices")
        };
        let client = client.clone();
        requests.spawn(async move {
            let request = Request::get(url).body(Full::default()).unwrap();
            client.oneshot(request).await.map(|r| r.status())
        });
    }
    let mut ok = 0;
    while let Some(joined) = requests.join_next().await {
        assert_eq!(joined.unwrap().unwrap(), StatusCode::OK);
        ok += 1;
    }
    assert_eq!(ok, 1000);
    assert_eq!(
        *refused.lock().unwrap(),
        0,
        "no request carried another key's token"
    );
    assert_eq!(
        (idp.fetches_for("orders"), idp.fetches_for("billing")),
        (1, 1)
    );
    assert_eq!(
        idp.forms().len(),
        2,
        "and the default token was never fetched"
    );
    assert_eq!(cache.key_count(), 2);
}

#[tokio::test]
async fn a_keys_request_carries_its_parts_in_place_of_the_sources() {
    let idp = Idp::start().await;
    let source = ClientCredentials::builder(idp.server.url("/token"), "client")
        .client_secret("secret")
        .auth_style(AuthStyle::RequestBody)
        .scope("default.read")
        .audience("default-audience")
        .param("tenant", "t0")
        .build()
        .unwrap();
    let cache = tower_bearer::TokenCache::keyed(source);
    let params = TokenParams::builder()
        .resource("https://b.test/")
        .resource("https://a.test/")
        .scope("write read")
        .param("tenant", "t1")
        .build();
    cache.for_params(&params).unwrap().refresh().await.unwrap();
    cache.refresh().await.unwrap();
    let forms = idp.forms();
    let keyed: Vec<(&str, &str)> = forms[0]
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        keyed,
        [
            ("grant_type", "client_credentials"),
            ("client_id", "client"),
            ("client_secret", "secret"),
            ("scope", "read write"),
            // The source's audience stays: the key names none.
            ("audience", "default-audience"),
            ("resource", "https://a.test/"),
            ("resource", "https://b.test/"),
            ("tenant", "t1"),
        ]
    );
    let default: Vec<(&str, &str)> = forms[1]
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        default,
        [
            ("grant_type", "client_credentials"),
            ("client_id", "client"),
            ("client_secret", "secret"),
            ("scope", "default.read"),
            ("audience", "default-audience"),
            ("tenant", "t0"),
        ]
    );
    // A key never carries a credential.
    let secret = TokenParams::builder()
        .param("client_assertion", "jwt")
        .build();
    let refused = cache.for_params(&secret).unwrap_err();
    assert!(
        refused.to_string().contains("client_assertion"),
        "{refused}"
    );
    assert!(!refused.to_string().contains("jwt"), "{refused}");
    assert_eq!(idp.forms().len(), 2);
}

#[tokio::test]
async fn a_refused_key_fails_only_its_own_requests_without_a_fetch_storm() {
    let idp = Idp::start().await;
    let api = TestServer::start(|req| async move { respond(200, authorization(&req)) }).await;
    let layer = BearerAuthLayer::keyed(idp.source());
    let cache = layer.cache().clone();
    let mut client = ServiceBuilder::new().layer(layer).service(hyper_client());
    let good = TokenParams::for_resource("https://api.test/");
    let bad = TokenParams::for_resource("https://refused.test/");

    for round in 0..20 {
        let params = if round % 2 == 0 { &good } else { &bad };
        let mut request = Request::get(api.url("/v1")).body(Full::default()).unwrap();
        request.extensions_mut().insert(params.clone());
        let result = client.ready().await.unwrap().call(request).await;
        if params == &good {
            let response = result.expect("the good key keeps flowing");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "Bearer tok.https://api.test/.1");
        } else {
            let error = result.expect_err("the refused key fails");
            let error = error.as_token_error().expect("a token error, not sent");
            assert!(!error.is_transient());
            let cause = error
                .source_error()
                .and_then(|e| e.downcast_ref::<ClientCredentialsError>())
                .expect("the source's error");
            assert_eq!(cause.oauth_error(), Some("invalid_target"));
            assert!(error.to_string().contains("invalid_target"), "{error}");
        }
    }
    // One fetch each: the refused key backs off (a permanent error, at the
    // backoff's cap) and fails fast meanwhile.
    assert_eq!(idp.fetches_for("https://api.test/"), 1);
    assert_eq!(idp.fetches_for("https://refused.test/"), 1);
    let bad_cache = cache.for_params(&bad).unwrap();
    assert_eq!(bad_cache.stats().failed_fast, 9);
    assert_eq!(cache.for_params(&good).unwrap().stats().fetches_failed, 0);
}

#[test]
fn the_multi_audience_example_fetches_one_token_per_audience() {
    let output = std::process::Command::new(support::processes::example_binary("multi_audience"))
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for line in [
        "40 mixed requests: 40 answered 200",
        r#"["orders"]: 1 token fetch(es)"#,
        r#"["billing"]: 1 token fetch(es)"#,
        "GET /admin with the admin token -> 200 OK",
        r#"GET /admin with the orders token -> 403 Forbidden, needs scope "admin""#,
        // The 403 neither cost a fetch nor was re-sent.
        "token fetches at the provider: 3, calls to /admin: 2",
    ] {
        assert!(stdout.contains(line), "{line:?} not in {stdout}");
    }
}
