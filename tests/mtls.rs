//! Mutual TLS (RFC 8705) against a real HTTPS token endpoint and API on
//! 127.0.0.1: a [`ClientIdentity`] on a plain reqwest client gets a
//! certificate-bound token and uses it; the same token from any other
//! connection is refused. These prove the test PKI and server that the
//! `tls_client_auth` source's tests build on.
#![cfg(all(feature = "client-credentials", feature = "rustls"))]

mod support;

use std::time::Duration;

use http::{StatusCode, header};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use support::tls::{BoundTokens, TestPki, thumbprint};
use tower_bearer::source::client_auth::ClientIdentity;

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
