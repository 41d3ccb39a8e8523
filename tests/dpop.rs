//! DPoP (RFC 9449) through the layer, against a resource server that
//! verifies every proof independently (tests/support/dpop.rs): signature
//! against the proof's own key, `htm`, `htu`, `ath`, `iat`, `jti` replay,
//! nonces, and the token's binding to the key's thumbprint.
#![cfg(feature = "client-credentials")]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use support::dpop::{DpopResourceServer, IssuedTokens, NoncePolicy, ResourceServerConfig};
use tower::retry::{Retry, RetryLayer};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::dpop::{Dpop, DpopAlgorithm, DpopKey};
use tower_bearer::rejection::DpopNonceRequired;
use tower_bearer::source::FnSource;
use tower_bearer::{BearerAuth, BearerAuthLayer, RetryOnUnauthorized, Token, TokenErrorKind};

fn http_client() -> reqwest::Client {
    // Loopback only: no proxy from the environment.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A source that mints a token bound to `dpop`'s key on every fetch, and
/// counts its fetches.
fn minting_source(
    tokens: &IssuedTokens,
    dpop: &Dpop,
) -> (impl tower_bearer::TokenSource + use<>, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let (tokens, dpop, count) = (tokens.clone(), dpop.clone(), fetches.clone());
    let source = FnSource::new(move || {
        count.fetch_add(1, Ordering::SeqCst);
        let token = tokens.mint(Some(dpop.thumbprint()), Duration::from_secs(3600));
        let token = Token::new(token, "DPoP")
            .with_lifetime(Duration::from_secs(3600))
            .with_dpop(dpop.clone());
        async move { Ok::<_, std::io::Error>(token) }
    });
    (source, fetches)
}

async fn api(nonce: NoncePolicy) -> DpopResourceServer {
    let config = ResourceServerConfig {
        nonce,
        ..ResourceServerConfig::default()
    };
    DpopResourceServer::start(IssuedTokens::default(), config).await
}

/// A verifying API with `nonce`, a key, a source minting tokens bound to
/// it, and the layer over reqwest with `RetryOnUnauthorized` outside.
struct Setup {
    api: DpopResourceServer,
    dpop: Dpop,
    fetches: Arc<AtomicUsize>,
    http: reqwest::Client,
    client: Retry<RetryOnUnauthorized, BearerAuth<reqwest::Client>>,
}

impl Setup {
    async fn new(nonce: NoncePolicy) -> Setup {
        let api = api(nonce).await;
        let dpop = Dpop::generate().unwrap();
        let (source, fetches) = minting_source(&api.tokens(), &dpop);
        let http = http_client();
        let client = ServiceBuilder::new()
            .layer(RetryLayer::new(RetryOnUnauthorized::default()))
            .layer(BearerAuthLayer::new(source))
            .service(http.clone());
        Setup {
            api,
            dpop,
            fetches,
            http,
            client,
        }
    }

    /// Sends `request` through the stack.
    async fn send(&self, request: reqwest::Request) -> reqwest::Response {
        self.client.clone().oneshot(request).await.unwrap()
    }

    /// The status of a GET to `path` on the API.
    async fn get(&self, path: &str) -> StatusCode {
        let request = self.http.get(self.api.url(path)).build().unwrap();
        self.send(request).await.status()
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_thousand_concurrent_requests_each_carry_a_unique_accepted_proof() {
    for algorithm in [DpopAlgorithm::Es256, DpopAlgorithm::EdDsa] {
        let api = api(NoncePolicy::default()).await;
        let dpop = Dpop::new(DpopKey::generate_with(algorithm).unwrap());
        let (source, fetches) = minting_source(&api.tokens(), &dpop);
        let http = http_client();
        let client = ServiceBuilder::new()
            .layer(BearerAuthLayer::new(source))
            .service(http.clone());

        let mut calls = tokio::task::JoinSet::new();
        for n in 0..1000 {
            // Different paths and methods, a query the proof leaves out.
            let method = if n % 2 == 0 {
                reqwest::Method::GET
            } else {
                reqwest::Method::POST
            };
            let url = format!("{}?page={n}", api.url(&format!("/v1/items/{}", n % 7)));
            let request = http.request(method, url).body("x").build().unwrap();
            let client = client.clone();
            calls.spawn(async move { client.oneshot(request).await.unwrap().status() });
        }
        while let Some(status) = calls.join_next().await {
            assert_eq!(
                status.unwrap(),
                StatusCode::OK,
                "{:?}",
                api.refusal_details()
            );
        }
        assert_eq!(api.accepted(), 1000, "{algorithm:?}");
        assert!(api.refusals().is_empty(), "{:?}", api.refusal_details());
        let jtis: HashSet<String> = api.seen_jtis().into_iter().collect();
        assert_eq!(jtis.len(), 1000);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(api.last_header().unwrap()["alg"], algorithm.as_str());
    }
}

#[tokio::test]
async fn a_nonce_challenge_costs_one_retry_and_the_nonce_is_kept() {
    let t = Setup::new(NoncePolicy::required()).await;
    for _ in 0..10 {
        assert_eq!(t.get("/v1/me").await, StatusCode::OK);
    }
    // The first request was challenged once; the nine after it carried the
    // nonce from the start.
    assert_eq!(t.api.nonce_challenges(), 1);
    assert_eq!(t.api.requests(), 11);
    assert_eq!(t.dpop.nonce_retries(), 1);
    // The token was fine all along.
    assert_eq!(t.fetches(), 1);
    assert_eq!(
        t.api.last_claims().unwrap()["nonce"],
        t.api.nonce().as_str()
    );
}

#[tokio::test]
async fn nonce_rotation_costs_one_retry_per_rotation_not_one_per_request() {
    // A hard cut: the old nonce is refused from the rotation on, and the
    // response that rotates it still names the old one.
    let t = Setup::new(NoncePolicy {
        announce_rotation: false,
        ..NoncePolicy::rotating_every(25)
    })
    .await;
    for _ in 0..200 {
        assert_eq!(t.get("/v1/orders").await, StatusCode::OK);
    }
    // 200 accepted requests rotate the nonce 8 times; the last rotation
    // comes with the last request. One challenge for the first request,
    // one per rotation that a later request met.
    assert_eq!(t.api.accepted(), 200);
    assert_eq!(t.api.nonce_challenges(), 8);
    assert_eq!(t.dpop.nonce_retries(), 8);
    assert!(t.api.refusals().is_empty(), "{:?}", t.api.refusal_details());
}

#[tokio::test]
async fn an_announced_rotation_costs_no_retry_even_under_concurrency() {
    // The server names the next nonce in the answer that rotates it, and
    // accepts the one before for a while.
    let t = Arc::new(
        Setup::new(NoncePolicy {
            keep_previous: true,
            ..NoncePolicy::rotating_every(50)
        })
        .await,
    );
    // The first request learns the nonce.
    assert_eq!(t.get("/v1/a").await, StatusCode::OK);
    assert_eq!(t.api.nonce_challenges(), 1);

    for _round in 0..10 {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let t = Arc::clone(&t);
            calls.spawn(async move { t.get("/v1/a").await });
        }
        while let Some(status) = calls.join_next().await {
            assert_eq!(status.unwrap(), StatusCode::OK);
        }
    }
    assert_eq!(t.api.accepted(), 201);
    assert_eq!(t.api.nonce_challenges(), 1, "{:?}", t.api.refusal_details());
    assert_eq!(t.dpop.nonce_retries(), 1);
}

#[tokio::test]
async fn a_hard_rotation_under_concurrency_costs_at_most_the_requests_in_flight() {
    // The old nonce is refused at once; the answer that rotates names the
    // new one, and answers to requests sent before it arrive late.
    let t = Arc::new(Setup::new(NoncePolicy::rotating_every(40)).await);
    assert_eq!(t.get("/v1/a").await, StatusCode::OK);

    const CONCURRENCY: usize = 8;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let t = Arc::clone(&t);
        calls.spawn(async move {
            for _ in 0..50 {
                // Every caller gets its answer: one retry is enough.
                assert_eq!(t.get("/v1/a").await, StatusCode::OK);
            }
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
    // 401 accepted requests rotate the nonce 10 times; each rotation can
    // catch at most the requests in flight with the old nonce.
    assert_eq!(t.api.accepted(), 401);
    let rotations = 401 / 40;
    assert!(
        t.api.nonce_challenges() <= 1 + rotations * CONCURRENCY,
        "{} challenges",
        t.api.nonce_challenges()
    );
    assert_eq!(t.dpop.nonce_retries() as usize, t.api.nonce_challenges());
}

#[tokio::test]
async fn a_streaming_request_gets_the_challenge_back_with_the_nonce_stored() {
    let t = Setup::new(NoncePolicy::required()).await;
    // A body that cannot be sent twice.
    let body = reqwest::Body::wrap(http_body_util::Full::new(bytes::Bytes::from("stream")));
    let streaming = t
        .http
        .post(t.api.url("/v1/upload"))
        .body(body)
        .build()
        .unwrap();
    assert!(streaming.try_clone().is_none());
    let response = t.send(streaming).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.extensions().get::<DpopNonceRequired>().is_some());
    assert_eq!(t.api.requests(), 1);

    // The nonce is already stored: the next request is not challenged.
    let request = t
        .http
        .post(t.api.url("/v1/upload"))
        .body("again")
        .build()
        .unwrap();
    assert_eq!(t.send(request).await.status(), StatusCode::OK);
    assert_eq!(t.api.nonce_challenges(), 1);
}

#[tokio::test]
async fn a_refused_proof_is_not_retried_and_keeps_the_token() {
    let t = Setup::new(NoncePolicy::default()).await;
    // A server whose clock says every proof is from the future or the past.
    t.api.set_iat_window(Duration::ZERO);

    for _ in 0..3 {
        let request = t.http.get(t.api.url("/v1/me")).build().unwrap();
        let response = t.send(request).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = tower_bearer::Challenge::find(response.headers(), "DPoP").unwrap();
        assert_eq!(challenge.error(), Some("invalid_dpop_proof"));
    }
    // One request each: no retry loop, and the token was not thrown away.
    assert_eq!(t.api.requests(), 3);
    assert_eq!(t.fetches(), 1);
    assert_eq!(t.dpop.nonce_retries(), 0);
}

#[tokio::test]
async fn a_token_the_api_rejects_is_replaced_and_the_request_sent_again() {
    let t = Setup::new(NoncePolicy::default()).await;
    assert_eq!(t.get("/v1/me").await, StatusCode::OK);

    t.api.tokens().revoke_all();
    // `invalid_token` in a DPoP challenge: a new token, sent once more.
    assert_eq!(t.get("/v1/me").await, StatusCode::OK);
    assert_eq!(t.fetches(), 2);
    assert_eq!(t.api.refusals(), ["unknown token"]);
}

#[tokio::test]
async fn a_request_without_an_origin_is_not_sent() {
    let dpop = Dpop::generate().unwrap();
    let token = Token::bearer("bound").with_dpop(dpop);
    let sent = Arc::new(AtomicUsize::new(0));
    let count = sent.clone();
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(
            tower_bearer::source::StaticSource::new(token),
        ))
        .service_fn(move |_req: http::Request<()>| {
            count.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(http::Response::new(())) }
        });

    // A relative URI, as tonic's before its channel adds the origin.
    let request = http::Request::get("/pkg.Service/Method").body(()).unwrap();
    let error = client
        .ready()
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap_err();
    let token_error = error.as_token_error().unwrap();
    assert_eq!(token_error.kind(), TokenErrorKind::ProofFailed);
    assert!(!token_error.is_transient());
    assert!(error.to_string().contains("DPoP"), "{error}");
    assert_eq!(sent.load(Ordering::SeqCst), 0);

    // With an origin it goes, as `DPoP <token>` with its proof.
    let request = http::Request::get("https://api.example.com/v1")
        .body(())
        .unwrap();
    client.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(sent.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_proof_names_the_request_and_the_token() {
    let dpop = Dpop::generate().unwrap();
    let token = Token::new("t0k3n", "DPoP").with_dpop(dpop.clone());
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(
            tower_bearer::source::StaticSource::new(token),
        ))
        .service_fn(|req: http::Request<()>| async move {
            Ok::<_, std::convert::Infallible>(http::Response::new(req.headers().clone()))
        });
    let request = http::Request::put("https://API.example.com:443/v1/a?b=c#d")
        .body(())
        .unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();
    let headers = response.body();
    assert_eq!(headers["authorization"], "DPoP t0k3n");
    assert!(headers["authorization"].is_sensitive());
    let proof = headers["dpop"].to_str().unwrap();
    let checked = support::dpop::verify_proof(
        proof,
        &support::dpop::Expected {
            method: "PUT",
            url: "https://api.example.com/v1/a",
            iat_window: Duration::from_secs(60),
            access_token: Some("t0k3n"),
        },
    )
    .unwrap();
    assert_eq!(checked.jkt, dpop.thumbprint());
    assert_eq!(checked.claims["htu"], "https://api.example.com/v1/a");
    assert_eq!(checked.claims["ath"], support::dpop::ath("t0k3n"));
    assert!(checked.claims.get("nonce").is_none());
}

// ---------------------------------------------------------------------------
// The token request.

fn dpop_source(
    provider: &support::dpop::DpopProvider,
    dpop: &Dpop,
) -> tower_bearer::ClientCredentials {
    tower_bearer::ClientCredentials::builder(provider.token.token_url(), provider.token.client_id())
        .client_secret(provider.token.client_secret())
        .dpop(dpop.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_token_endpoint_binds_the_token_to_the_key_and_nonces_cost_one_retry_each() {
    use support::dpop::{DpopProvider, TokenEndpointConfig};
    let provider = DpopProvider::start(
        TokenEndpointConfig {
            nonce: NoncePolicy::required(),
            ..TokenEndpointConfig::default()
        },
        ResourceServerConfig {
            nonce: NoncePolicy::required(),
            ..ResourceServerConfig::default()
        },
    )
    .await;
    let dpop = Dpop::generate().unwrap();
    let http = http_client();
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryOnUnauthorized::default()))
        .layer(BearerAuthLayer::new(dpop_source(&provider, &dpop)))
        .service(http.clone());

    // The first request: the token endpoint asks for a nonce, then the API.
    let first = http.get(provider.api.url("/v1/me")).build().unwrap();
    let response = client.clone().oneshot(first).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(provider.token.nonce_challenges(), 1);
    assert_eq!(provider.token.requests(), 2);
    assert_eq!(provider.api.nonce_challenges(), 1);
    assert_eq!(dpop.nonce_retries(), 2);

    // Then 50 at once: the same token, the API's nonce, no more retries.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let request = http
            .post(provider.api.url("/v1/orders"))
            .body("{}")
            .build()
            .unwrap();
        let client = client.clone();
        calls.spawn(async move { client.oneshot(request).await.unwrap().status() });
    }
    while let Some(status) = calls.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    assert_eq!(provider.token.issued(), 1);
    assert_eq!(
        provider.token.issued_jkts(),
        [Some(dpop.thumbprint().to_owned())]
    );
    assert_eq!(provider.api.accepted(), 51);
    assert_eq!(dpop.nonce_retries(), 2);
    assert!(
        provider.api.refusals().is_empty(),
        "{:?}",
        provider.api.refusal_details()
    );
    // The token request's proof: POST to the token URL, no `ath`.
    let claims = provider.token.last_claims().unwrap();
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["htu"], provider.token.token_url());
    assert!(claims.get("ath").is_none());
}

