//! Mutual TLS on loopback: a test PKI made at run time, an HTTPS server that
//! asks for a client certificate, and a token endpoint that binds its tokens
//! to that certificate (RFC 8705) beside an API that checks the binding.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower_bearer::source::client_auth::ClientIdentity;

use super::json_response;

/// The `x5t#S256` of a certificate: base64url (no padding) SHA-256 of its
/// DER. Computed here from the TLS session, independently of the crate.
pub fn thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
}

/// Distinctive 40-character slices of a PEM's base64 body (every 20
/// characters from the 20th: the first few are the same for every key of a
/// type): text that holds none of them holds no recognisable part of it.
pub fn pem_body_slices(pem: &str) -> Vec<String> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<String>()
        .trim_end_matches('=')
        .to_owned();
    assert!(body.len() >= 60, "a PEM body of {} characters", body.len());
    (20..=body.len() - 40)
        .step_by(20)
        .map(|start| body[start..start + 40].to_owned())
        .collect()
}

/// A CA made at test time, the loopback server certificate it signed, and
/// the client certificates it issues; plus a rogue CA the server does not
/// trust, for negative tests.
pub struct TestPki {
    ca: CertifiedIssuer<'static, KeyPair>,
    rogue: CertifiedIssuer<'static, KeyPair>,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
    // The subject each issued client certificate names, by thumbprint: the
    // client registration an authorization server checks (RFC 8705 §2.1),
    // without parsing X.509 in the tests.
    issued: Arc<Mutex<HashMap<String, String>>>,
}

