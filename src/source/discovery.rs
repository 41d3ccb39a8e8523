//! The token endpoint found from the issuer: OpenID Connect discovery and
//! RFC 8414 authorization server metadata. (Placeholder until it lands.)

use std::sync::Arc;
use std::time::Duration;

/// An authorization server's metadata.
#[derive(Clone, Debug)]
pub struct ProviderMetadata {
    token_endpoint: reqwest::Url,
}

impl ProviderMetadata {
    /// The token endpoint.
    pub fn token_endpoint(&self) -> &reqwest::Url {
        &self.token_endpoint
    }
    /// The mTLS alias.
    pub fn mtls_token_endpoint(&self) -> Option<&reqwest::Url> {
        None
    }
    /// Whether the list names the method.
    pub fn lists_auth_method(&self, _method: &str) -> Option<bool> {
        None
    }
    /// The list.
    pub fn token_endpoint_auth_methods_supported(&self) -> Option<&[String]> {
        None
    }
}

/// Why discovery failed.
#[derive(Debug)]
pub struct DiscoveryError;

impl DiscoveryError {
    /// Whether.
    pub fn is_transient(&self) -> bool {
        true
    }
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("discovery failed")
    }
}

impl std::error::Error for DiscoveryError {}

pub(crate) struct Discovery;

impl Discovery {
    pub(crate) fn new(_issuer: reqwest::Url, _client: reqwest::Client, _timeout: Duration) -> Self {
        Discovery
    }
    pub(crate) async fn metadata(&self) -> Result<Arc<ProviderMetadata>, DiscoveryError> {
        Err(DiscoveryError)
    }
}
