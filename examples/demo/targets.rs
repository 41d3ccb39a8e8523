//! Which token each request gets: the `--url`s, each with the token it
//! needs, the layer's selector that maps a request's URL to its token, and
//! the fetches counted by resource for the JSON line.

use tower_bearer::request::Target;
use tower_bearer::{TokenCache, TokenParams};

use crate::tokens::{Tokens, UrlToken};
use crate::workload::Endpoint;

/// Where a URL goes, as the layer's selector sees a request: its scheme,
/// host, port (the default one if none is given) and path; the query does
/// not count. Two `--url` with the same route cannot have different tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    scheme: String,
    host: Option<String>,
    port: Option<u16>,
    path: String,
}

impl Route {
    pub fn of(url: &reqwest::Url) -> Route {
        Route {
            scheme: url.scheme().to_owned(),
            host: url.host_str().map(str::to_owned),
            port: url.port_or_known_default(),
            path: url.path().to_owned(),
        }
    }

    /// Whether a request to `target` takes this route: the same scheme,
    /// host, port (the default one if none is given) and path.
    fn matches(&self, target: &Target<'_>) -> bool {
        let same = |a: Option<&str>, b: Option<&str>| match (a, b) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        };
        same(target.scheme(), Some(&self.scheme))
            && same(target.host(), self.host.as_deref())
            && target.port() == self.port
            && target.path() == self.path
    }
}

/// The URLs, each with the token it needs, and the tokens, each once.
pub struct Targets {
    /// Each URL and its token's number: 0 for the default token, `n` for
    /// `keys[n - 1]`.
    urls: Vec<(reqwest::Url, usize)>,
    /// The tokens the URLs are paired with, each once (by its cache key),
    /// in the order of the URLs that first name them.
    keys: Vec<(UrlToken, TokenParams)>,
    /// What the default token's request names, `(kind, name)`: with one
    /// `--url` (or none), every `--resource` and `--audience`.
    default_names: Vec<(&'static str, String)>,
}

impl Targets {
    pub fn new(urls: Vec<reqwest::Url>, tokens: &Tokens) -> Targets {
        match tokens {
            Tokens::One {
                resources,
                audiences,
            } => Targets {
                urls: urls.into_iter().map(|url| (url, 0)).collect(),
                keys: Vec::new(),
                default_names: (resources.iter().map(|r| ("resource", r.clone())))
                    .chain(audiences.iter().map(|a| ("audience", a.clone())))
                    .collect(),
            },
            Tokens::PerUrl(each) => {
                let mut keys: Vec<(UrlToken, TokenParams)> = Vec::new();
                let urls = urls
                    .into_iter()
                    .zip(each)
                    .map(|(url, token)| {
                        let params = params_of(token);
                        let number = match keys.iter().position(|(_, known)| *known == params) {
                            Some(i) => i + 1,
                            None => {
                                keys.push((token.clone(), params));
                                keys.len()
                            }
                        };
                        (url, number)
                    })
                    .collect();
                Targets {
                    urls,
                    keys,
                    default_names: Vec::new(),
                }
            }
        }
    }

    /// Whether `--resource` or `--audience` was given: the JSON line then
    /// has `token_fetches_by_resource`.
    fn named(&self) -> bool {
        !self.keys.is_empty() || !self.default_names.is_empty()
    }

    /// Where the workload sends requests, each saying in messages what its
    /// token is for, with the cache of that token.
    pub fn endpoints(&self, cache: &TokenCache) -> Vec<Endpoint> {
        // The default token names what its request names, if anything.
        let default_for = (!self.default_names.is_empty()).then(|| {
            let names: Vec<String> = self
                .default_names
                .iter()
                .map(|(kind, name)| format!("{kind} {name}"))
                .collect();
            names.join(", ")
        });
        self.urls
            .iter()
            .map(|(url, number)| {
                let (token_for, cache) = match number.checked_sub(1) {
                    None => (default_for.clone(), Some(cache.clone())),
                    // Made now, so that its counters are there to read;
                    // nothing is fetched until a request needs it. A key the
                    // source cannot make fails its own requests, in the
                    // layer, and says why.
                    Some(i) => {
                        let (token, params) = &self.keys[i];
                        (token.describe(), cache.for_params(params).ok())
                    }
                };
                Endpoint {
                    url: url.clone(),
                    token_for,
                    cache,
                    token: *number,
                }
            })
            .collect()
    }

    /// The layer's selector, with several `--url` paired with resources: a
    /// request to one of the URLs (same scheme, host, port and path) gets
    /// that URL's token; any other, the default token.
    pub fn selector(
        &self,
    ) -> Option<impl Fn(&Target<'_>) -> Option<TokenParams> + Send + Sync + 'static> {
        let routes: Vec<(Route, TokenParams)> = self
            .urls
            .iter()
            .filter_map(|(url, number)| {
                let (_, params) = self.keys.get(number.checked_sub(1)?)?;
                Some((Route::of(url), params.clone()))
            })
            .collect();
        (!routes.is_empty()).then_some(move |target: &Target<'_>| {
            routes
                .iter()
                .find(|(route, _)| route.matches(target))
                .map(|(_, params)| params.clone())
        })
    }

