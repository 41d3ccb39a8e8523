//! The test support's DPoP token endpoint and resource server, proven on
//! their own: proofs made by hand with jsonwebtoken, sent with reqwest, no
//! library code involved. Each check the verifier makes is shown to catch
//! its fault, with the right reason.
#![cfg(feature = "client-credentials")]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use support::dpop::{
    DpopProvider, DpopTokenEndpoint, NoncePolicy, ResourceServerConfig, TokenEndpointConfig, ath,
    normalize_htu, thumbprint,
};
use support::keys::{KeyKind, TestKey};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh `jti`.
fn jti() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A client's DPoP key: the private key to sign with and the public JWK.
struct DpopKey {
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl DpopKey {
    /// A fresh P-256 key (ES256) or Ed25519 key (EdDSA).
    fn generate(kind: KeyKind) -> DpopKey {
        let key = TestKey::generate(kind);
        let spki = key.public_key_der();
        let jwk = match kind {
            // The SPKI ends with the uncompressed point 04 || x || y.
            KeyKind::EcP256 => {
                let point = &spki[spki.len() - 65..];
                assert_eq!(point[0], 4, "an uncompressed point");
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..]),
                })
            }
            // The SPKI ends with the 32-byte public key.
            KeyKind::Ed25519 => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(&spki[spki.len() - 32..]),
            }),
            KeyKind::Rsa => panic!("DPoP proofs here are ES256 or EdDSA"),
        };
        DpopKey {
            algorithm: kind.default_algorithm(),
            encoding: key.encoding_key(),
            jwk,
        }
    }

    fn es256() -> DpopKey {
        DpopKey::generate(KeyKind::EcP256)
    }

    /// The key's thumbprint as jsonwebtoken computes it, independently of
    /// the support's own.
    fn jkt(&self) -> String {
        let jwk: Jwk = serde_json::from_value(self.jwk.clone()).unwrap();
        jwk.thumbprint(ThumbprintHash::SHA256)
    }

    /// A good proof header.
    fn header(&self) -> Value {
        let alg = match self.algorithm {
            Algorithm::ES256 => "ES256",
            _ => "EdDSA",
        };
        json!({"typ": "dpop+jwt", "alg": alg, "jwk": self.jwk})
    }

    /// A compact JWS of `header` and `claims`, signed with this key
    /// whatever the header says.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.algorithm).unwrap();
        format!("{message}.{signature}")
    }

    /// A good proof of `claims`.
    fn proof_of(&self, claims: &Value) -> String {
        self.sign(&self.header(), claims)
    }

    /// A good proof for `method` on `url`, with `ath` of `token` if given.
    fn proof(&self, method: &str, url: &str, token: Option<&str>) -> String {
        self.proof_of(&claims(method, url, token, None))
    }
}

/// Good claims: a fresh `jti`, `iat` now, `ath` and `nonce` if given.
fn claims(method: &str, url: &str, token: Option<&str>, nonce: Option<&str>) -> Value {
    let mut claims = json!({"jti": jti(), "htm": method, "htu": url, "iat": now()});
    if let Some(token) = token {
        claims["ath"] = Value::String(ath(token));
    }
    if let Some(nonce) = nonce {
        claims["nonce"] = Value::String(nonce.to_owned());
    }
    claims
}

/// What a server answered.
struct Answer {
    status: u16,
    www_authenticate: Option<String>,
    nonce: Option<String>,
    body: Value,
}

async fn answer(response: reqwest::Response) -> Answer {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (www_authenticate, nonce) = (header("www-authenticate"), header("dpop-nonce"));
    let status = response.status().as_u16();
    let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
    Answer {
        status,
        www_authenticate,
        nonce,
        body,
    }
}

/// Sends `method` to `url` with `Authorization: <authorization>` and one
/// `DPoP` header per proof.
async fn call(method: &str, url: &str, authorization: Option<&str>, proofs: &[&str]) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    answer(request.send().await.expect("the server answers")).await
}

