//! The name a shared token is stored under.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

// Parameter names that carry the client's credentials or a grant's own
// secret: they never change which token is issued and must never reach a
// key, so `StoreKeyBuilder::param` ignores them. Not the redaction rule
// (`redact::secret_key`), on purpose: that one hides any name holding
// `token` or ending in `key`, and a `subject_token` or a `tenant_key`
// says whose token it is: left out, two subjects would share one token.
use crate::params::CREDENTIAL_PARAMS;

/// What identifies a shared token: a SHA-256 of its identity parts.
///
/// Two processes share a token when they build the same key: same token URL,
/// client id, scopes (in any order) and extra parameters (in any order). The
/// key holds only the hash, so nothing in Redis reveals the parts, and the
/// client secret is never one of them.
///
/// ```
/// use tower_bearer::store::StoreKey;
///
/// let a = StoreKey::builder()
///     .token_url("https://idp.example.com/token")
///     .client_id("svc")
///     .scopes(["read", "write"])
///     .param("audience", "https://api.example.com")
///     .build();
/// let b = StoreKey::builder()
///     .token_url("https://idp.example.com/token")
///     .client_id("svc")
///     .scope("write read")
///     .param("audience", "https://api.example.com")
///     .param("client_secret", "ignored: credentials never enter a key")
///     .build();
/// assert_eq!(a, b);
/// assert_eq!(a.digest().len(), 64);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StoreKey {
    digest: String,
}

impl StoreKey {
    /// A builder taking the token's identity parts.
    pub fn builder() -> StoreKeyBuilder {
        StoreKeyBuilder::default()
    }

    /// The lowercase hex SHA-256 of the identity parts (64 characters).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The key of the token for `params` from the same source: this key's
    /// digest and every part of `params`, hashed. Empty `params` give this
    /// key itself: the default token. (A keyed cache never asks for params
    /// that name a credential; should they reach here, they are left out,
    /// as [`StoreKeyBuilder::param`] leaves them.)
    ///
    /// ```
    /// use tower_bearer::TokenParams;
    /// use tower_bearer::store::StoreKey;
    ///
    /// let base = StoreKey::builder().token_url("https://idp.example.com/token").client_id("svc").build();
    /// let orders = base.for_params(&TokenParams::for_audience("orders"));
    /// assert_ne!(orders, base);
    /// assert_eq!(orders, base.for_params(&TokenParams::for_audience("orders")));
    /// assert_eq!(base.for_params(&TokenParams::default()), base);
    /// ```
    pub fn for_params(&self, params: &crate::params::TokenParams) -> StoreKey {
        if params.is_empty() {
            return self.clone();
        }
        let mut parts = Parts::new("v1 keyed");
        parts.add(b"base", &self.digest);
        for scope in params.scopes() {
            parts.add(b"scope", scope);
        }
        for audience in params.audiences() {
            parts.add(b"audience", audience);
        }
        for resource in params.resources() {
            parts.add(b"resource", resource);
        }
        for (name, value) in params.params() {
            if !is_credential(name) {
                parts.add(b"param name", name);
                parts.add(b"param value", value);
            }
        }
        parts.key()
    }
}

/// A key's parts, hashed. Every part is tagged and length-prefixed, so that
/// no two different sets of parts hash the same input.
struct Parts(Sha256);

impl Parts {
    /// Parts of a key of this `version`.
    fn new(version: &str) -> Self {
        let mut parts = Parts(Sha256::new());
        parts.add(b"tower-bearer store key", version);
        parts
    }

    fn add(&mut self, tag: &[u8], value: &str) {
        self.0.update(tag);
        self.0.update((value.len() as u64).to_be_bytes());
        self.0.update(value.as_bytes());
    }

    /// The key: the lowercase hex of the hash.
    fn key(self) -> StoreKey {
        let mut digest = String::with_capacity(64);
        for byte in self.0.finalize() {
            let _ = write!(digest, "{byte:02x}");
        }
        StoreKey { digest }
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreKey").field(&self.digest).finish()
    }
}

/// Builds a [`StoreKey`] from a token's identity parts.
#[derive(Clone, Default)]
pub struct StoreKeyBuilder {
    token_url: Option<String>,
    client_id: Option<String>,
    scopes: BTreeSet<String>,
    params: BTreeMap<String, String>,
}

