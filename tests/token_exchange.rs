//! The token-exchange source (RFC 8693) against a real token-exchange
//! endpoint on loopback (`support::exchange`) that checks each request's
//! shape and the client's authentication: the request, the layer, a
//! subject token rotated on disk, a token file missing and then empty
//! under the cache's backoff, a refused subject token, a subject from
//! another source, every client authentication method, keys, discovery,
//! and secrets that never show.
#![cfg(feature = "client-credentials")]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::source::FnSource;
use tower_bearer::source::client_auth::{AuthMethod, PrivateKey};
use tower_bearer::source::client_credentials::BuildError;
use tower_bearer::source::token_exchange::{
    GRANT_TYPE, RESERVED_PARAMS, SecurityToken, TokenExchange, TokenExchangeError,
    TokenFileProblem, TokenRole, token_type,
};
use tower_bearer::{
    AuthStyle, BearerAuthLayer, ClientCredentials, ErrorClass, KeyedTokenSource, SourceError,
    Token, TokenCache, TokenParams, TokenSource,
};

use support::assertion::{AssertionEndpoint, Verifier};
use support::exchange::{ClientCheck, ExchangeEndpoint};
use support::keys::{KeyKind, TestKey};
use support::temp::TempDir;
use support::{TestServer, echo, error_chain, hold_the_clock, no_jitter, request, respond};

const CLIENT: &str = "workload-a";
const SECRET: &str = "cl13nt-s3cret";
/// Subject and actor tokens shaped like the JWTs they stand for.
const SUBJECT: &str = "eyJzdWJqZWN0.c2VydmljZWFjY291bnQ.c2lnbmF0dXJl-1";
const ROTATED: &str = "eyJzdWJqZWN0.cm90YXRlZA.c2lnbmF0dXJl-2";
const ACTOR: &str = "eyJhY3Rvcg.Z2F0ZXdheQ.c2lnbmF0dXJl-3";

/// A directory holding the subject token file, and the file's path.
fn subject_file(token: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new("token-exchange");
    // A trailing newline, as `kubectl create token > file` writes it.
    let path = dir.write("token", format!("{token}\n"));
    (dir, path)
}

/// An actor token from a source of its own, as a gateway would pass it.
fn actor_source() -> SecurityToken {
    SecurityToken::source(FnSource::new(|| async {
        Ok::<_, std::io::Error>(Token::bearer(ACTOR))
    }))
    .with_type(token_type::ACCESS_TOKEN)
}

#[tokio::test]
async fn the_request_has_the_rfc_8693_shape() {
    let endpoint = ExchangeEndpoint::start(ClientCheck::basic(CLIENT, SECRET)).await;
    let (_dir, path) = subject_file(SUBJECT);
    let source = TokenExchange::builder(endpoint.token_url(), SecurityToken::file(&path))
        .client_id(CLIENT)
        .client_secret(SECRET)
        .actor(actor_source())
        .requested_token_type(token_type::ACCESS_TOKEN)
        .resource("https://orders.example.com/")
        .audience("orders")
        .scope("orders.read")
        .scope("orders.write")
        .param("tenant", "acme")
        .build()
        .unwrap();
    assert_eq!(source.kind(), "token_exchange");
    assert_eq!(source.auth_method(), AuthMethod::ClientSecretBasic);
    assert_eq!(source.client_id(), Some(CLIENT));
    assert_eq!(source.subject().token_type(), token_type::JWT);
    assert_eq!(source.subject().path(), Some(path.as_path()));

    let token = source.fetch_token().await.unwrap();
    assert_eq!(token.access_token().secret(), "exchanged-1");
    assert_eq!(token.token_type(), "Bearer");
    assert_eq!(token.lifetime(), Some(Duration::from_secs(3600)));

    let seen = endpoint.last();
    let expected: Vec<(&str, &str)> = vec![
        ("grant_type", GRANT_TYPE),
        ("subject_token_type", token_type::JWT),
        ("actor_token_type", token_type::ACCESS_TOKEN),
        ("requested_token_type", token_type::ACCESS_TOKEN),
        ("scope", "orders.read orders.write"),
        ("resource", "https://orders.example.com/"),
        ("audience", "orders"),
        ("tenant", "acme"),
        // The tokens, read for this request, trimmed.
        ("subject_token", SUBJECT),
        ("actor_token", ACTOR),
    ];
    let form: Vec<(&str, &str)> = seen
        .form
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(form, expected);
    // client_secret_basic: the credentials in the header, none in the form.
    assert!(seen.authorization.unwrap().starts_with("Basic "));
}

