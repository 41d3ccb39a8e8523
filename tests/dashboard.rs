//! The Grafana dashboard in `dashboards/` and the `metrics` example: the
//! dashboard is one Grafana can import, every series its panels and
//! variables query is in the example's scrape, and the scrape shows what
//! the example promises.
#![cfg(all(feature = "metrics", feature = "client-credentials"))]

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::processes::example_binary;
use support::scrape::Scrape;
use tower_bearer::metrics as names;

const DASHBOARD: &str = include_str!("../dashboards/tower-bearer.json");

/// How long the example may run: it takes about four seconds, and bounds
/// its own wait for a refresh at 30.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// The example's client secret, and the prefix of the tokens its endpoint
/// issues: neither may be printed.
const CLIENT_SECRET: &str = "example-client-secret";
const TOKEN_PREFIX: &str = "secret-token-";

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// The example, run once for all the tests here, killed if it outruns
/// [`TIME_LIMIT`].
fn example_run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let mut child = Command::new(example_binary("metrics"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the metrics example starts");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                pipe.read_to_string(&mut text)
                    .expect("the example's output");
                text
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + TIME_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("the example's status") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the metrics example ran over {TIME_LIMIT:?}; stderr:\n{}",
                    stderr.join().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Run {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    })
}

/// The example's scrape, after checking that it exited 0.
fn scrape() -> Scrape {
    let run = example_run();
    assert!(
        run.status.success(),
        "the metrics example failed ({}):\n{}",
        run.status,
        run.stderr
    );
    Scrape::parse(&run.stdout)
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("the dashboard is JSON")
}

/// Every panel, those inside rows too.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, into: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            into.push(panel);
            walk(&panel["panels"], into);
        }
    }
    let mut all = Vec::new();
    walk(&dashboard["panels"], &mut all);
    all
}

/// Every query: each panel target's `expr` and each query variable's
/// `query`, with where it comes from.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            queries.push((format!("panel {:?}", panel["title"]), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            let query = variable["query"]
                .as_str()
                .expect("a query variable's query");
            queries.push((format!("variable {}", variable["name"]), query.to_owned()));
        }
    }
    queries
}

/// A series selector in a query: `name{label op "value", ...}`.
struct Selector {
    name: String,
    matchers: Vec<LabelMatcher>,
}

/// `label op "value"`, `op` one of `=`, `!=`, `=~`, `!~`.
struct LabelMatcher {
    label: String,
    op: String,
    value: String,
}

/// Each `tower_bearer_...` selector in `query`.
fn selectors(query: &str) -> Vec<Selector> {
    let mut found = Vec::new();
    let mut rest = query;
    while let Some(start) = rest.find("tower_bearer_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_owned();
        let mut matchers = Vec::new();
        if let Some(body) = tail[end..].strip_prefix('{') {
            let body = &body[..body.find('}').expect("a closed selector")];
            for matcher in body.split(", ").map(str::trim).filter(|m| !m.is_empty()) {
                let op_at = matcher.find(['=', '!']).expect("a matcher");
                let op_len = if matcher[op_at + 1..].starts_with(['=', '~']) {
                    2
                } else {
                    1
                };
                let label = matcher[..op_at].trim().to_owned();
                let op = matcher[op_at..op_at + op_len].to_owned();
                let value = matcher[op_at + op_len..]
                    .trim()
                    .trim_matches('"')
                    .to_owned();
                matchers.push(LabelMatcher { label, op, value });
            }
        }
        found.push(Selector { name, matchers });
        rest = &tail[end..];
    }
    found
}

#[test]
fn the_dashboard_is_importable_with_a_data_source_and_cache_and_key_variables() {
    let dashboard = dashboard();
    for required in [
        "title",
        "uid",
        "schemaVersion",
        "panels",
        "templating",
        "annotations",
    ] {
        assert!(!dashboard[required].is_null(), "no {required}");
    }
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    for (name, query) in [
        ("cache", "label_values(tower_bearer_requests_total, cache)"),
        (
            "key",
            r#"label_values(tower_bearer_requests_total{cache=~"$cache"}, key)"#,
        ),
    ] {
        let v = variable(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["query"], query, "{name}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
    }

    // Every panel and query goes to the chosen data source, and every
    // selector is narrowed to the chosen caches (and keys, where the series
    // has them).
    let all = panels(&dashboard);
    let mut ids = BTreeSet::new();
    for panel in &all {
        assert!(ids.insert(panel["id"].as_i64().unwrap()), "duplicate id");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        let targets = panel["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty());
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{target}");
        }
    }
    for (origin, query) in queries(&dashboard) {
        if origin.starts_with("variable") {
            continue;
        }
        for Selector { name, matchers } in selectors(&query) {
            let has = |label: &str, value: &str| {
                matchers
                    .iter()
                    .any(|m| m.label == label && m.op == "=~" && m.value == value)
            };
            assert!(has("cache", "$cache"), "{origin}: {name} not by $cache");
            if name != names::KEYS_EVICTED {
                assert!(has("key", "$key"), "{origin}: {name} not by $key");
            }
        }
    }

    // The panels fit the 24-column grid without overlapping.
    let boxes: Vec<(i64, i64, i64, i64, &Value)> = all
        .iter()
        .map(|panel| {
            let at = |k: &str| panel["gridPos"][k].as_i64().expect("a grid position");
            (at("x"), at("y"), at("w"), at("h"), &panel["title"])
        })
        .collect();
    for (i, &(x, y, w, h, title)) in boxes.iter().enumerate() {
        assert!(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= 24, "{title}");
        for &(x2, y2, w2, h2, title2) in &boxes[i + 1..] {
            let apart = x + w <= x2 || x2 + w2 <= x || y + h <= y2 || y2 + h2 <= y;
            assert!(apart, "{title} overlaps {title2}");
        }
    }
}

#[test]
fn every_series_the_dashboard_queries_is_in_the_example_s_scrape() {
    let scrape = scrape();
    let exported = scrape.names();
    let mut queried = BTreeSet::new();
    for (origin, query) in queries(&dashboard()) {
        let found = selectors(&query);
        assert!(!found.is_empty(), "{origin} queries no tower_bearer series");
        for Selector { name, matchers } in found {
            assert!(
                exported.contains(name.as_str()),
                "{origin} queries {name}, which the scrape lacks"
            );
            let metric = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| scrape.types.get(*base).is_some_and(|t| t == "histogram"))
                .unwrap_or(name.as_str());
            if name.ends_with("_bucket") {
                assert_eq!(
                    scrape.types.get(metric).map(String::as_str),
                    Some("histogram"),
                    "{origin}: {name} needs {metric} exported as a histogram (buckets set)"
                );
            }
            // A label the panel picks by value is one the series has.
            for LabelMatcher { label, op, value } in matchers {
                if op == "=" || op == "!=" {
                    assert!(
                        scrape
                            .matching(&name, &[(label.as_str(), value.as_str())])
                            .next()
                            .is_some(),
                        "{origin}: no {name} with {label}={value:?}"
                    );
                }
            }
            queried.insert(metric.to_owned());
        }
    }
    // And every metric the crate reports has a panel.
    let reported = [
        names::REQUESTS,
        names::FETCHES,
        names::FETCH_DURATION,
        names::WAIT_DURATION,
        names::INVALIDATIONS,
        names::REMAINING_LIFETIME,
        names::REFRESH_AT,
        names::USABLE_UNTIL,
        names::KEYS_EVICTED,
    ];
    for metric in reported {
        assert!(queried.contains(metric), "no panel shows {metric}");
    }
}

