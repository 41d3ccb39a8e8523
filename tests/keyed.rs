//! One layer, many tokens: each request gets the token of the
//! [`TokenParams`] it names, or its selector picks, from a keyed cache.
//! In-process services here; `tests/keyed_http.rs` has the real servers.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, StatusCode};
use tokio::sync::Semaphore;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::{
    BearerAuthLayer, Error, OptOut, RetryOnUnauthorized, Token, TokenCache, TokenErrorKind,
    TokenParams, TokenSource, rejection::RejectionStatuses, source::KeyedTokenSource,
    source::StaticSource,
};

use support::echo;

/// A keyed source whose tokens say which key they are for: `audience:n`,
/// the `n`th fetch of that audience (`default` for the default token).
/// Each fetch yields a random number of times, so that concurrent fetches
/// finish in a random order.
#[derive(Clone, Default)]
struct PerAudience {
    audience: Option<String>,
    fetches: Arc<Mutex<HashMap<String, usize>>>,
    // When set, fetches of this audience wait for a permit.
    gate: Option<(String, Arc<Semaphore>)>,
    seed: u64,
}

impl PerAudience {
    fn label(&self) -> String {
        self.audience.clone().unwrap_or_else(|| "default".into())
    }

    fn fetches(&self, audience: &str) -> usize {
        self.fetches
            .lock()
            .unwrap()
            .get(audience)
            .copied()
            .unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.fetches.lock().unwrap().values().sum()
    }
}

impl TokenSource for PerAudience {
    type Error = Infallible;

    fn fetch(&self) -> impl Future<Output = Result<Token, Infallible>> + Send {
        let label = self.label();
        let n = {
            let mut fetches = self.fetches.lock().unwrap();
            let n = fetches.entry(label.clone()).or_default();
            *n += 1;
            *n
        };
        let gate = self
            .gate
            .as_ref()
            .filter(|(audience, _)| *audience == label)
            .map(|(_, gate)| gate.clone());
        let yields =
            fastrand::Rng::with_seed(self.seed ^ n as u64 ^ label.len() as u64).usize(0..50);
        async move {
            if let Some(gate) = gate {
                gate.acquire().await.unwrap().forget();
            }
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            Ok(Token::bearer(format!("{label}:{n}")).with_lifetime(Duration::from_secs(3600)))
        }
    }
}

impl KeyedTokenSource for PerAudience {
    type Keyed = PerAudience;

    fn for_params(&self, params: &TokenParams) -> Result<PerAudience, Infallible> {
        Ok(PerAudience {
            audience: Some(params.audiences().join(",")),
            ..self.clone()
        })
    }
}

