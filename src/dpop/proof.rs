//! A DPoP proof (RFC 9449 section 4.2): a JWS, signed by the client's key,
//! that names one request (`htm`, `htu`), when it was made (`iat`), a
//! unique `jti`, and, for an API request, the access token it goes with
//! (`ath`). Written straight into the one buffer the header value keeps.

use std::fmt;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::write::EncoderWriter;
use bytes::Bytes;
use http::{HeaderValue, Method};

use super::key::{DpopKey, SIGNATURE_BYTES};
use super::nonce::unbracketed;
use crate::request::Target;

/// Why no DPoP proof could be made for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// The request's URI names no scheme or host. A proof names the URI it
    /// is for (`htu`), so it needs an absolute one; a relative URI, such as
    /// a tonic request's before its channel adds the origin, cannot be
    /// proven.
    RelativeUri,
    /// The request's type does not say its method
    /// ([`AuthRequest::method`](crate::request::AuthRequest::method)), which
    /// a proof names (`htm`).
    NoMethod,
    /// The key could not sign the proof, or no random bytes could be had
    /// for its `jti`.
    SigningFailed,
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProofError::RelativeUri => {
                "no DPoP proof can be made for a request whose URI names no scheme or host: \
                 a proof names the absolute URI it is for, so a relative URI (such as tonic's, \
                 before its channel adds the origin) cannot be proven"
            }
            ProofError::NoMethod => {
                "no DPoP proof can be made for a request whose type does not say its method \
                 (AuthRequest::method)"
            }
            ProofError::SigningFailed => "the DPoP proof could not be signed",
        })
    }
}

impl std::error::Error for ProofError {}

/// The `ath` claim: base64url(SHA-256(access token)), 43 ASCII bytes,
/// worked out once per token.
#[derive(Clone, Copy)]
pub(crate) struct Ath([u8; ATH_LEN]);

const ATH_LEN: usize = 43;

impl Ath {
    pub(crate) fn of(access_token: &str) -> Ath {
        let mut ath = [0; ATH_LEN];
        let written =
            URL_SAFE_NO_PAD.encode_slice(digest(&SHA256, access_token.as_bytes()), &mut ath);
        debug_assert_eq!(written, Ok(ATH_LEN));
        Ath(ath)
    }

    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        // base64url is ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for Ath {
    // Derived from the access token: as good as a secret for matching it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ath(..)")
    }
}

/// The `htu` claim for a target: scheme and host lowercased, the port only
/// when it is not the scheme's default, the path without query or
/// fragment (RFC 9449 section 4.2; RFC 3986 section 6.2.2.1 and 6.2.3).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Htu<'a> {
    scheme: &'a str,
    /// Without brackets.
    host: &'a str,
    ipv6: bool,
    port: Option<u16>,
    path: &'a str,
}

impl<'a> Htu<'a> {
    /// `None` when the target has no scheme or host.
    pub(crate) fn of(target: &Target<'a>) -> Option<Htu<'a>> {
        let scheme = target.scheme()?;
        let host = unbracketed(target.host()?);
        let default_port = Target::new(Some(scheme), None, None).port();
        let port = target.explicit_port().filter(|&p| Some(p) != default_port);
        let path = match target.path() {
            "" => "/",
            path => path,
        };
        Some(Htu {
            scheme,
            host,
            ipv6: host.contains(':'),
            port,
            path,
        })
    }

    fn write(&self, out: &mut impl Sink) {
        json_escaped(self.scheme, Case::Lower, out);
        out.put(b"://");
        if self.ipv6 {
            out.put(b"[");
        }
        json_escaped(self.host, Case::Lower, out);
        if self.ipv6 {
            out.put(b"]");
        }
        if let Some(port) = self.port {
            out.put(b":");
            out.put(Decimal::of(port.into()).as_bytes());
        }
        json_escaped(self.path, Case::Keep, out);
    }
}

/// The claims of one proof.
pub(crate) struct Claims<'a> {
    /// 16 random bytes, base64url.
    jti: [u8; JTI_LEN],
    htm: &'a Method,
    htu: Htu<'a>,
    iat: u64,
    ath: Option<&'a Ath>,
    nonce: Option<&'a str>,
}

const JTI_LEN: usize = 22;