#[tokio::test]
async fn requests_through_the_layer_carry_the_exchanged_token() {
    let endpoint = ExchangeEndpoint::start(ClientCheck::public(None)).await;
    let (_dir, path) = subject_file(SUBJECT);
    let source = TokenExchange::builder(endpoint.token_url(), SecurityToken::file(path))
        .audience("orders")
        .build()
        .unwrap();
    let api = tower::service_fn(|req: http::Request<String>| async move {
        let bearer = req.headers()[http::header::AUTHORIZATION].to_str().unwrap();
        let status = if bearer == "Bearer exchanged-1" {
            200
        } else {
            401
        };
        Ok::<_, std::convert::Infallible>(
            http::Response::builder()
                .status(status)
                .body(String::new())
                .unwrap(),
        )
    });
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(api);
    let calls: Vec<_> = (0..20)
        .map(|_| tokio::spawn(client.clone().oneshot(request())))
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    // One exchange for every request; a public client names no client.
    assert_eq!(endpoint.requests(), 1, "{:?}", endpoint.refusals());
    assert_eq!(endpoint.last().get("client_id"), None);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_subject_token_rewritten_on_disk_is_sent_on_the_next_fetch() {
    let _clock = hold_the_clock();
    let endpoint = ExchangeEndpoint::start(ClientCheck::post(CLIENT, SECRET)).await;
    endpoint.set_expires_in(600);
    let (_dir, path) = subject_file(SUBJECT);
    let source = TokenExchange::builder(endpoint.token_url(), SecurityToken::file(&path))
        .client_id(CLIENT)
        .client_secret(SECRET)
        .auth_style(AuthStyle::RequestBody)
        .build()
        .unwrap();
    let cache = TokenCache::builder(source).refresh_jitter(0.0).build();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service(echo::<String>());
    let send = || async { client.clone().oneshot(request()).await.unwrap().into_body() };

    assert_eq!(send().await, "Bearer exchanged-1");
    assert_eq!(endpoint.last().get("subject_token"), Some(SUBJECT));

    // Kubernetes rotates the token; the cached one is still good until its
    // usable end, and then the next fetch reads the new file.
    std::fs::write(&path, format!("{ROTATED}\n")).unwrap();
    assert_eq!(send().await, "Bearer exchanged-1");
    assert_eq!(endpoint.requests(), 1);
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(send().await, "Bearer exchanged-2");
    assert_eq!(endpoint.last().get("subject_token"), Some(ROTATED));

    // So does the fetch after an invalidation.
    std::fs::write(&path, SUBJECT).unwrap();
    cache.invalidate();
    assert_eq!(send().await, "Bearer exchanged-3");
    assert_eq!(endpoint.last().get("subject_token"), Some(SUBJECT));
    assert_eq!(endpoint.requests(), 3, "{:?}", endpoint.refusals());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_missing_then_empty_file_backs_off_and_a_later_fetch_succeeds_once_it_is_written() {
    let _clock = hold_the_clock();
    let endpoint = ExchangeEndpoint::start(ClientCheck::public(Some(CLIENT))).await;
    let dir = TempDir::new("token-exchange-missing");
    let path = dir.path().join("token");
    let source = TokenExchange::builder(endpoint.token_url(), SecurityToken::file(&path))
        .client_id(CLIENT)
        .build()
        .unwrap();
    assert_eq!(source.auth_method(), AuthMethod::None);
    // Backoff: 1 s after the first failure, 2 s after the second.
    let cache = TokenCache::builder(source).backoff(no_jitter()).build();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache.clone()))
        .service(echo::<String>());
    let send = || async { client.clone().oneshot(request()).await };

    // Missing: a transient error naming the file and whose token it is.
    let error = send().await.unwrap_err();
    let token_error = error.as_token_error().unwrap();
    assert!(token_error.is_transient(), "{token_error}");
    let exchange_error = token_error
        .source_error()
        .and_then(|e| e.downcast_ref::<TokenExchangeError>())
        .expect("the source's own error");
    assert!(matches!(
        exchange_error,
        TokenExchangeError::TokenFile {
            role: TokenRole::Subject,
            problem: TokenFileProblem::Missing,
            ..
        }
    ));
    let text = error_chain(&error);
    assert!(text.contains("subject token file"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert_eq!(cache.stats().fetches_started, 1);

    // While backing off, requests fail at once without reading the file.
    std::fs::write(&path, "").unwrap();
    let error = send().await.unwrap_err();
    assert!(
        error
            .as_token_error()
            .unwrap()
            .backoff_remaining()
            .is_some()
    );
    assert_eq!(cache.stats().fetches_started, 1);
    assert_eq!(cache.stats().failed_fast, 1);

    // After 1 s: read again, empty now, still transient; the next wait is 2 s.
    tokio::time::advance(Duration::from_secs(1)).await;
    let error = send().await.unwrap_err();
    assert_eq!(cache.stats().fetches_started, 2);
    let text = error_chain(&error);
    assert!(text.contains("it is empty"), "{text}");
    assert!(error.as_token_error().unwrap().is_transient());

    std::fs::write(&path, SUBJECT).unwrap();
    tokio::time::advance(Duration::from_millis(1999)).await;
    send().await.unwrap_err();
    assert_eq!(cache.stats().fetches_started, 2, "still backing off");
    assert_eq!(endpoint.requests(), 0, "no token request without a token");

    tokio::time::advance(Duration::from_millis(1)).await;
    let answer = send().await.unwrap().into_body();
    assert_eq!(answer, "Bearer exchanged-1");
    assert_eq!(cache.stats().fetches_started, 3);
    assert_eq!(endpoint.requests(), 1);
    assert_eq!(endpoint.last().get("subject_token"), Some(SUBJECT));
    assert_eq!(endpoint.last().get("client_id"), Some(CLIENT));
}

#[tokio::test]
async fn a_refused_subject_token_is_one_permanent_invalid_grant_for_every_caller() {
    let endpoint = ExchangeEndpoint::start(ClientCheck::post(CLIENT, SECRET)).await;
    endpoint.refuse_subject(SUBJECT);
    let (_dir, path) = subject_file(SUBJECT);
    let source = TokenExchange::builder(endpoint.token_url(), SecurityToken::file(path))
        .client_id(CLIENT)
        .client_secret(SECRET)
        .auth_style(AuthStyle::RequestBody)
        .actor(actor_source())
        .build()
        .unwrap();
    let direct = source.fetch_token().await.unwrap_err();
    assert_eq!(direct.oauth_error(), Some("invalid_grant"));
    assert_eq!(direct.status(), Some(http::StatusCode::BAD_REQUEST));
    assert_eq!(source.classify(&direct), ErrorClass::Permanent);
    assert!(direct.endpoint_error().is_some());
    assert_eq!(direct.role(), None);

    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(echo::<String>());
    let calls: Vec<_> = (0..25)
        .map(|_| tokio::spawn(client.clone().oneshot(request())))
        .collect();
    for call in calls {
        let error = call.await.unwrap().unwrap_err();
        assert!(!error.as_token_error().unwrap().is_transient());
        let text = error_chain(&error);
        assert!(text.contains("invalid_grant"), "{text}");
        assert_no_secret(&text);
    }
    // One fetch for the direct call, one for all the layer's callers.
    assert_eq!(endpoint.requests(), 2);
    // The endpoint did echo every secret; none reached an error.
    let refusal = &endpoint.refusals()[0];
    for secret in [SUBJECT, ACTOR, SECRET] {
        assert!(refusal.contains(secret), "{refusal}");
    }
    assert_no_secret(&direct.to_string());
    assert_no_secret(&format!("{direct:?}"));
}

/// No subject token, actor token or client secret in `text`.
fn assert_no_secret(text: &str) {
    for secret in [SUBJECT, ROTATED, ACTOR, SECRET] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    // Nor a recognisable part of one.
    assert!(!text.contains("c2lnbmF0dXJl"), "{text}");
}

#[tokio::test]
async fn secrets_never_show_in_debug_or_errors_even_when_echoed() {
    let endpoint = ExchangeEndpoint::start(ClientCheck::basic(CLIENT, SECRET)).await;
    endpoint.refuse_subject(SUBJECT);
    let (_dir, path) = subject_file(SUBJECT);
    let builder = TokenExchange::builder(endpoint.token_url(), SecurityToken::file(&path))
        .client_id(CLIENT)
        .client_secret(SECRET)
        .actor(actor_source());
    let shown = format!("{builder:?}");
    assert_no_secret(&shown);
    assert!(
        shown.contains(&format!("{:?}", path.display().to_string())),
        "{shown}"
    );
    let source = builder.build().unwrap();
    let shown = format!("{source:?}");
    assert_no_secret(&shown);
    // Where the tokens come from, and their types.
    assert!(shown.contains("source: \"fn\""), "{shown}");
    assert!(shown.contains(token_type::ACCESS_TOKEN), "{shown}");
    assert!(shown.contains("file:"), "{shown}");

    let error = source.fetch_token().await.unwrap_err();
    let text = error_chain(&error);
    assert!(text.contains("invalid_grant"), "{text}");
    assert!(text.contains("[redacted]"), "the echo was scrubbed: {text}");
    assert_no_secret(&text);
    assert_no_secret(&format!("{error:?}"));
    // The Basic credentials, in either padding, are no more shown.
    let basic = endpoint.last().authorization.unwrap();
    let basic = basic.trim_start_matches("Basic ");
    assert!(!text.contains(basic.trim_end_matches('=')), "{text}");
}

#[tokio::test]
async fn a_subject_from_another_source_is_its_token_and_its_failure_keeps_its_class() {
    // An upstream identity provider issues the subject token by the
    // client-credentials grant.
    let upstream = TestServer::start(|_req| async {
        respond(
            200,
            r#"{"access_token":"upstream-token-1","token_type":"Bearer","expires_in":60}"#,
        )
    })
    .await;
    let upstream_source = ClientCredentials::builder(upstream.url("/token"), "upstream")
        .client_secret("upstream-s3cret")
        .build()
        .unwrap();
    let endpoint = ExchangeEndpoint::start(ClientCheck::public(None)).await;
    let subject = SecurityToken::source(upstream_source).with_type(token_type::ACCESS_TOKEN);
    assert!(format!("{subject:?}").contains("source: \"client_credentials\""));
    let source = TokenExchange::builder(endpoint.token_url(), subject)
        .build()
        .unwrap();
    source.fetch_token().await.unwrap();
    let seen = endpoint.last();
    assert_eq!(seen.get("subject_token"), Some("upstream-token-1"));
    assert_eq!(
        seen.get("subject_token_type"),
        Some(token_type::ACCESS_TOKEN)
    );

    // A source that fails: its error is the cause, its class the class.
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&asked);
    let failing = SecurityToken::source(FnSource::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            Err::<Token, _>(SourceError::new(
                "the vault refused: role not bound",
                ErrorClass::Permanent,
            ))
        }
    }));
    let source = TokenExchange::builder(endpoint.token_url(), failing)
        .build()
        .unwrap();
    let error = source.fetch_token().await.unwrap_err();
    assert!(matches!(
        error,
        TokenExchangeError::TokenSource {
            role: TokenRole::Subject,
            ..
        }
    ));
    assert_eq!(source.classify(&error), ErrorClass::Permanent);
    assert_eq!(
        error_chain(&error),
        "the subject token's source failed: the vault refused: role not bound"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert_eq!(endpoint.requests(), 1, "no request without a subject token");

    // An actor source's transient failure is the actor's, transient.
    let (_dir, path) = subject_file(SUBJECT);
    let flaky_actor = SecurityToken::source(FnSource::new(|| async {
        Err::<Token, _>(SourceError::new("timed out", ErrorClass::TRANSIENT))
    }));
    let source = TokenExchange::builder(endpoint.token_url(), SecurityToken::file(path))
        .actor(flaky_actor)
        .build()
        .unwrap();
    let error = source.fetch_token().await.unwrap_err();
    assert_eq!(error.role(), Some(TokenRole::Actor));
    assert!(source.classify(&error).is_transient());
}

