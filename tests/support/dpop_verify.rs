//! What the DPoP servers of `dpop.rs` check of one proof on its own
//! (RFC 9449 §4.2, §4.3), independently of the library under test, with
//! jsonwebtoken and aws-lc-rs. What a server then checks it against (its
//! nonce, the `jti`s it has seen, the key each token is bound to) is in
//! `dpop_state.rs`. The demo's provider loads this file too.
//!
//! A proof passes [`verify_proof`] when it is a compact JWS whose header has
//! `typ` exactly `dpop+jwt`, `alg` [`ES256` or `EdDSA`](SUPPORTED_ALGS), no
//! `crit`, and a `jwk` that is a public key of the kind `alg` names (P-256
//! for ES256, Ed25519 for EdDSA) with no private member; whose signature
//! verifies against that `jwk`; and whose claims have a non-empty string
//! `jti`, `htm` equal to the request method, `htu` equal to the request URL
//! (both normalized, see [`normalize_htu`]; the proof's `htu` carrying no
//! query or fragment), a numeric `iat` within the window of now, and, when
//! an access token is presented, `ath` equal to [`ath`] of it.
//!
//! Every refusal has a short, stable [`ProofError::reason`] tests can match
//! (`"signature"`, `"htu"`, `"ath mismatch"`, ...) and a description.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// The `typ` a DPoP proof's header must carry (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

/// The `alg`s accepted, as a `WWW-Authenticate` `algs` value lists them.
pub const SUPPORTED_ALGS: [&str; 2] = ["ES256", "EdDSA"];

/// The header a proof travels in.
pub const DPOP_HEADER: &str = "dpop";

/// JWK members that only a private (or symmetric) key has (RFC 7518 §6).
pub const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof, or the request carrying it, was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofError {
    /// A short tag that names the check that failed: `"dpop header"`,
    /// `"malformed"`, `"typ"`, `"alg"`, `"crit"`, `"jwk"`, `"private jwk"`,
    /// `"signature"`, `"jti"`, `"htm"`, `"htu"`, `"iat"`, `"ath"` (absent or
    /// not a string), `"ath mismatch"`, `"nonce"` (not a string); the
    /// servers add their own (`"jti replayed"`, `"thumbprint"`, ...).
    pub reason: &'static str,
    /// What exactly was wrong, for `error_description`.
    pub description: String,
}

/// A refusal with `reason` and a description.
pub fn refuse(reason: &'static str, description: impl Into<String>) -> ProofError {
    ProofError {
        reason,
        description: description.into(),
    }
}

/// What the request a proof came with requires of it.
#[derive(Clone, Debug)]
pub struct Expected<'a> {
    /// The request method, which `htm` must equal.
    pub method: &'a str,
    /// The request URL (a query is ignored), which `htu` must equal once both
    /// are normalized.
    pub url: &'a str,
    /// How far `iat` may be from now, either way.
    pub iat_window: Duration,
    /// The access token the request presents, whose [`ath`] the proof must
    /// carry; `None` at a token endpoint, where `ath` is not checked.
    pub access_token: Option<&'a str>,
}

/// A proof that passed [`verify_proof`].
#[derive(Clone, Debug)]
pub struct Proof {
    /// The JOSE header.
    pub header: Value,
    /// The claims.
    pub claims: Value,
    /// The RFC 7638 SHA-256 thumbprint of the header's `jwk`, base64url:
    /// what `cnf.jkt` of a token bound to this key is.
    pub jkt: String,
    /// The `jti` claim.
    pub jti: String,
    /// The `nonce` claim, if any (checked by the server, which knows its
    /// nonce).
    pub nonce: Option<String>,
}

/// base64url without padding of SHA-256 of `input`.
pub fn sha256_b64url(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, input))
}

/// The `ath` for an access token: base64url SHA-256 of its ASCII text
/// (RFC 9449 §4.2).
pub fn ath(access_token: &str) -> String {
    sha256_b64url(access_token.as_bytes())
}

