//! `BearerAuthMiddleware` in a `reqwest-middleware` client, against real
//! servers on loopback.
#![cfg(feature = "reqwest-middleware")]

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use support::{Counting, TestServer, authorization, counting_source, hold_the_clock, respond};
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::middleware::BearerAuthMiddleware;
use tower_bearer::rejection::{RejectionStatuses, TokenRejected};
use tower_bearer::source::{KeyedTokenSource, StaticSource};
use tower_bearer::{
    BearerAuthLayer, Challenge, ErrorClass, OptOut, Scope, SourceError, Token, TokenCache,
    TokenError, TokenErrorKind, TokenParams, TokenSource,
};

fn http_client() -> reqwest::Client {
    // Loopback only: no proxy from the environment.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn client(middleware: BearerAuthMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(http_client()).with(middleware).build()
}

/// An API that records the `authorization` header of every request and
/// answers as `answer` says for it.
struct Api {
    server: TestServer,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Api {
    async fn start<F>(answer: F) -> Api
    where
        F: Fn(&str) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
    {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let server = TestServer::start(move |req| {
            let auth = authorization(&req);
            log.lock().unwrap().push(auth.clone());
            let response = answer(&auth);
            async move { response }
        })
        .await;
        Api { server, seen }
    }

    /// An API that answers 200 with the header it was sent.
    async fn echo() -> Api {
        Api::start(|auth| respond(200, auth.to_owned())).await
    }

    /// An API that accepts only `Bearer <token>`: anything else gets a 401
    /// `invalid_token`.
    async fn accepting(token: &'static str) -> Api {
        Api::start(move |auth| {
            if auth == format!("Bearer {token}") {
                respond(200, auth.to_owned())
            } else {
                challenge(401, r#"Bearer error="invalid_token""#)
            }
        })
        .await
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn challenge(status: u16, www_authenticate: &'static str) -> Response<Full<Bytes>> {
    let mut response = respond(status, "");
    response
        .headers_mut()
        .insert("www-authenticate", www_authenticate.parse().unwrap());
    response
}

#[tokio::test]
async fn the_server_receives_the_token() {
    let api = Api::echo().await;
    let client = client(BearerAuthMiddleware::new(StaticSource::new(Token::bearer(
        "t0k3n",
    ))));

    let response = client.get(api.url("/v1/me")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "Bearer t0k3n");
    assert_eq!(api.seen(), ["Bearer t0k3n"]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn twenty_concurrent_requests_share_one_fetch() {
    // No waiter's deadline can pass while the servers answer.
    let _clock = hold_the_clock();
    // The fetch waits for the gate: every request finds no token.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let opened = gate.clone();
    let counting = Counting::new(move |n| {
        let gate = gate.clone();
        async move {
            let _open = gate.acquire().await.unwrap();
            Ok(Token::bearer(format!("token-{n}")).with_lifetime(Duration::from_secs(3600)))
        }
    });
    let api = Api::echo().await;
    let middleware = BearerAuthMiddleware::new(counting.source());
    let cache = middleware.cache().clone();
    let client = client(middleware);

    let mut requests = tokio::task::JoinSet::new();
    for n in 0..20 {
        let (client, url) = (client.clone(), api.url(&format!("/v1/items/{n}")));
        requests.spawn(async move { client.get(url).send().await.unwrap() });
    }
    // One thread: the requests run whenever this task yields.
    while cache.stats().waited_for_fetch < 20 {
        tokio::task::yield_now().await;
    }
    assert!(api.seen().is_empty(), "no request goes without its token");
    opened.add_permits(1);

    while let Some(response) = requests.join_next().await {
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "Bearer token-1");
    }
    assert_eq!(counting.count(), 1);
    assert_eq!(api.seen().len(), 20);
}

#[tokio::test]
async fn a_401_throws_the_token_away_and_the_request_is_sent_once_more_with_the_new_one() {
    let (source, fetches) = counting_source(&["first", "second"]);
    let api = Api::accepting("second").await;
    let middleware = BearerAuthMiddleware::new(source);
    let cache = middleware.cache().clone();
    let client = client(middleware);

    // A body held in memory can be sent twice.
    let response = client
        .post(api.url("/v1/orders"))
        .body("{\"qty\":1}")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.seen(), ["Bearer first", "Bearer second"]);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(cache.stats().invalidations, 1);

    // The new token serves the next request: no fetch, no retry.
    let response = client.get(api.url("/v1/me")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(api.seen().len(), 3);
}

/// A middleware below the bearer one that marks the chain's extensions,
/// and records whether each attempt found them marked already.
#[derive(Clone, Default)]
struct MarksExtensions(Arc<Mutex<Vec<bool>>>);

#[derive(Clone)]
struct Mark;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for MarksExtensions {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let marked = extensions.insert(Mark).is_some();
        self.0.lock().unwrap().push(marked);
        next.run(request, extensions).await
    }
}

#[tokio::test]
async fn the_retry_starts_from_the_extensions_the_request_came_with() {
    let (source, _fetches) = counting_source(&["first", "second"]);
    let api = Api::accepting("second").await;
    let marks = MarksExtensions::default();
    let client = ClientBuilder::new(http_client())
        .with(BearerAuthMiddleware::new(source))
        .with(marks.clone())
        .build();

    let response = client.get(api.url("/v1/me")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.seen(), ["Bearer first", "Bearer second"]);
    assert_eq!(
        *marks.0.lock().unwrap(),
        [false, false],
        "as tower's retry copies a request's"
    );
}

// The clock is paused and held while the servers answer: the cache's
// cooldown between invalidations passes only when the test says so.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_request_is_retried_once_at_most() {
    let _clock = hold_the_clock();
    let (source, fetches) = counting_source(&["first", "second", "third", "fourth"]);
    let api = Api::start(|_| challenge(401, r#"Bearer error="invalid_token""#)).await;
    let middleware = BearerAuthMiddleware::new(source);
    let cache = middleware.cache().clone();
    let client = client(middleware);

    let response = client.get(api.url("/v1/me")).send().await.unwrap();

    // Both tokens were refused; the second answer comes back as it came.
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.extensions().get::<TokenRejected>().is_some());
    assert_eq!(api.seen(), ["Bearer first", "Bearer second"]);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    // A fresh token refused at once points at the configuration, not at a
    // stale token: the cache keeps it for its cooldown, and fetches no more.
    assert_eq!(cache.stats().invalidations, 1);

    // Past the cooldown, a refusal throws the token away again: one more
    // fetch, one more retry.
    tokio::time::advance(Duration::from_secs(5)).await;
    let response = client.get(api.url("/v1/me")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.seen(),
        [
            "Bearer first",
            "Bearer second",
            "Bearer second",
            "Bearer third"
        ]
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
    assert_eq!(cache.stats().invalidations, 2);
}

#[tokio::test]
async fn a_streaming_request_gets_its_401_back_and_the_token_is_still_thrown_away() {
    let (source, fetches) = counting_source(&["first", "second"]);
    let api = Api::accepting("second").await;
    let middleware = BearerAuthMiddleware::new(source);
    let cache = middleware.cache().clone();
    let client = client(middleware);

    // A body that cannot be sent twice.
    let body = reqwest::Body::wrap(Full::new(Bytes::from("stream")));
    let request = client.post(api.url("/v1/upload")).body(body);
    let response = request.send().await.unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.extensions().get::<TokenRejected>().is_some());
    assert_eq!(api.seen(), ["Bearer first"]);
    assert_eq!(cache.stats().invalidations, 1);

    let response = client.get(api.url("/v1/me")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.seen(), ["Bearer first", "Bearer second"]);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn with_the_retry_off_the_401_comes_back_and_the_token_is_thrown_away() {
    let (source, fetches) = counting_source(&["first", "second"]);
    let api = Api::accepting("second").await;
    let middleware = BearerAuthMiddleware::new(source).retry_on_unauthorized(false);
    let cache = middleware.cache().clone();
    let client = client(middleware);

    let response = client
        .post(api.url("/v1/orders"))
        .body("replayable")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.seen(), ["Bearer first"]);
    assert_eq!(cache.stats().invalidations, 1);

    let response = client.get(api.url("/v1/me")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_layers_rejection_statuses_decide_and_insufficient_scope_keeps_the_token() {
    let (source, fetches) = counting_source(&["first", "second"]);
    // A 403 `insufficient_scope` at `/admin`, a 403 `invalid_token` for the
    // first token elsewhere.
    let api = Api::start(|auth| match auth {
        "Bearer first" => challenge(403, r#"Bearer error="invalid_token""#),
        _ => respond(200, auth.to_owned()),
    })
    .await;
    let admin = Api::start(|_| {
        challenge(
            403,
            r#"Bearer error="insufficient_scope", scope="admin.write""#,
        )
    })
    .await;
    let layer = BearerAuthLayer::new(source).rejection_statuses(RejectionStatuses::new([
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
    ]));
    let middleware = BearerAuthMiddleware::from_layer(layer);
    let cache = middleware.cache().clone();
    let client = client(middleware);

    // The token is fine; the request needs more scope: not retried, token
    // kept.
    let response = client.get(admin.url("/admin")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = Challenge::bearer(response.headers()).unwrap();
    assert_eq!(challenge.scopes().collect::<Vec<_>>(), ["admin.write"]);
    assert_eq!(admin.seen(), ["Bearer first"]);
    assert_eq!(cache.stats().invalidations, 0);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // A 403 is a rejection for this layer: thrown away, sent once more.
    let response = client.get(api.url("/v1/me")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.seen(), ["Bearer first", "Bearer second"]);
    assert_eq!(cache.stats().invalidations, 1);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

/// One request through a middleware client, then one through a tower
/// stack, both over one cache whose source yields `first`, then `second`,
/// to an API accepting only `accepted`: what the API saw, and the fetches.
async fn middleware_then_tower_stack(accepted: &'static str) -> (Vec<String>, usize) {
    let (source, fetches) = counting_source(&["first", "second"]);
    let cache = TokenCache::new(source);
    let api = Api::accepting(accepted).await;
    let middleware_client = client(BearerAuthMiddleware::with_cache(cache.clone()));
    let http = http_client();
    let tower_client = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service(http.clone());

    let response = middleware_client
        .get(api.url("/v1/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let request = http.get(api.url("/v1/me")).build().unwrap();
    let response = tower_client.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    (api.seen(), fetches.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_cache_shared_with_a_tower_stack_serves_both_one_token() {
    let (seen, fetches) = middleware_then_tower_stack("first").await;
    assert_eq!(seen, ["Bearer first", "Bearer first"]);
    assert_eq!(fetches, 1);
}

#[tokio::test]
async fn a_rejection_seen_by_the_middleware_renews_the_token_of_the_tower_stack() {
    let (seen, fetches) = middleware_then_tower_stack("second").await;
    assert_eq!(seen, ["Bearer first", "Bearer second", "Bearer second"]);
    assert_eq!(fetches, 2);
}

#[tokio::test]
async fn no_token_is_a_middleware_error_holding_the_token_error() {
    let api = Api::echo().await;
    let source = support::failing_source(SourceError::new(
        "the provider is down",
        ErrorClass::TRANSIENT,
    ));
    let client = client(BearerAuthMiddleware::new(source));

    let error = client.get(api.url("/v1/me")).send().await.unwrap_err();

    assert!(error.is_middleware(), "{error:?}");
    let reqwest_middleware::Error::Middleware(inner) = &error else {
        panic!("not a middleware error: {error:?}");
    };
    let token_error = inner.downcast_ref::<TokenError>().expect("a TokenError");
    assert_eq!(token_error.kind(), TokenErrorKind::Source);
    assert!(token_error.is_transient());
    assert!(
        error.to_string().contains("the provider is down"),
        "{error}"
    );
    // The request was not sent.
    assert!(api.seen().is_empty());
}

/// A token endpoint that issues `SECRET-TOKEN-1`, then refuses the client
/// and echoes its secret back; and an API that refuses every token.
#[cfg(feature = "client-credentials")]
#[tokio::test]
async fn a_token_error_holds_no_secret() {
    use std::sync::atomic::AtomicUsize;
    use tower_bearer::{AuthStyle, ClientCredentials};

    const CLIENT_SECRET: &str = "S3CR3T-CLIENT-VALUE";
    let issued = Arc::new(AtomicUsize::new(0));
    let count = issued.clone();
    let idp = TestServer::start(move |_req| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n == 1 {
                return respond(
                    200,
                    r#"{"access_token":"SECRET-TOKEN-1","token_type":"Bearer","expires_in":3600}"#,
                );
            }
            respond(
                401,
                format!(
                    r#"{{"error":"invalid_client","error_description":"wrong secret {CLIENT_SECRET}"}}"#
                ),
            )
        }
    })
    .await;
    let api = Api::start(|_| challenge(401, r#"Bearer error="invalid_token""#)).await;
    let source = ClientCredentials::builder(idp.url("/token"), "client")
        .client_secret(CLIENT_SECRET)
        .auth_style(AuthStyle::RequestBody)
        .build()
        .unwrap();
    let client = client(BearerAuthMiddleware::new(source));

    // The first token is refused; the retry finds no token.
    let error = client.get(api.url("/v1/me")).send().await.unwrap_err();

    assert_eq!(api.seen(), ["Bearer SECRET-TOKEN-1"]);
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    let reqwest_middleware::Error::Middleware(inner) = &error else {
        panic!("not a middleware error: {error:?}");
    };
    let token_error = inner.downcast_ref::<TokenError>().expect("a TokenError");
    assert_eq!(token_error.kind(), TokenErrorKind::Source);
    let texts = [
        error.to_string(),
        format!("{error:#}"),
        format!("{error:?}"),
        format!("{inner:#}"),
        format!("{inner:?}"),
        support::error_chain(&error),
    ];
    for text in texts {
        assert!(text.contains("invalid_client"), "says why: {text}");
        assert!(!text.contains(CLIENT_SECRET), "{text}");
        assert!(!text.contains("SECRET-TOKEN"), "{text}");
    }
}

/// Tokens per audience: `token-for-<audience>`, `token-default` for none.
#[derive(Clone, Default)]
struct PerAudience {
    audience: Option<String>,
}

impl TokenSource for PerAudience {
    type Error = Infallible;

    fn fetch(&self) -> impl Future<Output = Result<Token, Infallible>> + Send {
        let token = match &self.audience {
            Some(audience) => format!("token-for-{audience}"),
            None => "token-default".to_owned(),
        };
        std::future::ready(Ok(Token::bearer(token)))
    }
}

impl KeyedTokenSource for PerAudience {
    type Keyed = PerAudience;

    fn for_params(&self, params: &TokenParams) -> Result<PerAudience, Infallible> {
        Ok(PerAudience {
            audience: params.audiences().first().cloned(),
        })
    }
}

#[tokio::test]
async fn the_chains_extensions_name_the_token_and_opt_out() {
    let api = Api::echo().await;
    let client = client(BearerAuthMiddleware::keyed(PerAudience::default()));

    let named = client
        .get(api.url("/v1/orders"))
        .with_extension(TokenParams::for_audience("orders"))
        .send()
        .await
        .unwrap();
    let default = client.get(api.url("/v1/me")).send().await.unwrap();
    let bare = client
        .get(api.url("/health"))
        .with_extension(OptOut::default().skip_token())
        .send()
        .await
        .unwrap();

    assert_eq!(named.text().await.unwrap(), "Bearer token-for-orders");
    assert_eq!(default.text().await.unwrap(), "Bearer token-default");
    assert_eq!(bare.text().await.unwrap(), "");
}

#[tokio::test]
async fn opting_out_of_the_retry_gets_the_401_back() {
    let (source, fetches) = counting_source(&["first", "second"]);
    let api = Api::accepting("second").await;
    let middleware = BearerAuthMiddleware::new(source);
    let cache = middleware.cache().clone();
    let client = client(middleware);

    let response = client
        .get(api.url("/v1/me"))
        .with_extension(OptOut::default().skip_retry())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.seen(), ["Bearer first"]);
    // Thrown away all the same.
    assert_eq!(cache.stats().invalidations, 1);
    let response = client.get(api.url("/v1/me")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_scope_keeps_the_token_off_another_origin() {
    let api = Api::echo().await;
    let elsewhere = Api::echo().await;
    let scope = Scope::origins([api.server.origin()]).unwrap();
    let layer = BearerAuthLayer::new(StaticSource::new(Token::bearer("t0k3n"))).scope(scope);
    let client = client(BearerAuthMiddleware::from_layer(layer));

    for url in [api.url("/v1/me"), elsewhere.url("/v1/me")] {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    assert_eq!(api.seen(), ["Bearer t0k3n"]);
    // Same host, another port: another origin, so no token.
    assert_eq!(elsewhere.seen(), [""]);
}

#[tokio::test]
async fn a_request_keeps_its_own_authorization_unless_the_layer_overwrites_it() {
    let api = Api::echo().await;
    let source = || StaticSource::new(Token::bearer("t0k3n"));
    let keeping = client(BearerAuthMiddleware::new(source()));
    let overwriting = client(BearerAuthMiddleware::from_layer(
        BearerAuthLayer::new(source()).overwrite_existing(true),
    ));

    for client in [keeping, overwriting] {
        client
            .get(api.url("/v1/me"))
            .header("authorization", "Basic dXNlcjpwYXNz")
            .send()
            .await
            .unwrap();
    }

    assert_eq!(api.seen(), ["Basic dXNlcjpwYXNz", "Bearer t0k3n"]);
}

/// A DPoP-bound token: a fresh proof per request, and an API's nonce
/// challenge answered with one retry carrying the nonce.
#[cfg(feature = "client-credentials")]
#[tokio::test]
async fn a_dpop_bound_token_is_proven_per_request_and_a_nonce_challenge_costs_one_retry() {
    use std::sync::atomic::AtomicUsize;
    use support::dpop::{DpopResourceServer, IssuedTokens, NoncePolicy, ResourceServerConfig};
    use tower_bearer::dpop::Dpop;
    use tower_bearer::source::FnSource;

    let config = ResourceServerConfig {
        nonce: NoncePolicy::required(),
        ..ResourceServerConfig::default()
    };
    let api = DpopResourceServer::start(IssuedTokens::default(), config).await;
    let dpop = Dpop::generate().unwrap();
    let fetches = Arc::new(AtomicUsize::new(0));
    let (tokens, key, count) = (api.tokens(), dpop.clone(), fetches.clone());
    let source = FnSource::new(move || {
        count.fetch_add(1, Ordering::SeqCst);
        let token = tokens.mint(Some(key.thumbprint()), Duration::from_secs(3600));
        let token = Token::new(token, "DPoP")
            .with_lifetime(Duration::from_secs(3600))
            .with_dpop(key.clone());
        async move { Ok::<_, std::io::Error>(token) }
    });
    let client = client(BearerAuthMiddleware::new(source));

    for n in 0..10 {
        let response = client
            .post(api.url(&format!("/v1/items/{n}")))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{:?}", api.refusals());
    }

    // The first request was challenged once; the nine after it carried the
    // nonce from the start, each with a proof of its own.
    assert_eq!(api.nonce_challenges(), 1);
    assert_eq!(api.requests(), 11);
    assert_eq!(dpop.nonce_retries(), 1);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(api.last_claims().unwrap()["nonce"], api.nonce().as_str());
}

/// The README's example is the module's, which rustdoc compiles and runs.
#[test]
fn the_readme_example_is_the_compiled_module_example() {
    assert_eq!(
        support::readme::readme_example("## reqwest-middleware"),
        support::readme::module_example(include_str!("../src/middleware.rs"), 0)
    );
}