/// Makes a source for a token URL.
type MakeSource<'a> = Box<dyn Fn(String) -> TokenExchange + 'a>;

#[tokio::test]
async fn client_secret_basic_post_and_public_clients_authenticate_as_they_should() {
    let (_dir, path) = subject_file(SUBJECT);
    let subject = || SecurityToken::file(&path);
    // (what the endpoint checks, the source)
    let cases: Vec<(ClientCheck, MakeSource<'_>)> = vec![
        (
            ClientCheck::basic(CLIENT, SECRET),
            Box::new(|url| {
                TokenExchange::builder(url, subject())
                    .client_id(CLIENT)
                    .client_secret(SECRET)
                    .build()
                    .unwrap()
            }),
        ),
        (
            ClientCheck::post(CLIENT, SECRET),
            Box::new(|url| {
                TokenExchange::builder(url, subject())
                    .client_id(CLIENT)
                    .client_secret(SECRET)
                    .auth_style(AuthStyle::RequestBody)
                    .build()
                    .unwrap()
            }),
        ),
        (
            ClientCheck::public(Some(CLIENT)),
            Box::new(|url| {
                TokenExchange::builder(url, subject())
                    .client_id(CLIENT)
                    .build()
                    .unwrap()
            }),
        ),
        (
            ClientCheck::public(None),
            Box::new(|url| TokenExchange::builder(url, subject()).build().unwrap()),
        ),
        // The same settings as a client-credentials source's, turned into
        // an exchange.
        (
            ClientCheck::post(CLIENT, SECRET),
            Box::new(|url| {
                ClientCredentials::builder(url, CLIENT)
                    .client_secret(SECRET)
                    .auth_style(AuthStyle::RequestBody)
                    .token_exchange(subject())
                    .build()
                    .unwrap()
            }),
        ),
    ];
    for (check, make) in cases {
        let endpoint = ExchangeEndpoint::start(check.clone()).await;
        let source = make(endpoint.token_url());
        let token = source
            .fetch_token()
            .await
            .unwrap_or_else(|e| panic!("{check:?}: {e}; {:?}", endpoint.refusals()));
        assert_eq!(token.access_token().secret(), "exchanged-1");
        assert_eq!(endpoint.last().get("subject_token"), Some(SUBJECT));
    }
}

