//! The test support's JWT-assertion token endpoint and test keys, proven on
//! their own: assertions made by hand with jsonwebtoken, posted with reqwest,
//! no library code involved.
#![cfg(feature = "client-credentials")]

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use support::assertion::{
    AssertionEndpoint, CLIENT_ASSERTION_TYPE, MAX_LIFETIME_SECS, Verifier, alg_name,
};
use support::keys::{KeyKind, TestKey};

const CLIENT_ID: &str = "client-7523";
const SECRET: &str = "a client secret of at least thirty-two bytes";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Good claims for `endpoint`: one minute to live, a fresh `jti`.
fn claims(endpoint: &AssertionEndpoint, jti: &str) -> Value {
    let now = now();
    json!({
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": endpoint.token_url(),
        "jti": jti,
        "iat": now,
        "exp": now + 60,
    })
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).expect("sign the assertion")
}

/// Posts `form` to the endpoint: (status, JSON body).
async fn post_form(endpoint: &AssertionEndpoint, form: &[(&str, &str)]) -> (u16, Value) {
    post(endpoint, form, None).await
}

async fn post(
    endpoint: &AssertionEndpoint,
    form: &[(&str, &str)],
    authorization: Option<&str>,
) -> (u16, Value) {
    let body = serde_urlencoded::to_string(form).unwrap();
    let mut request = reqwest::Client::new()
        .post(endpoint.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("the endpoint answers");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let json = serde_json::from_slice(&bytes).expect("the endpoint answers JSON");
    (status, json)
}

/// Posts `assertion` as a client-credentials grant.
async fn post_assertion(endpoint: &AssertionEndpoint, assertion: &str) -> (u16, Value) {
    post_form(
        endpoint,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", assertion),
        ],
    )
    .await
}

/// Asserts a 401 `invalid_client` whose description mentions `why`.
fn assert_invalid_client((status, body): (u16, Value), why: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(why), "{description:?} lacks {why:?}");
}

fn assert_invalid_request((status, body): (u16, Value), why: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(why), "{description:?} lacks {why:?}");
}

fn assert_issued((status, body): (u16, Value), n: usize) {
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "access_token": format!("assertion-token-{n}"),
            "token_type": "Bearer",
            "expires_in": 3600,
        })
    );
}

/// An endpoint for the shared key of `kind` with `algorithm`, and that key's
/// signing half.
async fn key_endpoint(kind: KeyKind, algorithm: Algorithm) -> (AssertionEndpoint, EncodingKey) {
    let key = TestKey::shared(kind);
    let endpoint = AssertionEndpoint::start(CLIENT_ID, Verifier::for_key(key, algorithm)).await;
    (endpoint, key.encoding_key())
}

async fn accepts(kind: KeyKind, algorithm: Algorithm) {
    let (endpoint, key) = key_endpoint(kind, algorithm).await;
    let assertion = sign(&Header::new(algorithm), &claims(&endpoint, "jti-1"), &key);
    assert_issued(post_assertion(&endpoint, &assertion).await, 1);
    assert_eq!(endpoint.issued(), 1);
    assert_eq!(endpoint.refused(), 0, "{:?}", endpoint.refusals());
    assert_eq!(endpoint.requests(), 1);
    assert_eq!(
        endpoint.last_header().unwrap()["alg"],
        alg_name(algorithm).as_str()
    );
}

#[tokio::test]
async fn accepts_rs256() {
    accepts(KeyKind::Rsa, Algorithm::RS256).await;
}

#[tokio::test]
async fn accepts_ps256() {
    accepts(KeyKind::Rsa, Algorithm::PS256).await;
}

#[tokio::test]
async fn accepts_es256() {
    accepts(KeyKind::EcP256, Algorithm::ES256).await;
}

#[tokio::test]
async fn accepts_eddsa() {
    accepts(KeyKind::Ed25519, Algorithm::EdDSA).await;
}

#[tokio::test]
async fn accepts_hs256_client_secret_jwt() {
    let endpoint = AssertionEndpoint::start(CLIENT_ID, Verifier::secret(SECRET)).await;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let assertion = sign(
        &Header::new(Algorithm::HS256),
        &claims(&endpoint, "j"),
        &key,
    );
    assert_issued(post_assertion(&endpoint, &assertion).await, 1);

    // The wrong secret is the wrong key.
    let wrong = EncodingKey::from_secret(b"another secret, also long enough to pass");
    let assertion = sign(
        &Header::new(Algorithm::HS256),
        &claims(&endpoint, "k"),
        &wrong,
    );
    assert_invalid_client(post_assertion(&endpoint, &assertion).await, "signature");
}

