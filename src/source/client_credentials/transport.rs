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
}
