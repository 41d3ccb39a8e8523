//! Nothing secret reaches a log: a whole run captured at TRACE level.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use support::Counting;
use tokio::time::advance;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, ErrorClass, SourceError, Token, TokenCache};

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    // reqwest logs through `log`: route it into tracing too.
    let _ = tracing_log::LogTracer::init();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_whole_lifecycle_logs_no_token() {
    let (captured, _guard) = capture();

    // Fetch 2 fails (a refresh-ahead failure), the others succeed; the API
    // rejects the third token.
    let counting =
        Counting::new(|n| async move {
            match n {
                2 => Err(SourceError::new("provider said 503", ErrorClass::TRANSIENT)),
                _ => Ok(Token::bearer(format!("SECRET-TOKEN-{n}"))
                    .with_lifetime(Duration::from_secs(100))),
            }
        });
    let cache = TokenCache::new(counting.source());
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service_fn(|req: Request<()>| async move {
            let mut res = Response::new(());
            if req.headers()["authorization"] == "Bearer SECRET-TOKEN-3" {
                *res.status_mut() = StatusCode::UNAUTHORIZED;
            }
            tracing::trace!(headers = ?req.headers(), "inner service saw the request");
            Ok::<_, std::convert::Infallible>(res)
        });

    for _ in 0..120 {
        let res = svc.clone().oneshot(Request::new(())).await;
        tracing::trace!(?res, "response");
        advance(Duration::from_secs(1)).await;
    }
    tracing::trace!(?cache, "cache at the end");

    let stats = cache.stats();
    assert!(
        stats.refreshes_ahead >= 1 && stats.fetches_failed >= 1 && stats.invalidations >= 1,
        "{stats:?}"
    );
    let log = captured.text();
    for expected in [
        "token fetched",
        "backing off",
        "invalidated",
        "token_fetch",
        "outcome",
        "Sensitive",
    ] {
        assert!(log.contains(expected), "the log lacks {expected:?}:\n{log}");
    }
    assert!(
        !log.contains("SECRET-TOKEN"),
        "a token leaked into the log:\n{log}"
    );
}

#[cfg(feature = "client-credentials")]
#[tokio::test(flavor = "current_thread")]
async fn a_client_credentials_run_logs_neither_secret_nor_token() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use support::{TestServer, respond};
    use tower_bearer::source::client_credentials::{AuthStyle, ClientCredentials};

    const SECRET: &str = "CLIENT-SECRET-d41d8cd9";
    const API_KEY: &str = "API-KEY-8f00b204";
    let (captured, _guard) = capture();

    // The endpoint refuses the first request, then issues tokens.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let idp = TestServer::start(move |_req| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n == 1 {
                respond(400, r#"{"error":"invalid_client","error_description":"bad credentials"}"#)
            } else {
                respond(
                    200,
                    format!(r#"{{"access_token":"SECRET-TOKEN-{n}","token_type":"bearer","expires_in":3600}}"#),
                )
            }
        }
    })
    .await;
    let api = TestServer::start(|_req| async { respond(200, "ok") }).await;

    for style in [AuthStyle::Basic, AuthStyle::RequestBody] {
        let source = ClientCredentials::builder(idp.url("/token"), "client-1")
            .client_secret(SECRET)
            .header("x-api-key", API_KEY)
            .auth_style(style)
            .build()
            .unwrap();
        tracing::trace!(?source, "source");
        let cache = TokenCache::builder(source)
            .backoff(tower_bearer::Backoff::none())
            .build();
        let client = ServiceBuilder::new()
            .layer(BearerAuthLayer::with_cache(cache.clone()))
            .service(reqwest::Client::new());
        for _ in 0..3 {
            let req = reqwest::Request::new(reqwest::Method::GET, api.url("/v1").parse().unwrap());
            let res = client.clone().oneshot(req).await;
            tracing::trace!(?res, "response");
            if let Err(e) = res {
                tracing::error!(error = %e, debug = ?e, "request failed");
            }
        }
        tracing::trace!(?cache, "cache");
    }

    assert!(calls.load(Ordering::SeqCst) >= 3);
    let log = captured.text();
    assert!(
        log.contains("invalid_client"),
        "the refusal is logged:\n{log}"
    );
    assert!(
        log.contains("reqwest::connect"),
        "the HTTP client's own logs are captured:\n{log}"
    );
    for secret in [SECRET, API_KEY, "SECRET-TOKEN"] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
}