#[test]
fn the_example_s_scrape_shows_a_token_s_life_and_no_secret() {
    let scrape = scrape();
    let orders = [("cache", "orders"), ("key", "default")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut labels = orders.to_vec();
        labels.extend_from_slice(extra);
        labels
    };
    let fetches = |reason, outcome| {
        scrape.value(
            names::FETCHES,
            &with(&[("reason", reason), ("outcome", outcome)]),
        )
    };
    let requests = |path| scrape.value(names::REQUESTS, &with(&[("path", path)]));

    // The first fetch, which requests waited for; then requests served
    // from the cache.
    assert!(fetches("no_usable_token", "ok") >= 1.0);
    assert!(requests("waited") >= 2.0, "{}", requests("waited"));
    assert!(requests("cached") >= 1.0);
    assert_eq!(requests("failed_fast"), 0.0);
    // A refresh ahead, and the one token the API rejected, thrown away and
    // replaced.
    assert!(fetches("refresh_ahead", "ok") >= 1.0);
    let invalidations = |cause| scrape.value(names::INVALIDATIONS, &with(&[("cause", cause)]));
    assert_eq!(invalidations("rejected"), 1.0);
    assert_eq!(invalidations("requested"), 0.0);
    // The rejection starts the refetch, unless the next refresh ahead had
    // already started (a stall of seconds on a loaded machine): that fetch
    // then brings the new token.
    let rejected = fetches("rejected", "ok");
    assert!(rejected <= 1.0, "{rejected}");
    assert!(
        rejected + fetches("refresh_ahead", "ok") >= 2.0,
        "the rejected token was replaced"
    );
    assert_eq!(fetches("requested", "ok"), 0.0);
    for reason in ["no_usable_token", "refresh_ahead", "requested", "rejected"] {
        for outcome in ["transient_error", "permanent_error"] {
            assert_eq!(fetches(reason, outcome), 0.0, "{reason} {outcome}");
        }
    }
    // Each fetch timed once.
    let ok_fetches: f64 = ["no_usable_token", "refresh_ahead", "requested", "rejected"]
        .into_iter()
        .map(|reason| fetches(reason, "ok"))
        .sum();
    let fetch_count = format!("{}_count", names::FETCH_DURATION);
    assert_eq!(
        scrape.value(&fetch_count, &with(&[("outcome", "ok")])),
        ok_fetches
    );
    let wait_count = format!("{}_count", names::WAIT_DURATION);
    assert!(scrape.value(&wait_count, &orders) >= 2.0);

    // The refreshed token had time left when it was replaced.
    let replaced = format!("{}_count", names::REMAINING_LIFETIME);
    let left = format!("{}_sum", names::REMAINING_LIFETIME);
    assert!(scrape.value(&replaced, &orders) >= 1.0);
    assert!(scrape.value(&left, &orders) > 0.0);

    // The gauges: the current token's refresh point, then its usable end,
    // which comes at most its 6 s lifetime after it was fetched.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let refresh_at = scrape.value(names::REFRESH_AT, &orders);
    let usable_until = scrape.value(names::USABLE_UNTIL, &orders);
    assert!(refresh_at > 0.0 && refresh_at < usable_until);
    assert!(
        usable_until < now + 6.0 && usable_until > now - TIME_LIMIT.as_secs_f64(),
        "{usable_until} against {now}"
    );
    assert_eq!(
        scrape.value(names::KEYS_EVICTED, &[("cache", "orders")]),
        0.0
    );

    // Nothing secret, on either stream.
    let run = example_run();
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        for secret in [CLIENT_SECRET, TOKEN_PREFIX, "Bearer "] {
            assert!(!text.contains(secret), "{stream} shows {secret:?}");
        }
    }
}
