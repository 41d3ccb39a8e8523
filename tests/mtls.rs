//! Mutual TLS (RFC 8705) against a real HTTPS token endpoint and API on
//! 127.0.0.1: a [`ClientIdentity`] on a plain reqwest client gets a
//! certificate-bound token and uses it; the same token from any other
//! connection is refused. These prove the test PKI and server; then the
//! `tls_client_auth` source on them, alone and under the bearer layer.
#![cfg(all(feature = "client-credentials", feature = "rustls"))]

mod support;

use support::error_chain as chain;

use std::time::Duration;

use http::{StatusCode, header};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use support::tls::{BoundTokens, TestPki, pem_body_slices, thumbprint};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::source::client_auth::{AuthMethod, ClientIdentity, PrivateKey};
use tower_bearer::source::client_credentials::{AuthStyle, BuildError, ClientCredentialsError};
use tower_bearer::{
    BearerAuthLayer, ClientCredentials, ErrorClass, RetryOnUnauthorized, TokenSource,
};

/// Asks the endpoint for a token for `client_id`: the status and the body.
async fn request_token(
    client: &reqwest::Client,
    server: &BoundTokens,
    client_id: &str,
) -> Result<(StatusCode, serde_json::Value), reqwest::Error> {
    let response = client
        .post(server.token_url())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={client_id}"
        ))
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    Ok((status, serde_json::from_slice(&body).unwrap()))
}