#[tokio::test]
async fn records_the_form_kid_audience_and_jti() {
    let (endpoint, key) = key_endpoint(KeyKind::Rsa, Algorithm::RS256).await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("key-2025".to_owned());
    let assertion = sign(&header, &claims(&endpoint, "jti-a"), &key);
    let (status, _) = post_form(
        &endpoint,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(status, 200, "{:?}", endpoint.refusals());

    // No kid, and the audience as an array holding the token URL.
    let mut claims = claims(&endpoint, "jti-b");
    claims["aud"] = json!([endpoint.token_url(), "https://other.example"]);
    let assertion = sign(&Header::new(Algorithm::RS256), &claims, &key);
    assert_issued(post_assertion(&endpoint, &assertion).await, 2);

    assert_eq!(endpoint.kids(), [Some("key-2025".to_owned()), None]);
    assert_eq!(
        endpoint.audiences(),
        [json!(endpoint.token_url()), claims["aud"].clone()]
    );
    assert_eq!(endpoint.jtis(), ["jti-a", "jti-b"]);
    let form = endpoint.last_form();
    let names: Vec<&str> = form.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["grant_type", "client_assertion_type", "client_assertion"]
    );
    let sent = endpoint.last_assertion().unwrap();
    assert_eq!(sent, assertion);
    assert_eq!(sent.split('.').count(), 3, "a compact JWS");
    assert_eq!(endpoint.last_claims().unwrap()["jti"], "jti-b");
    assert_eq!(endpoint.issued(), 2);
}

#[tokio::test]
async fn wrong_key_is_invalid_client() {
    for (kind, algorithm) in [
        (KeyKind::Rsa, Algorithm::RS256),
        (KeyKind::EcP256, Algorithm::ES256),
        (KeyKind::Ed25519, Algorithm::EdDSA),
    ] {
        let (endpoint, _) = key_endpoint(kind, algorithm).await;
        let other = TestKey::generate(kind).encoding_key();
        let assertion = sign(&Header::new(algorithm), &claims(&endpoint, "j"), &other);
        assert_invalid_client(post_assertion(&endpoint, &assertion).await, "signature");
        assert_eq!((endpoint.issued(), endpoint.refused()), (0, 1));
        assert!(endpoint.jtis().is_empty(), "nothing recorded unverified");
    }
}

#[tokio::test]
async fn wrong_audience_is_invalid_client() {
    let (endpoint, key) = key_endpoint(KeyKind::EcP256, Algorithm::ES256).await;
    let header = Header::new(Algorithm::ES256);
    for (aud, why) in [
        (json!("https://issuer.example/token"), "aud"),
        (json!(endpoint.token_url() + "/"), "aud"),
        (json!(["https://issuer.example/token"]), "aud"),
        (json!(42), "aud"),
    ] {
        let mut claims = claims(&endpoint, &format!("jti-{aud}"));
        claims["aud"] = aud;
        let assertion = sign(&header, &claims, &key);
        assert_invalid_client(post_assertion(&endpoint, &assertion).await, why);
    }
    let mut claims = claims(&endpoint, "jti-none");
    claims.as_object_mut().unwrap().remove("aud");
    let assertion = sign(&header, &claims, &key);
    assert_invalid_client(post_assertion(&endpoint, &assertion).await, "aud missing");
    assert_eq!(endpoint.issued(), 0);
    assert_eq!(endpoint.refused(), 5);
    assert_eq!(endpoint.audiences()[0], "https://issuer.example/token");
}

