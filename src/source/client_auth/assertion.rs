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
    check_length(algorithm, &signature)?;
    jwt.push('.');
    jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(jwt)
}

/// Signs `client_secret_jwt` assertions: HS256 keyed with the client secret.
struct SecretSigner {
    key: hmac::Key,
}

/// Refuses a signature of the wrong shape for `algorithm`, rather than send
/// an assertion the server can only refuse: ES256 and EdDSA signatures are
/// 64 bytes (ES256's `r || s`; KMS APIs often return DER instead), RSA ones
/// at least 256 (2048-bit keys), HS256 tags 32.
fn check_length(algorithm: SigningAlgorithm, signature: &[u8]) -> Result<(), SignError> {
    let fits = match algorithm {
        SigningAlgorithm::ES256 | SigningAlgorithm::EdDSA => signature.len() == 64,
        SigningAlgorithm::RS256 | SigningAlgorithm::PS256 => signature.len() >= 256,
        SigningAlgorithm::HS256 => signature.len() == 32,
    };
    if fits {
        return Ok(());
    }
    let hint = match algorithm {
        SigningAlgorithm::ES256 if signature.first() == Some(&0x30) => {
            " (it looks DER-encoded: JWS wants the 64 bytes r || s)"
        }
        SigningAlgorithm::RS256 | SigningAlgorithm::PS256 => {
            " (an RSA signature is as long as the modulus, 2048 bits at least; \
             a leading zero byte may have been dropped)"
        }
        _ => "",
    };
    Err(SignError::new(format!(
        "the signer returned a {}-byte {algorithm} signature{hint}",
        signature.len()
    )))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_of_the_wrong_shape_are_refused() {
        use SigningAlgorithm::*;
        // (algorithm, a length that fits, one that does not)
        let cases = [
            (ES256, 64, 63),
            (EdDSA, 64, 65),
            (RS256, 256, 255),
            (PS256, 512, 128),
            (HS256, 32, 31),
        ];
        for (algorithm, fits, does_not) in cases {
            assert!(
                check_length(algorithm, &vec![1; fits]).is_ok(),
                "{algorithm}"
            );
            assert!(
                check_length(algorithm, &vec![1; does_not]).is_err(),
                "{algorithm}"
            );
        }
        assert!(check_length(ES256, &[]).is_err());
        let der = check_length(ES256, &[0x30; 71]).unwrap_err().to_string();
        assert!(der.contains("DER"), "{der}");
    }
}