impl StoreKeyBuilder {
    /// The token endpoint's URL.
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// The OAuth2 client id.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Adds scopes from a space-separated scope string, as OAuth2 writes it.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scopes
            .extend(scope.split_ascii_whitespace().map(str::to_owned));
        self
    }

    /// Adds scopes; each item may itself hold several, space-separated.
    /// Order and duplicates do not matter.
    pub fn scopes<I>(mut self, scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        for scope in scopes {
            self = self.scope(scope.as_ref());
        }
        self
    }

    /// Adds an extra token request parameter that changes which token is
    /// issued (`audience`, `resource`, a tenant). Order does not matter.
    ///
    /// Credentials (`client_secret`, `client_assertion`, `assertion`,
    /// `password`, `refresh_token`, `code`, `code_verifier`, in any letter
    /// case) are ignored: they never identify a token and must never reach a
    /// key. Every other parameter counts, secret or not: a `subject_token`
    /// (RFC 8693) says whose token it is.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        if !is_credential(&name) {
            self.params.insert(name, value.into());
        }
        self
    }

    /// Hashes the parts into a key.
    pub fn build(self) -> StoreKey {
        let mut parts = Parts::new("v1");
        if let Some(url) = &self.token_url {
            parts.add(b"token_url", url);
        }
        if let Some(id) = &self.client_id {
            parts.add(b"client_id", id);
        }
        for scope in &self.scopes {
            parts.add(b"scope", scope);
        }
        for (name, value) in &self.params {
            parts.add(b"param name", name);
            parts.add(b"param value", value);
        }
        parts.key()
    }
}

impl fmt::Debug for StoreKeyBuilder {
    // Parameter values stay out of Debug output: only their names show.
    // The URL shows without userinfo, query or fragment, which may hold
    // credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreKeyBuilder")
            .field(
                "token_url",
                &self.token_url.as_deref().map(crate::redact::redact_url),
            )
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("params", &self.params.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn is_credential(name: &str) -> bool {
    CREDENTIAL_PARAMS
        .iter()
        .any(|credential| credential.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> StoreKeyBuilder {
        StoreKey::builder()
            .token_url("https://idp.example.com/token")
            .client_id("svc")
    }

    #[test]
    fn same_parts_in_any_order_give_the_same_key() {
        let a = base()
            .scopes(["b", "a", "a"])
            .param("x", "1")
            .param("y", "2")
            .build();
        let b = base()
            .scope(" a  b ")
            .param("y", "2")
            .param("x", "1")
            .build();
        assert_eq!(a, b);
        assert_eq!(a.digest().len(), 64);
        assert!(a.digest().bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn each_part_changes_the_key() {
        let reference = base().scope("a").param("aud", "x").build();
        let variants = [
            base().scope("b").param("aud", "x").build(),
            base().scope("a").param("aud", "y").build(),
            base().scope("a").param("audience", "x").build(),
            base().scope("a").build(),
            base()
                .client_id("other")
                .scope("a")
                .param("aud", "x")
                .build(),
            base()
                .token_url("https://idp.example.com/token2")
                .scope("a")
                .param("aud", "x")
                .build(),
        ];
        for variant in variants {
            assert_ne!(reference, variant);
        }
    }

    #[test]
    fn parts_do_not_run_into_each_other() {
        let a = StoreKey::builder().token_url("ab").client_id("c").build();
        let b = StoreKey::builder().token_url("a").client_id("bc").build();
        assert_ne!(a, b);
        let c = StoreKey::builder().param("a", "bc").build();
        let d = StoreKey::builder().param("ab", "c").build();
        assert_ne!(c, d);
    }

    #[test]
    fn credentials_are_ignored_and_never_shown() {
        let with_secret = base()
            .param("client_secret", "s3cr3t")
            .param("Client_Assertion", "jwt")
            .param("password", "pw")
            .param("code_verifier", "v")
            .param("CODE", "c");
        let debug = format!("{with_secret:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert_eq!(with_secret.build(), base().build());
        // Parameters that say whose token it is count, secret or not.
        for (name, value) in [
            ("subject_token", "jwt-of-alice"),
            ("tenant_key", "t1"),
            ("requested_token_type", "urn:x"),
        ] {
            let one = base().param(name, value);
            assert_ne!(one.clone().build(), base().build(), "{name}");
            assert_ne!(one.build(), base().param(name, "other").build(), "{name}");
        }
        let shown = base().param("audience", "value-not-shown");
        assert!(!format!("{shown:?}").contains("value-not-shown"));
    }

    #[test]
    fn debug_redacts_the_token_url() {
        let builder = StoreKey::builder()
            .token_url("https://id:hunter2@idp.example.com/token?key=K3Y#frag-S3CRET");
        let shown = format!("{builder:?}");
        for secret in ["hunter2", "K3Y", "S3CRET", "@"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("https://idp.example.com/token"), "{shown}");
    }
}