#[cfg(all(feature = "client-credentials", feature = "rustls"))]
#[tokio::test(flavor = "current_thread")]
async fn certificate_and_private_key_jwt_runs_log_no_key_token_or_assertion() {
    use jsonwebtoken::Algorithm;
    use support::assertion::{AssertionEndpoint, Verifier};
    use support::keys::{KeyKind, TestKey};
    use support::tls::{BoundTokens, TestPki, pem_body_slices};
    use support::{TestServer, respond};
    use tower_bearer::ClientCredentials;
    use tower_bearer::source::client_auth::{ClientIdentity, PrivateKey};

    let (captured, _guard) = capture();

    // tls_client_auth: an accepted API call, a call without the certificate
    // (401, the token invalidated and fetched again) and a fetch with
    // another client's certificate (invalid_client).
    let pki = TestPki::new();
    let bound = BoundTokens::start(&pki).await;
    let (cert_pem, tls_key_pem) = pki.client("client-a");
    let identity = ClientIdentity::from_pem(cert_pem.as_bytes(), tls_key_pem.as_bytes()).unwrap();
    let ca = || reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap();
    let builder = ClientCredentials::builder(bound.token_url(), "client-a")
        .tls_client_auth(identity.clone())
        .add_root_certificate(ca());
    tracing::trace!(?builder, ?identity, "tls builder");
    let source = builder.build().unwrap();
    tracing::trace!(?source, "tls source");
    let layer = BearerAuthLayer::new(source);
    let owner = pki.https_client(Some(identity.reqwest_identity()));
    let bare = pki.https_client(None);
    for http in [&owner, &bare, &owner] {
        let client = ServiceBuilder::new()
            .layer(layer.clone())
            .service(http.clone());
        let req = http.get(bound.api_url("/things")).build().unwrap();
        let res = client.oneshot(req).await;
        tracing::trace!(?res, "response");
    }
    let other = ClientCredentials::builder(bound.token_url(), "client-a")
        .tls_client_auth(pki.client_identity("client-b"))
        .add_root_certificate(ca())
        .build()
        .unwrap();
    let error = other.fetch_token().await.unwrap_err();
    tracing::error!(error = %error, debug = ?error, "tls fetch failed");
    tracing::trace!(cache = ?layer.cache(), "tls cache");

    // private_key_jwt: a fetch with a key the endpoint does not know, then
    // accepted ones through the layer.
    let key = TestKey::generate(KeyKind::EcP256);
    let wrong = TestKey::generate(KeyKind::EcP256);
    let endpoint =
        AssertionEndpoint::start("svc-client", Verifier::for_key(&key, Algorithm::ES256)).await;
    let refused = ClientCredentials::builder(endpoint.token_url(), "svc-client")
        .private_key_jwt(PrivateKey::from_pem(wrong.pkcs8_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let error = refused.fetch_token().await.unwrap_err();
    tracing::error!(error = %error, debug = ?error, "assertion fetch failed");
    let mut assertions = vec![endpoint.last_assertion().unwrap()];
    let source = ClientCredentials::builder(endpoint.token_url(), "svc-client")
        .private_key_jwt(PrivateKey::from_pem(key.pkcs8_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    tracing::trace!(?source, "assertion source");
    let api = TestServer::start(|_req| async { respond(200, "ok") }).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(http.clone());
    let res = client
        .oneshot(http.get(api.url("/v1")).build().unwrap())
        .await;
    tracing::trace!(?res, "response");
    assertions.push(endpoint.last_assertion().unwrap());

    // Each part ran as meant.
    assert_eq!((bound.issued(), bound.refused()), (2, 1));
    assert_eq!((bound.api_ok(), bound.api_refused()), (2, 1));
    assert_eq!((endpoint.issued(), endpoint.refused()), (1, 1));
    assert_ne!(assertions[0], assertions[1]);

    let log = captured.text();
    for expected in ["token fetched", "invalidated", "invalid_client", "reqwest"] {
        assert!(log.contains(expected), "the log lacks {expected:?}:\n{log}");
    }
    // ".eyJ": a JWT's payload, after its header, whatever JWT it is.
    let mut secrets: Vec<String> = vec!["PRIVATE KEY".into(), ".eyJ".into()];
    secrets.extend(pem_body_slices(&tls_key_pem));
    secrets.extend(pem_body_slices(&key.pkcs8_pem()));
    secrets.extend(pem_body_slices(&wrong.pkcs8_pem()));
    secrets.extend((1..=bound.issued()).map(|n| format!("bound-{n}")));
    secrets.extend((1..=endpoint.issued()).map(|n| format!("assertion-token-{n}")));
    secrets.extend(assertions);
    for secret in secrets {
        assert!(
            !log.contains(&secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
}