fn for_audience(audience: &str) -> Request<String> {
    let mut request = Request::get("http://api.test/v1")
        .body(String::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(TokenParams::for_audience(audience));
    request
}

async fn send<S>(service: &mut S, request: Request<String>) -> Result<String, Error<Infallible>>
where
    S: Service<Request<String>, Response = http::Response<String>, Error = Error<Infallible>>,
{
    let response = service.ready().await?.call(request).await?;
    Ok(response.into_body())
}

/// The whole response to `request`, which must not fail.
async fn response_to<S>(service: &mut S, request: Request<String>) -> http::Response<String>
where
    S: Service<Request<String>, Response = http::Response<String>, Error = Error<Infallible>>,
{
    let service = service.ready().await.expect("ready");
    service.call(request).await.expect("answered")
}

/// The Duende bug: concurrent first requests with different parameters
/// must never get each other's token. Many keys, their first requests all
/// at once on a multi-thread runtime, fetches finishing in a random order;
/// several seeds.
#[test]
fn concurrent_first_requests_never_get_another_keys_token() {
    for seed in 0..8u64 {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let source = PerAudience {
                seed,
                ..PerAudience::default()
            };
            let layer = BearerAuthLayer::keyed(source.clone());
            let service = ServiceBuilder::new().layer(layer).service(echo());
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut audiences: Vec<String> = (0..40)
                .flat_map(|key| std::iter::repeat_n(format!("aud-{key}"), 10))
                .collect();
            rng.shuffle(&mut audiences);
            let mut requests = tokio::task::JoinSet::new();
            for audience in audiences {
                let mut service = service.clone();
                requests.spawn(async move {
                    let seen = send(&mut service, for_audience(&audience)).await.unwrap();
                    (audience, seen)
                });
            }
            while let Some(joined) = requests.join_next().await {
                let (audience, seen) = joined.unwrap();
                assert_eq!(seen, format!("Bearer {audience}:1"), "seed {seed}");
            }
            for key in 0..40 {
                assert_eq!(source.fetches(&format!("aud-{key}")), 1, "seed {seed}");
            }
            assert_eq!(source.total(), 40, "the default token was never fetched");
        });
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_that_names_nothing_gets_the_default_token() {
    let source = PerAudience::default();
    let mut service = ServiceBuilder::new()
        .layer(BearerAuthLayer::keyed(source.clone()))
        .service(echo());
    assert_eq!(
        send(&mut service, support::request()).await.unwrap(),
        "Bearer default:1"
    );
    // Empty parameters are the default token too.
    let mut empty = support::request();
    empty.extensions_mut().insert(TokenParams::default());
    assert_eq!(send(&mut service, empty).await.unwrap(), "Bearer default:1");
    assert_eq!(
        send(&mut service, for_audience("a")).await.unwrap(),
        "Bearer a:1"
    );
    assert_eq!(source.total(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_selector_picks_by_target_and_an_extension_wins_over_it() {
    let source = PerAudience::default();
    let layer = BearerAuthLayer::keyed(source.clone()).token_for(|target| {
        match (target.host(), target.path()) {
            (Some("graph.test"), _) => Some(TokenParams::for_audience("graph")),
            (_, path) if path.starts_with("/billing/") => {
                Some(TokenParams::for_audience("billing"))
            }
            _ => None,
        }
    });
    let mut service = ServiceBuilder::new().layer(layer).service(echo());
    let get = |uri: &str| Request::get(uri).body(String::new()).unwrap();

    let seen = send(&mut service, get("https://graph.test/v1/me")).await;
    assert_eq!(seen.unwrap(), "Bearer graph:1");
    let seen = send(&mut service, get("https://api.test/billing/invoices")).await;
    assert_eq!(seen.unwrap(), "Bearer billing:1");
    let seen = send(&mut service, get("https://api.test/orders")).await;
    assert_eq!(seen.unwrap(), "Bearer default:1");
    let mut named = get("https://graph.test/v1/me");
    named
        .extensions_mut()
        .insert(TokenParams::for_audience("named"));
    assert_eq!(send(&mut service, named).await.unwrap(), "Bearer named:1");
    // Empty params name the default token: the selector is not asked.
    let mut default = get("https://graph.test/v1/me");
    default.extensions_mut().insert(TokenParams::default());
    assert_eq!(
        send(&mut service, default).await.unwrap(),
        "Bearer default:1"
    );
}

#[tokio::test(start_paused = true)]
async fn a_layer_that_is_not_keyed_refuses_a_named_token_and_sends_nothing() {
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let mut service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(StaticSource::new(Token::bearer("t"))))
        .service(tower::service_fn(move |_req: Request<String>| {
            *counted.lock().unwrap() += 1;
            async { Ok::<_, Infallible>(http::Response::new(String::new())) }
        }));
    let error = send(&mut service, for_audience("a")).await.unwrap_err();
    let error = error.as_token_error().expect("a token error");
    assert_eq!(error.kind(), TokenErrorKind::NotKeyed);
    assert!(!error.is_transient());
    assert_eq!(*calls.lock().unwrap(), 0);
}

/// More keys than the bound: idle keys go, keys in steady use stay, and no
/// request fails; a request waiting on a key's fetch when that key is
/// evicted still gets its token.
#[tokio::test(start_paused = true)]
async fn eviction_drops_idle_keys_keeps_hot_ones_and_fails_no_request() {
    let gate = Arc::new(Semaphore::new(0));
    let source = PerAudience {
        gate: Some(("slow".into(), gate.clone())),
        ..PerAudience::default()
    };
    let cache = TokenCache::keyed_builder(source.clone())
        .max_keys(4)
        .build();
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service(echo());

    // A request waits on the slow key's fetch.
    let mut waiting = tokio_test::task::spawn(service.clone().oneshot(for_audience("slow")));
    assert!(waiting.poll().is_pending());

    let mut service = service;
    for cold in 0..20 {
        for hot in ["hot-a", "hot-b"] {
            let seen = send(&mut service, for_audience(hot)).await.unwrap();
            assert_eq!(seen, format!("Bearer {hot}:1"));
        }
        let audience = format!("cold-{cold}");
        let seen = send(&mut service, for_audience(&audience)).await.unwrap();
        assert_eq!(seen, format!("Bearer {audience}:1"));
        assert!(cache.key_count() <= 4);
    }
    // The hot keys were never refetched; the cold ones made room.
    assert_eq!((source.fetches("hot-a"), source.fetches("hot-b")), (1, 1));
    // 23 keys through a map of 4.
    assert_eq!(cache.stats().keys_evicted, 19, "{:?}", cache.stats());
    let held: Vec<TokenParams> = cache.keys().into_iter().map(|(params, _)| params).collect();
    assert!(held.contains(&TokenParams::for_audience("hot-a")));
    assert!(
        !held.contains(&TokenParams::for_audience("slow")),
        "evicted"
    );

    // The evicted key's fetch completes for the request that waited on it.
    gate.add_permits(1);
    let response = waiting.await.unwrap();
    assert_eq!(response.into_body(), "Bearer slow:1");
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_counters_and_invalidation() {
    let source = PerAudience::default();
    let cache = TokenCache::keyed(source.clone());
    let a = cache.for_params(&TokenParams::for_audience("a")).unwrap();
    let b = cache.for_params(&TokenParams::for_audience("b")).unwrap();
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    a.invalidate();
    assert!(!a.has_usable_token() && b.has_usable_token());
    assert_eq!((a.stats().fetches_started, a.stats().invalidations), (1, 1));
    assert_eq!((b.stats().fetches_started, b.stats().invalidations), (1, 0));
    assert_eq!(cache.stats().fetches_started, 0);
    assert_eq!(cache.key_count(), 2);
    // A key never holds a credential, whatever the source.
    let secret = TokenParams::builder()
        .param("assertion", "jwt-of-alice")
        .build();
    let refused = cache.for_params(&secret).unwrap_err();
    assert_eq!(refused.kind(), TokenErrorKind::CredentialInParams);
    assert!(!refused.to_string().contains("jwt-of-alice"), "{refused}");
    assert_eq!(cache.key_count(), 2);
    // Not keyed: no key can be had.
    let plain = TokenCache::new(StaticSource::new(Token::bearer("t")));
    let refused = plain
        .for_params(&TokenParams::for_audience("a"))
        .unwrap_err();
    assert_eq!(refused.kind(), TokenErrorKind::NotKeyed);
}

/// An inner service that answers each request by its token: `status` for
/// the tokens listed, 200 otherwise, with the challenge given. It counts
/// the requests it gets.
fn api(
    answers: Vec<(&'static str, u16, &'static str)>,
    calls: Arc<Mutex<usize>>,
) -> impl Service<Request<String>, Response = http::Response<String>, Error = Infallible, Future: Send>
+ Clone {
    let answers = Arc::new(answers);
    tower::service_fn(move |req: Request<String>| {
        let answers = answers.clone();
        *calls.lock().unwrap() += 1;
        async move {
            let auth = req.headers()["authorization"].to_str().unwrap().to_owned();
            let mut response = http::Response::new(auth.clone());
            if let Some((_, status, challenge)) = answers
                .iter()
                .find(|(token, ..)| auth == format!("Bearer {token}"))
            {
                *response.status_mut() = StatusCode::from_u16(*status).unwrap();
                if !challenge.is_empty() {
                    response
                        .headers_mut()
                        .insert("www-authenticate", challenge.parse().unwrap());
                }
            }
            Ok::<_, Infallible>(response)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn insufficient_scope_keeps_the_token_and_is_not_retried() {
    let source = PerAudience::default();
    let calls = Arc::new(Mutex::new(0));
    let mut service =
        ServiceBuilder::new()
            .layer(tower::retry::RetryLayer::new(RetryOnUnauthorized::default()))
            .layer(BearerAuthLayer::keyed(source.clone()).rejection_statuses(
                RejectionStatuses::new([StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN]),
            ))
            .service(api(
                vec![(
                    "a:1",
                    403,
                    r#"Bearer error="insufficient_scope", scope="orders.write""#,
                )],
                calls.clone(),
            ));
    let response = response_to(&mut service, for_audience("a")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(*calls.lock().unwrap(), 1, "not retried");
    let challenge = tower_bearer::Challenge::bearer(response.headers()).unwrap();
    assert_eq!(challenge.scopes().collect::<Vec<_>>(), ["orders.write"]);
    assert_eq!(source.fetches("a"), 1, "no refetch");
    // The token is kept: the next request carries it again.
    let again = send(&mut service, for_audience("a")).await.unwrap();
    assert_eq!(again, "Bearer a:1");
    assert_eq!(source.fetches("a"), 1);
}

#[tokio::test(start_paused = true)]
async fn invalid_token_refetches_that_key_only_and_is_retried_once() {
    let source = PerAudience::default();
    let calls = Arc::new(Mutex::new(0));
    let layer = BearerAuthLayer::keyed(source.clone());
    let cache = layer.cache().clone();
    let mut service = ServiceBuilder::new()
        .layer(tower::retry::RetryLayer::new(RetryOnUnauthorized::default()))
        .layer(layer)
        .service(api(
            vec![("a:1", 401, r#"Bearer error="invalid_token""#)],
            calls.clone(),
        ));
    assert_eq!(
        send(&mut service, for_audience("b")).await.unwrap(),
        "Bearer b:1"
    );
    // a:1 is rejected, thrown away, and the retry carries a:2.
    let response = response_to(&mut service, for_audience("a")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.into_body(), "Bearer a:2");
    assert_eq!(*calls.lock().unwrap(), 3, "b, then a twice");
    assert_eq!((source.fetches("a"), source.fetches("b")), (2, 1));
    let a = cache.for_params(&TokenParams::for_audience("a")).unwrap();
    assert_eq!(a.stats().invalidations, 1);
    assert_eq!(
        send(&mut service, for_audience("b")).await.unwrap(),
        "Bearer b:1"
    );
}

#[tokio::test(start_paused = true)]
async fn a_403_is_a_rejection_only_when_configured() {
    for (statuses, fetches, next_token) in [
        (RejectionStatuses::default(), 1, "Bearer a:1"),
        (
            RejectionStatuses::new([StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN]),
            2,
            "Bearer a:2",
        ),
    ] {
        let source = PerAudience::default();
        let mut service = ServiceBuilder::new()
            .layer(BearerAuthLayer::keyed(source.clone()).rejection_statuses(statuses))
            .service(api(vec![("a:1", 403, "")], Arc::default()));
        let _ = send(&mut service, for_audience("a")).await.unwrap();
        // The next request carries the token kept, or the one fetched to
        // replace the rejected one.
        let next = send(&mut service, for_audience("a")).await.unwrap();
        assert_eq!(next, next_token, "{statuses:?}");
        assert_eq!(source.fetches("a"), fetches, "{statuses:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn opt_outs_skip_the_token_the_invalidation_or_the_retry() {
    let source = PerAudience::default();
    let layer = BearerAuthLayer::keyed(source.clone());
    let cache = layer.cache().clone();
    let retried = Arc::new(Mutex::new(0usize));
    let calls = retried.clone();
    let inner = api(
        vec![
            ("default:1", 401, r#"Bearer error="invalid_token""#),
            ("default:2", 401, r#"Bearer error="invalid_token""#),
        ],
        Arc::default(),
    );
    let mut service = ServiceBuilder::new()
        .layer(tower::retry::RetryLayer::new(RetryOnUnauthorized::default()))
        .layer(layer)
        .map_request(move |req: Request<String>| {
            *calls.lock().unwrap() += 1;
            req
        })
        .service(tower::service_fn(move |req: Request<String>| {
            let mut inner = inner.clone();
            async move {
                if req.headers().contains_key("authorization") {
                    inner.call(req).await
                } else {
                    Ok(http::Response::new("-".to_owned()))
                }
            }
        }));
    let with = |opt_out: OptOut| {
        let mut request = support::request();
        request.extensions_mut().insert(opt_out);
        request
    };

    // No token at all, and nothing fetched.
    assert_eq!(
        send(&mut service, with(OptOut::default().skip_token()))
            .await
            .unwrap(),
        "-"
    );
    assert_eq!(source.total(), 0);

    // Rejected, but neither invalidated nor retried.
    let seen = send(
        &mut service,
        with(OptOut::default().skip_invalidation().skip_retry()),
    )
    .await
    .unwrap();
    assert_eq!(seen, "Bearer default:1");
    assert_eq!(cache.stats().invalidations, 0);
    assert_eq!(*retried.lock().unwrap(), 2, "sent once each, no retry");

    // Retry opted out only: invalidated, not retried.
    let seen = send(&mut service, with(OptOut::default().skip_retry()))
        .await
        .unwrap();
    assert_eq!(seen, "Bearer default:1");
    assert_eq!(cache.stats().invalidations, 1);
    assert_eq!(*retried.lock().unwrap(), 3);

    // Invalidation opted out only: the token stays, and the retry goes,
    // with the same token, rejected again.
    let calls_before = *retried.lock().unwrap();
    let seen = send(&mut service, with(OptOut::default().skip_invalidation()))
        .await
        .unwrap();
    assert_eq!(seen, "Bearer default:2");
    assert_eq!(cache.stats().invalidations, 1);
    assert_eq!(*retried.lock().unwrap(), calls_before + 2);
}