#[tokio::test]
async fn a_refused_proof_at_the_token_endpoint_is_one_permanent_failure_for_all_waiters() {
    use support::dpop::{DpopProvider, TokenEndpointConfig};
    let provider = DpopProvider::start(
        TokenEndpointConfig::default(),
        ResourceServerConfig::default(),
    )
    .await;
    // Every proof is out of the endpoint's window.
    provider.token.set_iat_window(Duration::ZERO);
    let dpop = Dpop::generate().unwrap();
    let http = http_client();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(dpop_source(&provider, &dpop)))
        .service(http.clone());

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let request = http.get(provider.api.url("/v1/me")).build().unwrap();
        let client = client.clone();
        calls.spawn(async move { client.oneshot(request).await.unwrap_err() });
    }
    while let Some(error) = calls.join_next().await {
        let error = error.unwrap();
        let token_error = error.as_token_error().unwrap();
        assert!(!token_error.is_transient());
        let text = support::error_chain(&error);
        assert!(text.contains("invalid_dpop_proof"), "{text}");
    }
    assert_eq!(provider.token.requests(), 1);
    assert_eq!(provider.api.requests(), 0);
}

#[tokio::test]
async fn a_second_nonce_challenge_in_a_row_is_not_retried() {
    use support::{TestServer, respond};
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    // A token endpoint that wants a new nonce every time.
    let endpoint = TestServer::start(move |_req| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = respond(400, r#"{"error":"use_dpop_nonce"}"#);
            response.headers_mut().insert(
                "dpop-nonce",
                http::HeaderValue::try_from(format!("nonce-{n}")).unwrap(),
            );
            response
        }
    })
    .await;
    let dpop = Dpop::generate().unwrap();
    let source = tower_bearer::ClientCredentials::builder(endpoint.url("/token"), "client")
        .client_secret("secret")
        .dpop(dpop.clone())
        .build()
        .unwrap();
    let error = source.fetch_token().await.unwrap_err();
    assert_eq!(error.oauth_error(), Some("use_dpop_nonce"));
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(dpop.nonce_retries(), 1);
    // Not the client's fault, and the next fetch has the latest nonce.
    assert!(matches!(
        error,
        tower_bearer::ClientCredentialsError::DpopNonceChanged
    ));
    assert!(error.class().is_transient());
    assert!(error.to_string().contains("use_dpop_nonce"), "{error}");

    // A challenge without a usable nonce cannot be met: permanent, no
    // retry.
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    let endpoint = TestServer::start(move |_req| {
        count.fetch_add(1, Ordering::SeqCst);
        async { respond(400, r#"{"error":"use_dpop_nonce"}"#) }
    })
    .await;
    let source = tower_bearer::ClientCredentials::builder(endpoint.url("/token"), "client")
        .client_secret("secret")
        .dpop(Dpop::generate().unwrap())
        .build()
        .unwrap();
    let error = source.fetch_token().await.unwrap_err();
    assert_eq!(error.oauth_error(), Some("use_dpop_nonce"));
    assert!(!error.class().is_transient());
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_bearer_token_for_a_dpop_request_is_refused() {
    use support::{TestServer, respond};
    let endpoint = TestServer::start(|_req| async {
        respond(
            200,
            r#"{"access_token":"unbound-s3cr3t","token_type":"Bearer","expires_in":3600}"#,
        )
    })
    .await;
    let source = tower_bearer::ClientCredentials::builder(endpoint.url("/token"), "client")
        .client_secret("secret")
        .dpop(Dpop::generate().unwrap())
        .build()
        .unwrap();
    let error = source.fetch_token().await.unwrap_err();
    assert!(
        matches!(&error, tower_bearer::ClientCredentialsError::DpopNotBound { token_type } if token_type == "Bearer"),
        "{error:?}"
    );
    assert!(!error.class().is_transient());
    let text = format!("{error} {error:?}");
    assert!(!text.contains("unbound-s3cr3t"), "{text}");
}

#[tokio::test]
async fn a_dpop_header_cannot_be_set_by_hand() {
    let error = tower_bearer::ClientCredentials::builder("https://idp.example.com/token", "c")
        .client_secret("s")
        .header("DPoP", "forged")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("dpop"), "{error}");
}

/// The README's DPoP example is the module's, which rustdoc compiles and
/// runs.
#[test]
fn the_readme_example_is_the_compiled_module_example() {
    assert_eq!(
        support::readme::readme_example("## Sender-constrained tokens: DPoP"),
        support::readme::module_example(include_str!("../src/dpop/mod.rs"), 1)
    );
}
