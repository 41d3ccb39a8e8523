//! The metadata document: the two well-known URLs, each fetched with a
//! bounded body, and the fields read and checked.

use std::sync::Arc;

use reqwest::Url;
use serde_json::{Map, Value};

use super::{
    DiscoveryError, MAX_DOCUMENT_BYTES, MAX_SHOWN_CHARS, NoDocument, OAUTH_AUTHORIZATION_SERVER,
    OPENID_CONFIGURATION, ProviderMetadata,
};
use crate::redact::{at_most, one_line, redact_url};
use crate::source::transient_status;

/// The two well-known URLs of an issuer.
pub(super) struct WellKnown {
    pub(super) openid: Url,
    pub(super) oauth: Url,
}

/// The OpenID Connect and RFC 8414 URLs of `issuer`.
pub(super) fn well_known_urls(issuer: &Url) -> Result<WellKnown, DiscoveryError> {
    let invalid = |reason| DiscoveryError::InvalidIssuer {
        issuer: redact_url(issuer.as_str()),
        reason,
    };
    if !matches!(issuer.scheme(), "https" | "http") || issuer.cannot_be_a_base() {
        return Err(invalid("it is not an https URL"));
    }
    if issuer.query().is_some() {
        return Err(invalid("it has a query"));
    }
    if issuer.fragment().is_some() {
        return Err(invalid("it has a fragment"));
    }
    // RFC 8414 section 3.1: "any terminating / MUST be removed", for both.
    let path = issuer.path().trim_end_matches('/');
    let mut openid = issuer.clone();
    openid.set_path(&format!("{path}{OPENID_CONFIGURATION}"));
    let mut oauth = issuer.clone();
    oauth.set_path(&format!("{OAUTH_AUTHORIZATION_SERVER}{path}"));
    Ok(WellKnown { openid, oauth })
}

/// Reads the metadata from the OpenID Connect URL, or else the RFC 8414 one.
pub(super) async fn discover(
    client: &reqwest::Client,
    issuer: &Url,
    urls: &WellKnown,
) -> Result<ProviderMetadata, DiscoveryError> {
    let openid_answer = match fetch(client, &urls.openid).await? {
        Fetched::Document(document) => return read_metadata(document, &urls.openid, issuer),
        Fetched::NoDocument(answer) => answer,
    };
    tracing::debug!(
        url = %redact_url(urls.openid.as_str()),
        answer = %openid_answer,
        "no OpenID Connect metadata; trying RFC 8414"
    );
    match fetch(client, &urls.oauth).await? {
        Fetched::Document(document) => read_metadata(document, &urls.oauth, issuer),
        Fetched::NoDocument(oauth_answer) => Err(DiscoveryError::NotFound {
            openid_url: redact_url(urls.openid.as_str()),
            openid_answer,
            oauth_url: redact_url(urls.oauth.as_str()),
            oauth_answer,
        }),
    }
}

/// What a well-known URL held.
pub(super) enum Fetched {
    Document(Map<String, Value>),
    NoDocument(NoDocument),
}

/// GETs `url` and reads at most [`MAX_DOCUMENT_BYTES`] of its body.
pub(super) async fn fetch(client: &reqwest::Client, url: &Url) -> Result<Fetched, DiscoveryError> {
    let transport = |error: reqwest::Error| DiscoveryError::Transport {
        url: redact_url(url.as_str()),
        // The URL is in the error already.
        source: Arc::new(error.without_url()),
    };
    let mut response = client
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if transient_status(status) {
        return Err(DiscoveryError::HttpStatus {
            url: redact_url(url.as_str()),
            status,
        });
    }
    if !status.is_success() {
        return Ok(Fetched::NoDocument(NoDocument::Status(status)));
    }
    let mut body = Vec::new();
    let mut cut = false;
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            body.extend_from_slice(&chunk[..MAX_DOCUMENT_BYTES - body.len()]);
            cut = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&body);
    if cut {
        // What was read says what the answer is: only a JSON object is a
        // document too large; a long page is no document at all.
        return match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Err(DiscoveryError::TooLarge {
                url: redact_url(url.as_str()),
                limit: MAX_DOCUMENT_BYTES,
            }),
            Some(b'[') => Ok(Fetched::NoDocument(NoDocument::NotAnObject)),
            _ => Ok(Fetched::NoDocument(NoDocument::NotJson)),
        };
    }
    Ok(match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(document)) => Fetched::Document(document),
        Ok(_) => Fetched::NoDocument(NoDocument::NotAnObject),
        Err(_) => Fetched::NoDocument(NoDocument::NotJson),
    })
}

