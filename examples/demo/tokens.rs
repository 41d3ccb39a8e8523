//! Which token each request needs: the `--url`s paired with the
//! `--resource`s and `--audience`s, and the checks on that pairing.

use tower_bearer::redact_url;

use crate::targets::Route;

/// Which token each request needs.
#[derive(Clone, PartialEq, Eq)]
pub enum Tokens {
    /// One token for every request, its request naming these resources and
    /// audiences (none: the provider's default). With one `--url`, or none.
    One {
        resources: Vec<String>,
        audiences: Vec<String>,
    },
    /// With several `--url`: the token for each URL's resource and audience,
    /// at the same position as the URL.
    PerUrl(Vec<UrlToken>),
}

/// The token one `--url` needs.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlToken {
    pub resource: Option<String>,
    pub audience: Option<String>,
}

impl UrlToken {
    /// Its name in `token_fetches_by_resource`: the resource, else the
    /// audience, as given.
    pub fn key(&self) -> Option<&str> {
        self.resource.as_deref().or(self.audience.as_deref())
    }

    /// How messages name it: `resource R`, `audience A`, or both
    /// (`resource R, audience A`), so that a refusal names what was asked
    /// for, and two tokens with one resource are told apart.
    pub fn describe(&self) -> Option<String> {
        match (&self.resource, &self.audience) {
            (Some(resource), Some(audience)) => {
                Some(format!("resource {resource}, audience {audience}"))
            }
            (Some(resource), None) => Some(format!("resource {resource}")),
            (None, Some(audience)) => Some(format!("audience {audience}")),
            (None, None) => None,
        }
    }
}

// A resource or audience may hold a secret in its query (or, typed
// without the flag's checks, a password): Debug shows each as redact_url
// does.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokens::One {
                resources,
                audiences,
            } => f
                .debug_struct("One")
                .field("resources", &redacted(resources))
                .field("audiences", &redacted(audiences))
                .finish(),
            Tokens::PerUrl(each) => f.debug_tuple("PerUrl").field(each).finish(),
        }
    }
}

impl std::fmt::Debug for UrlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |name: &Option<String>| name.as_deref().map(redact_url);
        f.debug_struct("UrlToken")
            .field("resource", &shown(&self.resource))
            .field("audience", &shown(&self.audience))
            .finish()
    }
}

/// Names as `Debug` shows them: through `redact_url`.
pub fn redacted(names: &[String]) -> Vec<String> {
    names.iter().map(|name| redact_url(name)).collect()
}

/// Pairs `urls` URLs with the resources and audiences: with several URLs,
/// each flag given must be given once per URL (its values then pair with
/// the URLs by position); otherwise every value goes on the one token.
pub fn pair(urls: usize, resources: Vec<String>, audiences: Vec<String>) -> Result<Tokens, String> {
    if urls <= 1 || (resources.is_empty() && audiences.is_empty()) {
        return Ok(Tokens::One {
            resources,
            audiences,
        });
    }
    for (flag, given) in [
        ("--resource", resources.len()),
        ("--audience", audiences.len()),
    ] {
        if given != 0 && given != urls {
            return Err(format!(
                "{urls} --url but {given} {flag}: with several --url, give one {flag} per --url \
                 (the first pairs with the first --url, and so on), or none"
            ));
        }
    }
    let mut resources = resources.into_iter();
    let mut audiences = audiences.into_iter();
    Ok(Tokens::PerUrl(
        (0..urls)
            .map(|_| UrlToken {
                resource: resources.next(),
                audience: audiences.next(),
            })
            .collect(),
    ))
}

/// Refuses two `--url` with different tokens that the layer could not tell
/// apart: it picks a request's token by scheme, host, port and path, not by
/// query. A URL that does not parse is left for the run to refuse, as
/// before.
pub fn distinct_routes(urls: &[String], tokens: Tokens) -> Result<Tokens, String> {
    let Tokens::PerUrl(each) = &tokens else {
        return Ok(tokens);
    };
    let routes: Vec<Option<Route>> = urls
        .iter()
        .map(|url| reqwest::Url::parse(url).ok().as_ref().map(Route::of))
        .collect();
    for (i, a) in routes.iter().enumerate() {
        for (j, b) in routes.iter().enumerate().skip(i + 1) {
            if a.is_some() && a == b && each[i] != each[j] {
                return Err(format!(
                    "--url number {} and {} differ only in their query but pair with different \
                     tokens: the token is chosen by scheme, host, port and path",
                    i + 1,
                    j + 1
                ));
            }
        }
    }
    Ok(tokens)
}
