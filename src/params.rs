//! [`TokenParams`]: which token a request needs, when it is not the layer's
//! default: its scopes, audiences, resources (RFC 8707) and other token
//! request parameters.
//!
//! Put it on a request as an extension, or have the layer pick it from the
//! request's target with [`BearerAuthLayer::token_for`](crate::BearerAuthLayer::token_for).
//! The layer keeps one token per distinct `TokenParams` (see
//! [`TokenCache::keyed`](crate::TokenCache::keyed)).
//!
//! ```
//! use tower_bearer::TokenParams;
//!
//! let graph = TokenParams::builder()
//!     .resource("https://graph.example.com")
//!     .scope("User.Read Mail.Read")
//!     .build();
//! // The same key, whatever the order and the repeats.
//! let same = TokenParams::builder()
//!     .scopes(["Mail.Read", "User.Read", "Mail.Read"])
//!     .resource("https://graph.example.com")
//!     .build();
//! assert_eq!(graph, same);
//! assert_eq!(graph.scopes(), ["Mail.Read", "User.Read"]);
//!
//! let mut request = http::Request::new(());
//! request.extensions_mut().insert(graph);
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

/// The parameters that choose a token: scopes, audiences, resources and
/// other token request parameters, each normalised (sorted, without
/// duplicates), so that two requests asking for the same token share it.
///
/// Cheap to clone (a reference count) and quick to hash (the hash is
/// computed once, when built). The empty value means the layer's default
/// token.
///
/// It holds no credential: the keyed cache refuses parameters whose names
/// say they carry one ([`CREDENTIAL_PARAMS`], and names holding `secret`,
/// `password`, `assertion`, `token`, `credential` or ending in `key`), and
/// `Debug` shows only the names of the other parameters and the resources
/// and audiences without user info or query.
#[derive(Clone)]
pub struct TokenParams(Arc<Parts>);

/// Parameter names that carry a credential or a grant's own secret, in any
/// letter case: never part of a token's key.
pub const CREDENTIAL_PARAMS: [&str; 7] = [
    "client_secret",
    "client_assertion",
    "assertion",
    "password",
    "refresh_token",
    "code",
    "code_verifier",
];

/// Whether a parameter name says it carries a credential: one of
/// [`CREDENTIAL_PARAMS`], or a name the redaction rule hides.
pub(crate) fn names_credential(name: &str) -> bool {
    CREDENTIAL_PARAMS
        .iter()
        .any(|credential| credential.eq_ignore_ascii_case(name))
        || crate::redact::secret_key(name)
}

#[derive(PartialEq, Eq, Default)]
struct Parts {
    scopes: Vec<String>,
    audiences: Vec<String>,
    resources: Vec<String>,
    params: Vec<(String, String)>,
    hash: u64,
}

impl TokenParams {
    /// A builder.
    pub fn builder() -> TokenParamsBuilder {
        TokenParamsBuilder::default()
    }

    /// The token for one resource (RFC 8707 `resource`, an absolute URI).
    pub fn for_resource(resource: impl Into<String>) -> Self {
        Self::builder().resource(resource).build()
    }

    /// The token for one audience (the `audience` parameter of Auth0, Okta
    /// and RFC 8693).
    pub fn for_audience(audience: impl Into<String>) -> Self {
        Self::builder().audience(audience).build()
    }

    /// The token for these scopes; each item may hold several,
    /// space-separated.
    pub fn for_scopes<I>(scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::builder().scopes(scopes).build()
    }

    /// The scopes, sorted, each once.
    pub fn scopes(&self) -> &[String] {
        &self.0.scopes
    }

    /// The audiences, sorted, each once.
    pub fn audiences(&self) -> &[String] {
        &self.0.audiences
    }

    /// The resources, sorted, each once.
    pub fn resources(&self) -> &[String] {
        &self.0.resources
    }

    /// The other parameters, sorted by name then value, each pair once.
    pub fn params(&self) -> &[(String, String)] {
        &self.0.params
    }