/// The RFC 7638 JWK SHA-256 thumbprint, base64url: SHA-256 of the required
/// members of the key's type, in lexicographic order, with no whitespace.
pub fn thumbprint(jwk: &Value) -> Result<String, ProofError> {
    let members: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        Some("RSA") => &["e", "kty", "n"],
        Some(other) => return Err(refuse("jwk", format!("jwk kty {other:?} not supported"))),
        None => return Err(refuse("jwk", "jwk kty missing")),
    };
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = match jwk.get(*name) {
            Some(Value::String(value)) => value,
            _ => return Err(refuse("jwk", format!("jwk member {name} missing"))),
        };
        if i > 0 {
            canonical.push(',');
        }
        // serde_json writes a string as JSON does, escapes and all.
        canonical.push_str(&format!(
            "{}:{}",
            Value::from(*name),
            Value::from(value.as_str())
        ));
    }
    canonical.push('}');
    Ok(sha256_b64url(canonical.as_bytes()))
}

/// An absolute `http`/`https` URL as DPoP compares it (RFC 9449 §4.3 with
/// RFC 3986 §6.2.2–6.2.3): query and fragment dropped, scheme and host
/// lowercased, the scheme's default port dropped, an empty path made `/`.
pub fn normalize_htu(url: &str) -> Result<String, String> {
    let url = url.split('#').next().unwrap_or_default();
    let url = url.split('?').next().unwrap_or_default();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return Err(format!("scheme {scheme:?} is not http or https")),
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(format!("{url:?} carries userinfo"));
    }
    // The port follows the last colon, unless that colon is inside an IPv6
    // literal's brackets.
    let (host, port) = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => {
            (&authority[..colon], &authority[colon + 1..])
        }
        _ => (authority, ""),
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{url:?} has a bad port"));
    }
    let host = host.to_ascii_lowercase();
    Ok(match port {
        "" => format!("{scheme}://{host}{path}"),
        port if port == default_port => format!("{scheme}://{host}{path}"),
        port => format!("{scheme}://{host}:{port}{path}"),
    })
}

/// Now, in seconds since the epoch.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// Decodes one base64url segment of a compact JWS as a JSON object.
fn json_segment(segment: &str, what: &str) -> Result<Value, ProofError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .filter(Value::is_object)
        .ok_or_else(|| {
            refuse(
                "malformed",
                format!("the proof's {what} is not base64url JSON"),
            )
        })
}

/// One base64url member of a JWK, decoded, of exactly `len` bytes.
fn key_bytes(jwk: &Value, name: &str, len: usize) -> Result<(), ProofError> {
    let value = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| refuse("jwk", format!("jwk member {name} missing")))?;
    match URL_SAFE_NO_PAD.decode(value) {
        Ok(bytes) if bytes.len() == len => Ok(()),
        Ok(bytes) => Err(refuse(
            "jwk",
            format!("jwk {name} is {} bytes, not {len}", bytes.len()),
        )),
        Err(_) => Err(refuse("jwk", format!("jwk {name} is not base64url"))),
    }
}

/// The public key a proof's `jwk` is, as jsonwebtoken verifies with it,
/// after checking it is of the kind `alg` names and public.
fn public_key(jwk: &Value, alg: Algorithm) -> Result<DecodingKey, ProofError> {
    let Some(members) = jwk.as_object() else {
        return Err(refuse("jwk", "header jwk is not an object"));
    };
    if let Some(private) = PRIVATE_JWK_MEMBERS
        .iter()
        .find(|m| members.contains_key(**m))
    {
        return Err(refuse(
            "private jwk",
            format!("header jwk has the private member {private:?}"),
        ));
    }
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    let (kty, crv) = match alg {
        Algorithm::ES256 => ("EC", "P-256"),
        _ => ("OKP", "Ed25519"),
    };
    if member("kty") != Some(kty) || member("crv") != Some(crv) {
        return Err(refuse(
            "jwk",
            format!(
                "header jwk kty {:?} crv {:?} is not a {kty} {crv} key, as alg {alg:?} needs",
                jwk.get("kty"),
                jwk.get("crv")
            ),
        ));
    }
    key_bytes(jwk, "x", 32)?;
    let x = member("x").unwrap_or_default();
    let key = if alg == Algorithm::ES256 {
        key_bytes(jwk, "y", 32)?;
        DecodingKey::from_ec_components(x, member("y").unwrap_or_default())
    } else {
        DecodingKey::from_ed_components(x)
    };
    key.map_err(|err| refuse("jwk", format!("header jwk unreadable: {err}")))
}

/// A claim that must be a non-empty string.
fn string_claim(claims: &Value, name: &'static str) -> Result<String, ProofError> {
    match claims.get(name) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value.clone()),
        Some(value) => Err(refuse(
            name,
            format!("{name} {value} is not a non-empty string"),
        )),
        None => Err(refuse(name, format!("{name} missing"))),
    }
}