/// `GET url` with a DPoP token and one proof.
async fn get(url: &str, token: &str, proof: &str) -> Answer {
    call("GET", url, Some(&format!("DPoP {token}")), &[proof]).await
}

/// A provider with defaults, and a token bound to `key`.
async fn provider_with_token(key: &DpopKey) -> (DpopProvider, String) {
    let provider = DpopProvider::start_default().await;
    let token = provider
        .api
        .tokens()
        .mint(Some(&key.jkt()), Duration::from_secs(3600));
    (provider, token)
}

/// Asserts a `401` with `WWW-Authenticate: DPoP error="<error>"` and the
/// server's one refusal `reason`.
fn assert_refused(answer: &Answer, error: &str, refusals: Vec<String>, reason: &str) {
    assert_eq!(answer.status, 401, "{:?}", answer.body);
    let challenge = answer.www_authenticate.as_deref().unwrap();
    assert!(
        challenge.starts_with(&format!("DPoP error=\"{error}\"")),
        "{challenge}"
    );
    assert_eq!(answer.body["error"], error);
    assert_eq!(refusals, [reason]);
}

/// Posts a client-credentials grant with `client_secret_post` and the given
/// proofs.
async fn token_request(endpoint: &DpopTokenEndpoint, proofs: &[&str]) -> Answer {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", &endpoint.client_id()),
        ("client_secret", &endpoint.client_secret()),
    ];
    let mut request = reqwest::Client::new()
        .post(endpoint.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap());
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    answer(request.send().await.expect("the endpoint answers")).await
}

#[tokio::test]
async fn the_resource_server_accepts_a_correct_proof_of_either_algorithm() {
    for kind in [KeyKind::EcP256, KeyKind::Ed25519] {
        let key = DpopKey::generate(kind);
        let (provider, token) = provider_with_token(&key).await;
        let api = &provider.api;
        let url = api.url("/items");
        let answer = get(&url, &token, &key.proof("GET", &url, Some(&token))).await;
        assert_eq!(answer.status, 200, "{kind:?}: {:?}", api.refusal_details());
        assert_eq!(answer.body["scheme"], "DPoP");
        assert_eq!(answer.body["jkt"], key.jkt());
        assert_eq!(answer.nonce, None, "nonces are off");
        assert_eq!((api.requests(), api.accepted()), (1, 1));
        assert_eq!(api.seen_jtis().len(), 1);
        assert!(api.refusals().is_empty());
    }
}

#[tokio::test]
async fn a_proof_made_by_jsonwebtoken_encode_with_a_header_jwk_is_accepted() {
    let test_key = TestKey::generate(KeyKind::EcP256);
    let encoding = test_key.encoding_key();
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("dpop+jwt".to_owned());
    header.jwk = Some(Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap());
    let jkt = header
        .jwk
        .as_ref()
        .unwrap()
        .thumbprint(ThumbprintHash::SHA256);

    let provider = DpopProvider::start_default().await;
    let token = provider
        .api
        .tokens()
        .mint(Some(&jkt), Duration::from_secs(60));
    let url = provider.api.url("/a");
    let proof =
        jsonwebtoken::encode(&header, &claims("GET", &url, Some(&token), None), &encoding).unwrap();
    let answer = get(&url, &token, &proof).await;
    assert_eq!(answer.status, 200, "{:?}", provider.api.refusal_details());
}

