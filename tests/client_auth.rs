//! Client authentication with assertions against a real token endpoint on
//! loopback that verifies them independently (jsonwebtoken): private_key_jwt
//! with every algorithm and PEM form, client_secret_jwt, a key rotated on
//! disk, a KMS-style signer, and the bad input each refuses clearly.
#![cfg(feature = "client-credentials")]

mod support;

use support::error_chain as chain;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::Algorithm;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::source::client_auth::{
    AssertionAudience, AssertionSigner, AuthMethod, KeyError, KeyType, PrivateKey, PrivateKeyFile,
    SignError, SignFuture, SigningAlgorithm,
};
use tower_bearer::source::client_credentials::BuildError;
use tower_bearer::{BearerAuthLayer, ClientCredentials, TokenSource};

use support::assertion::{AssertionEndpoint, Verifier};
use support::keys::{KeyKind, TestKey};
use support::temp::TempDir;

const CLIENT: &str = "svc-client";

fn ours(algorithm: Algorithm) -> SigningAlgorithm {
    match algorithm {
        Algorithm::RS256 => SigningAlgorithm::RS256,
        Algorithm::PS256 => SigningAlgorithm::PS256,
        Algorithm::ES256 => SigningAlgorithm::ES256,
        Algorithm::EdDSA => SigningAlgorithm::EdDSA,
        Algorithm::HS256 => SigningAlgorithm::HS256,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_algorithm_and_pem_form_makes_assertions_the_endpoint_accepts() {
    let cases = [
        (KeyKind::Rsa, Algorithm::RS256),
        (KeyKind::Rsa, Algorithm::PS256),
        (KeyKind::EcP256, Algorithm::ES256),
        (KeyKind::Ed25519, Algorithm::EdDSA),
    ];
    for (kind, algorithm) in cases {
        let key = TestKey::shared(kind);
        let pems: Vec<String> = std::iter::once(key.pkcs8_pem())
            .chain(key.traditional_pem())
            .collect();
        for pem in pems {
            let endpoint =
                AssertionEndpoint::start(CLIENT, Verifier::for_key(key, algorithm)).await;
            let private = PrivateKey::from_pem(pem.as_bytes()).unwrap();
            assert_eq!(
                private.key_type().default_algorithm() == ours(algorithm),
                algorithm != Algorithm::PS256
            );
            let source = ClientCredentials::builder(endpoint.token_url(), CLIENT)
                .private_key_jwt(
                    private
                        .with_algorithm(ours(algorithm))
                        .unwrap()
                        .with_key_id("key-2026"),
                )
                .scope("orders.read")
                .build()
                .unwrap();
            assert_eq!(source.auth_method(), AuthMethod::PrivateKeyJwt);
            for n in 1..=3 {
                let token = source.fetch_token().await.unwrap_or_else(|e| {
                    panic!("{kind:?} {algorithm:?}: {e}; {:?}", endpoint.refusals())
                });
                assert_eq!(
                    token.access_token().secret(),
                    format!("assertion-token-{n}")
                );
            }
            assert_eq!(endpoint.issued(), 3);
            assert_eq!(endpoint.kids(), vec![Some("key-2026".to_owned()); 3]);
            // A fresh jti every time; aud the token URL the request went to.
            assert_eq!(endpoint.jtis().iter().collect::<HashSet<_>>().len(), 3);
            for aud in endpoint.audiences() {
                assert_eq!(aud, endpoint.token_url().as_str());
            }
            let form = endpoint.last_form();
            let field = |name: &str| {
                form.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(field("client_id"), Some(CLIENT));
            assert_eq!(field("scope"), Some("orders.read"));
            assert_eq!(field("client_secret"), None);
            let claims = endpoint.last_claims().unwrap();
            assert_eq!(claims["iss"], CLIENT);
            assert_eq!(claims["sub"], CLIENT);
            let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
            assert_eq!(lifetime, 60);
            assert_eq!(endpoint.last_header().unwrap()["typ"], "JWT");
        }
    }
}

#[tokio::test]
async fn without_a_key_id_no_kid_is_sent_and_the_default_algorithm_follows_the_key() {
    let key = TestKey::shared(KeyKind::EcP256);
    let endpoint = AssertionEndpoint::start(CLIENT, Verifier::for_key(key, Algorithm::ES256)).await;
    let private = PrivateKey::from_pem(key.traditional_pem().unwrap().as_bytes()).unwrap();
    assert_eq!(private.key_type(), KeyType::EcP256);
    let source = ClientCredentials::builder(endpoint.token_url(), CLIENT)
        .private_key_jwt(private)
        .build()
        .unwrap();
    source.fetch_token().await.unwrap();
    assert_eq!(endpoint.kids(), vec![None]);
    assert_eq!(endpoint.last_header().unwrap()["alg"], "ES256");
}

#[tokio::test]
async fn client_secret_jwt_signs_with_the_secret_which_never_travels() {
    let secret = "a-shared-secret-of-at-least-32-bytes!!";
    let endpoint = AssertionEndpoint::start(CLIENT, Verifier::secret(secret)).await;
    let source = ClientCredentials::builder(endpoint.token_url(), CLIENT)
        .client_secret(secret)
        .client_secret_jwt()
        .build()
        .unwrap();
    assert_eq!(source.auth_method(), AuthMethod::ClientSecretJwt);
    source.fetch_token().await.unwrap();
    source.fetch_token().await.unwrap();
    assert_eq!(endpoint.issued(), 2);
    assert_eq!(endpoint.last_header().unwrap()["alg"], "HS256");
    let form = endpoint.last_form();
    assert!(form.iter().all(|(_, v)| !v.contains(secret)), "{form:?}");
    assert!(!format!("{source:?}").contains(secret));
}

#[tokio::test]
async fn an_assertion_audience_other_than_the_token_endpoint_is_sent_as_asked() {
    let key = TestKey::shared(KeyKind::Ed25519);
    let endpoint = AssertionEndpoint::start(CLIENT, Verifier::for_key(key, Algorithm::EdDSA)).await;
    let source = ClientCredentials::builder(endpoint.token_url(), CLIENT)
        .private_key_jwt(PrivateKey::from_pem(key.pkcs8_pem().as_bytes()).unwrap())
        .assertion_audience(AssertionAudience::Other("https://issuer.example".into()))
        .build()
        .unwrap();
    let error = source.fetch_token().await.unwrap_err();
    // The endpoint insists on its own URL: refused, with its reason.
    assert_eq!(error.oauth_error(), Some("invalid_client"));
    assert_eq!(
        endpoint.audiences(),
        vec![serde_json::json!("https://issuer.example")]
    );
}

#[tokio::test]
async fn a_wrong_key_is_one_invalid_client_fetch_for_any_number_of_requests() {
    let registered = TestKey::shared(KeyKind::Rsa);
    let endpoint =
        AssertionEndpoint::start(CLIENT, Verifier::for_key(registered, Algorithm::RS256)).await;
    let wrong = TestKey::generate(KeyKind::Rsa);
    let wrong_pem = wrong.pkcs8_pem();
    let source = ClientCredentials::builder(endpoint.token_url(), CLIENT)
        .private_key_jwt(PrivateKey::from_pem(wrong_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(support::echo::<String>());
    let mut calls = Vec::new();
    for _ in 0..20 {
        calls.push(tokio::spawn(service.clone().oneshot(support::request())));
    }
    for call in calls {
        let error = call.await.unwrap().unwrap_err();
        let text = chain(&error);
        assert!(text.contains("invalid_client"), "{text}");
        // No key material, no assertion, in the error.
        assert!(!text.contains("eyJ"), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }
    // One fetch, failed permanently; the others shared it or failed fast.
    assert_eq!(endpoint.requests(), 1, "{:?}", endpoint.refusals());
}

#[tokio::test]
async fn a_key_rotated_on_disk_is_used_from_the_next_fetch() {
    let dir = TempDir::new("rotation");
    let first = TestKey::generate(KeyKind::EcP256);
    let second = TestKey::generate(KeyKind::EcP256);
    let path = dir.write("key.pem", first.pkcs8_pem().as_bytes());
    let endpoint =
        AssertionEndpoint::start(CLIENT, Verifier::for_key(&first, Algorithm::ES256)).await;
    let source = ClientCredentials::builder(endpoint.token_url(), CLIENT)
        .private_key_jwt(PrivateKeyFile::new(&path).unwrap().with_key_id("v1"))
        .build()
        .unwrap();
    source.fetch_token().await.unwrap();

    // Rotated: the provider knows only the new key now.
    std::fs::write(&path, second.traditional_pem().unwrap()).unwrap();
    endpoint.set_verifier(Verifier::for_key(&second, Algorithm::ES256));
    source.fetch_token().await.unwrap();
    assert_eq!(endpoint.issued(), 2, "{:?}", endpoint.refusals());

    // Mid-replacement, the file is gone: a transient error, not a panic.
    std::fs::remove_file(&path).unwrap();
    let error = source.fetch_token().await.unwrap_err();
    assert!(source.classify(&error).is_transient(), "{error}");
    assert!(chain(&error).contains("key.pem"));
    // Replaced by a key of another type: refused, permanently, clearly.
    dir.write(
        "key.pem",
        TestKey::shared(KeyKind::Rsa).pkcs8_pem().as_bytes(),
    );
    let error = source.fetch_token().await.unwrap_err();
    let text = chain(&error);
    assert!(!source.classify(&error).is_transient(), "{text}");
    assert!(text.contains("RSA key cannot sign ES256"), "{text}");
    assert_eq!(endpoint.requests(), 2);
}

/// A signer as a KMS would be: asynchronous, and failing at first.
struct Kms {
    key: PrivateKey,
    calls: AtomicUsize,
}

impl AssertionSigner for Kms {
    fn algorithm(&self) -> SigningAlgorithm {
        SigningAlgorithm::PS256
    }

    fn key_id(&self) -> Option<&str> {
        Some("kms-key-1")
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(SignError::transient("the KMS is unreachable"));
            }
            self.key.sign(message).await
        })
    }
}

#[tokio::test]
async fn a_custom_signer_signs_and_its_transient_failure_is_retried() {
    let key = TestKey::shared(KeyKind::Rsa);
    let endpoint = AssertionEndpoint::start(CLIENT, Verifier::for_key(key, Algorithm::PS256)).await;
    let kms = Kms {
        key: PrivateKey::from_pem(key.pkcs8_pem().as_bytes())
            .unwrap()
            .with_algorithm(SigningAlgorithm::PS256)
            .unwrap(),
        calls: AtomicUsize::new(0),
    };
    let source = ClientCredentials::builder(endpoint.token_url(), CLIENT)
        .private_key_jwt(kms)
        .build()
        .unwrap();
    let error = source.fetch_token().await.unwrap_err();
    assert!(source.classify(&error).is_transient());
    assert_eq!(
        chain(&error),
        "the client assertion could not be made: the KMS is unreachable"
    );
    assert_eq!(endpoint.requests(), 0);
    source.fetch_token().await.unwrap();
    assert_eq!(endpoint.kids(), vec![Some("kms-key-1".to_owned())]);
}

#[tokio::test]
async fn an_echoed_assertion_is_scrubbed_from_the_error() {
    // An endpoint that quotes the whole form back in its error.
    let server =
        support::TestServer::start(|req: http::Request<hyper::body::Incoming>| async move {
            use http_body_util::BodyExt;
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let form = String::from_utf8_lossy(&body).into_owned();
            let assertion = form
                .split('&')
                .find_map(|pair| pair.strip_prefix("client_assertion="))
                .unwrap_or_default()
                .to_owned();
            support::respond(
                401,
                serde_json::json!({
                    "error": "invalid_client",
                    "error_description": format!("bad assertion {assertion}"),
                })
                .to_string(),
            )
        })
        .await;
    let key = TestKey::shared(KeyKind::Ed25519);
    let source = ClientCredentials::builder(server.url("/token"), CLIENT)
        .private_key_jwt(PrivateKey::from_pem(key.pkcs8_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let error = source.fetch_token().await.unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(text.contains("bad assertion [redacted]"), "{text}");
    assert!(!text.contains("eyJ"), "{text}");
}

#[test]
fn bad_keys_are_clear_errors_naming_no_key_material() {
    let rsa = TestKey::shared(KeyKind::Rsa);
    let ed = TestKey::shared(KeyKind::Ed25519);
    let truncated = {
        let pem = rsa.pkcs8_pem();
        let cut: String = pem.lines().take(5).collect::<Vec<_>>().join("\n");
        format!("{cut}\n-----END PRIVATE KEY-----\n")
    };
    let cases: Vec<(Vec<u8>, KeyError)> = vec![
        (b"".to_vec(), KeyError::NoPrivateKey),
        (b"not a pem at all".to_vec(), KeyError::NoPrivateKey),
        (rsa.public_key_pem().into_bytes(), KeyError::NoPrivateKey),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqhkiG9w0BBQ0wPDAbBgkqhkiG9w0BBQwwDgQI\n-----END ENCRYPTED PRIVATE KEY-----\n".to_vec(),
            KeyError::Encrypted,
        ),
        (
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n".to_vec(),
            KeyError::Encrypted,
        ),
        (
            truncated.into_bytes(),
            KeyError::Unsupported {
                label: "PRIVATE KEY",
            },
        ),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
            KeyError::Unsupported {
                label: "PRIVATE KEY",
            },
        ),
        (
            b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n".to_vec(),
            KeyError::Malformed {
                reason: "a section has no END line",
            },
        ),
        (
            format!("{}{}", rsa.pkcs8_pem(), ed.pkcs8_pem()).into_bytes(),
            KeyError::Malformed {
                reason: "it holds more than one private key",
            },
        ),
        (
            b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n".to_vec(),
            KeyError::Malformed {
                reason: "the base64 does not decode",
            },
        ),
    ];
    for (pem, expected) in cases {
        let error = PrivateKey::from_pem(&pem).unwrap_err();
        assert_eq!(error, expected, "{}", String::from_utf8_lossy(&pem));
        assert!(!error.to_string().contains("MII"), "{error}");
    }
    let mismatch = PrivateKey::from_pem(ed.pkcs8_pem().as_bytes())
        .unwrap()
        .with_algorithm(SigningAlgorithm::RS256)
        .unwrap_err();
    assert_eq!(mismatch.to_string(), "an Ed25519 key cannot sign RS256");
    assert!(
        PrivateKey::from_pem(rsa.pkcs8_pem().as_bytes())
            .unwrap()
            .with_algorithm(SigningAlgorithm::HS256)
            .is_err()
    );

    let dir = TempDir::new("bad-keys");
    let missing = dir.path().join("absent.pem");
    assert!(matches!(
        PrivateKeyFile::new(&missing).unwrap_err(),
        KeyError::Unreadable { path, .. } if path == missing
    ));
    let huge = dir.write("huge.pem", vec![b'A'; 70 * 1024]);
    assert!(matches!(
        PrivateKeyFile::new(&huge).unwrap_err(),
        KeyError::TooLarge { .. }
    ));
    let debug = format!(
        "{:?} {:?}",
        PrivateKey::from_pem(rsa.pkcs8_pem().as_bytes()).unwrap(),
        PrivateKeyFile::new(dir.write("k.pem", rsa.pkcs8_pem().as_bytes())).unwrap()
    );
    assert!(debug.contains("Rsa") && debug.contains("RS256"), "{debug}");
    assert!(!debug.contains("MII"), "{debug}");
    assert!("RS512".parse::<SigningAlgorithm>().is_err());
    assert_eq!(
        "EdDSA".parse::<SigningAlgorithm>(),
        Ok(SigningAlgorithm::EdDSA)
    );
}

#[test]
fn client_authentication_settings_that_cannot_work_are_refused_at_build() {
    let key =
        || PrivateKey::from_pem(TestKey::shared(KeyKind::Ed25519).pkcs8_pem().as_bytes()).unwrap();
    let builder = || ClientCredentials::builder("https://idp.example.com/token", CLIENT);
    assert_eq!(
        builder()
            .client_secret("s")
            .private_key_jwt(key())
            .build()
            .unwrap_err(),
        BuildError::ConflictingClientAuth {
            first: AuthMethod::PrivateKeyJwt,
            second: AuthMethod::ClientSecretBasic,
        }
    );
    assert_eq!(
        builder()
            .private_key_jwt(key())
            .client_secret_jwt()
            .build()
            .unwrap_err(),
        BuildError::ConflictingClientAuth {
            first: AuthMethod::PrivateKeyJwt,
            second: AuthMethod::ClientSecretJwt,
        }
    );
    assert_eq!(
        builder().client_secret_jwt().build().unwrap_err(),
        BuildError::MissingClientSecret {
            method: AuthMethod::ClientSecretJwt
        }
    );
    assert_eq!(
        builder()
            .private_key_jwt(key())
            .param("client_assertion", "x")
            .build()
            .unwrap_err(),
        BuildError::ReservedParam {
            name: "client_assertion".into()
        }
    );
    assert_eq!(
        builder()
            .private_key_jwt(key())
            .assertion_audience(AssertionAudience::Issuer)
            .build()
            .unwrap_err(),
        BuildError::NoIssuer
    );
    /// A shared-key signer passed as a private key.
    struct Hmac;
    impl AssertionSigner for Hmac {
        fn algorithm(&self) -> SigningAlgorithm {
            SigningAlgorithm::HS256
        }
        fn key_id(&self) -> Option<&str> {
            None
        }
        fn sign<'a>(&'a self, _: &'a [u8]) -> SignFuture<'a> {
            Box::pin(async { Ok(vec![0; 32]) })
        }
    }
    assert_eq!(
        builder().private_key_jwt(Hmac).build().unwrap_err(),
        BuildError::SymmetricPrivateKeyJwt
    );
    // A pre-made assertion (a federated workload token) may still be sent
    // as a parameter when the source makes none of its own.
    assert!(builder().param("client_assertion", "x").build().is_ok());
    let text = BuildError::ConflictingClientAuth {
        first: AuthMethod::PrivateKeyJwt,
        second: AuthMethod::ClientSecretPost,
    }
    .to_string();
    assert_eq!(
        text,
        "two client authentication methods were given, private_key_jwt and client_secret_post; a token request uses one"
    );
}