async fn call_api(
    client: &reqwest::Client,
    server: &BoundTokens,
    token: &str,
) -> reqwest::Response {
    client
        .get(server.api_url("/things"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn access_token(body: &serde_json::Value) -> String {
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_bound_token_works_over_a_connection_with_its_certificate() {
    let pki = TestPki::new();
    let server = BoundTokens::start(&pki).await;
    let identity = pki.client_identity("client-a");
    let client = pki.https_client(Some(identity.reqwest_identity()));

    let (status, body) = request_token(&client, &server, "client-a").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = access_token(&body);
    // The server's thumbprint, taken from the TLS session, is the crate's.
    assert_eq!(
        server.bound_to(&token).as_deref(),
        Some(identity.certificate_thumbprint())
    );

    let response = call_api(&client, &server, &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    // The connection was TLS to the PKI's server certificate.
    let tls = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .unwrap();
    assert_eq!(tls.peer_certificate(), Some(pki.server_der()));
    assert_eq!(response.text().await.unwrap(), "ok");

    assert_eq!((server.issued(), server.refused()), (1, 0));
    assert_eq!((server.api_ok(), server.api_refused()), (1, 0));
}

#[tokio::test]
async fn a_bound_token_is_refused_from_any_other_connection() {
    let pki = TestPki::new();
    let server = BoundTokens::start(&pki).await;
    let owner = pki.https_client(Some(pki.client_identity("client-a").reqwest_identity()));
    let (_, body) = request_token(&owner, &server, "client-a").await.unwrap();
    let token = access_token(&body);

    // No certificate at all, then a valid certificate of another client:
    // the token alone is not enough.
    let bare = pki.https_client(None);
    let other = pki.https_client(Some(pki.client_identity("client-b").reqwest_identity()));
    for client in [&bare, &other] {
        let response = call_api(client, &server, &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );
    }
    assert_eq!((server.api_ok(), server.api_refused()), (0, 2));

    // The owner still can.
    assert_eq!(
        call_api(&owner, &server, &token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_token_endpoint_refuses_a_client_without_its_certificate() {
    let pki = TestPki::new();
    let server = BoundTokens::start(&pki).await;

    // No certificate: the handshake succeeds (it is optional at the TLS
    // layer), and the endpoint answers in OAuth2 terms.
    let bare = pki.https_client(None);
    let (status, body) = request_token(&bare, &server, "client-a").await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");

    // A valid certificate, but issued to another client.
    let other = pki.https_client(Some(pki.client_identity("client-b").reqwest_identity()));
    let (status, body) = request_token(&other, &server, "client-a").await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");

    assert_eq!((server.issued(), server.refused()), (0, 2));
    assert_eq!(server.server().handshake_failures(), 0);
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused() {
    let pki = TestPki::new();
    let server = BoundTokens::start(&pki).await;
    let (cert, key) = pki.rogue_client("client-a");
    let rogue = ClientIdentity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    assert_eq!(rogue.certificate_thumbprint(), {
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        thumbprint(&der)
    });
    let client = pki.https_client(Some(rogue.reqwest_identity()));

    // Same common name, wrong issuer: the TLS layer refuses the handshake,
    // so the request fails before the endpoint sees it.
    let result = request_token(&client, &server, "client-a").await;
    let err = result.unwrap_err();
    assert!(format!("{err:?}").contains("UnknownCA"), "{err:?}");
    assert_eq!((server.issued(), server.refused()), (0, 0));
    // The server counts the failure once its side of the handshake ends,
    // which can be just after the client gave up.
    tokio::time::timeout(Duration::from_secs(5), async {
        while server.server().handshake_failures() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the server saw no failed handshake");
}

// The `tls_client_auth` source, through the library.

/// The test CA, as a root for reqwest.
fn ca_certificate(pki: &TestPki) -> reqwest::Certificate {
    reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap()
}

/// A `tls_client_auth` source for `client_id` presenting `identity`, that
/// trusts the test CA.
fn tls_source(
    pki: &TestPki,
    server: &BoundTokens,
    client_id: &str,
    identity: ClientIdentity,
) -> ClientCredentials {
    ClientCredentials::builder(server.token_url(), client_id)
        .tls_client_auth(identity)
        .add_root_certificate(ca_certificate(pki))
        .build()
        .unwrap()
}

/// A `GET` of the API, to send through the layer.
fn api_request(http: &reqwest::Client, server: &BoundTokens) -> reqwest::Request {
    http.get(server.api_url("/things")).build().unwrap()
}

/// Asserts that `text` shows no part of the private key `key_pem`.
fn assert_no_key(text: &str, key_pem: &str) {
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    for slice in pem_body_slices(key_pem) {
        assert!(!text.contains(&slice), "key material {slice} in: {text}");
    }
}

#[tokio::test]
async fn a_tls_client_auth_source_gets_a_bound_token_with_its_certificate_and_no_secret() {
    let pki = TestPki::new();
    let server = BoundTokens::start(&pki).await;
    let identity = pki.client_identity("client-a");
    let source = ClientCredentials::builder(server.token_url(), "client-a")
        .tls_client_auth(identity.clone())
        .add_root_certificate(ca_certificate(&pki))
        .scope("orders.read")
        .build()
        .unwrap();
    assert_eq!(source.auth_method(), AuthMethod::TlsClientAuth);
    assert_eq!(source.auth_method().as_str(), "tls_client_auth");

    for n in 1..=2 {
        let token = source.fetch_token().await.unwrap();
        let token = token.access_token().secret();
        assert_eq!(token, format!("bound-{n}"));
        // Bound to the certificate the source presented: the server's
        // thumbprint of the TLS session's client certificate is the
        // identity's.
        assert_eq!(
            server.bound_to(token).as_deref(),
            Some(identity.certificate_thumbprint())
        );
    }
    assert_eq!((server.issued(), server.refused()), (2, 0));

    // The form names the client, and carries no secret or assertion; no
    // Basic credentials either.
    let form = server.last_form();
    assert_eq!(
        form,
        [
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_id".to_owned(), "client-a".to_owned()),
            ("scope".to_owned(), "orders.read".to_owned()),
        ],
        "{form:?}"
    );
    for absent in ["client_secret", "client_assertion", "client_assertion_type"] {
        assert!(form.iter().all(|(name, _)| name != absent), "{form:?}");
    }
    assert_eq!(server.last_had_authorization(), Some(false));
}

#[tokio::test]
async fn under_the_layer_concurrent_api_calls_share_one_bound_token() {
    let pki = TestPki::new();
    let server = BoundTokens::start(&pki).await;
    let identity = pki.client_identity("client-a");
    let source = tls_source(&pki, &server, "client-a", identity.clone());
    // The API client presents the same certificate as the token request.
    let api = reqwest::Client::builder()
        .no_proxy()
        .identity(identity.reqwest_identity())
        .tls_certs_merge([ca_certificate(&pki)])
        .build()
        .unwrap();
    let layer = BearerAuthLayer::new(source);
    let cache = layer.cache().clone();
    let client = ServiceBuilder::new().layer(layer).service(api.clone());

    let calls: Vec<_> = (0..20)
        .map(|_| tokio::spawn(client.clone().oneshot(api_request(&api, &server))))
        .collect();
    for call in calls {
        let response = call.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "ok");
    }

    assert_eq!((server.issued(), server.refused()), (1, 0));
    assert_eq!((server.api_ok(), server.api_refused()), (20, 0));
    let stats = cache.stats();
    assert_eq!((stats.fetches_started, stats.invalidations), (1, 0));
}

#[tokio::test]
async fn an_api_client_without_the_certificate_is_refused_the_bound_token() {
    let pki = TestPki::new();
    let identity = pki.client_identity("client-a");
    let bare = pki.https_client(None);

    // The layer alone: three calls in turn.
    let server = BoundTokens::start(&pki).await;
    let layer = BearerAuthLayer::new(tls_source(&pki, &server, "client-a", identity.clone()));
    let cache = layer.cache().clone();
    let client = ServiceBuilder::new().layer(layer).service(bare.clone());
    for _ in 0..3 {
        let response = client
            .clone()
            .oneshot(api_request(&bare, &server))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // The first 401 threw bound-1 away and fetched bound-2, which the second
    // call waited for; the next 401s came within the invalidation cooldown,
    // so bound-2 was kept: two tokens for three refusals, no storm.
    assert_eq!((server.issued(), server.refused()), (2, 0));
    assert_eq!((server.api_ok(), server.api_refused()), (0, 3));
    let stats = cache.stats();
    assert_eq!((stats.fetches_started, stats.invalidations), (2, 1));
    // The token is good: over a connection with its certificate it works.
    let owner = pki.https_client(Some(identity.reqwest_identity()));
    assert_eq!(
        call_api(&owner, &server, "bound-2").await.status(),
        StatusCode::OK
    );

    // With a retry on 401 outside the layer: the call is sent again, with
    // the token fetched after the first refusal, and refused again.
    let server = BoundTokens::start(&pki).await;
    let layer = BearerAuthLayer::new(tls_source(&pki, &server, "client-a", identity.clone()));
    let cache = layer.cache().clone();
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryOnUnauthorized::default()))
        .layer(layer)
        .service(bare.clone());
    let response = client
        .clone()
        .oneshot(api_request(&bare, &server))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!((server.issued(), server.api_refused()), (2, 2));
    // A second call: bound-2 (kept within the cooldown), twice.
    let response = client
        .clone()
        .oneshot(api_request(&bare, &server))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!((server.issued(), server.api_refused()), (2, 4));
    assert_eq!(server.api_ok(), 0);
    let stats = cache.stats();
    assert_eq!((stats.fetches_started, stats.invalidations), (2, 1));
}

#[tokio::test]
async fn another_clients_certificate_is_a_permanent_invalid_client_fetched_once() {
    let pki = TestPki::new();
    let server = BoundTokens::start(&pki).await;
    // A certificate the CA issued, but to client-b.
    let other = pki.client_identity("client-b");
    let source = tls_source(&pki, &server, "client-a", other.clone());

    let error = source.fetch_token().await.unwrap_err();
    assert_eq!(error.oauth_error(), Some("invalid_client"), "{error}");
    assert_eq!(error.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(source.classify(&error), ErrorClass::Permanent);
    assert_eq!(
        TokenSource::classify(&source, &error),
        ErrorClass::Permanent
    );
    assert_eq!((server.issued(), server.refused()), (0, 1));

    // Under the layer: ten calls at once, one token request between them.
    let api = pki.https_client(Some(other.reqwest_identity()));
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(api.clone());
    let calls: Vec<_> = (0..10)
        .map(|_| tokio::spawn(client.clone().oneshot(api_request(&api, &server))))
        .collect();
    for call in calls {
        let error = call.await.unwrap().unwrap_err();
        let text = chain(&error);
        assert!(text.contains("invalid_client"), "{text}");
    }
    assert_eq!((server.issued(), server.refused()), (0, 2));
    // None reached the API.
    assert_eq!((server.api_ok(), server.api_refused()), (0, 0));
}

/// Waits until `server` has counted `n` failed handshakes (it counts one
/// once its side ends, which can be just after the client gave up), then a
/// little longer, to see that no more come.
async fn expect_handshake_failures(server: &BoundTokens, n: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while server.server().handshake_failures() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{} failed handshakes, not {n}",
            server.server().handshake_failures()
        )
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.server().handshake_failures(), n);
}

#[tokio::test]
async fn a_rogue_ca_certificate_refused_in_the_handshake_is_a_permanent_error_fetched_once() {
    let pki = TestPki::new();
    let server = BoundTokens::start(&pki).await;
    let (cert, key) = pki.rogue_client("client-a");
    let rogue = ClientIdentity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let source = tls_source(&pki, &server, "client-a", rogue.clone());

    let error = source.fetch_token().await.unwrap_err();
    // The server's alert, named: it does not know the certificate's CA.
    let ClientCredentialsError::ClientCertificateRefused { alert, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(alert, "UnknownCA");
    assert_eq!(
        error.to_string(),
        "the token endpoint refused the client certificate during the TLS handshake (UnknownCA)"
    );
    // The same certificate would be refused again.
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(source.classify(&error), ErrorClass::Permanent);
    assert_eq!(error.oauth_error(), None);
    assert_eq!(error.status(), None);
    assert_eq!(error.retry_after(), None);
    // The source is reqwest's error, whose chain ends in the alert.
    let cause = std::error::Error::source(&error).unwrap();
    assert!(cause.is::<reqwest::Error>(), "{cause:?}");
    let text = format!("{error} | {error:?} | {}", chain(&error));
    assert!(text.contains("received fatal alert: UnknownCA"), "{text}");
    assert_no_key(&text, &key);
    // The endpoint never saw a request.
    assert_eq!((server.issued(), server.refused()), (0, 0));
    expect_handshake_failures(&server, 1).await;

    // Under the layer: ten calls at once, one handshake between them, and
    // every call fails at once with the permanent refusal.
    let server = BoundTokens::start(&pki).await;
    let layer = BearerAuthLayer::new(tls_source(&pki, &server, "client-a", rogue.clone()));
    let cache = layer.cache().clone();
    let api = pki.https_client(Some(rogue.reqwest_identity()));
    let client = ServiceBuilder::new().layer(layer).service(api.clone());
    let calls: Vec<_> = (0..10)
        .map(|_| tokio::spawn(client.clone().oneshot(api_request(&api, &server))))
        .collect();
    for call in calls {
        let error = call.await.unwrap().unwrap_err();
        let token_error = error.as_token_error().expect("no token, nothing sent");
        assert!(!token_error.is_transient(), "{error:?}");
        assert_eq!(token_error.class(), ErrorClass::Permanent);
        let refused = token_error
            .source_error()
            .and_then(|e| e.downcast_ref::<ClientCredentialsError>())
            .unwrap_or_else(|| panic!("{error:?}"));
        assert!(
            matches!(
                refused,
                ClientCredentialsError::ClientCertificateRefused { alert, .. } if alert == "UnknownCA"
            ),
            "{refused:?}"
        );
        let text = chain(&error);
        assert!(
            text.starts_with(
                "no token could be had: the token source failed: \
                 the token endpoint refused the client certificate during the TLS handshake (UnknownCA): "
            ),
            "{text}"
        );
    }
    // One fetch, one handshake; no request reached the endpoint or the API.
    assert_eq!(cache.stats().fetches_started, 1);
    expect_handshake_failures(&server, 1).await;
    assert_eq!((server.issued(), server.refused()), (0, 0));
    assert_eq!((server.api_ok(), server.api_refused()), (0, 0));

    // A call now, within the backoff: the same refusal, no new handshake.
    let error = client
        .clone()
        .oneshot(api_request(&api, &server))
        .await
        .unwrap_err();
    assert!(chain(&error).contains("(UnknownCA)"), "{error:?}");
    assert_eq!(cache.stats().fetches_started, 1);
    assert_eq!(server.server().handshake_failures(), 1);
}

#[tokio::test]
async fn a_refused_certificate_on_the_http_client_of_a_source_that_does_not_authenticate_with_it_stays_transient()
 {
    // A client secret is the source's credential; the certificate its own
    // HTTP client presents is not, so the handshake failure is a transport
    // failure like any other.
    let pki = TestPki::new();
    let server = BoundTokens::start(&pki).await;
    let (cert, key) = pki.rogue_client("client-a");
    let rogue = ClientIdentity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let source = ClientCredentials::builder(server.token_url(), "client-a")
        .client_secret("s3cret")
        .http_client(pki.https_client(Some(rogue.reqwest_identity())))
        .build()
        .unwrap();

    let error = source.fetch_token().await.unwrap_err();
    assert!(
        matches!(error, ClientCredentialsError::Transport { .. }),
        "{error:?}"
    );
    assert!(source.classify(&error).is_transient(), "{error:?}");
    let text = chain(&error);
    assert!(text.contains("UnknownCA"), "{text}");
    assert_eq!((server.issued(), server.refused()), (0, 0));
}

#[tokio::test]
async fn without_the_added_root_the_endpoints_certificate_is_not_trusted() {
    let pki = TestPki::new();
    let server = BoundTokens::start(&pki).await;
    let identity = pki.client_identity("client-a");
    let untrusting = ClientCredentials::builder(server.token_url(), "client-a")
        .tls_client_auth(identity.clone())
        .build()
        .unwrap();

    let error = untrusting.fetch_token().await.unwrap_err();
    assert!(
        matches!(error, ClientCredentialsError::Transport { .. }),
        "{error:?}"
    );
    // Our side refused the endpoint's certificate: no alert about ours, so
    // not a refused client certificate, and transient.
    assert!(untrusting.classify(&error).is_transient());
    assert_eq!(untrusting.classify(&error), error.class());
    let text = format!("{error:?}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert_eq!(
        error.to_string(),
        "the token endpoint could not be reached",
        "{error:?}"
    );
    assert_eq!((server.issued(), server.refused()), (0, 0));

    // The same settings with the root added: a token.
    let trusting = tls_source(&pki, &server, "client-a", identity);
    trusting.fetch_token().await.unwrap();
    assert_eq!((server.issued(), server.refused()), (1, 0));
}

#[test]
fn debug_output_shows_the_thumbprint_never_the_key() {
    let pki = TestPki::new();
    let (cert, key) = pki.client("client-a");
    let identity = ClientIdentity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let builder = ClientCredentials::builder("https://login.example.com/token", "client-a")
        .tls_client_auth(identity.clone())
        .add_root_certificate(ca_certificate(&pki));
    let builder_debug = format!("{builder:?} {builder:#?}");
    let source = builder.build().unwrap();
    let layer = BearerAuthLayer::new(source.clone());

    let identity_debug = format!("{identity:?} {identity:#?}");
    assert!(
        identity_debug.contains(identity.certificate_thumbprint()),
        "{identity_debug}"
    );
    let source_debug = format!("{source:?} {source:#?}");
    assert!(source_debug.contains("Tls"), "{source_debug}");
    for text in [
        identity_debug,
        builder_debug,
        source_debug,
        format!("{layer:?}"),
        // What the API client is given: reqwest's type, opaque too.
        format!("{:?}", identity.reqwest_identity()),
    ] {
        assert_no_key(&text, &key);
    }
}

#[test]
fn a_client_certificate_with_another_client_authentication_is_refused_at_build() {
    let pki = TestPki::new();
    let identity = pki.client_identity("client-a");
    let builder = || ClientCredentials::builder("https://login.example.com/token", "client-a");
    let key = PrivateKey::from_pem(pki.client("signer").1.as_bytes()).unwrap();

    let cases = [
        (
            builder()
                .client_secret("s3cret-value")
                .tls_client_auth(identity.clone()),
            AuthMethod::ClientSecretBasic,
        ),
        // The order the settings were given in does not matter.
        (
            builder()
                .tls_client_auth(identity.clone())
                .client_secret("s3cret-value"),
            AuthMethod::ClientSecretBasic,
        ),
        (
            builder()
                .tls_client_auth(identity.clone())
                .client_secret("s3cret-value")
                .auth_style(AuthStyle::RequestBody),
            AuthMethod::ClientSecretPost,
        ),
        (
            builder()
                .tls_client_auth(identity.clone())
                .client_secret("s3cret-value")
                .client_secret_jwt(),
            AuthMethod::ClientSecretJwt,
        ),
        (
            builder()
                .tls_client_auth(identity.clone())
                .private_key_jwt(key),
            AuthMethod::PrivateKeyJwt,
        ),
    ];
    for (builder, other) in cases {
        let error = builder.build().unwrap_err();
        let BuildError::ConflictingClientAuth { first, second } = error else {
            panic!("{error:?}");
        };
        let mut methods = [first, second];
        methods.sort_by_key(|m| m.as_str());
        let mut expected = [other, AuthMethod::TlsClientAuth];
        expected.sort_by_key(|m| m.as_str());
        assert_eq!(methods, expected, "{error}");
        assert!(!error.to_string().contains("s3cret-value"), "{error}");
    }
    assert_eq!(
        builder()
            .client_secret("s3cret-value")
            .tls_client_auth(identity)
            .build()
            .unwrap_err(),
        BuildError::ConflictingClientAuth {
            first: AuthMethod::TlsClientAuth,
            second: AuthMethod::ClientSecretBasic,
        }
    );
}