    /// `token_fetches_by_resource`, when `--resource` or `--audience` was
    /// given, keyed by the names as given: with one token, each name its
    /// request carried, with that token's fetches; with a token per URL,
    /// each token's resource (or audience, when it has no resource), with
    /// its key's fetches.
    pub fn fetches_by_resource(&self, cache: &TokenCache) -> Option<Vec<(String, u64)>> {
        if !self.named() {
            return None;
        }
        let mut by_name: Vec<(String, u64)> = Vec::new();
        // Each token counts once under a name; two tokens under one name (a
        // resource paired with two audiences) add up.
        let mut add =
            |name: &str, fetches: u64| match by_name.iter_mut().find(|(known, _)| known == name) {
                Some((_, n)) => *n += fetches,
                None => by_name.push((name.to_owned(), fetches)),
            };
        if self.keys.is_empty() {
            // One token: a name given twice (as a resource and as an
            // audience) counts it once.
            let fetches = cache.stats().fetches_started;
            let mut seen: Vec<&str> = Vec::new();
            for (_, name) in &self.default_names {
                if !seen.contains(&name.as_str()) {
                    seen.push(name);
                    add(name, fetches);
                }
            }
        } else {
            for (token, params) in &self.keys {
                let Some(name) = token.key() else {
                    continue;
                };
                let fetches = cache
                    .for_params(params)
                    .map_or(0, |key| key.stats().fetches_started);
                add(name, fetches);
            }
        }
        Some(by_name)
    }
}

/// The cache key of a URL's token: its resource and audience.
fn params_of(token: &UrlToken) -> TokenParams {
    let mut params = TokenParams::builder();
    if let Some(resource) = &token.resource {
        params = params.resource(resource.clone());
    }
    if let Some(audience) = &token.audience {
        params = params.audience(audience.clone());
    }
    params.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_gives_each_url_its_own_token_and_any_other_the_default() {
        let urls = ["http://127.0.0.1:9/a", "https://api.example.com/b?x=1"]
            .map(|url| reqwest::Url::parse(url).unwrap())
            .to_vec();
        let tokens = Tokens::PerUrl(vec![
            UrlToken {
                resource: Some("urn:a".into()),
                audience: None,
            },
            UrlToken {
                resource: None,
                audience: Some("b".into()),
            },
        ]);
        let select = Targets::new(urls, &tokens).selector().expect("paired");
        let target =
            |scheme, host, port, path| Target::new(Some(scheme), Some(host), port).with_path(path);
        assert_eq!(
            select(&target("http", "127.0.0.1", Some(9), "/a")),
            Some(TokenParams::for_resource("urn:a"))
        );
        // The query is not part of the match; the default port is.
        assert_eq!(
            select(&target("https", "api.example.com", None, "/b")),
            Some(TokenParams::for_audience("b"))
        );
        assert_eq!(
            select(&target("https", "api.example.com", Some(443), "/b")),
            Some(TokenParams::for_audience("b"))
        );
        for other in [
            target("http", "127.0.0.1", Some(9), "/a/more"),
            target("http", "127.0.0.1", Some(10), "/a"),
            target("http", "api.example.com", None, "/b"),
        ] {
            assert_eq!(select(&other), None, "{other:?}");
        }
        let one = Tokens::One {
            resources: vec!["urn:a".into()],
            audiences: vec![],
        };
        let urls = vec![reqwest::Url::parse("http://127.0.0.1:9/a").unwrap()];
        assert!(Targets::new(urls, &one).selector().is_none());
    }

    #[test]
    fn a_route_is_scheme_host_port_and_path() {
        let route = |url| Route::of(&reqwest::Url::parse(url).unwrap());
        assert_eq!(route("http://H/a?x=1"), route("http://h:80/a?y=2"));
        assert_ne!(route("http://h/a"), route("https://h/a"));
        assert_ne!(route("http://h/a"), route("http://h:81/a"));
        assert_ne!(route("http://h/a"), route("http://h/a/"));
    }

    #[test]
    fn urls_with_the_same_token_share_its_number() {
        let urls = ["http://h/a", "http://h/b", "http://h/c"]
            .map(|url| reqwest::Url::parse(url).unwrap())
            .to_vec();
        let token = |resource: &str| UrlToken {
            resource: Some(resource.into()),
            audience: None,
        };
        let targets = Targets::new(
            urls,
            &Tokens::PerUrl(vec![token("urn:a"), token("urn:b"), token("urn:a")]),
        );
        let numbers: Vec<usize> = targets.urls.iter().map(|(_, n)| *n).collect();
        assert_eq!(numbers, [1, 2, 1]);
        assert_eq!(targets.keys.len(), 2);
    }
}