/// The metadata in `document`, read from `url`, if it names `issuer`.
pub(super) fn read_metadata(
    mut document: Map<String, Value>,
    url: &Url,
    issuer: &Url,
) -> Result<ProviderMetadata, DiscoveryError> {
    let shown = || redact_url(url.as_str());
    let missing = |field| DiscoveryError::MissingField {
        url: shown(),
        field,
    };
    let invalid = |field, reason: &str| DiscoveryError::InvalidField {
        url: shown(),
        field,
        reason: reason.to_owned(),
    };

    let found = match document.remove("issuer") {
        Some(Value::String(found)) => found,
        None | Some(Value::Null) => return Err(missing("issuer")),
        Some(_) => return Err(invalid("issuer", "not a string")),
    };
    if !issuer_matches(issuer, &found) {
        return Err(DiscoveryError::IssuerMismatch {
            url: shown(),
            expected: redact_url(issuer.as_str()),
            found: shown_issuer(&found),
        });
    }

    let token_endpoint = match document.get("token_endpoint") {
        None | Some(Value::Null) => return Err(missing("token_endpoint")),
        Some(value) => endpoint(value).map_err(|reason| invalid("token_endpoint", &reason))?,
    };

    const MTLS_FIELD: &str = "mtls_endpoint_aliases.token_endpoint";
    let mtls_token_endpoint = match document.get("mtls_endpoint_aliases") {
        None | Some(Value::Null) => None,
        Some(Value::Object(aliases)) => match aliases.get("token_endpoint") {
            None | Some(Value::Null) => None,
            Some(value) => Some(endpoint(value).map_err(|reason| invalid(MTLS_FIELD, &reason))?),
        },
        Some(_) => return Err(invalid("mtls_endpoint_aliases", "not an object")),
    };

    const METHODS_FIELD: &str = "token_endpoint_auth_methods_supported";
    let auth_methods = match document.remove(METHODS_FIELD) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .into_iter()
                .map(|item| match item {
                    Value::String(method) => Ok(method),
                    _ => Err(invalid(METHODS_FIELD, "not an array of strings")),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(invalid(METHODS_FIELD, "not an array of strings")),
    };

    Ok(ProviderMetadata {
        issuer: found,
        token_endpoint,
        mtls_token_endpoint,
        auth_methods,
        document_url: url.clone(),
    })
}

/// An endpoint member: an absolute `http` or `https` URL. Whether plain
/// http is allowed is the caller's rule, as for a configured token URL.
pub(super) fn endpoint(value: &Value) -> Result<Url, String> {
    let Value::String(text) = value else {
        return Err("not a string".to_owned());
    };
    let url = Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err("not an http or https URL".to_owned());
    }
    Ok(url)
}

/// Whether the document's issuer is the configured one: equal strings, but
/// for an issuer without a path, which `Url` always writes with a `/`.
pub(super) fn issuer_matches(issuer: &Url, found: &str) -> bool {
    let expected = issuer.as_str();
    found == expected || (issuer.path() == "/" && expected.strip_suffix('/') == Some(found))
}

/// The issuer a document names, for an error: the provider's public
/// string as it is (through [`redact_url`] it could read like the
/// configured one, a query or a trailing blank dropped), unless it holds a
/// user name or password; on one line and bounded.
pub(super) fn shown_issuer(found: &str) -> String {
    let credentials = Url::parse(found.trim())
        .is_ok_and(|url| !url.username().is_empty() || url.password().is_some());
    let shown = if credentials {
        redact_url(found)
    } else {
        one_line(found)
    };
    at_most(&shown, MAX_SHOWN_CHARS)
}