#[tokio::test]
async fn the_thumbprint_is_rfc_7638s_and_jsonwebtokens() {
    // RFC 7638 §3.1.
    let rfc = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    });
    assert_eq!(
        thumbprint(&rfc).unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    for kind in [KeyKind::EcP256, KeyKind::Ed25519] {
        let key = DpopKey::generate(kind);
        assert_eq!(thumbprint(&key.jwk).unwrap(), key.jkt(), "{kind:?}");
    }
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let key = DpopKey::es256();
    let (provider, token) = provider_with_token(&key).await;
    let api = &provider.api;
    let url = api.url("/items");

    // Signed by another key, naming this one.
    let other = DpopKey::es256();
    let forged = other.sign(&key.header(), &claims("GET", &url, Some(&token), None));
    let answer = get(&url, &token, &forged).await;
    assert_refused(&answer, "invalid_dpop_proof", api.refusals(), "signature");

    // This key's proof with its claims changed after signing.
    let good = key.proof("GET", &url, Some(&token));
    let mut segments: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut changed = claims("GET", &url, Some(&token), None);
    changed["jti"] = Value::String(jti());
    segments[1] = URL_SAFE_NO_PAD.encode(changed.to_string());
    let answer = get(&url, &token, &segments.join(".")).await;
    assert_eq!(answer.status, 401);
    assert_eq!(api.refusals(), ["signature", "signature"]);
    assert_eq!(api.accepted(), 0);
}

#[tokio::test]
async fn a_wrong_htm_is_refused() {
    let key = DpopKey::es256();
    let (provider, token) = provider_with_token(&key).await;
    let url = provider.api.url("/items");
    let proof = key.proof("GET", &url, Some(&token));
    let answer = call("POST", &url, Some(&format!("DPoP {token}")), &[&proof]).await;
    assert_refused(
        &answer,
        "invalid_dpop_proof",
        provider.api.refusals(),
        "htm",
    );
}

#[tokio::test]
async fn a_wrong_htu_is_refused() {
    let key = DpopKey::es256();
    let (provider, token) = provider_with_token(&key).await;
    let api = &provider.api;
    let url = api.url("/items");
    let wrong = [
        api.url("/other"),
        format!(
            "https://{}/items",
            api.origin().trim_start_matches("http://")
        ),
        "http://127.0.0.1:1/items".to_owned(),
    ];
    for htu in &wrong {
        let answer = get(&url, &token, &key.proof("GET", htu, Some(&token))).await;
        assert_eq!(answer.status, 401, "{htu}");
    }
    assert_eq!(api.refusals(), ["htu", "htu", "htu"]);
}

#[tokio::test]
async fn the_query_is_not_part_of_htu() {
    let key = DpopKey::es256();
    let (provider, token) = provider_with_token(&key).await;
    let api = &provider.api;
    let bare = api.url("/items");
    let with_query = api.url("/items?page=2&q=a%20b");

    // A request with a query, a proof without it: accepted.
    let answer = get(&with_query, &token, &key.proof("GET", &bare, Some(&token))).await;
    assert_eq!(answer.status, 200, "{:?}", api.refusal_details());

    // A proof whose htu carries the query: refused (RFC 9449 §4.2).
    let answer = get(
        &with_query,
        &token,
        &key.proof("GET", &with_query, Some(&token)),
    )
    .await;
    assert_refused(&answer, "invalid_dpop_proof", api.refusals(), "htu");
}

#[tokio::test]
async fn htu_is_compared_normalized() {
    let key = DpopKey::es256();
    let (provider, token) = provider_with_token(&key).await;
    let api = &provider.api;
    let url = api.url("/items");
    let shouting = url.replace("http://", "HTTP://");
    let answer = get(&url, &token, &key.proof("GET", &shouting, Some(&token))).await;
    assert_eq!(answer.status, 200, "{:?}", api.refusal_details());

    let same = [
        ("http://Example.COM:80/a", "http://example.com/a"),
        ("https://example.com:443/a?x#y", "https://example.com/a"),
        ("http://example.com", "http://example.com/"),
        ("http://[::1]:8080/a", "http://[::1]:8080/a"),
        ("http://127.0.0.1:8443/a", "http://127.0.0.1:8443/a"),
    ];
    for (url, normalized) in same {
        assert_eq!(normalize_htu(url).as_deref(), Ok(normalized), "{url}");
    }
    assert!(normalize_htu("ftp://example.com/").is_err());
    assert!(normalize_htu("/relative").is_err());
    assert!(normalize_htu("http://user@example.com/").is_err());
}

