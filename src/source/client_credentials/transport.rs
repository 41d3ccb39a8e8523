//! The token request sent with reqwest: a thin adapter between the pure
//! [request](super::request) and [response](super::response).

use reqwest::Url;

use super::request::is_loopback;
use super::response::Answer;
use super::{BuildError, ClientCredentialsError, MAX_RESPONSE_BYTES};

/// The default HTTP client for `url` (the token URL, or the issuer): no
/// redirects (they would carry the credentials elsewhere), and no proxy for
/// a plain-http or loopback URL, or without TLS compiled in; `configure`
/// adds the TLS settings.
pub(super) fn default_client(
    url: &Url,
    configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, BuildError> {
    let mut client =
        configure(reqwest::Client::builder()).redirect(reqwest::redirect::Policy::none());
    // A proxy would see plain-http credentials and could answer with a token
    // of its own; on loopback it would also send them off the machine.
    // Without TLS compiled in, reqwest would send even an https request to a
    // proxy in the clear.
    if !may_proxy(url) {
        client = client.no_proxy();
    }
    client.build().map_err(|e| BuildError::HttpClient {
        reason: e.to_string(),
    })
}

/// Whether the default client for `url` goes through the environment's
/// proxy: only for https off loopback, with TLS compiled in.
pub(super) fn may_proxy(url: &Url) -> bool {
    url.scheme() == "https" && !is_loopback(url) && cfg!(feature = "rustls")
}

/// Sends `request` and reads the answer, at most [`MAX_RESPONSE_BYTES`] of
/// its body.
pub(super) async fn send(
    client: &reqwest::Client,
    request: http::Request<String>,
) -> Result<Answer, ClientCredentialsError> {
    let request = reqwest::Request::try_from(request).map_err(transport_error)?;
    let mut response = client.execute(request).await.map_err(transport_error)?;
    let mut body = Vec::new();
    let mut cut = false;
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            // What was read says what the answer is: a long maintenance page
            // stays transient, whatever its status.
            body.extend_from_slice(&chunk[..MAX_RESPONSE_BYTES - body.len()]);
            cut = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status: response.status(),
        headers: std::mem::take(response.headers_mut()),
        body,
        cut,
    })
}

fn transport_error(error: reqwest::Error) -> ClientCredentialsError {
    ClientCredentialsError::Transport {
        // The URL is in the source's Debug already, and the chain says what failed.
        source: error.without_url(),
    }
}

/// The TLS alert with which the server refused the client certificate
/// during the handshake, when that is why `error` happened: its name, such
/// as `UnknownCA`. `None` for any other failure, a TLS one included.
///
/// The alert is a [`rustls::Error`] deep in the chain (reqwest's error,
/// hyper's, then an [`std::io::Error`] that wraps it). An `io::Error`'s
/// `source()` is its inner error's source, skipping the inner error itself,
/// so each one met is also looked into.
#[cfg(feature = "rustls")]
pub(super) fn refused_client_certificate(
    error: &(dyn std::error::Error + 'static),
) -> Option<String> {
    use rustls::AlertDescription as Alert;

    let mut cause = Some(error);
    while let Some(error) = cause {
        let tls = error.downcast_ref::<rustls::Error>().or_else(|| {
            error
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::AlertReceived(alert)) = tls {
            // The alerts a server sends about the client's certificate
            // (RFC 8446 section 6.2): none is answered by asking again.
            return matches!(
                alert,
                Alert::BadCertificate
                    | Alert::UnsupportedCertificate
                    | Alert::CertificateRevoked
                    | Alert::CertificateExpired
                    | Alert::CertificateUnknown
                    | Alert::UnknownCA
                    | Alert::AccessDenied
                    | Alert::CertificateRequired
            )
            .then(|| format!("{alert:?}"));
        }
        cause = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_off_loopback_may_take_the_proxy() {
        let proxied = |url: &str| may_proxy(&Url::parse(url).unwrap());
        assert_eq!(
            proxied("https://idp.example.com/token"),
            cfg!(feature = "rustls")
        );
        for url in [
            "http://idp.example.com/token",
            "https://127.0.0.1/token",
            "https://[::1]:8443/token",
            "https://localhost/token",
            "http://127.0.0.1:8080/token",
        ] {
            assert!(!proxied(url), "{url}");
        }
    }

    /// An error that wraps another, as reqwest's and hyper's do.
    #[cfg(feature = "rustls")]
    #[derive(Debug)]
    struct Wrapper(Box<dyn std::error::Error + Send + Sync>);

    #[cfg(feature = "rustls")]
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection error")
        }
    }

    #[cfg(feature = "rustls")]
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }

    /// `tls`, as hyper meets it: in an `io::Error`, under two wrappers.
    #[cfg(feature = "rustls")]
    fn chain_to(tls: rustls::Error) -> Wrapper {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        Wrapper(Box::new(Wrapper(Box::new(io))))
    }

    #[cfg(feature = "rustls")]
    #[test]
    fn alerts_about_the_client_certificate_are_found_through_the_io_error() {
        use rustls::AlertDescription as Alert;

        for (alert, name) in [
            (Alert::BadCertificate, "BadCertificate"),
            (Alert::UnsupportedCertificate, "UnsupportedCertificate"),
            (Alert::CertificateRevoked, "CertificateRevoked"),
            (Alert::CertificateExpired, "CertificateExpired"),
            (Alert::CertificateUnknown, "CertificateUnknown"),
            (Alert::UnknownCA, "UnknownCA"),
            (Alert::AccessDenied, "AccessDenied"),
            (Alert::CertificateRequired, "CertificateRequired"),
        ] {
            let error = chain_to(rustls::Error::AlertReceived(alert));
            // `io::Error::source` skips the rustls error it wraps.
            let io = std::error::Error::source(&error).unwrap().source().unwrap();
            assert!(io.is::<std::io::Error>() && io.source().is_none());
            assert_eq!(
                refused_client_certificate(&error).as_deref(),
                Some(name),
                "{alert:?}"
            );
        }
        // Not wrapped in an io::Error, too.
        let bare = Wrapper(Box::new(rustls::Error::AlertReceived(Alert::UnknownCA)));
        assert_eq!(
            refused_client_certificate(&bare).as_deref(),
            Some("UnknownCA")
        );
    }

    #[cfg(feature = "rustls")]
    #[test]
    fn other_tls_failures_are_not_a_refused_client_certificate() {
        use rustls::AlertDescription as Alert;

        let others = [
            // Alerts about something else than our certificate.
            rustls::Error::AlertReceived(Alert::HandshakeFailure),
            rustls::Error::AlertReceived(Alert::ProtocolVersion),
            rustls::Error::AlertReceived(Alert::InternalError),
            rustls::Error::AlertReceived(Alert::DecryptError),
            rustls::Error::AlertReceived(Alert::UnrecognisedName),
            // Our side refusing the server's certificate: no alert received.
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        ];
        for tls in others {
            let shown = format!("{tls:?}");
            assert_eq!(refused_client_certificate(&chain_to(tls)), None, "{shown}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            refused_client_certificate(&Wrapper(Box::new(refused))),
            None
        );
    }
}