#[tokio::test]
async fn private_key_jwt_and_client_secret_jwt_sign_the_exchange_request() {
    let (_dir, path) = subject_file(SUBJECT);
    let key = TestKey::shared(KeyKind::EcP256);
    let shared_secret = "a-shared-secret-of-at-least-32-bytes!!";
    for verifier in [
        Verifier::for_key(key, Algorithm::ES256),
        Verifier::secret(shared_secret),
    ] {
        let endpoint = AssertionEndpoint::start(CLIENT, verifier.clone()).await;
        endpoint.set_grant_type(GRANT_TYPE);
        let builder = TokenExchange::builder(endpoint.token_url(), SecurityToken::file(&path))
            .client_id(CLIENT)
            .actor(actor_source())
            .audience("orders");
        let source = match &verifier {
            Verifier::PublicKey { .. } => {
                builder.private_key_jwt(PrivateKey::from_pem(key.pkcs8_pem().as_bytes()).unwrap())
            }
            Verifier::Secret(secret) => builder.client_secret(secret.as_str()).client_secret_jwt(),
        }
        .build()
        .unwrap();
        for n in 1..=2 {
            let token = source
                .fetch_token()
                .await
                .unwrap_or_else(|e| panic!("{e}; {:?}", endpoint.refusals()));
            assert_eq!(
                token.access_token().secret(),
                format!("assertion-token-{n}")
            );
        }
        let form = endpoint.last_form();
        let field = |name: &str| {
            form.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(field("grant_type"), Some(GRANT_TYPE));
        assert_eq!(field("subject_token"), Some(SUBJECT));
        assert_eq!(field("actor_token"), Some(ACTOR));
        assert_eq!(field("audience"), Some("orders"));
        assert_eq!(field("client_id"), Some(CLIENT));
        assert_eq!(field("client_secret"), None);
        // A new assertion each time, for the token endpoint.
        assert_eq!(endpoint.jtis().len(), 2);
        assert_ne!(endpoint.jtis()[0], endpoint.jtis()[1]);
    }
}

#[tokio::test]
async fn an_n_a_token_is_sent_as_a_bearer_token() {
    let endpoint = ExchangeEndpoint::start(ClientCheck::public(None)).await;
    endpoint.set_token_type("N_A");
    let (_dir, path) = subject_file(SUBJECT);
    let source = TokenExchange::builder(endpoint.token_url(), SecurityToken::file(path))
        .requested_token_type(token_type::ID_TOKEN)
        .build()
        .unwrap();
    assert_eq!(source.requested_token_type(), Some(token_type::ID_TOKEN));
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(echo::<String>());
    let seen = client.oneshot(request()).await.unwrap().into_body();
    assert_eq!(seen, "Bearer exchanged-1");
    assert_eq!(
        endpoint.last().get("requested_token_type"),
        Some(token_type::ID_TOKEN)
    );
}

#[tokio::test]
async fn a_keys_source_exchanges_the_same_subject_for_the_keys_target() {
    let endpoint = ExchangeEndpoint::start(ClientCheck::basic(CLIENT, SECRET)).await;
    let (_dir, path) = subject_file(SUBJECT);
    let source = TokenExchange::builder(endpoint.token_url(), SecurityToken::file(path))
        .client_id(CLIENT)
        .client_secret(SECRET)
        .audience("default-api")
        .build()
        .unwrap();
    let cache = TokenCache::keyed(source.clone());
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::with_cache(cache))
        .service(echo::<String>());
    let mut for_billing = request();
    for_billing.extensions_mut().insert(
        TokenParams::builder()
            .audience("billing")
            .scope("bill")
            .build(),
    );
    assert_eq!(
        client
            .clone()
            .oneshot(for_billing)
            .await
            .unwrap()
            .into_body(),
        "Bearer exchanged-1"
    );
    let seen = endpoint.last();
    assert_eq!(seen.all("audience"), ["billing"]);
    assert_eq!(seen.get("scope"), Some("bill"));
    assert_eq!(seen.get("subject_token"), Some(SUBJECT));
    assert_eq!(seen.get("subject_token_type"), Some(token_type::JWT));
    assert_eq!(
        client.oneshot(request()).await.unwrap().into_body(),
        "Bearer exchanged-2"
    );
    assert_eq!(endpoint.last().all("audience"), ["default-api"]);

    // A key never carries a credential, nor the exchange's own parameters.
    for name in [
        "subject_token",
        "actor_token",
        "client_secret",
        "requested_token_type",
    ] {
        let params = TokenParams::builder().param(name, "x").build();
        let refused = source.for_params(&params).unwrap_err();
        assert!(
            matches!(&refused, TokenExchangeError::TokenEndpoint(_)),
            "{name}: {refused:?}"
        );
        assert_eq!(source.classify(&refused), ErrorClass::Permanent, "{name}");
        assert!(refused.to_string().contains(name), "{refused}");
    }
}