#[tokio::test]
async fn times_are_checked() {
    let (endpoint, key) = key_endpoint(KeyKind::Ed25519, Algorithm::EdDSA).await;
    let header = Header::new(Algorithm::EdDSA);
    let now = now();
    let post_with = |jti: &str, edit: &dyn Fn(&mut Value)| {
        let mut claims = claims(&endpoint, jti);
        edit(&mut claims);
        let assertion = sign(&header, &claims, &key);
        let endpoint = &endpoint;
        async move { post_assertion(endpoint, &assertion).await }
    };

    let expired = post_with("a", &|c| {
        c["iat"] = json!(now - 120);
        c["exp"] = json!(now - 60);
    });
    assert_invalid_client(expired.await, "expired");
    let no_exp = post_with("b", &|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    assert_invalid_client(no_exp.await, "exp missing");
    let no_iat = post_with("c", &|c| {
        c.as_object_mut().unwrap().remove("iat");
    });
    assert_invalid_client(no_iat.await, "iat missing");
    // Both times set: `claims` reads the clock again, and a second may
    // have passed since `now`.
    let too_long = post_with("d", &|c| {
        c["iat"] = json!(now);
        c["exp"] = json!(now + MAX_LIFETIME_SECS + 1);
    });
    assert_invalid_client(too_long.await, "lifetime");
    let future_iat = post_with("e", &|c| {
        c["iat"] = json!(now + 120);
        c["exp"] = json!(now + 180);
    });
    assert_invalid_client(future_iat.await, "future");
    let not_yet = post_with("f", &|c| c["nbf"] = json!(now + 120));
    assert_invalid_client(not_yet.await, "nbf");
    let text_exp = post_with("g", &|c| c["exp"] = json!("soon"));
    assert_invalid_client(text_exp.await, "NumericDate");

    // Exactly ten minutes is fine, and within the leeway a second ago too.
    let longest = post_with("h", &|c| {
        c["iat"] = json!(now);
        c["exp"] = json!(now + MAX_LIFETIME_SECS);
    });
    assert_issued(longest.await, 1);
    let just_expired = post_with("i", &|c| {
        c["iat"] = json!(now - 60);
        c["exp"] = json!(now - 1);
    });
    assert_issued(just_expired.await, 2);
}

#[tokio::test]
async fn issuer_and_subject_must_be_the_client() {
    let (endpoint, key) = key_endpoint(KeyKind::Rsa, Algorithm::PS256).await;
    let header = Header::new(Algorithm::PS256);
    let cases = [
        ("iss", json!("someone-else"), "iss"),
        ("sub", json!("someone-else"), "sub"),
        ("iss", json!(["client-7523"]), "iss"),
    ];
    for (i, (name, value, why)) in cases.into_iter().enumerate() {
        let mut claims = claims(&endpoint, &format!("jti-{i}"));
        claims[name] = value;
        let assertion = sign(&header, &claims, &key);
        assert_invalid_client(post_assertion(&endpoint, &assertion).await, why);
    }
    let mut claims = claims(&endpoint, "jti-x");
    claims.as_object_mut().unwrap().remove("sub");
    let assertion = sign(&header, &claims, &key);
    assert_invalid_client(post_assertion(&endpoint, &assertion).await, "sub missing");

    // client_id, when sent, must be the client too.
    let assertion = sign(&header, &self::claims(&endpoint, "jti-y"), &key);
    let response = post_form(
        &endpoint,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "someone-else"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_invalid_client(response, "client_id");
    assert_eq!(endpoint.issued(), 0);
}

#[tokio::test]
async fn algorithm_must_be_the_verifiers() {
    let rsa = TestKey::shared(KeyKind::Rsa);
    let (endpoint, key) = key_endpoint(KeyKind::Rsa, Algorithm::RS256).await;

    // HS256 keyed with the RSA public key: the classic confusion.
    let confused = EncodingKey::from_secret(rsa.public_key_pem().as_bytes());
    let assertion = sign(
        &Header::new(Algorithm::HS256),
        &claims(&endpoint, "a"),
        &confused,
    );
    assert_invalid_client(
        post_assertion(&endpoint, &assertion).await,
        "alg HS256 refused",
    );

    // The right key, but PS256 where RS256 is configured.
    let assertion = sign(
        &Header::new(Algorithm::PS256),
        &claims(&endpoint, "b"),
        &key,
    );
    assert_invalid_client(post_assertion(&endpoint, &assertion).await, "alg PS256");

    // Unsigned.
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims(&endpoint, "c"))
    );
    assert_invalid_client(post_assertion(&endpoint, &unsigned).await, "alg \"none\"");

    // A typ other than JWT, and a crit header.
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("at+jwt".to_owned());
    let assertion = sign(&header, &claims(&endpoint, "d"), &key);
    assert_invalid_client(post_assertion(&endpoint, &assertion).await, "typ");
    let mut header = Header::new(Algorithm::RS256);
    header.crit = Some(vec!["exp".to_owned()]);
    let assertion = sign(&header, &claims(&endpoint, "e"), &key);
    assert_invalid_client(post_assertion(&endpoint, &assertion).await, "crit");

    // Not a JWS at all.
    assert_invalid_client(post_assertion(&endpoint, "not-a-jwt").await, "segments");
    assert_eq!(endpoint.issued(), 0);
    assert_eq!(endpoint.refused(), 6);

    // No typ at all is fine.
    let mut header = Header::new(Algorithm::RS256);
    header.typ = None;
    let assertion = sign(&header, &claims(&endpoint, "f"), &key);
    assert_issued(post_assertion(&endpoint, &assertion).await, 1);
}