#[tokio::test]
async fn an_iat_outside_the_window_is_refused() {
    let key = DpopKey::es256();
    let (provider, token) = provider_with_token(&key).await;
    let api = &provider.api;
    let url = api.url("/items");
    for (offset, status) in [(-120, 401), (120, 401), (-30, 200), (30, 200)] {
        let mut claims = claims("GET", &url, Some(&token), None);
        claims["iat"] = json!(now() as i64 + offset);
        let answer = get(&url, &token, &key.proof_of(&claims)).await;
        assert_eq!(answer.status, status, "iat now{offset:+}");
    }
    assert_eq!(api.refusals(), ["iat", "iat"]);

    // A narrower window refuses what the default took.
    api.set_iat_window(Duration::from_secs(10));
    let mut claims = claims("GET", &url, Some(&token), None);
    claims["iat"] = json!(now() - 30);
    assert_eq!(get(&url, &token, &key.proof_of(&claims)).await.status, 401);
}

#[tokio::test]
async fn a_replayed_jti_is_refused() {
    let key = DpopKey::es256();
    let (provider, token) = provider_with_token(&key).await;
    let api = &provider.api;
    let url = api.url("/items");

    let proof = key.proof("GET", &url, Some(&token));
    assert_eq!(get(&url, &token, &proof).await.status, 200);
    let answer = get(&url, &token, &proof).await;
    assert_refused(
        &answer,
        "invalid_dpop_proof",
        api.refusals(),
        "jti replayed",
    );

    // A new proof reusing the jti: refused too.
    let first = api.seen_jtis()[0].clone();
    let mut claims = claims("GET", &url, Some(&token), None);
    claims["jti"] = Value::String(first.clone());
    assert_eq!(get(&url, &token, &key.proof_of(&claims)).await.status, 401);
    assert_eq!(api.seen_jtis(), [first.clone(), first.clone(), first]);
    assert_eq!(api.accepted(), 1);
}

#[tokio::test]
async fn ath_must_be_the_hash_of_the_token_presented() {
    let key = DpopKey::es256();
    let (provider, token) = provider_with_token(&key).await;
    let api = &provider.api;
    let url = api.url("/items");

    let answer = get(&url, &token, &key.proof("GET", &url, Some("another token"))).await;
    assert_refused(
        &answer,
        "invalid_dpop_proof",
        api.refusals(),
        "ath mismatch",
    );

    let answer = get(&url, &token, &key.proof("GET", &url, None)).await;
    assert_eq!(answer.status, 401);
    assert_eq!(api.refusals(), ["ath mismatch", "ath"]);
}

#[tokio::test]
async fn a_required_nonce_is_challenged_for_then_accepted() {
    let key = DpopKey::es256();
    let provider = DpopProvider::start(
        TokenEndpointConfig::default(),
        ResourceServerConfig {
            nonce: NoncePolicy::required(),
            ..ResourceServerConfig::default()
        },
    )
    .await;
    let api = &provider.api;
    let token = api.tokens().mint(Some(&key.jkt()), Duration::from_secs(60));
    let url = api.url("/items");

    let answer = get(&url, &token, &key.proof("GET", &url, Some(&token))).await;
    assert_eq!(answer.status, 401);
    let challenge = answer.www_authenticate.unwrap();
    assert!(
        challenge.starts_with("DPoP error=\"use_dpop_nonce\", error_description=\""),
        "{challenge}"
    );
    let nonce = answer.nonce.expect("a DPoP-Nonce with the challenge");
    assert_eq!(nonce, api.nonce());
    assert_eq!(api.nonce_challenges(), 1);
    assert!(api.refusals().is_empty(), "a challenge is not a refusal");

    let proof = key.proof_of(&claims("GET", &url, Some(&token), Some(&nonce)));
    let answer = get(&url, &token, &proof).await;
    assert_eq!(answer.status, 200, "{:?}", api.refusal_details());
    assert_eq!(answer.nonce, Some(nonce.clone()), "success carries it too");

    // A wrong nonce is challenged the same way.
    let proof = key.proof_of(&claims("GET", &url, Some(&token), Some("not-it")));
    assert_eq!(get(&url, &token, &proof).await.status, 401);
    assert_eq!(api.nonce_challenges(), 2);

    // Turned off, none is needed nor given.
    api.set_nonce_required(false);
    let answer = get(&url, &token, &key.proof("GET", &url, Some(&token))).await;
    assert_eq!((answer.status, answer.nonce), (200, None));
}

