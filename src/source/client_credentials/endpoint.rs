//! Where token requests go: the token URL given, or the token endpoint
//! the issuer's metadata names, found on the first fetch.

use std::sync::{Arc, OnceLock};

use super::request::{self, TokenRequest};
use super::{BuildError, ClientCredentialsBuilder, ClientCredentialsError, transport};
use crate::redact;
#[cfg(doc)]
use crate::source::client_auth::AssertionAudience;
use crate::source::client_auth::ClientAuth;
use crate::source::discovery::{Discovery, ProviderMetadata};

/// Where token requests go.
pub(super) enum Endpoint {
    /// The token URL given.
    Fixed(TokenRequest),
    /// The token endpoint the issuer's metadata names, found on the first
    /// fetch by the discovery every key's source shares.
    Discovered {
        issuer: reqwest::Url,
        discovery: Arc<Discovery>,
        // The request, to the issuer; sent to the token endpoint.
        template: Box<TokenRequest>,
        resolved: OnceLock<Box<Resolved>>,
    },
}

/// What the first fetch of a discovering source found.
pub(super) struct Resolved {
    /// The request, to the token endpoint.
    request: TokenRequest,
    /// The metadata. Its issuer, as it names it (the configured one, which
    /// it matched, but without the `/` a [`reqwest::Url`] adds to a bare
    /// host), is the `aud` of [`AssertionAudience::Issuer`].
    metadata: Arc<ProviderMetadata>,
}

impl Endpoint {
    /// An endpoint `discovery` finds from `issuer`, for `request` (built to
    /// the issuer, sent to the token endpoint).
    pub(super) fn discovered(
        issuer: reqwest::Url,
        discovery: Arc<Discovery>,
        request: TokenRequest,
    ) -> Endpoint {
        Endpoint::Discovered {
            issuer,
            discovery,
            template: Box::new(request),
            resolved: OnceLock::new(),
        }
    }

    /// The request as built: to the token URL, or to the issuer.
    pub(super) fn template(&self) -> &TokenRequest {
        match self {
            Endpoint::Fixed(request) => request,
            Endpoint::Discovered { template, .. } => template,
        }
    }

    pub(super) fn discovery(&self) -> Option<&Arc<Discovery>> {
        match self {
            Endpoint::Fixed(_) => None,
            Endpoint::Discovered { discovery, .. } => Some(discovery),
        }
    }

    /// The token request, to the token endpoint: discovered the first time
    /// if the source was built from an issuer, then with the issuer as the
    /// metadata names it.
    pub(super) async fn request(
        &self,
        auth: &ClientAuth,
        settings: &ClientCredentialsBuilder,
    ) -> Result<(&TokenRequest, Option<&str>), ClientCredentialsError> {
        let (discovery, template, resolved) = match self {
            Endpoint::Fixed(request) => return Ok((request, None)),
            Endpoint::Discovered {
                discovery,
                template,
                resolved,
                ..
            } => (discovery, template, resolved),
        };
        if let Some(resolved) = resolved.get() {
            return Ok((&resolved.request, Some(resolved.metadata.issuer())));
        }
        let metadata =
            discovery
                .metadata()
                .await
                .map_err(|source| ClientCredentialsError::Discovery {
                    source,
                    retry_after: discovery.retry_in(),
                })?;
        let method = auth.method();
        // A public client may still authenticate, with a client assertion
        // of its own in the parameters: the token endpoint judges it.
        let public = matches!(auth, ClientAuth::Public);
        if !public && metadata.lists_auth_method(method.as_str()) == Some(false) {
            return Err(ClientCredentialsError::auth_method_not_supported(
                method,
                metadata
                    .token_endpoint_auth_methods_supported()
                    .unwrap_or_default(),
            ));
        }
        let endpoint = match metadata.mtls_token_endpoint() {
            Some(alias) if settings.uses_tls_client_auth() => alias,
            _ => metadata.token_endpoint(),
        };
        let url = discovered_endpoint(endpoint, settings)
            .and_then(|url| template.with_url(url))
            .map_err(|source| ClientCredentialsError::DiscoveredEndpoint { source })?;
        let resolved = resolved.get_or_init(|| {
            Box::new(Resolved {
                request: url,
                metadata,
            })
        });
        Ok((&resolved.request, Some(resolved.metadata.issuer())))
    }

    /// The token URL: the one given, or the discovered one once found.
    pub(super) fn token_url(&self) -> Option<&reqwest::Url> {
        match self {
            Endpoint::Fixed(request) => Some(request.url()),
            Endpoint::Discovered { resolved, .. } => resolved.get().map(|r| r.request.url()),
        }
    }

    /// The issuer the token endpoint is discovered from, if it is.
    pub(super) fn issuer(&self) -> Option<&reqwest::Url> {
        match self {
            Endpoint::Fixed(_) => None,
            Endpoint::Discovered { issuer, .. } => Some(issuer),
        }
    }
}

/// The token endpoint the metadata names, checked as a token URL is; and,
/// when the default client was made for an https issuer off loopback (so
/// that it may take the environment's proxy), neither plain `http` nor
/// loopback: such a request must not take the proxy.
fn discovered_endpoint(
    endpoint: &reqwest::Url,
    settings: &ClientCredentialsBuilder,
) -> Result<reqwest::Url, BuildError> {
    let url = request::token_url(endpoint.as_str(), settings.allows_insecure_http())?;
    if settings.proxied_default_client() && !transport::may_proxy(&url) {
        return Err(BuildError::ProxiedEndpoint {
            url: redact::redact_url(url.as_str()),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::TokenParams;
    use crate::source::KeyedTokenSource;
    use crate::source::client_credentials::ClientCredentials;

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).unwrap()
    }

    #[test]
    fn a_discovered_endpoint_the_proxy_must_not_see_is_refused() {
        let discovering =
            |issuer: &str| ClientCredentials::discover(issuer, "c").client_secret("s");
        // The default client, made for an https issuer off loopback.
        let proxied = discovering("https://idp.example.com").build().unwrap();
        let settings = &proxied.inner.settings;
        assert_eq!(settings.proxied_default_client(), cfg!(feature = "rustls"));
        for endpoint in ["http://127.0.0.1:8080/token", "https://localhost/token"] {
            let refused = discovered_endpoint(&url(endpoint), settings);
            assert_eq!(
                refused.is_err(),
                cfg!(feature = "rustls"),
                "{endpoint}: {refused:?}"
            );
            if let Err(error) = refused {
                assert!(
                    matches!(error, BuildError::ProxiedEndpoint { .. }),
                    "{error:?}"
                );
            }
        }
        assert!(discovered_endpoint(&url("https://token.example.com/t"), settings).is_ok());
        // A key's source keeps the rule.
        let keyed = proxied
            .for_params(&TokenParams::for_resource("https://api.example.com/"))
            .unwrap();
        assert_eq!(
            keyed.inner.settings.proxied_default_client(),
            cfg!(feature = "rustls")
        );
        // A client of the caller's, or a loopback issuer: no such client.
        let own = discovering("https://idp.example.com")
            .http_client(reqwest::Client::new())
            .build()
            .unwrap();
        assert!(discovered_endpoint(&url("http://127.0.0.1/token"), &own.inner.settings).is_ok());
        let local = discovering("http://127.0.0.1:9").build().unwrap();
        assert!(discovered_endpoint(&url("https://localhost/t"), &local.inner.settings).is_ok());
    }
}
