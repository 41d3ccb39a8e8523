//! A client assertion (RFC 7523 section 2.2): a JWT the client signs to
//! prove who it is, made fresh for every token request.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::signer::{AssertionSigner, SignError, SignFuture, SigningAlgorithm};
use crate::source::client_credentials::ClientSecret;

/// The `client_assertion_type` of a JWT assertion (RFC 7523 section 2.2).
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: 60 seconds from when it is made. Long
/// enough for clock skew and a slow exchange, short enough that a leaked
/// one is soon worthless; the `jti` makes it single-use at servers that
/// keep track.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: &'a str,
    iat: u64,
    exp: u64,
}

/// A fresh assertion by `client_id` for `audience`, signed by `signer`:
/// `iss` and `sub` the client id, `iat` now, `exp` [`ASSERTION_LIFETIME`]
/// later, a random 128-bit `jti`; `kid` in the header when the signer has one.
pub(crate) async fn make(
    signer: &dyn AssertionSigner,
    client_id: &str,
    audience: &str,
) -> Result<String, SignError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti)
        .map_err(|_| SignError::transient("no random bytes for the assertion's jti"))?;
    let jti = URL_SAFE_NO_PAD.encode(jti);
    let algorithm = signer.algorithm();
    let header = Header {
        alg: algorithm.as_str(),
        typ: "JWT",
        kid: signer.key_id(),
    };
    let claims = Claims {
        iss: client_id,
        sub: client_id,
        aud: audience,
        jti: &jti,
        iat: now,
        exp: now + ASSERTION_LIFETIME.as_secs(),
    };
    // Plain strings and numbers: serialising cannot fail.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let claims = serde_json::to_vec(&claims).unwrap_or_default();
    let mut jwt = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = signer.sign(jwt.as_bytes()).await?;
    if signature.is_empty() {
        return Err(SignError::new(format!(
            "the signer returned an empty {algorithm} signature"
        )));
    }
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(jwt)
}

/// Signs `client_secret_jwt` assertions: HS256 keyed with the client secret.
struct SecretSigner {
    key: hmac::Key,
}

/// The signer of `client_secret_jwt` assertions made with `secret`.
pub(crate) fn secret_signer(secret: &ClientSecret) -> Arc<dyn AssertionSigner> {
    Arc::new(SecretSigner {
        key: hmac::Key::new(hmac::HMAC_SHA256, secret.secret().as_bytes()),
    })
}

impl AssertionSigner for SecretSigner {
    fn algorithm(&self) -> SigningAlgorithm {
        SigningAlgorithm::HS256
    }

    fn key_id(&self) -> Option<&str> {
        None
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a> {
        let tag = hmac::sign(&self.key, message).as_ref().to_vec();
        Box::pin(std::future::ready(Ok(tag)))
    }
}