#[tokio::test]
async fn a_rotated_nonce_refuses_the_old_one_unless_kept() {
    let key = DpopKey::es256();
    let provider = DpopProvider::start(
        TokenEndpointConfig::default(),
        ResourceServerConfig {
            nonce: NoncePolicy::required(),
            ..ResourceServerConfig::default()
        },
    )
    .await;
    let api = &provider.api;
    let token = api.tokens().mint(Some(&key.jkt()), Duration::from_secs(60));
    let url = api.url("/items");
    let with = |nonce: &str| key.proof_of(&claims("GET", &url, Some(&token), Some(nonce)));

    let first = api.nonce();
    let second = api.rotate_nonce();
    assert_ne!(first, second);
    let answer = get(&url, &token, &with(&first)).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.nonce, Some(second.clone()));
    assert_eq!(get(&url, &token, &with(&second)).await.status, 200);

    let third = api.rotate_nonce_keeping_previous();
    assert_eq!(get(&url, &token, &with(&second)).await.status, 200);
    assert_eq!(get(&url, &token, &with(&third)).await.status, 200);
    api.rotate_nonce();
    assert_eq!(get(&url, &token, &with(&second)).await.status, 401);
    assert_eq!(api.nonce_challenges(), 2);
    assert_eq!(api.accepted(), 3);
}

#[tokio::test]
async fn the_nonce_rotates_by_itself_announced_or_not() {
    let key = DpopKey::es256();
    for announce_rotation in [true, false] {
        let provider = DpopProvider::start(
            TokenEndpointConfig::default(),
            ResourceServerConfig {
                nonce: NoncePolicy {
                    announce_rotation,
                    ..NoncePolicy::rotating_every(2)
                },
                ..ResourceServerConfig::default()
            },
        )
        .await;
        let api = &provider.api;
        let token = api.tokens().mint(Some(&key.jkt()), Duration::from_secs(60));
        let url = api.url("/items");

        // A client that always uses the last DPoP-Nonce it was given.
        let mut nonce = api.nonce();
        let mut nonces = vec![nonce.clone()];
        for _ in 0..5 {
            let proof = key.proof_of(&claims("GET", &url, Some(&token), Some(&nonce)));
            let answer = get(&url, &token, &proof).await;
            nonce = answer.nonce.unwrap();
            if !nonces.contains(&nonce) {
                nonces.push(nonce.clone());
            }
        }
        if announce_rotation {
            assert_eq!((api.accepted(), api.nonce_challenges()), (5, 0));
            assert_eq!(nonces.len(), 3, "rotated after the 2nd and the 4th");
        } else {
            // Accepted, accepted (rotates, the old nonce given), challenged
            // (the new nonce given), accepted, accepted (rotates).
            assert_eq!((api.accepted(), api.nonce_challenges()), (4, 1));
        }
        assert!(api.refusals().is_empty());
    }
}

#[tokio::test]
async fn a_token_bound_to_another_key_is_refused() {
    let key = DpopKey::es256();
    let other = DpopKey::generate(KeyKind::Ed25519);
    let (provider, token) = provider_with_token(&other).await;
    let url = provider.api.url("/items");
    let answer = get(&url, &token, &key.proof("GET", &url, Some(&token))).await;
    assert_refused(
        &answer,
        "invalid_token",
        provider.api.refusals(),
        "thumbprint",
    );
}