#[tokio::test]
async fn the_token_endpoint_is_discovered_from_the_issuer() {
    let endpoint = ExchangeEndpoint::start(ClientCheck::public(None)).await;
    let (_dir, path) = subject_file(SUBJECT);
    let source = TokenExchange::discover(endpoint.issuer(), SecurityToken::file(path))
        .build()
        .unwrap();
    assert_eq!(source.token_url(), None);
    source.fetch_token().await.unwrap();
    assert_eq!(
        source.token_url().map(|url| url.as_str().to_owned()),
        Some(endpoint.token_url())
    );
    assert!(source.provider_metadata().is_some());
    assert_eq!(endpoint.requests(), 1);
}

#[test]
fn settings_an_exchange_cannot_use_are_refused_when_built() {
    let subject = || SecurityToken::file("/run/token");
    let url = "https://sts.example.com/token";
    let cases = [
        (
            TokenExchange::builder(url, subject()).client_secret(SECRET),
            BuildError::MissingClientId {
                method: AuthMethod::ClientSecretBasic,
            },
        ),
        (
            TokenExchange::builder(url, subject().with_type("")),
            BuildError::EmptyTokenType {
                param: "subject_token_type".into(),
            },
        ),
        (
            TokenExchange::builder(url, subject()).actor(subject().with_type(" ")),
            BuildError::EmptyTokenType {
                param: "actor_token_type".into(),
            },
        ),
        (
            TokenExchange::builder(url, subject()).requested_token_type(""),
            BuildError::EmptyTokenType {
                param: "requested_token_type".into(),
            },
        ),
        (
            TokenExchange::builder("http://sts.example.com/token", subject()),
            BuildError::InsecureUrl {
                host: "sts.example.com".into(),
            },
        ),
    ];
    for (builder, expected) in cases {
        assert_eq!(builder.build().unwrap_err(), expected);
    }
    for name in RESERVED_PARAMS {
        let refused = TokenExchange::builder(url, subject())
            .param(name, "x")
            .build()
            .unwrap_err();
        assert_eq!(refused, BuildError::ReservedParam { name: name.into() });
    }
    // Nothing is read when built: the file need not exist yet.
    assert!(TokenExchange::builder(url, subject()).build().is_ok());
}

/// The README's token-exchange example is the module's, which rustdoc
/// compiles and runs: the same lines but for those rustdoc hides.
#[test]
fn the_readme_example_is_the_compiled_module_example() {
    assert_eq!(
        support::readme::readme_example("## Workload identity: token exchange"),
        support::readme::module_example(include_str!("../src/source/token_exchange/mod.rs"), 0)
    );
}