impl<'a> Claims<'a> {
    /// Claims made now, with a fresh random `jti`.
    pub(crate) fn new(
        htm: &'a Method,
        htu: Htu<'a>,
        ath: Option<&'a Ath>,
        nonce: Option<&'a str>,
    ) -> Result<Claims<'a>, ProofError> {
        let mut random = [0u8; 16];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| ProofError::SigningFailed)?;
        let mut jti = [0; JTI_LEN];
        let written = URL_SAFE_NO_PAD.encode_slice(random, &mut jti);
        debug_assert_eq!(written, Ok(JTI_LEN));
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Ok(Claims {
            jti,
            htm,
            htu,
            iat,
            ath,
            nonce,
        })
    }

    /// The payload JSON, piece by piece. Measured once and written once
    /// by the same code, so the two cannot disagree.
    fn write(&self, out: &mut impl Sink) {
        out.put(b"{\"jti\":\"");
        out.put(&self.jti);
        out.put(b"\",\"htm\":\"");
        json_escaped(self.htm.as_str(), Case::Keep, out);
        out.put(b"\",\"htu\":\"");
        self.htu.write(out);
        out.put(b"\",\"iat\":");
        out.put(Decimal::of(self.iat).as_bytes());
        if let Some(ath) = self.ath {
            out.put(b",\"ath\":\"");
            out.put(&ath.0);
            out.put(b"\"");
        }
        if let Some(nonce) = self.nonce {
            out.put(b",\"nonce\":\"");
            json_escaped(nonce, Case::Keep, out);
            out.put(b"\"");
        }
        out.put(b"}");
    }

    /// The signed proof, as the `DPoP` header value (marked sensitive: it
    /// is a credential for a minute or so).
    pub(crate) fn sign(&self, key: &DpopKey) -> Result<HeaderValue, ProofError> {
        let proof = Bytes::from(self.sign_into_vec(key)?);
        let mut value =
            HeaderValue::from_maybe_shared(proof).map_err(|_| ProofError::SigningFailed)?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// `header.payload.signature` in one allocation of exactly its length,
    /// so that [`Bytes`] takes it over without a copy.
    fn sign_into_vec(&self, key: &DpopKey) -> Result<Vec<u8>, ProofError> {
        let header = key.proof_header().as_bytes();
        let mut measure = Measure(0);
        self.write(&mut measure);
        let signing_input_len = header.len() + 1 + base64_len(measure.0);
        let len = signing_input_len + 1 + base64_len(SIGNATURE_BYTES);

        let mut proof = Vec::with_capacity(len);
        proof.extend_from_slice(header);
        proof.push(b'.');
        let encoded = {
            let mut payload = Base64Into {
                encoder: EncoderWriter::new(&mut proof, &URL_SAFE_NO_PAD),
                failed: false,
            };
            self.write(&mut payload);
            !payload.failed && payload.encoder.finish().is_ok()
        };
        // Writing into a Vec cannot fail; should it, no proof is better
        // than a wrong one.
        if !encoded {
            return Err(ProofError::SigningFailed);
        }
        debug_assert_eq!(proof.len(), signing_input_len);

        let signature = key.sign(&proof).ok_or(ProofError::SigningFailed)?;
        let signature = signature.as_ref();
        if signature.len() != SIGNATURE_BYTES {
            return Err(ProofError::SigningFailed);
        }
        proof.push(b'.');
        let at = proof.len();
        proof.resize(len, 0);
        URL_SAFE_NO_PAD
            .encode_slice(signature, &mut proof[at..])
            .map_err(|_| ProofError::SigningFailed)?;
        debug_assert_eq!((proof.len(), proof.capacity()), (len, len));
        Ok(proof)
    }
}

/// The length of `n` bytes in base64 without padding.
const fn base64_len(n: usize) -> usize {
    n / 3 * 4
        + match n % 3 {
            0 => 0,
            1 => 2,
            _ => 3,
        }
}

/// Where the payload's pieces go: measured, then encoded.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

struct Measure(usize);

impl Sink for Measure {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

struct Base64Into<'v> {
    // Its buffer is on the stack: the pieces go through it into the Vec.
    encoder: EncoderWriter<'static, base64::engine::GeneralPurpose, &'v mut Vec<u8>>,
    failed: bool,
}

impl Sink for Base64Into<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.failed |= self.encoder.write_all(bytes).is_err();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
}