#[tokio::test]
async fn a_private_jwk_member_is_refused() {
    let key = DpopKey::es256();
    let (provider, token) = provider_with_token(&key).await;
    let url = provider.api.url("/items");
    let mut header = key.header();
    header["jwk"]["d"] = json!("AAAA");
    let proof = key.sign(&header, &claims("GET", &url, Some(&token), None));
    let answer = get(&url, &token, &proof).await;
    assert_refused(
        &answer,
        "invalid_dpop_proof",
        provider.api.refusals(),
        "private jwk",
    );
}

#[tokio::test]
async fn only_es256_and_eddsa_with_typ_dpop_jwt_are_accepted() {
    let key = DpopKey::es256();
    let (provider, token) = provider_with_token(&key).await;
    let api = &provider.api;
    let url = api.url("/items");
    let claims = || claims("GET", &url, Some(&token), None);
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());

    // alg none, no signature.
    let mut header = key.header();
    header["alg"] = json!("none");
    let unsigned = format!("{}.{}.", encode(&header), encode(&claims()));
    assert_eq!(get(&url, &token, &unsigned).await.status, 401);

    // HS256 with the MAC key as the jwk.
    let secret = b"a shared secret of thirty-two bytes!";
    let header = json!({
        "typ": "dpop+jwt",
        "alg": "HS256",
        "jwk": {"kty": "oct", "k": URL_SAFE_NO_PAD.encode(secret)},
    });
    let message = format!("{}.{}", encode(&header), encode(&claims()));
    let mac = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        get(&url, &token, &format!("{message}.{mac}")).await.status,
        401
    );

    // An ES256 key claiming EdDSA.
    let mut header = key.header();
    header["alg"] = json!("EdDSA");
    let answer = get(&url, &token, &key.sign(&header, &claims())).await;
    assert_eq!(answer.status, 401);

    // typ JWT, and no typ.
    let mut header = key.header();
    header["typ"] = json!("JWT");
    assert_eq!(
        get(&url, &token, &key.sign(&header, &claims()))
            .await
            .status,
        401
    );
    header.as_object_mut().unwrap().remove("typ");
    assert_eq!(
        get(&url, &token, &key.sign(&header, &claims()))
            .await
            .status,
        401
    );

    assert_eq!(api.refusals(), ["alg", "alg", "jwk", "typ", "typ"]);
}