#[tokio::test]
async fn a_replayed_jti_is_refused() {
    let (endpoint, key) = key_endpoint(KeyKind::EcP256, Algorithm::ES256).await;
    let assertion = sign(
        &Header::new(Algorithm::ES256),
        &claims(&endpoint, "once"),
        &key,
    );
    assert_issued(post_assertion(&endpoint, &assertion).await, 1);
    assert_invalid_client(post_assertion(&endpoint, &assertion).await, "jti replayed");

    // A fresh assertion reusing the jti is a replay too.
    let again = sign(
        &Header::new(Algorithm::ES256),
        &claims(&endpoint, "once"),
        &key,
    );
    assert_invalid_client(post_assertion(&endpoint, &again).await, "jti replayed");
    assert_eq!(endpoint.jtis(), ["once", "once", "once"]);

    let mut claims = claims(&endpoint, "x");
    claims.as_object_mut().unwrap().remove("jti");
    let assertion = sign(&Header::new(Algorithm::ES256), &claims, &key);
    assert_invalid_client(post_assertion(&endpoint, &assertion).await, "jti missing");
    assert_eq!((endpoint.issued(), endpoint.refused()), (1, 3));
    assert!(
        endpoint.refusals()[0].starts_with("invalid_client: jti replayed"),
        "{:?}",
        endpoint.refusals()
    );
}

#[tokio::test]
async fn a_refused_jti_is_not_consumed() {
    let (endpoint, key) = key_endpoint(KeyKind::Ed25519, Algorithm::EdDSA).await;
    let header = Header::new(Algorithm::EdDSA);
    let mut bad = claims(&endpoint, "retry");
    bad["sub"] = json!("someone-else");
    assert_invalid_client(
        post_assertion(&endpoint, &sign(&header, &bad, &key)).await,
        "sub",
    );
    let good = claims(&endpoint, "retry");
    assert_issued(
        post_assertion(&endpoint, &sign(&header, &good, &key)).await,
        1,
    );
}

#[tokio::test]
async fn one_client_authentication_method_only() {
    let endpoint = AssertionEndpoint::start(CLIENT_ID, Verifier::secret(SECRET)).await;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let assertion = sign(
        &Header::new(Algorithm::HS256),
        &claims(&endpoint, "j"),
        &key,
    );
    let grant = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
    ];

    let basic = "Basic Y2xpZW50LTc1MjM6c2VjcmV0";
    assert_invalid_request(
        post(&endpoint, &grant, Some(basic)).await,
        "more than one client authentication method",
    );
    let mut with_secret = grant.to_vec();
    with_secret.push(("client_secret", SECRET));
    assert_invalid_request(
        post_form(&endpoint, &with_secret).await,
        "more than one client authentication method",
    );
    // Basic alone is not a method this endpoint takes.
    assert_invalid_client(
        post(
            &endpoint,
            &[("grant_type", "client_credentials")],
            Some(basic),
        )
        .await,
        "Authorization header",
    );
    assert_invalid_client(
        post_form(&endpoint, &[("grant_type", "client_credentials")]).await,
        "client_assertion missing",
    );
    // Nothing was consumed: the assertion still works alone.
    assert_issued(post_form(&endpoint, &grant).await, 1);
}

#[tokio::test]
async fn the_request_must_be_a_client_credentials_form() {
    let endpoint = AssertionEndpoint::start(CLIENT_ID, Verifier::secret(SECRET)).await;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let assertion = sign(
        &Header::new(Algorithm::HS256),
        &claims(&endpoint, "j"),
        &key,
    );

    let (status, body) = post_form(
        &endpoint,
        &[
            ("grant_type", "password"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("unsupported_grant_type"))
    );
    assert_invalid_request(
        post_form(
            &endpoint,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:example:other"),
                ("client_assertion", &assertion),
            ],
        )
        .await,
        "client_assertion_type",
    );
    assert_invalid_request(
        post_form(
            &endpoint,
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
                ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ],
        )
        .await,
        "repeated",
    );

    // JSON is not a form.
    let response = reqwest::Client::new()
        .post(endpoint.token_url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(endpoint.refused(), 4);
    assert_eq!(endpoint.issued(), 0);
}