impl TestPki {
    /// A fresh CA and a server certificate for `127.0.0.1`, `::1` and
    /// `localhost`.
    pub fn new() -> Self {
        let ca = new_ca("tower-bearer test CA");
        let rogue = new_ca("tower-bearer rogue CA");

        let server_key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".into(), "::1".into(), "localhost".into()])
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let server_cert = params.signed_by(&server_key, &ca).unwrap();

        Self {
            ca,
            rogue,
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
            issued: Arc::default(),
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The server's certificate, DER.
    pub fn server_der(&self) -> &[u8] {
        &self.server_cert
    }

    /// A client certificate with this common name, signed by the CA:
    /// `(certificate PEM, PKCS #8 key PEM)`. The chain is the leaf alone;
    /// the server knows the CA.
    pub fn client(&self, common_name: &str) -> (String, String) {
        let (cert, key) = client_cert(&self.ca, common_name);
        self.issued
            .lock()
            .unwrap()
            .insert(thumbprint(cert.der()), common_name.to_owned());
        (cert.pem(), key.serialize_pem())
    }

    /// [`client`](Self::client), as a [`ClientIdentity`].
    pub fn client_identity(&self, common_name: &str) -> ClientIdentity {
        let (cert, key) = self.client(common_name);
        ClientIdentity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap()
    }

    /// A client certificate with this common name from a CA the server does
    /// not trust: `(certificate PEM, key PEM)`.
    pub fn rogue_client(&self, common_name: &str) -> (String, String) {
        let (cert, key) = client_cert(&self.rogue, common_name);
        (cert.pem(), key.serialize_pem())
    }

    /// The common name the CA issued the certificate with this thumbprint
    /// for, if it did.
    pub fn issued_to(&self, thumbprint: &str) -> Option<String> {
        self.issued.lock().unwrap().get(thumbprint).cloned()
    }

    /// A reqwest client that trusts only this CA, presenting `identity` if
    /// given, with no proxy and with TLS info on its responses.
    pub fn https_client(&self, identity: Option<reqwest::Identity>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem().as_bytes()).unwrap();
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only([ca])
            .tls_info(true);
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        builder.build().unwrap()
    }

    /// The server's TLS configuration: HTTP/2 and HTTP/1.1 by ALPN, and a
    /// client certificate asked for but optional, so that the application
    /// (not a TLS alert) answers a client without one. A certificate that is
    /// presented must chain to the CA.
    fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.server_cert.clone(), self.ca.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn client_cert(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    common_name: &str,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert, key)
}

/// An HTTPS server (HTTP/1 and HTTP/2) on `127.0.0.1:0` with the PKI's
/// server certificate, stopped when dropped. The handler gets each request
/// and the thumbprint of the client certificate its connection presented.
pub struct TlsServer {
    addr: SocketAddr,
    handshake_failures: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsServer {
    /// Serves every request with `handler(request, client_thumbprint)`.
    pub async fn start<F, Fut>(pki: &TestPki, handler: F) -> Self
    where
        F: Fn(Request<Incoming>, Option<String>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let acceptor = TlsAcceptor::from(pki.server_config());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshake_failures = Arc::new(AtomicUsize::new(0));
        let failures = handshake_failures.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set, so stopping the accept loop
            // closes them too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, handler, failures) =
                    (acceptor.clone(), handler.clone(), failures.clone());
                connections.spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        failures.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let client = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| thumbprint(leaf));
                    let service = hyper::service::service_fn(move |req| {
                        let response = handler(req, client.clone());
                        async move { Ok::<_, Infallible>(response.await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            handshake_failures,
            task,
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's origin, `https://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// An absolute URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// TLS handshakes the server refused or that failed, such as a client
    /// certificate from an unknown CA.
    pub fn handshake_failures(&self) -> usize {
        self.handshake_failures.load(Ordering::SeqCst)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A token endpoint using `tls_client_auth` that binds each token to the
/// client certificate it was issued to, and an API that accepts a token only
/// over a connection made with that certificate (RFC 8705 sections 2 and 3).
///
/// - `POST /token`, form `grant_type=client_credentials&client_id=ID`:
///   needs a client certificate the CA issued for common name `ID`; answers
///   `{"access_token":"bound-N","token_type":"Bearer","expires_in":3600}`,
///   else `401 {"error":"invalid_client"}`. The binding is kept in a map
///   (a real server puts `cnf.x5t#S256` in the token).
/// - `GET /api/...`: `200` when the bearer token was issued here and the
///   connection's certificate is the one it is bound to, else `401` with
///   `WWW-Authenticate: Bearer error="invalid_token"`.
pub struct BoundTokens {
    server: TlsServer,
    state: Arc<BoundState>,
}

#[derive(Default)]
struct BoundState {
    issued_to: Arc<Mutex<HashMap<String, String>>>,
    // Token -> thumbprint of the certificate it is bound to.
    bindings: Mutex<HashMap<String, String>>,
    issued: AtomicUsize,
    refused: AtomicUsize,
    api_ok: AtomicUsize,
    api_refused: AtomicUsize,
    // The form of the last token request, in the order sent, and whether it
    // carried an `authorization` header.
    last_form: Mutex<Vec<(String, String)>>,
    last_had_authorization: Mutex<Option<bool>>,
}

impl BoundTokens {
    /// Starts the endpoint and API on one TLS server.
    pub async fn start(pki: &TestPki) -> Self {
        let state = Arc::new(BoundState {
            issued_to: pki.issued.clone(),
            ..BoundState::default()
        });
        let handler_state = state.clone();
        let server = TlsServer::start(pki, move |req, client| {
            let state = handler_state.clone();
            async move { state.handle(req, client).await }
        })
        .await;
        Self { server, state }
    }

    /// The server under the endpoint and the API.
    pub fn server(&self) -> &TlsServer {
        &self.server
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        self.server.url("/token")
    }

    /// A URL on the API, `path` after `/api`.
    pub fn api_url(&self, path: &str) -> String {
        self.server.url(&format!("/api{path}"))
    }

    /// The thumbprint a token is bound to, if the endpoint issued it.
    pub fn bound_to(&self, token: &str) -> Option<String> {
        self.state.bindings.lock().unwrap().get(token).cloned()
    }

    /// Tokens issued.
    pub fn issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Token requests refused.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// API calls accepted.
    pub fn api_ok(&self) -> usize {
        self.state.api_ok.load(Ordering::SeqCst)
    }

    /// API calls refused.
    pub fn api_refused(&self) -> usize {
        self.state.api_refused.load(Ordering::SeqCst)
    }

    /// The form of the last token request, in the order sent.
    pub fn last_form(&self) -> Vec<(String, String)> {
        self.state.last_form.lock().unwrap().clone()
    }

    /// Whether the last token request carried an `authorization` header;
    /// `None` before the first.
    pub fn last_had_authorization(&self) -> Option<bool> {
        *self.state.last_had_authorization.lock().unwrap()
    }
}

impl BoundState {
    async fn handle(
        &self,
        req: Request<Incoming>,
        client: Option<String>,
    ) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        match (req.method(), path.as_str()) {
            (&Method::POST, "/token") => self.token(req, client).await,
            (&Method::GET, api) if api.starts_with("/api") => self.api(&req, client),
            _ => json_response(404, &json!({"error": "not_found"})),
        }
    }

    async fn token(&self, req: Request<Incoming>, client: Option<String>) -> Response<Full<Bytes>> {
        *self.last_had_authorization.lock().unwrap() =
            Some(req.headers().contains_key(header::AUTHORIZATION));
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        *self.last_form.lock().unwrap() = pairs.clone();
        let form: HashMap<String, String> = pairs.into_iter().collect();
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return json_response(400, &json!({"error": "unsupported_grant_type"}));
        }
        // tls_client_auth: the certificate must be the one registered for
        // the client id, here the CN the CA issued it for.
        let registered = client
            .as_ref()
            .and_then(|thumb| self.issued_to.lock().unwrap().get(thumb).cloned());
        let (Some(thumb), Some(cn)) = (client, registered) else {
            return self.invalid_client();
        };
        if form.get("client_id") != Some(&cn) {
            return self.invalid_client();
        }
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("bound-{n}");
        self.bindings.lock().unwrap().insert(token.clone(), thumb);
        json_response(
            200,
            &json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}),
        )
    }

    fn invalid_client(&self) -> Response<Full<Bytes>> {
        self.refused.fetch_add(1, Ordering::SeqCst);
        json_response(401, &json!({"error": "invalid_client"}))
    }

    fn api(&self, req: &Request<Incoming>, client: Option<String>) -> Response<Full<Bytes>> {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let bound = token.and_then(|t| self.bindings.lock().unwrap().get(t).cloned());
        if bound.is_some() && bound == client {
            self.api_ok.fetch_add(1, Ordering::SeqCst);
            return Response::new(Full::new(Bytes::from_static(b"ok")));
        }
        self.api_refused.fetch_add(1, Ordering::SeqCst);
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)
            .body(Full::new(Bytes::new()))
            .unwrap()
    }
}