/// `text` as the inside of a JSON string: `"` and `\` escaped, control
/// characters as `\u00XX`. Methods, URIs and nonces should hold none of
/// them, but a proof must be valid JSON whatever a request holds.
fn json_escaped(text: &str, case: Case, out: &mut impl Sink) {
    let bytes = text.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => *b"\\u0022",
            b'\\' => *b"\\u005c",
            0x00..=0x1F => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xF)],
                ]
            }
            _ => continue,
        };
        put_cased(&bytes[plain..i], case, out);
        out.put(&escape);
        plain = i + 1;
    }
    put_cased(&bytes[plain..], case, out);
}

fn put_cased(bytes: &[u8], case: Case, out: &mut impl Sink) {
    if case == Case::Keep || !bytes.iter().any(u8::is_ascii_uppercase) {
        return out.put(bytes);
    }
    // Through a small stack buffer: no allocation for a long host.
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(buf.len()) {
        let lower = &mut buf[..chunk.len()];
        lower.copy_from_slice(chunk);
        lower.make_ascii_lowercase();
        out.put(lower);
    }
}

/// A number in decimal, on the stack.
struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    fn of(mut n: u64) -> Decimal {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { digits, start }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::DpopAlgorithm;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use serde_json::{Value, json};

    fn target(uri: &http::Uri) -> Target<'_> {
        Target::new(uri.scheme_str(), uri.host(), uri.port_u16()).with_path(uri.path())
    }

    fn htu_of(uri: &str) -> String {
        let uri: http::Uri = uri.parse().unwrap();
        let mut json = Vec::new();
        Htu::of(&target(&uri))
            .unwrap()
            .write(&mut Collect(&mut json));
        String::from_utf8(json).unwrap()
    }

    struct Collect<'a>(&'a mut Vec<u8>);

    impl Sink for Collect<'_> {
        fn put(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }

    fn keys() -> [DpopKey; 2] {
        [
            DpopKey::generate().unwrap(),
            DpopKey::generate_with(DpopAlgorithm::EdDsa).unwrap(),
        ]
    }

    /// Checks the proof with jsonwebtoken, against the key in its own
    /// header, as a server does; returns the header and the claims.
    fn verify(proof: &str, key: &DpopKey) -> (Value, Value) {
        let header = jsonwebtoken::decode_header(proof).unwrap();
        let alg = match key.algorithm() {
            DpopAlgorithm::Es256 => Algorithm::ES256,
            DpopAlgorithm::EdDsa => Algorithm::EdDSA,
        };
        assert_eq!(header.alg, alg);
        assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
        let jwk = header.jwk.expect("the header carries the public key");
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Value>(proof, &decoding, &validation)
            .unwrap()
            .claims;

        // The header, exactly: no member more or less, in this order.
        let raw_header = proof.split('.').next().unwrap();
        let raw_header = String::from_utf8(URL_SAFE_NO_PAD.decode(raw_header).unwrap()).unwrap();
        assert_eq!(
            raw_header,
            format!(
                r#"{{"typ":"dpop+jwt","alg":"{}","jwk":{}}}"#,
                key.algorithm(),
                key.public_jwk()
            )
        );
        (serde_json::from_str(&raw_header).unwrap(), claims)
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn proof_for(
        key: &DpopKey,
        method: &Method,
        uri: &str,
        ath: Option<&Ath>,
        nonce: Option<&str>,
    ) -> String {
        let uri: http::Uri = uri.parse().unwrap();
        let htu = Htu::of(&target(&uri)).unwrap();
        let value = Claims::new(method, htu, ath, nonce)
            .unwrap()
            .sign(key)
            .unwrap();
        assert!(value.is_sensitive());
        value.to_str().unwrap().to_owned()
    }

    #[test]
    fn proofs_of_both_algorithms_verify_with_exact_header_and_claims() {
        let ath = Ath::of("the-access-token");
        for key in keys() {
            for (ath, nonce) in [
                (None, None),
                (Some(&ath), None),
                (None, Some("server-nonce_1")),
                (Some(&ath), Some("n")),
            ] {
                let before = now();
                let proof = proof_for(
                    &key,
                    &Method::POST,
                    "https://Login.Example.com/oauth2/token?x=1",
                    ath,
                    nonce,
                );
                let after = now();
                let (header, claims) = verify(&proof, &key);
                let jwk: Value = serde_json::from_str(key.public_jwk()).unwrap();
                assert_eq!(
                    header,
                    json!({"typ": "dpop+jwt", "alg": key.algorithm().as_str(), "jwk": jwk})
                );

                let iat = claims["iat"].as_u64().unwrap();
                assert!((before..=after).contains(&iat), "{iat}");
                let jti = claims["jti"].as_str().unwrap();
                assert_eq!(URL_SAFE_NO_PAD.decode(jti).unwrap().len(), 16);
                let mut expected = json!({
                    "jti": jti,
                    "htm": "POST",
                    "htu": "https://login.example.com/oauth2/token",
                    "iat": iat,
                });
                if let Some(ath) = ath {
                    expected["ath"] = ath.as_str().into();
                }
                if let Some(nonce) = nonce {
                    expected["nonce"] = nonce.into();
                }
                assert_eq!(claims, expected);
            }
        }
    }

    #[test]
    fn claims_appear_in_a_fixed_order() {
        let key = DpopKey::generate().unwrap();
        let ath = Ath::of("t");
        let proof = proof_for(&key, &Method::GET, "http://a/", Some(&ath), Some("n"));
        let payload = proof.split('.').nth(1).unwrap();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let v: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(
            payload,
            format!(
                r#"{{"jti":"{}","htm":"GET","htu":"http://a/","iat":{},"ath":"{}","nonce":"n"}}"#,
                v["jti"].as_str().unwrap(),
                v["iat"],
                ath.as_str()
            )
        );
    }

    #[test]
    fn htu_is_normalised() {
        for (uri, htu) in [
            (
                "https://api.example.com/v1/orders",
                "https://api.example.com/v1/orders",
            ),
            (
                "HTTPS://API.Example.COM/V1/Orders",
                "https://api.example.com/V1/Orders",
            ),
            (
                "https://api.example.com/p?q=1&r=2",
                "https://api.example.com/p",
            ),
            (
                "https://api.example.com/p#frag",
                "https://api.example.com/p",
            ),
            ("https://api.example.com", "https://api.example.com/"),
            ("https://api.example.com:443/p", "https://api.example.com/p"),
            ("http://api.example.com:80/p", "http://api.example.com/p"),
            (
                "https://api.example.com:8443/p",
                "https://api.example.com:8443/p",
            ),
            (
                "http://api.example.com:443/p",
                "http://api.example.com:443/p",
            ),
            (
                "https://api.example.com:80/p",
                "https://api.example.com:80/p",
            ),
            ("https://[::1]:8443/p", "https://[::1]:8443/p"),
            ("https://[::1]/p", "https://[::1]/p"),
            ("https://[FE80::AB]:443/p", "https://[fe80::ab]/p"),
            ("https://127.0.0.1:9/", "https://127.0.0.1:9/"),
            (
                "grpc://svc:50051/pkg.Svc/Call",
                "grpc://svc:50051/pkg.Svc/Call",
            ),
            ("https://h/a%20b/%7E", "https://h/a%20b/%7E"),
        ] {
            assert_eq!(htu_of(uri), htu, "{uri}");
        }
    }

    #[test]
    fn htu_from_a_url_host_and_a_bare_ipv6_host() {
        // `url::Url::host_str` gives an IPv6 host in brackets, as
        // `http::Uri` does; a hand-made target may give it bare.
        for host in ["[::1]", "::1"] {
            let target = Target::new(Some("https"), Some(host), Some(8443)).with_path("/p");
            let mut json = Vec::new();
            Htu::of(&target).unwrap().write(&mut Collect(&mut json));
            assert_eq!(json, b"https://[::1]:8443/p");
        }
    }

    #[test]
    fn htu_of_a_reqwest_request_to_an_ipv6_host() {
        use crate::request::AuthRequest as _;
        let url = reqwest::Url::parse("https://[::1]:8443/p?q#f").unwrap();
        assert_eq!(url.host_str(), Some("[::1]"));
        let req = reqwest::Request::new(Method::GET, url);
        let mut json = Vec::new();
        Htu::of(&req.target())
            .unwrap()
            .write(&mut Collect(&mut json));
        assert_eq!(json, b"https://[::1]:8443/p");

        // `url` drops a default port as it parses.
        let url = reqwest::Url::parse("HTTPS://Example.COM:443").unwrap();
        let req = reqwest::Request::new(Method::GET, url);
        let mut json = Vec::new();
        Htu::of(&req.target())
            .unwrap()
            .write(&mut Collect(&mut json));
        assert_eq!(json, b"https://example.com/");
    }

    #[test]
    fn odd_bytes_are_json_escaped() {
        let target = Target::new(Some("https"), Some("H\"o\\st"), None).with_path("/a\"b\\c\u{1}");
        let mut json = b"\"".to_vec();
        Htu::of(&target).unwrap().write(&mut Collect(&mut json));
        json.push(b'"');
        let parsed: String = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed, "https://h\"o\\st/a\"b\\c\u{1}");

        let method = Method::from_bytes(b"PURGE").unwrap();
        let key = DpopKey::generate().unwrap();
        let proof = proof_for(&key, &method, "https://h/", None, None);
        assert_eq!(verify(&proof, &key).1["htm"], "PURGE");

        let long = "A".repeat(200);
        let target = Target::new(Some("https"), Some(&long), None);
        let mut json = Vec::new();
        Htu::of(&target).unwrap().write(&mut Collect(&mut json));
        assert_eq!(json, format!("https://{}/", "a".repeat(200)).as_bytes());
    }

    #[test]
    fn methods_are_as_given() {
        let key = DpopKey::generate().unwrap();
        for method in [Method::GET, Method::DELETE, Method::OPTIONS] {
            let proof = proof_for(&key, &method, "https://h/", None, None);
            assert_eq!(verify(&proof, &key).1["htm"], method.as_str());
        }
    }

    #[test]
    fn the_buffer_is_allocated_once_at_its_exact_length() {
        let ath = Ath::of("token");
        let long_path = format!("https://h/{}", "p".repeat(1500));
        let uris = [
            "http://a/",
            "https://a.b/c",
            "https://a.bc/d",
            "https://a.bcd/e",
            "https://[::1]:8443/x?y",
            long_path.as_str(),
        ];
        let nonces = [
            None,
            Some("n".to_owned()),
            Some("nn".to_owned()),
            Some("nnn".to_owned()),
            Some("x".repeat(1024)),
        ];
        for key in keys() {
            for uri in uris {
                for nonce in &nonces {
                    for ath in [None, Some(&ath)] {
                        let uri: http::Uri = uri.parse().unwrap();
                        let htu = Htu::of(&target(&uri)).unwrap();
                        let claims = Claims::new(&Method::GET, htu, ath, nonce.as_deref()).unwrap();
                        let proof = claims.sign_into_vec(&key).unwrap();
                        assert_eq!(proof.len(), proof.capacity(), "{uri} {nonce:?}");
                        // And the header value keeps that very buffer.
                        let at = proof.as_ptr();
                        let bytes = Bytes::from(proof);
                        assert_eq!(bytes.as_ptr(), at);
                        let value = HeaderValue::from_maybe_shared(bytes).unwrap();
                        assert_eq!(value.as_bytes().as_ptr(), at);
                    }
                }
            }
        }
    }

    #[test]
    fn every_proof_has_its_own_jti() {
        let key = DpopKey::generate_with(DpopAlgorithm::EdDsa).unwrap();
        let uri: http::Uri = "https://h/".parse().unwrap();
        let htu = Htu::of(&target(&uri)).unwrap();
        let jtis: std::collections::HashSet<[u8; JTI_LEN]> = (0..10_000)
            .map(|_| Claims::new(&Method::GET, htu, None, None).unwrap().jti)
            .collect();
        assert_eq!(jtis.len(), 10_000);
        // And the jti is what the signed proof says.
        let claims = Claims::new(&Method::GET, htu, None, None).unwrap();
        let proof = claims.sign(&key).unwrap();
        let (_, signed) = verify(proof.to_str().unwrap(), &key);
        assert_eq!(signed["jti"].as_str().unwrap().as_bytes(), &claims.jti);
    }

    #[test]
    fn ath_is_the_base64url_sha256_of_the_token() {
        let ath = Ath::of("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU");
        let expected = URL_SAFE_NO_PAD.encode(digest(
            &SHA256,
            b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU",
        ));
        assert_eq!(ath.as_str(), expected);
        assert_eq!(ath.as_str().len(), 43);
        // RFC 9449 section 7.1's example.
        assert_eq!(ath.as_str(), "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
        assert_eq!(format!("{ath:?}"), "Ath(..)");
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 1_700_000_000, u64::MAX] {
            assert_eq!(Decimal::of(n).as_bytes(), n.to_string().as_bytes());
        }
        for n in 0..40 {
            assert_eq!(base64_len(n), URL_SAFE_NO_PAD.encode(vec![0; n]).len());
        }
    }

    #[test]
    fn relative_uri_error_says_what_to_do() {
        let text = ProofError::RelativeUri.to_string();
        assert!(text.contains("no scheme or host"), "{text}");
        assert!(text.contains("tonic"), "{text}");
    }
}