#[tokio::test]
async fn set_verifier_rotates_the_key() {
    let old = TestKey::shared(KeyKind::EcP256);
    let new = TestKey::generate(KeyKind::EcP256);
    let endpoint =
        AssertionEndpoint::start(CLIENT_ID, Verifier::for_key(old, Algorithm::ES256)).await;
    let header = |kid: &str| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        header
    };
    let by_old = sign(&header("old"), &claims(&endpoint, "1"), &old.encoding_key());
    assert_issued(post_assertion(&endpoint, &by_old).await, 1);

    endpoint.set_verifier(Verifier::for_key(&new, Algorithm::ES256));
    let by_old = sign(&header("old"), &claims(&endpoint, "2"), &old.encoding_key());
    assert_invalid_client(post_assertion(&endpoint, &by_old).await, "signature");
    let by_new = sign(&header("new"), &claims(&endpoint, "3"), &new.encoding_key());
    assert_issued(post_assertion(&endpoint, &by_new).await, 2);

    let kids = endpoint.kids();
    let kids: Vec<Option<&str>> = kids.iter().map(Option::as_deref).collect();
    assert_eq!(kids, [Some("old"), Some("old"), Some("new")]);
}

#[test]
fn test_keys_have_the_expected_encodings() {
    for kind in KeyKind::ALL {
        let key = TestKey::shared(kind);
        assert_eq!(key.kind, kind);
        let pkcs8 = key.pkcs8_pem();
        assert!(
            pkcs8.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{kind:?}"
        );
        assert!(pkcs8.ends_with("-----END PRIVATE KEY-----\n"), "{kind:?}");
        assert!(pkcs8.lines().all(|line| line.len() <= 64), "{kind:?}");
        let public = key.public_key_pem();
        assert!(
            public.starts_with("-----BEGIN PUBLIC KEY-----\n"),
            "{kind:?}"
        );
        assert!(!public.contains("PRIVATE"), "{kind:?}");
        // The shared key is made once; a generated one differs.
        assert!(std::ptr::eq(key, TestKey::shared(kind)));
        assert_ne!(
            TestKey::generate(kind).public_key_der(),
            key.public_key_der()
        );
    }

    let rsa = TestKey::shared(KeyKind::Rsa).traditional_pem().unwrap();
    assert!(rsa.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    assert!(rsa.ends_with("-----END RSA PRIVATE KEY-----\n"));
    let ec = TestKey::shared(KeyKind::EcP256).traditional_pem().unwrap();
    assert!(ec.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
    assert!(ec.ends_with("-----END EC PRIVATE KEY-----\n"));
    assert_eq!(TestKey::shared(KeyKind::Ed25519).traditional_pem(), None);
    assert_eq!(TestKey::shared(KeyKind::Ed25519).traditional_der(), None);
}

#[test]
fn the_ec_sec1_key_loads_in_aws_lc() {
    let key = TestKey::shared(KeyKind::EcP256);
    let sec1 = key.traditional_der().unwrap();
    assert_ne!(sec1, key.pkcs8_der(), "SEC1, not PKCS#8");
    let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, sec1)
        .expect("aws-lc reads the RFC 5915 key");
    let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key()).unwrap();
    assert_eq!(spki.as_ref(), key.public_key_der(), "the same key");
}

#[tokio::test]
async fn the_pkcs1_rsa_key_signs_accepted_assertions() {
    let key = TestKey::shared(KeyKind::Rsa);
    let pkcs1 = EncodingKey::from_rsa_pem(key.traditional_pem().unwrap().as_bytes())
        .expect("jsonwebtoken reads PKCS#1");
    for algorithm in [Algorithm::RS256, Algorithm::PS256] {
        let endpoint = AssertionEndpoint::start(CLIENT_ID, Verifier::for_key(key, algorithm)).await;
        let assertion = sign(&Header::new(algorithm), &claims(&endpoint, "p1"), &pkcs1);
        assert_issued(post_assertion(&endpoint, &assertion).await, 1);
    }
}

#[tokio::test]
async fn other_paths_and_methods_are_refused() {
    let endpoint = AssertionEndpoint::start(CLIENT_ID, Verifier::secret(SECRET)).await;
    assert!(endpoint.token_url().starts_with("http://127.0.0.1:"));
    assert!(endpoint.token_url().ends_with("/token"));
    assert_eq!(endpoint.client_id(), CLIENT_ID);
    let client = reqwest::Client::new();
    let other = endpoint.token_url().replace("/token", "/elsewhere");
    let response = client.post(other).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let response = client.get(endpoint.token_url()).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(endpoint.requests(), 2);
    assert_eq!(endpoint.refused(), 2);
}