    /// The first parameter whose name says it carries a credential: such
    /// params are refused.
    pub(crate) fn credential_param(&self) -> Option<&str> {
        self.0
            .params
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| names_credential(name))
    }

    /// Whether nothing is asked for: the layer's default token.
    pub fn is_empty(&self) -> bool {
        let parts = &*self.0;
        parts.scopes.is_empty()
            && parts.audiences.is_empty()
            && parts.resources.is_empty()
            && parts.params.is_empty()
    }

    /// The key as a metric label: scopes, audiences and resources (these
    /// without user info, query or fragment) and the other parameters by
    /// name only, as `scope=a,b audience=x resource=https://host/p param=n`.
    #[cfg(feature = "metrics")]
    pub(crate) fn label(&self) -> String {
        let parts = &*self.0;
        let mut param_names: Vec<String> = parts.params.iter().map(|(n, _)| n.clone()).collect();
        param_names.dedup();
        let groups = [
            ("scope", parts.scopes.clone()),
            ("audience", shown_uris(&parts.audiences)),
            ("resource", shown_uris(&parts.resources)),
            ("param", param_names),
        ];
        groups
            .iter()
            .filter(|(_, values)| !values.is_empty())
            .map(|(name, values)| format!("{name}={}", values.join(",")))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Default for TokenParams {
    fn default() -> Self {
        TokenParamsBuilder::default().build()
    }
}

impl PartialEq for TokenParams {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for TokenParams {}

impl Hash for TokenParams {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl fmt::Debug for TokenParams {
    // Parameter values stay out; audiences and resources, which may be
    // URIs, show without user info, query or fragment.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = &*self.0;
        let mut out = f.debug_struct("TokenParams");
        if !parts.scopes.is_empty() {
            out.field("scopes", &parts.scopes);
        }
        if !parts.audiences.is_empty() {
            out.field("audiences", &shown_uris(&parts.audiences));
        }
        if !parts.resources.is_empty() {
            out.field("resources", &shown_uris(&parts.resources));
        }
        if !parts.params.is_empty() {
            let names: Vec<&str> = parts.params.iter().map(|(n, _)| n.as_str()).collect();
            out.field("params", &names);
        }
        out.finish()
    }
}

/// Audiences or resources as `Debug` and metric labels show them: URIs
/// without user info, query or fragment.
fn shown_uris(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|uri| crate::redact::redact_url(uri))
        .collect()
}

/// Builds [`TokenParams`]. Order and repeats never matter.
#[derive(Clone, Default)]
pub struct TokenParamsBuilder {
    scopes: BTreeSet<String>,
    audiences: BTreeSet<String>,
    resources: BTreeSet<String>,
    params: BTreeSet<(String, String)>,
}

impl TokenParamsBuilder {
    /// Adds scopes from a space-separated scope string, as OAuth2 writes it.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scopes
            .extend(scope.split_ascii_whitespace().map(str::to_owned));
        self
    }

    /// Adds scopes; each item may hold several, space-separated.
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

    /// Adds an audience (repeatable).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.insert(audience.into());
        self
    }

    /// Adds a resource, an absolute URI (RFC 8707; repeatable).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.insert(resource.into());
        self
    }

    /// Adds another token request parameter (a tenant, a
    /// `requested_token_use`); repeatable, and a name may repeat with
    /// different values. `scope`, `audience` and `resource` (as written, in
    /// lowercase) go to their own lists.
    pub fn param(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        match name.as_str() {
            "scope" => self.scope(&value),
            "audience" => self.audience(value),
            "resource" => self.resource(value),
            _ => {
                let mut this = self;
                this.params.insert((name, value));
                this
            }
        }
    }

    /// The parameters.
    pub fn build(self) -> TokenParams {
        let mut parts = Parts {
            scopes: self.scopes.into_iter().collect(),
            audiences: self.audiences.into_iter().collect(),
            resources: self.resources.into_iter().collect(),
            params: self.params.into_iter().collect(),
            hash: 0,
        };
        parts.hash = hash_of(&parts);
        TokenParams(Arc::new(parts))
    }
}

impl fmt::Debug for TokenParamsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.clone().build(), f)
    }
}

/// A hash of every part, seeded once per process so that no one can choose
/// parameters that collide.
fn hash_of(parts: &Parts) -> u64 {
    static SEED: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let mut hasher = SEED.get_or_init(Default::default).build_hasher();
    // Length-prefixed lists: no two different sets of parts hash alike by
    // running into each other.
    for list in [&parts.scopes, &parts.audiences, &parts.resources] {
        list.hash(&mut hasher);
    }
    parts.params.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn order_and_repeats_do_not_change_the_key() {
        let a = TokenParams::builder()
            .scope("b a")
            .audience("x")
            .resource("https://r2")
            .resource("https://r1")
            .param("tenant", "t1")
            .build();
        let b = TokenParams::builder()
            .param("tenant", "t1")
            .resource("https://r1")
            .scopes(["a", "a b"])
            .param("resource", "https://r2")
            .param("audience", "x")
            .build();
        assert_eq!(a, b);
        let set: HashSet<TokenParams> = [a.clone(), b].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert_eq!(a.resources(), ["https://r1", "https://r2"]);
    }

    #[test]
    fn each_part_makes_a_different_key() {
        let keys = [
            TokenParams::default(),
            TokenParams::for_scopes(["a"]),
            TokenParams::for_scopes(["a b"]),
            TokenParams::for_audience("a"),
            TokenParams::for_resource("a"),
            TokenParams::builder().param("a", "").build(),
            TokenParams::builder().param("tenant", "a").build(),
            TokenParams::builder()
                .param("tenant", "a")
                .param("tenant", "b")
                .build(),
            TokenParams::builder().audience("a").resource("a").build(),
        ];
        let distinct: HashSet<TokenParams> = keys.iter().cloned().collect();
        assert_eq!(distinct.len(), keys.len());
        assert!(keys[0].is_empty() && !keys[1].is_empty());
    }

    #[test]
    fn debug_shows_parameter_names_not_values() {
        let params = TokenParams::builder()
            .resource("https://user:pw@api.example.com/v1?sig=S1GNED")
            .audience("orders")
            .param("tenant", "value-not-shown")
            .build();
        let shown = format!("{params:?}");
        assert!(shown.contains("https://api.example.com/v1"), "{shown}");
        assert!(
            shown.contains("orders") && shown.contains("tenant"),
            "{shown}"
        );
        for hidden in ["value-not-shown", "pw", "S1GNED"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
    }

    #[test]
    fn credential_names_are_found() {
        for name in [
            "client_secret",
            "Code",
            "code_verifier",
            "assertion",
            "subject_token",
            "api_key",
            "tenant_password",
        ] {
            let params = TokenParams::builder().param(name, "x").build();
            assert_eq!(params.credential_param(), Some(name), "{name}");
        }
        for name in ["tenant", "requested_token_type", "region", "keyword"] {
            let params = TokenParams::builder().param(name, "x").build();
            assert_eq!(params.credential_param(), None, "{name}");
        }
    }
}
