//! The token request and the environment's proxy settings: loopback and
//! plain-http token requests never go through a proxy; https ones do when
//! the environment names one.
//!
//! This binary holds one test, because it sets the process's proxy
//! variables: nothing else may run beside it.
// Without TLS the default client uses no proxy at all: the https case
// below needs it.
#![cfg(all(feature = "client-credentials", feature = "rustls"))]

mod support;

use std::sync::{Arc, Mutex};

use support::{TestServer, respond};
use tower_bearer::TokenSource;
use tower_bearer::source::client_credentials::{ClientCredentials, ClientCredentialsError};

/// What a server was sent: `(method, request target, authorization)`.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A server that records each request and answers every one with a token
/// named `token`: the proxy forges one, the endpoint issues one.
async fn recording_server(token: &'static str) -> (TestServer, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let server = TestServer::start(move |req| {
        log.lock().unwrap().push((
            req.method().to_string(),
            req.uri().to_string(),
            support::authorization(&req),
        ));
        let status = if req.method() == http::Method::CONNECT {
            // Refuse the tunnel: the test only needs to see it asked for.
            403
        } else {
            200
        };
        async move {
            respond(
                status,
                format!(r#"{{"access_token":"{token}","token_type":"Bearer"}}"#),
            )
        }
    })
    .await;
    (server, seen)
}

#[test]
fn loopback_and_plain_http_token_requests_never_go_through_a_proxy() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (proxy, proxy_seen) = runtime.block_on(recording_server("forged-by-the-proxy"));
    let (endpoint, endpoint_seen) = runtime.block_on(recording_server("issued-by-the-endpoint"));
    let proxy_url = proxy.origin();
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        // SAFETY: this binary runs this one test, and the runtime above is
        // single-threaded: no other thread reads the environment meanwhile.
        unsafe { std::env::set_var(name, &proxy_url) };
    }
    for name in ["NO_PROXY", "no_proxy"] {
        // SAFETY: as above.
        unsafe { std::env::remove_var(name) };
    }

    let port = endpoint.addr().port();
    // The environment is in force: a client of the user's own, built with
    // reqwest's defaults, does send a loopback token request to the proxy
    // (and takes its forged token). The source's default client must not.
    let users_own = ClientCredentials::builder(format!("http://127.0.0.1:{port}/token"), "client")
        .http_client(reqwest::Client::new())
        .build()
        .unwrap();
    let forged = runtime.block_on(users_own.fetch()).unwrap();
    assert_eq!(forged.access_token().secret(), "forged-by-the-proxy");
    assert_eq!(proxy_seen.lock().unwrap().len(), 1);
    proxy_seen.lock().unwrap().clear();

    let direct = [
        (format!("http://127.0.0.1:{port}/token"), false),
        (format!("http://localhost:{port}/token"), false),
        // Plain http to a host that is not loopback (Linux connects 0.0.0.0
        // to this machine): allowed explicitly, and still never proxied.
        (format!("http://0.0.0.0:{port}/token"), true),
    ];
    for (url, insecure) in direct {
        let source = ClientCredentials::builder(&url, "client")
            .client_secret("client-secret-value")
            .allow_insecure_http(insecure)
            .build()
            .unwrap();
        let token = runtime.block_on(source.fetch()).unwrap();
        assert_eq!(
            token.access_token().secret(),
            "issued-by-the-endpoint",
            "{url}"
        );
        assert!(
            proxy_seen.lock().unwrap().is_empty(),
            "{url}: the proxy was sent {:?}",
            proxy_seen.lock().unwrap()
        );
    }
    assert_eq!(endpoint_seen.lock().unwrap().len(), 3);

    // https to a host that is not loopback goes through the proxy the
    // environment names, in a tunnel: the proxy sees the host, not the request.
    let source = ClientCredentials::builder("https://idp.example.test/token", "client")
        .client_secret("client-secret-value")
        .build()
        .unwrap();
    let err = runtime.block_on(source.fetch()).unwrap_err();
    assert!(
        matches!(err, ClientCredentialsError::Transport { .. }),
        "{err:?}"
    );
    let seen = proxy_seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            "CONNECT".to_owned(),
            "idp.example.test:443".to_owned(),
            String::new()
        )]
    );
}