#[tokio::test]
async fn the_dpop_header_must_be_there_once() {
    let key = DpopKey::es256();
    let (provider, token) = provider_with_token(&key).await;
    let api = &provider.api;
    let url = api.url("/items");
    let authorization = format!("DPoP {token}");
    let one = key.proof("GET", &url, Some(&token));
    let two = key.proof("GET", &url, Some(&token));
    let answer = call("GET", &url, Some(&authorization), &[&one, &two]).await;
    assert_eq!(answer.status, 401);
    let answer = call("GET", &url, Some(&authorization), &[]).await;
    assert_eq!(answer.status, 401);
    let answer = call("GET", &url, Some(&authorization), &["not.a-jws"]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(api.refusals(), ["dpop header", "dpop header", "malformed"]);
}

#[tokio::test]
async fn tokens_are_refused_when_unknown_expired_or_sent_as_bearer() {
    let key = DpopKey::es256();
    let (provider, token) = provider_with_token(&key).await;
    let api = &provider.api;
    let url = api.url("/items");

    let answer = call("GET", &url, None, &[]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.www_authenticate.as_deref(),
        Some("DPoP algs=\"ES256 EdDSA\"")
    );

    let bearer = format!("Bearer {token}");
    let answer = call("GET", &url, Some(&bearer), &[]).await;
    assert_eq!(answer.status, 401);

    let unknown = "never-issued";
    let answer = get(&url, unknown, &key.proof("GET", &url, Some(unknown))).await;
    assert_eq!(answer.status, 401);

    let expired = api.tokens().mint(Some(&key.jkt()), Duration::ZERO);
    let answer = get(&url, &expired, &key.proof("GET", &url, Some(&expired))).await;
    assert_eq!(answer.status, 401);

    // An unbound token: fine as Bearer, not as DPoP.
    let plain = api.tokens().mint(None, Duration::from_secs(60));
    let answer = call("GET", &url, Some(&format!("Bearer {plain}")), &[]).await;
    assert_eq!(
        (answer.status, answer.body["scheme"].as_str()),
        (200, Some("Bearer"))
    );
    let answer = get(&url, &plain, &key.proof("GET", &url, Some(&plain))).await;
    assert_eq!(answer.status, 401);

    assert_eq!(
        api.refusals(),
        [
            "no token",
            "scheme",
            "unknown token",
            "expired token",
            "unbound token"
        ]
    );
}

#[tokio::test]
async fn the_token_endpoint_issues_a_token_bound_to_the_proof_key() {
    let key = DpopKey::es256();
    let provider = DpopProvider::start_default().await;
    let endpoint = &provider.token;
    let proof = key.proof("POST", &endpoint.token_url(), None);
    let answer = token_request(endpoint, &[&proof]).await;
    assert_eq!(answer.status, 200, "{:?}", endpoint.refusal_details());
    assert_eq!(answer.body["token_type"], "DPoP");
    assert_eq!(answer.body["expires_in"], 3600);
    let token = answer.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        endpoint.tokens().binding(&token).unwrap().jkt,
        Some(key.jkt())
    );
    assert_eq!(endpoint.issued_jkts(), [Some(key.jkt())]);
    assert_eq!((endpoint.requests(), endpoint.issued()), (1, 1));

    // The API takes it with this key's proofs, not another's.
    let url = provider.api.url("/items");
    let answer = get(&url, &token, &key.proof("GET", &url, Some(&token))).await;
    assert_eq!(answer.status, 200, "{:?}", provider.api.refusal_details());
    let other = DpopKey::es256();
    let answer = get(&url, &token, &other.proof("GET", &url, Some(&token))).await;
    assert_eq!(answer.status, 401);
    assert_eq!(provider.api.refusals(), ["thumbprint"]);
}