/// Checks everything about `jws` that needs no memory of earlier requests
/// (see the module docs); the proof if it passes.
pub fn verify_proof(jws: &str, expected: &Expected<'_>) -> Result<Proof, ProofError> {
    let segments: Vec<&str> = jws.split('.').collect();
    if segments.len() != 3 {
        return Err(refuse(
            "malformed",
            format!(
                "the proof has {} segments (a compact JWS has 3)",
                segments.len()
            ),
        ));
    }
    let header = json_segment(segments[0], "header")?;
    let claims = json_segment(segments[1], "payload")?;

    match header.get("typ") {
        Some(Value::String(typ)) if typ == DPOP_TYP => {}
        Some(typ) => return Err(refuse("typ", format!("typ {typ} (expected {DPOP_TYP:?})"))),
        None => return Err(refuse("typ", "typ missing")),
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) if alg == "ES256" => Algorithm::ES256,
        Some(Value::String(alg)) if alg == "EdDSA" => Algorithm::EdDSA,
        Some(alg) => {
            return Err(refuse(
                "alg",
                format!(
                    "alg {alg} refused (accepted: {})",
                    SUPPORTED_ALGS.join(", ")
                ),
            ));
        }
        None => return Err(refuse("alg", "alg missing")),
    };
    if let Some(crit) = header.get("crit") {
        return Err(refuse("crit", format!("crit {crit} not understood")));
    }
    let jwk = header
        .get("jwk")
        .ok_or_else(|| refuse("jwk", "header jwk missing"))?;
    let key = public_key(jwk, alg)?;
    let jkt = thumbprint(jwk)?;

    let message = format!("{}.{}", segments[0], segments[1]);
    let verified = jsonwebtoken::crypto::verify(segments[2], message.as_bytes(), &key, alg)
        .map_err(|err| refuse("signature", format!("signature unreadable: {err}")))?;
    if !verified {
        return Err(refuse(
            "signature",
            "signature does not verify with the header jwk",
        ));
    }

    let jti = string_claim(&claims, "jti")?;
    let htm = string_claim(&claims, "htm")?;
    if htm != expected.method {
        return Err(refuse(
            "htm",
            format!(
                "htm {htm:?} is not the request method {:?}",
                expected.method
            ),
        ));
    }
    let htu = string_claim(&claims, "htu")?;
    if htu.contains(['?', '#']) {
        return Err(refuse(
            "htu",
            format!("htu {htu:?} carries a query or fragment (RFC 9449 section 4.2)"),
        ));
    }
    let request_url = normalize_htu(expected.url)
        .map_err(|err| refuse("htu", format!("request URL unusable: {err}")))?;
    match normalize_htu(&htu) {
        Ok(normalized) if normalized == request_url => {}
        Ok(normalized) => {
            return Err(refuse(
                "htu",
                format!("htu {htu:?} ({normalized}) is not the request URL {request_url}"),
            ));
        }
        Err(err) => return Err(refuse("htu", format!("htu {htu:?}: {err}"))),
    }

    let iat = claims.get("iat").and_then(Value::as_f64).ok_or_else(|| {
        refuse(
            "iat",
            format!("iat {:?} is not a NumericDate", claims.get("iat")),
        )
    })?;
    let off = iat - now_secs();
    if off.abs() > expected.iat_window.as_secs_f64() {
        return Err(refuse(
            "iat",
            format!(
                "iat {iat} is {:.0}s in the {} (window {}s)",
                off.abs(),
                if off < 0.0 { "past" } else { "future" },
                expected.iat_window.as_secs()
            ),
        ));
    }

    if let Some(token) = expected.access_token {
        let sent = match claims.get("ath") {
            Some(Value::String(sent)) => sent,
            Some(other) => return Err(refuse("ath", format!("ath {other} is not a string"))),
            None => return Err(refuse("ath", "ath missing (an access token is presented)")),
        };
        if *sent != ath(token) {
            return Err(refuse(
                "ath mismatch",
                format!("ath {sent:?} is not SHA-256 of the presented access token"),
            ));
        }
    }

    let nonce = match claims.get("nonce") {
        None => None,
        Some(Value::String(nonce)) => Some(nonce.clone()),
        Some(other) => return Err(refuse("nonce", format!("nonce {other} is not a string"))),
    };
    Ok(Proof {
        header,
        claims,
        jkt,
        jti,
        nonce,
    })
}