#[tokio::test]
async fn the_token_endpoint_takes_client_secret_basic() {
    let key = DpopKey::generate(KeyKind::Ed25519);
    let endpoint = DpopTokenEndpoint::start(TokenEndpointConfig {
        expires_in: 120,
        ..TokenEndpointConfig::default()
    })
    .await;
    let send = |secret: &str| {
        reqwest::Client::new()
            .post(endpoint.token_url())
            .basic_auth(endpoint.client_id(), Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .header("dpop", key.proof("POST", &endpoint.token_url(), None))
            .send()
    };
    let good = answer(send(&endpoint.client_secret()).await.unwrap()).await;
    assert_eq!(good.status, 200, "{:?}", endpoint.refusal_details());
    assert_eq!(good.body["expires_in"], 120);
    let bad = answer(send("wrong").await.unwrap()).await;
    assert_eq!(
        (bad.status, bad.body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(endpoint.refusals(), ["client"]);
}

#[tokio::test]
async fn the_token_endpoint_challenges_for_a_nonce_with_a_400() {
    let key = DpopKey::es256();
    let endpoint = DpopTokenEndpoint::start(TokenEndpointConfig {
        nonce: NoncePolicy::required(),
        ..TokenEndpointConfig::default()
    })
    .await;
    let url = endpoint.token_url();
    let answer = token_request(&endpoint, &[&key.proof("POST", &url, None)]).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["error"], "use_dpop_nonce");
    assert!(answer.body["error_description"].is_string());
    let nonce = answer.nonce.expect("DPoP-Nonce with the challenge");
    assert_eq!(endpoint.nonce_challenges(), 1);

    let proof = key.proof_of(&claims("POST", &url, None, Some(&nonce)));
    let answer = token_request(&endpoint, &[&proof]).await;
    assert_eq!(answer.status, 200, "{:?}", endpoint.refusal_details());
    assert_eq!(answer.nonce, Some(nonce));
    assert!(endpoint.refusals().is_empty());
}

#[tokio::test]
async fn the_token_endpoint_refuses_a_bad_proof_with_invalid_dpop_proof() {
    let key = DpopKey::es256();
    let endpoint = DpopTokenEndpoint::start(TokenEndpointConfig::default()).await;
    let url = endpoint.token_url();
    let bad = [
        key.proof("GET", &url, None),
        key.proof("POST", &format!("{url}/elsewhere"), None),
        DpopKey::es256().sign(&key.header(), &claims("POST", &url, None, None)),
    ];
    for proof in &bad {
        let answer = token_request(&endpoint, &[proof]).await;
        assert_eq!(answer.status, 400);
        assert_eq!(answer.body["error"], "invalid_dpop_proof");
    }
    // No proof at all: refused by default.
    let answer = token_request(&endpoint, &[]).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    assert_eq!(
        endpoint.refusals(),
        ["htm", "htu", "signature", "dpop header"]
    );
    assert_eq!(endpoint.issued(), 0);
}

#[tokio::test]
async fn without_a_proof_the_token_endpoint_can_issue_a_bearer_token() {
    let provider = DpopProvider::start(
        TokenEndpointConfig {
            bearer_without_proof: true,
            ..TokenEndpointConfig::default()
        },
        ResourceServerConfig::default(),
    )
    .await;
    let answer = token_request(&provider.token, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["token_type"], "Bearer");
    let token = answer.body["access_token"].as_str().unwrap();
    assert_eq!(provider.token.issued_jkts(), [None]);
    let url = provider.api.url("/items");
    let answer = call("GET", &url, Some(&format!("Bearer {token}")), &[]).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn any_client_mode_issues_for_any_grant_and_revoked_tokens_are_unknown() {
    let key = DpopKey::generate(KeyKind::Ed25519);
    let provider = DpopProvider::start(
        TokenEndpointConfig {
            any_client: true,
            nonce: NoncePolicy::required(),
            ..TokenEndpointConfig::default()
        },
        ResourceServerConfig::default(),
    )
    .await;
    let endpoint = &provider.token;
    let url = endpoint.token_url();
    let post = |proof: String| {
        reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=urn%3Aexample%3Aany&scope=read")
            .header("dpop", proof)
            .send()
    };

    // A bad proof's refusal carries the nonce too.
    let bad = answer(
        post(key.proof("POST", "http://127.0.0.1:1/token", None))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (bad.status, bad.body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    let nonce = bad.nonce.expect("DPoP-Nonce on every response");

    let proof = key.proof_of(&claims("POST", &url, None, Some(&nonce)));
    let good = answer(post(proof).await.unwrap()).await;
    assert_eq!(good.status, 200, "{:?}", endpoint.refusal_details());
    assert_eq!(good.body["scope"], "read");
    assert_eq!(
        endpoint.last_form(),
        [
            ("grant_type".to_owned(), "urn:example:any".to_owned()),
            ("scope".to_owned(), "read".to_owned())
        ]
    );
    let token = good.body["access_token"].as_str().unwrap();

    let api_url = provider.api.url("/items");
    let answer = get(&api_url, token, &key.proof("GET", &api_url, Some(token))).await;
    assert_eq!(answer.status, 200, "{:?}", provider.api.refusal_details());
    endpoint.tokens().revoke_all();
    let answer = get(&api_url, token, &key.proof("GET", &api_url, Some(token))).await;
    assert_eq!(answer.status, 401);
    assert_eq!(provider.api.refusals(), ["unknown token"]);
}
