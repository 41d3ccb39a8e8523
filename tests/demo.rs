//! The `demo` example, run end to end: in its embedded mode, and in its
//! remote mode against its embedded provider (or a plain endpoint) started
//! here, on 127.0.0.1, nothing else.
#![cfg(feature = "client-credentials")]

mod support;
// The demo's own token endpoint and API; these tests use a part of it.
#[path = "../examples/demo/provider.rs"]
#[allow(dead_code)]
mod provider;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::Value;

use provider::{Counts, Credentials, Embedded, MAX_TARGETS};
use support::processes::demo_binary;
use support::temp::TempDir;
use support::{TestServer, authorization, respond};

fn run_demo(args: &[&str]) -> Output {
    Command::new(demo_binary())
        .args(args)
        .output()
        .expect("the demo runs")
}

/// Asserts that the run exited 0, showing its output otherwise; its stdout.
fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The last line of stdout, as JSON.
fn summary(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last:?}"))
}

fn histogram_total(summary: &Value) -> u64 {
    let histogram = summary["latency_histogram_ms"].as_object().unwrap();
    let keys: Vec<&str> = histogram.keys().map(String::as_str).collect();
    let mut expected = vec![
        "1", "2", "5", "10", "20", "50", "100", "200", "500", "1000", "inf",
    ];
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted, expected);
    histogram.values().map(|v| v.as_u64().unwrap()).sum()
}

#[test]
fn a_counted_run_succeeds_with_one_token() {
    let output = run_demo(&["--requests", "60", "--concurrency", "4"]);
    let stdout = succeeded(&output);
    let json = summary(&output);
    assert_eq!(json["requests"], 60);
    assert_eq!(json["ok"], 60);
    assert_eq!(json["failed"], 0);
    assert_eq!(json["status"]["200"], 60);
    assert_eq!(json["token_fetches"], 1);
    assert_eq!(histogram_total(&json), 60);
    let latency = &json["latency_ms"];
    assert!(latency["p50"].as_f64().unwrap() <= latency["p99"].as_f64().unwrap());
    assert!(latency["p99"].as_f64().unwrap() <= latency["max"].as_f64().unwrap());
    assert!(
        stdout.contains("Requests: 60 sent, 60 answered 2xx, 0 failed."),
        "{stdout}"
    );
    // One token, fetched while the first requests waited: no later token
    // came ahead of time, and the report does not say one did.
    assert!(stdout.contains("none waited after that."), "{stdout}");
    assert!(!stdout.contains("ahead of time"), "{stdout}");
}

#[test]
fn short_lived_tokens_are_refreshed_ahead_and_no_request_waits_after_the_first() {
    // Tokens live 3 s, so the cache must renew them during a 4 s run.
    let output = run_demo(&["--ttl", "3", "--duration", "4", "--concurrency", "4"]);
    let stdout = succeeded(&output);
    let json = summary(&output);
    let requests = json["requests"].as_u64().unwrap();
    assert!(requests > 0);
    assert_eq!(json["ok"], requests);
    assert_eq!(json["failed"], 0);
    assert!(json["token_fetches"].as_u64().unwrap() >= 2, "{json}");
    assert_eq!(histogram_total(&json), requests);
    assert!(
        stdout.contains(
            "none waited after that (every later token came ahead of time, in the background)."
        ),
        "{stdout}"
    );
    assert!(!stdout.contains(" 0 ahead of expiry"), "{stdout}");
    assert!(stdout.contains("rejected 0."), "{stdout}");
}

#[test]
fn wrong_credentials_say_why_once_and_cause_no_fetch_storm() {
    let output = run_demo(&["--client-secret", "wrong", "--requests", "40"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "error: no token could be had: the token endpoint refused the request: \
         invalid_client: Invalid client credentials (HTTP 400)"
    );
    let json = summary(&output);
    assert_eq!(json["requests"], 40);
    assert_eq!(json["ok"], 0);
    assert_eq!(json["failed"], 40);
    assert_eq!(json["token_fetches"], 1);
    assert!(!stderr.contains("wrong"));
}

#[test]
fn an_unreachable_token_endpoint_is_named_with_its_cause() {
    // A port nothing listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let token_url = format!("http://{closed}/token");
    let api_url = format!("http://{closed}/api");
    let output = run_demo(&[
        "--token-url",
        &token_url,
        "--client-id",
        "id",
        "--client-secret",
        "s3cret",
        "--url",
        &api_url,
        "--requests",
        "3",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().next().unwrap_or_default();
    // The source's error, then its causes down to the operating system's.
    assert!(
        line.starts_with("error: no token could be had: the token endpoint could not be reached: "),
        "{stderr}"
    );
    assert!(
        line.to_lowercase().contains("connection refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

#[test]
fn bad_arguments_exit_2_with_a_usage_line() {
    for args in [
        &["--requests", "zero"][..],
        &["--bogus"],
        &["--requests", "5", "--duration", "5"],
        &["--url", "http://127.0.0.1:1/"],
        &["--auth", "digest"],
        &["--concurrency"],
        &["--serve", "5", "--requests", "3"],
        &["--serve", "5", "--redis", "redis://127.0.0.1:1/"],
        &["--api-key", "k"],
        // Not a URL with the redis feature; the feature missing without it.
        &["--redis", "not a url"],
        &["--resource", "not/absolute"],
        &["--resource", "https://api.example.com/#fragment"],
        &["--audience", " "],
        &["--serve", "5", "--resource", "https://api.example.com/"],
        &["--serve", "5", "--audience", "orders"],
        &["--serve", "5", "--redis-cluster", "redis://127.0.0.1:1/"],
        &[
            "--redis",
            "redis://127.0.0.1:1/",
            "--redis-cluster",
            "redis://127.0.0.1:2/",
        ],
        &["--redis-cluster", "not a url"],
        // Token-exchange flags without the grant, the grant without them.
        &["--subject-token-file", "/run/token"],
        &["--grant", "token-exchange"],
        &["--grant", "password"],
        // Several --url, and not one --resource (or --audience) for each.
        &[
            "--token-url",
            "http://127.0.0.1:1/t",
            "--client-id",
            "i",
            "--url",
            "http://127.0.0.1:1/a",
            "--url",
            "http://127.0.0.1:1/b",
            "--resource",
            "http://127.0.0.1:1/a",
        ],
    ] {
        let output = run_demo(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains("Usage: demo"), "{stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn serve_needs_the_credentials_it_accepts_and_never_prints_them() {
    let output = Command::new(demo_binary())
        .args(["--serve", "5", "--client-secret", "s3cret-to-accept"])
        .env_remove("API_KEY")
        .output()
        .expect("the demo runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: --serve needs the API key"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-to-accept"), "{stderr}");
}

/// The demo's embedded provider, in this process, accepting credentials the
/// tests know: the token endpoint wants `x-api-key: ap1-k3y` and the client
/// credentials in the form; the API, its live tokens and no other API key.
async fn start_provider() -> Embedded {
    let credentials = Credentials {
        client_id: "id".to_owned(),
        client_secret: "s3cret".to_owned(),
        api_key: "ap1-k3y".to_owned(),
    };
    Embedded::start(Duration::from_secs(3600), credentials)
        .await
        .expect("the provider starts")
}

/// Runs the demo with `CLIENT_SECRET=s3cret`, off the runtime, so that the
/// provider in this process answers it meanwhile.
async fn run_demo_with_the_secret(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(demo_binary())
            .args(args)
            .env("CLIENT_SECRET", "s3cret")
            .output()
            .expect("the demo runs")
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn remote_mode_sends_the_given_credentials_and_headers() {
    let provider = start_provider().await;
    let args = [
        "--token-url",
        &provider.token_url,
        "--client-id",
        "id",
        "--auth",
        "post",
        "--token-header",
        "x-api-key: ap1-k3y",
        "--api-header",
        "x-api-key: ap1-k3y",
        "--url",
        &provider.api_url,
        "--requests",
        "10",
    ]
    .map(String::from)
    .to_vec();
    let output = run_demo_with_the_secret(args).await;
    succeeded(&output);
    let json = summary(&output);
    assert_eq!(json["requests"], 10);
    assert_eq!(json["ok"], 10);
    assert_eq!(json["token_fetches"], 1);
    assert_eq!(
        provider.counts(),
        Counts {
            tokens_issued: 1,
            tokens_exchanged: 0,
            credentials_refused: 0,
            exchanges_refused: 0,
            targets_refused: 0,
            api_accepted: 10,
            api_rejected: 0,
            api_wrong_target: 0,
            // The API header reached the API on every call.
            api_with_key: 10,
            // No --dpop: bearer tokens, and no proof to check.
            dpop_tokens_issued: 0,
            token_nonce_challenges: 0,
            api_nonce_challenges: 0,
            token_proofs_refused: 0,
            api_proofs_refused: 0,
        }
    );
}

/// With `--auth basic` (the default), the id and secret go in an HTTP Basic
/// header and nowhere else; the embedded provider wants them in the form,
/// as Avionté does, so a plain loopback endpoint stands in here.
#[tokio::test]
async fn remote_mode_sends_basic_credentials() {
    let token_endpoint = TestServer::start(|req| async move {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        // base64("id:s3cret")
        let credentials_ok =
            header("authorization") == "Basic aWQ6czNjcmV0" && header("x-extra") == "yes";
        let form = req.into_body().collect().await.unwrap().to_bytes();
        if credentials_ok && form == "grant_type=client_credentials" {
            respond(200, r#"{"access_token":"remote-token","expires_in":3600}"#)
        } else {
            respond(401, r#"{"error":"invalid_client"}"#)
        }
    })
    .await;
    let api = TestServer::start(|req| async move {
        if authorization(&req) == "Bearer remote-token" {
            respond(200, "{}")
        } else {
            respond(401, "{}")
        }
    })
    .await;
    let output = run_demo_with_the_secret(
        [
            "--token-url",
            &token_endpoint.url("/token"),
            "--client-id",
            "id",
            "--auth",
            "basic",
            "--token-header",
            "x-extra: yes",
            "--url",
            &api.url("/api"),
            "--requests",
            "10",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    succeeded(&output);
    let json = summary(&output);
    assert_eq!(json["ok"], 10);
    assert_eq!(json["token_fetches"], 1);
}

#[test]
fn huge_numbers_exit_2_instead_of_panicking() {
    for args in [
        &["--duration", "18446744073709551615"][..],
        &["--ttl", "18446744073709551615"],
        &["--concurrency", "18446744073709551615"],
        &["--serve", "18446744073709551615"],
    ] {
        let output = run_demo(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with(&format!("error: {} must be at most ", args[0])),
            "{stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn mistyped_headers_are_refused_without_repeating_them() {
    for args in [
        &["--token-header", "x-api-key=S3CR3T-HEADER"][..],
        &["--token-header=x-api-key S3CR3T-HEADER: v"],
        &["--api-header", "x-api-key: S3CR3T-HEADER\u{7f}"],
        &["-x=S3CR3T-HEADER"],
        &["S3CR3T-HEADER"],
    ] {
        let output = run_demo(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(all.starts_with("error: "), "{all}");
        assert!(!all.contains("S3CR3T"), "{args:?}: {all}");
    }
}

#[tokio::test]
async fn url_credentials_and_query_secrets_stay_out_of_the_output() {
    let provider = start_provider().await;
    // A port nothing listens on: the API cannot be reached.
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Credentials in the token URL are refused, without repeating them.
    let refused = run_demo(&[
        "--token-url",
        &provider
            .token_url
            .replacen("http://", "http://cid:PASSW0RD@", 1),
        "--client-id",
        "id",
        "--url",
        "http://127.0.0.1:9/api",
    ]);
    assert_ne!(refused.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("holds a user name or password"), "{stderr}");
    assert!(!stderr.contains("PASSW0RD"), "{stderr}");
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("PASSW0RD"));

    let output = run_demo_with_the_secret(
        [
            "--token-url",
            &format!("{}?client_key=K3Y#K3Y", provider.token_url),
            "--client-id",
            "id",
            "--auth",
            "post",
            "--token-header",
            "x-api-key: ap1-k3y",
            "--url",
            &format!("http://user:PASS@{unreachable}/api?api_key=K3Y"),
            "--requests",
            "3",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains(&format!(
            "Token endpoint {}; API http://{unreachable}/api",
            provider.token_url
        )),
        "{stdout}"
    );
    // The token came; the API call failed in reqwest, whose errors name the URL.
    assert!(
        stderr.contains("error: the API could not be reached: "),
        "{stderr}"
    );
    for secret in ["PASS", "K3Y", "s3cret", "ap1-k3y"] {
        assert!(!stdout.contains(secret), "{secret} in {stdout}");
        assert!(!stderr.contains(secret), "{secret} in {stderr}");
    }
    let json = summary(&output);
    assert_eq!(json["requests"], 3);
    assert_eq!(json["failed"], 3);
    assert_eq!(provider.counts().tokens_issued, 1);
}

/// The remote-mode arguments for the provider in this process, with
/// `extra` after them.
fn remote_args(provider: &Embedded, extra: &[&str]) -> Vec<String> {
    [
        "--token-url",
        &provider.token_url,
        "--client-id",
        "id",
        "--auth",
        "post",
        "--token-header",
        "x-api-key: ap1-k3y",
    ]
    .iter()
    .chain(extra)
    .map(|arg| arg.to_string())
    .collect()
}

/// The JSON line's `token_fetches_by_resource`, as numbers.
fn fetches_by_resource(json: &Value) -> BTreeMap<String, u64> {
    json["token_fetches_by_resource"]
        .as_object()
        .unwrap_or_else(|| panic!("no token_fetches_by_resource in {json}"))
        .iter()
        .map(|(name, n)| (name.clone(), n.as_u64().unwrap()))
        .collect()
}

fn counted<const N: usize>(pairs: [(&str, u64); N]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

#[tokio::test]
async fn two_urls_with_two_resources_get_one_token_each_and_never_the_other() {
    let provider = start_provider().await;
    let origin = provider.api_origin();
    let talents = format!("{origin}/front-office/v1/talents");
    let companies = format!("{origin}/front-office/v1/companies");
    let args = remote_args(
        &provider,
        &[
            "--url",
            &talents,
            "--url",
            &companies,
            "--resource",
            &talents,
            "--resource",
            &companies,
            "--requests",
            "40",
            "--concurrency",
            "4",
        ],
    );
    let output = run_demo_with_the_secret(args).await;
    succeeded(&output);
    let json = summary(&output);
    assert_eq!(json["requests"], 40);
    assert_eq!(json["ok"], 40);
    assert_eq!(json["failed"], 0);
    assert_eq!(json["token_fetches"], 2);
    let each_once = counted([(talents.as_str(), 1), (companies.as_str(), 1)]);
    assert_eq!(fetches_by_resource(&json), each_once);
    // The provider agrees: one token per resource, and every call carried
    // the token for its own resource (the API refuses any other, and
    // refused none).
    assert_eq!(provider.issued_by_target(), each_once);
    // Sent as `resource`, none as `audience`.
    assert!(provider.issued_by_audience().is_empty());
    let counts = provider.counts();
    assert_eq!(counts.tokens_issued, 2);
    assert_eq!(counts.api_accepted, 40);
    assert_eq!(counts.api_rejected, 0);
    assert_eq!(counts.api_wrong_target, 0);
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Asks the provider in this process for a token for `resource`: the
/// status and the JSON answer.
async fn ask_for_a_token(provider: &Embedded, resource: &str) -> (u16, Value) {
    ask_for_a_token_naming(provider, &[("resource", resource)]).await
}

/// Asks the provider in this process for a token whose request names
/// `targets` (`("resource", URI)`, `("audience", A)`): the status and the
/// JSON answer.
async fn ask_for_a_token_naming(provider: &Embedded, targets: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", "id"),
        ("client_secret", "s3cret"),
    ];
    form.extend_from_slice(targets);
    let form = serde_urlencoded::to_string(form).unwrap();
    let answer = reqwest::Client::new()
        .post(&provider.token_url)
        .header("x-api-key", "ap1-k3y")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let body = answer.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// The control for the test above: the embedded API does refuse a token
/// bound to another resource, so "no wrong-target call" means something.
#[tokio::test]
async fn the_embedded_api_refuses_a_token_for_another_resource() {
    let provider = start_provider().await;
    let origin = provider.api_origin();
    let talents = format!("{origin}/front-office/v1/talents");
    let companies = format!("{origin}/front-office/v1/companies");
    let (status, answer) = ask_for_a_token(&provider, &talents).await;
    assert_eq!(status, 200, "{answer}");
    let bearer = format!("Bearer {}", answer["access_token"].as_str().unwrap());
    let http = reqwest::Client::new();
    let call = |url: String| http.get(url).header("authorization", &bearer).send();
    // Its own resource, and a path below it.
    for url in [talents.clone(), format!("{talents}/42")] {
        assert_eq!(call(url).await.unwrap().status(), 200);
    }
    // Another path: refused as an invalid token.
    for url in [companies, format!("{talents}-and-more")] {
        let refused = call(url).await.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(
            refused.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
    }
    let counts = provider.counts();
    assert_eq!((counts.api_accepted, counts.api_wrong_target), (2, 2));
    // A resource elsewhere gets no token at all.
    let (status, answer) = ask_for_a_token(&provider, "https://elsewhere.example/").await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "invalid_target");
    assert_eq!(provider.counts().targets_refused, 1);
}

#[tokio::test]
async fn a_refused_resource_fails_only_its_own_requests_and_says_so_once() {
    let provider = start_provider().await;
    let talents = format!("{}/front-office/v1/talents", provider.api_origin());
    let elsewhere = "https://elsewhere.example/api";
    for workload in [&["--requests", "40"][..], &["--duration", "1"]] {
        let mut extra = vec![
            "--url",
            &talents,
            "--url",
            elsewhere,
            "--resource",
            &talents,
            "--resource",
            elsewhere,
            "--concurrency",
            "4",
        ];
        extra.extend(workload);
        let before = provider.counts();
        let output = run_demo_with_the_secret(remote_args(&provider, &extra)).await;
        assert_eq!(output.status.code(), Some(1), "{workload:?}");
        let json = summary(&output);
        let requests = json["requests"].as_u64().unwrap();
        let ok = json["ok"].as_u64().unwrap();
        // Round-robin: half the requests went to each URL; the good one's
        // all succeeded, the refused one's all failed.
        assert_eq!(json["status"]["200"], ok, "{json}");
        if workload[0] == "--requests" {
            assert_eq!((requests, ok), (40, 20), "{json}");
        } else {
            assert!(ok > 0 && ok < requests, "{json}");
        }
        assert_eq!(json["failed"].as_u64().unwrap(), requests - ok);
        // One line, naming the resource and the provider's OAuth error.
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: no token could be had for resource {elsewhere}: \
                 the token endpoint refused the request: invalid_target: "
            )),
            "{stderr}"
        );
        // No fetch storm: the refused key backs off on its own.
        let by_resource = fetches_by_resource(&json);
        assert_eq!(by_resource[&talents], 1, "{json}");
        assert!((1..=2).contains(&by_resource[elsewhere]), "{json}");
        let after = provider.counts();
        assert_eq!(after.tokens_issued - before.tokens_issued, 1);
        assert!(after.targets_refused - before.targets_refused <= 2);
        assert_eq!(after.api_wrong_target, 0);
    }
}

#[tokio::test]
async fn with_one_url_every_resource_goes_on_the_one_token_request() {
    let provider = start_provider().await;
    let origin = provider.api_origin();
    let front = format!("{origin}/front-office");
    let back = format!("{origin}/back-office");
    let args = remote_args(
        &provider,
        &[
            "--url",
            &provider.api_url,
            "--resource",
            &front,
            "--resource",
            &back,
            "--requests",
            "10",
        ],
    );
    let output = run_demo_with_the_secret(args).await;
    succeeded(&output);
    let json = summary(&output);
    assert_eq!(json["ok"], 10);
    assert_eq!(json["token_fetches"], 1);
    let both = counted([(front.as_str(), 1), (back.as_str(), 1)]);
    assert_eq!(fetches_by_resource(&json), both);
    // One token, whose request named both resources.
    assert_eq!(provider.counts().tokens_issued, 1);
    assert_eq!(provider.issued_by_target(), both);
}

#[tokio::test]
async fn audiences_pair_with_urls_as_resources_do() {
    let provider = start_provider().await;
    let origin = provider.api_origin();
    let talents = format!("{origin}/front-office/v1/talents");
    let orders = format!("{origin}/orders");
    let (talents_audience, orders_audience) = (format!("{origin}/front-office"), orders.clone());
    let args = remote_args(
        &provider,
        &[
            "--url",
            &talents,
            "--url",
            &orders,
            "--audience",
            &talents_audience,
            "--audience",
            &orders_audience,
            "--requests",
            "20",
        ],
    );
    let output = run_demo_with_the_secret(args).await;
    succeeded(&output);
    let json = summary(&output);
    assert_eq!(json["ok"], 20);
    assert_eq!(json["token_fetches"], 2);
    let each_once = counted([
        (talents_audience.as_str(), 1),
        (orders_audience.as_str(), 1),
    ]);
    assert_eq!(fetches_by_resource(&json), each_once);
    assert_eq!(provider.issued_by_target(), each_once);
    // Sent as `audience`, not as `resource`: the provider binds either
    // alike, so only its count by kind tells them apart.
    assert_eq!(provider.issued_by_audience(), each_once);
    assert_eq!(provider.counts().api_wrong_target, 0);
}

#[test]
fn several_urls_need_one_resource_each_or_none() {
    let base = [
        "--token-url",
        "http://127.0.0.1:1/t",
        "--client-id",
        "i",
        "--url",
        "http://127.0.0.1:1/a",
        "--url",
        "http://127.0.0.1:1/b",
    ];
    for (extra, says) in [
        (
            &["--resource", "http://127.0.0.1:1/a"][..],
            "2 --url but 1 --resource",
        ),
        (
            &["--audience", "a", "--audience", "b", "--audience", "c"],
            "2 --url but 3 --audience",
        ),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let output = run_demo(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with(&format!("error: {says}")), "{stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn the_json_line_has_fetches_by_resource_only_when_resources_are_named() {
    let output = run_demo(&["--requests", "3"]);
    succeeded(&output);
    let json = summary(&output);
    assert!(json.get("token_fetches_by_resource").is_none(), "{json}");
}

#[test]
fn a_refused_resource_on_the_one_token_request_is_named_in_the_one_error_line() {
    // The embedded provider knows only resources on its own API's origin.
    let output = run_demo(&[
        "--resource",
        "https://elsewhere.example/api",
        "--requests",
        "20",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "error: no token could be had for resource https://elsewhere.example/api: \
             the token endpoint refused the request: invalid_target: "
        ),
        "{stderr}"
    );
    let json = summary(&output);
    assert_eq!(json["failed"], 20);
    assert_eq!(json["token_fetches"], 1);
    assert_eq!(
        fetches_by_resource(&json),
        counted([("https://elsewhere.example/api", 1)])
    );
}

#[test]
fn the_json_names_each_resource_as_given_even_when_only_its_query_differs() {
    // Refused by the embedded provider (another origin), but named: each
    // key is the URI the script passed (trimmed), query and length intact.
    let long = format!("https://elsewhere.example/{}", "a".repeat(300));
    let output = run_demo(&[
        "--resource",
        " https://elsewhere.example/api?v=1 ",
        "--resource",
        "https://elsewhere.example/api?v=2",
        "--resource",
        &long,
        "--requests",
        "3",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let json = summary(&output);
    assert_eq!(
        fetches_by_resource(&json),
        counted([
            ("https://elsewhere.example/api?v=1", 1),
            ("https://elsewhere.example/api?v=2", 1),
            (long.as_str(), 1),
        ])
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: no token could be had for resource https://elsewhere.example/api?v=1, \
             resource https://elsewhere.example/api?v=2, resource {long}: "
        )),
        "{stderr}"
    );
}

#[test]
fn a_resource_with_a_user_name_or_password_is_refused_without_repeating_it() {
    for (flag, value) in [
        ("--resource", "https://u:PASSW0RD@api.example.com/"),
        ("--audience", "https://u:PASSW0RD@api.example.com/"),
    ] {
        let output = run_demo(&[flag, value]);
        assert_eq!(output.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with(&format!(
                "error: {flag} must not hold a user name or password"
            )),
            "{stderr}"
        );
        assert!(!stderr.contains("PASSW0RD"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[tokio::test]
async fn a_refused_audience_is_named_with_its_resource_and_each_refusal_has_its_line() {
    let provider = start_provider().await;
    let origin = provider.api_origin();
    let talents = format!("{origin}/front-office/v1/talents");
    let companies = format!("{origin}/front-office/v1/companies");
    let refused = |audience: &str| {
        format!(
            "error: no token could be had for resource {origin}, audience {audience}: \
             the token endpoint refused the request: invalid_target: "
        )
    };
    // Both URLs pair with the same resource, each with its own audience:
    // the line names the audience the provider refused, and a second
    // refusal under the same resource has its own line.
    for (audiences, lines) in [
        (
            [talents.as_str(), "https://one.example/"],
            vec![refused("https://one.example/")],
        ),
        (
            ["https://one.example/", "https://two.example/"],
            vec![
                refused("https://one.example/"),
                refused("https://two.example/"),
            ],
        ),
    ] {
        let args = remote_args(
            &provider,
            &[
                "--url",
                &talents,
                "--url",
                &companies,
                "--resource",
                &origin,
                "--resource",
                &origin,
                "--audience",
                audiences[0],
                "--audience",
                audiences[1],
                "--requests",
                "10",
            ],
        );
        let output = run_demo_with_the_secret(args).await;
        assert_eq!(output.status.code(), Some(1), "{audiences:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let got: Vec<&str> = stderr.lines().collect();
        assert_eq!(got.len(), lines.len(), "{stderr}");
        for (line, expected) in got.iter().zip(&lines) {
            assert!(line.starts_with(expected.as_str()), "{stderr}");
        }
        // The JSON names both tokens by their resource, as the contract's
        // "URI".
        let json = summary(&output);
        let names: Vec<String> = fetches_by_resource(&json).into_keys().collect();
        assert_eq!(names, [origin.as_str()], "{json}");
    }
}

#[tokio::test]
async fn the_provider_refuses_a_target_with_a_query_user_info_or_a_path_that_is_not_plain() {
    let provider = start_provider().await;
    let origin = provider.api_origin();
    let authority = origin.trim_start_matches("http://");
    // Each is on the API's origin and its path under the API; none is
    // accepted, counted, or printed by --serve.
    let refused = [
        format!("{origin}/front-office?api_key=S3CRET"),
        format!("http://user:S3CRET@{authority}/front-office"),
        format!("{origin}/front-office#S3CRET"),
        format!("{origin}/front-office/../S3CRET"),
        format!("{origin}/front-office/./S3CRET"),
        format!("{origin}/front-office%2FS3CRET"),
        format!("{origin}/front-office%2fS3CRET"),
        format!("{origin}/front-office%5CS3CRET"),
    ];
    for target in &refused {
        for kind in ["resource", "audience"] {
            let (status, answer) = ask_for_a_token_naming(&provider, &[(kind, target)]).await;
            assert_eq!(status, 400, "{kind} {target}: {answer}");
            assert_eq!(answer["error"], "invalid_target", "{kind} {target}");
        }
    }
    let counts = provider.counts();
    assert_eq!(counts.targets_refused, 2 * refused.len() as u64);
    assert_eq!(counts.tokens_issued, 0);
    assert!(provider.issued_by_target().is_empty());
}

#[tokio::test]
async fn the_provider_remembers_a_bounded_number_of_targets_and_refuses_more() {
    let provider = start_provider().await;
    let origin = provider.api_origin();
    // MAX_TARGETS names, a hundred per request (the form's size is bounded).
    let names: Vec<String> = (0..MAX_TARGETS)
        .map(|i| format!("{origin}/t/{i}"))
        .collect();
    for chunk in names.chunks(100) {
        let targets: Vec<(&str, &str)> = chunk.iter().map(|n| ("resource", n.as_str())).collect();
        let (status, answer) = ask_for_a_token_naming(&provider, &targets).await;
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(provider.issued_by_target().len(), MAX_TARGETS);
    // One more is refused, saying why, and nothing of its request counted.
    let one_more = format!("{origin}/t/one-more");
    let (status, answer) = ask_for_a_token_naming(
        &provider,
        &[("resource", &names[0]), ("audience", &one_more)],
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "invalid_target");
    let why = answer["error_description"].as_str().unwrap();
    assert!(why.contains(&format!("at most {MAX_TARGETS}")), "{why}");
    assert_eq!(provider.issued_by_target().len(), MAX_TARGETS);
    assert_eq!(provider.issued_by_target()[&names[0]], 1);
    // One it knows still gets a token.
    let (status, answer) = ask_for_a_token(&provider, &names[0]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(provider.issued_by_target()[&names[0]], 2);
    assert_eq!(provider.counts().targets_refused, 1);
}

/// Sends `GET path` to the API as written, dots and all (an HTTP client
/// would resolve them first), with `bearer`; the status code.
async fn raw_api_call(provider: &Embedded, path: &str, bearer: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = provider
        .api_origin()
        .trim_start_matches("http://")
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: {bearer}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer.split(' ').nth(1).unwrap_or_default();
    status
        .parse()
        .unwrap_or_else(|_| panic!("no status in {answer:?}"))
}

#[tokio::test]
async fn a_token_bound_to_a_path_is_refused_at_a_path_that_is_not_plain() {
    let provider = start_provider().await;
    let talents = format!("{}/front-office/v1/talents", provider.api_origin());
    let (status, answer) = ask_for_a_token(&provider, &talents).await;
    assert_eq!(status, 200, "{answer}");
    let bearer = format!("Bearer {}", answer["access_token"].as_str().unwrap());
    // The control: its own path, as written, is accepted.
    assert_eq!(
        raw_api_call(&provider, "/front-office/v1/talents/42", &bearer).await,
        200
    );
    let sneaky = [
        "/front-office/v1/talents/../companies",
        "/front-office/v1/talents/./42",
        "/front-office/v1/talents/%2e%2e/companies",
        "/front-office/v1/talents%2F..%2Fcompanies",
        "/front-office/v1/talents/%2fcompanies",
        "/front-office/v1/talents/%5C..%5Ccompanies",
    ];
    for path in sneaky {
        assert_eq!(raw_api_call(&provider, path, &bearer).await, 401, "{path}");
    }
    let counts = provider.counts();
    assert_eq!(counts.api_accepted, 1);
    assert_eq!(counts.api_wrong_target, sneaky.len() as u64);
    assert_eq!(counts.api_rejected, sneaky.len() as u64);
}

/// `--issuer`: the token endpoint found in the embedded provider's OpenID
/// Connect metadata, which lists `client_secret_post` only.
#[tokio::test]
async fn issuer_mode_discovers_the_token_endpoint_and_its_auth_methods() {
    let provider = start_provider().await;
    let args = |auth: &str| {
        [
            "--issuer",
            &provider.issuer,
            "--client-id",
            "id",
            "--auth",
            auth,
            "--token-header",
            "x-api-key: ap1-k3y",
            "--url",
            &provider.api_url,
            "--requests",
            "10",
        ]
        .map(String::from)
        .to_vec()
    };
    let output = run_demo_with_the_secret(args("post")).await;
    succeeded(&output);
    assert_eq!(summary(&output)["token_fetches"], 1);
    assert_eq!(provider.counts().tokens_issued, 1);

    // Basic is not among the methods the metadata lists: said, once, and
    // no token request is sent.
    let output = run_demo_with_the_secret(args("basic")).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("client_secret_basic"), "{stderr}");
    assert!(stderr.contains("client_secret_post"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert_eq!(provider.counts().tokens_issued, 1);
    assert_eq!(provider.counts().credentials_refused, 0);
}

#[cfg(feature = "rustls")]
mod client_authentication {
    use super::*;
    use jsonwebtoken::Algorithm;
    use support::assertion::{AssertionEndpoint, Verifier};
    use support::keys::{KeyKind, TestKey};
    use support::temp::TempDir;
    use support::tls::{BoundTokens, TestPki};

    /// An API that accepts the assertion endpoint's tokens.
    async fn assertion_api() -> TestServer {
        TestServer::start(|req| async move {
            if authorization(&req).starts_with("Bearer assertion-token-") {
                respond(200, "{}")
            } else {
                respond(401, "{}")
            }
        })
        .await
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    /// `--grant token-exchange` with `--auth private-key-jwt`: the subject
    /// token from its file, the client's assertion beside it.
    #[tokio::test]
    async fn a_token_exchange_authenticates_by_private_key_jwt() {
        let dir = TempDir::new("demo-exchange-key");
        let api = assertion_api().await;
        let ec = TestKey::shared(KeyKind::EcP256);
        let endpoint =
            AssertionEndpoint::start("svc", Verifier::for_key(ec, Algorithm::ES256)).await;
        endpoint.set_grant_type(provider::TOKEN_EXCHANGE);
        let key = dir.write("key.pem", ec.pkcs8_pem());
        let subject = dir.write("subject", format!("{SUBJECT_JWT}\n"));
        let output = run_demo_with_the_secret(strings(&[
            "--token-url",
            &endpoint.token_url(),
            "--client-id",
            "svc",
            "--auth",
            "private-key-jwt",
            "--private-key",
            key.to_str().unwrap(),
            "--grant",
            "token-exchange",
            "--subject-token-file",
            subject.to_str().unwrap(),
            "--subject-token-type",
            "urn:ietf:params:oauth:token-type:id_token",
            "--url",
            &api.url("/v1/orders"),
            "--requests",
            "10",
        ]))
        .await;
        succeeded(&output);
        assert_eq!(summary(&output)["token_fetches"], 1);
        assert_eq!(endpoint.issued(), 1, "{:?}", endpoint.refusals());
        let form = endpoint.last_form();
        let field = |name: &str| {
            form.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(field("subject_token"), Some(SUBJECT_JWT));
        assert_eq!(
            field("subject_token_type"),
            Some("urn:ietf:params:oauth:token-type:id_token")
        );
        assert!(field("client_assertion").is_some());
        assert_eq!(field("client_secret"), None);
    }

    #[tokio::test]
    async fn private_key_jwt_signs_with_the_key_file_in_each_form_and_algorithm() {
        let dir = TempDir::new("demo-keys");
        let api = assertion_api().await;
        let rsa = TestKey::shared(KeyKind::Rsa);
        let ec = TestKey::shared(KeyKind::EcP256);
        let ed = TestKey::shared(KeyKind::Ed25519);
        // (key file, --alg, --key-id, what the endpoint verifies)
        let cases = [
            (
                rsa.pkcs8_pem(),
                None,
                Some("rsa-1"),
                Verifier::for_key(rsa, Algorithm::RS256),
            ),
            (
                rsa.traditional_pem().unwrap(),
                Some("PS256"),
                None,
                Verifier::for_key(rsa, Algorithm::PS256),
            ),
            (
                ec.traditional_pem().unwrap(),
                Some("ES256"),
                Some("ec-1"),
                Verifier::for_key(ec, Algorithm::ES256),
            ),
            (
                ed.pkcs8_pem(),
                None,
                None,
                Verifier::for_key(ed, Algorithm::EdDSA),
            ),
        ];
        for (n, (pem, alg, kid, verifier)) in cases.into_iter().enumerate() {
            let endpoint = AssertionEndpoint::start("svc", verifier).await;
            let key = dir.write(&format!("key-{n}.pem"), &pem);
            let mut args = strings(&[
                "--token-url",
                &endpoint.token_url(),
                "--client-id",
                "svc",
                "--auth",
                "private-key-jwt",
                "--private-key",
                key.to_str().unwrap(),
                "--url",
                &api.url("/v1/orders"),
                "--requests",
                "10",
            ]);
            if let Some(alg) = alg {
                args.extend(strings(&["--alg", alg]));
            }
            if let Some(kid) = kid {
                args.extend(strings(&["--key-id", kid]));
            }
            let output = run_demo_with_the_secret(args).await;
            succeeded(&output);
            assert_eq!(summary(&output)["token_fetches"], 1, "{n}");
            assert_eq!(endpoint.issued(), 1, "{n}: {:?}", endpoint.refusals());
            assert_eq!(endpoint.kids(), vec![kid.map(str::to_owned)], "{n}");
            assert_eq!(
                endpoint.audiences(),
                vec![serde_json::json!(endpoint.token_url())]
            );
            // The secret in the environment is not sent besides the key.
            assert!(
                endpoint
                    .last_form()
                    .iter()
                    .all(|(n, _)| n != "client_secret")
            );
        }
    }

    #[tokio::test]
    async fn a_wrong_key_fails_the_run_with_one_line_after_one_token_request() {
        let dir = TempDir::new("demo-wrong-key");
        let api = assertion_api().await;
        let endpoint = AssertionEndpoint::start(
            "svc",
            Verifier::for_key(TestKey::shared(KeyKind::EcP256), Algorithm::ES256),
        )
        .await;
        let wrong = TestKey::generate(KeyKind::EcP256);
        let key = dir.write("wrong.pem", wrong.pkcs8_pem());
        let output = run_demo_with_the_secret(strings(&[
            "--token-url",
            &endpoint.token_url(),
            "--client-id",
            "svc",
            "--auth",
            "private-key-jwt",
            "--private-key",
            key.to_str().unwrap(),
            "--url",
            &api.url("/v1/orders"),
            "--requests",
            "20",
            "--concurrency",
            "8",
        ]))
        .await;
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("invalid_client"), "{stderr}");
        let body: String = wrong.pkcs8_pem().lines().nth(1).unwrap().to_owned();
        let all = format!("{stderr}{}", String::from_utf8_lossy(&output.stdout));
        assert!(
            !all.contains(&body) && !all.contains("PRIVATE KEY"),
            "{all}"
        );
        assert!(!all.contains("eyJ"), "no assertion printed: {all}");
        // A permanent refusal: one token request, not one per request.
        assert_eq!(endpoint.requests(), 1);
        assert_eq!(summary(&output)["failed"], 20);
    }

    #[tokio::test]
    async fn client_secret_jwt_signs_with_the_secret() {
        let api = assertion_api().await;
        let endpoint = AssertionEndpoint::start("svc", Verifier::secret("s3cret")).await;
        let output = run_demo_with_the_secret(strings(&[
            "--token-url",
            &endpoint.token_url(),
            "--client-id",
            "svc",
            "--auth",
            "client-secret-jwt",
            "--url",
            &api.url("/v1/orders"),
            "--requests",
            "5",
        ]))
        .await;
        succeeded(&output);
        assert_eq!(endpoint.issued(), 1, "{:?}", endpoint.refusals());
        assert!(
            endpoint
                .last_form()
                .iter()
                .all(|(_, v)| !v.contains("s3cret"))
        );
    }

    /// `--auth tls`: the certificate on the token request and on the API's,
    /// whose tokens are bound to it; `--ca` is the test CA.
    #[tokio::test]
    async fn tls_client_auth_gets_certificate_bound_tokens_the_api_accepts() {
        let pki = TestPki::new();
        let bound = BoundTokens::start(&pki).await;
        let dir = TempDir::new("demo-tls");
        let (cert, key) = pki.client("svc");
        let ca = dir.write("ca.pem", pki.ca_pem());
        let cert = dir.write("cert.pem", cert);
        let key = dir.write("key.pem", key);
        let (other_cert, other_key) = pki.client("someone-else");
        let other_cert = dir.write("other-cert.pem", other_cert);
        let other_key = dir.write("other-key.pem", other_key);
        let run = |cert: &std::path::Path, key: &std::path::Path| {
            strings(&[
                "--token-url",
                &bound.token_url(),
                "--client-id",
                "svc",
                "--auth",
                "tls",
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "--ca",
                ca.to_str().unwrap(),
                "--url",
                &bound.api_url("/orders"),
                "--requests",
                "10",
            ])
        };
        let output = run_demo_with_the_secret(run(&cert, &key)).await;
        succeeded(&output);
        assert_eq!(bound.issued(), 1);
        assert_eq!(bound.api_ok(), 10);
        assert_eq!(bound.api_refused(), 0);

        // A certificate issued to another client: refused, once.
        let output = run_demo_with_the_secret(run(&other_cert, &other_key)).await;
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("invalid_client"), "{stderr}");
        assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
        assert_eq!(bound.refused(), 1);
        assert_eq!(bound.issued(), 1);
    }

    /// `--auth tls` with a certificate from a CA the token endpoint does not
    /// trust: the TLS handshake refuses it, which is permanent. One
    /// handshake for the whole run, and one line saying why.
    #[tokio::test]
    async fn tls_client_auth_with_a_certificate_the_endpoint_refuses_fails_once_naming_the_alert() {
        let pki = TestPki::new();
        let bound = BoundTokens::start(&pki).await;
        let dir = TempDir::new("demo-tls-rogue");
        let (cert, key) = pki.rogue_client("svc");
        let ca = dir.write("ca.pem", pki.ca_pem());
        let cert = dir.write("cert.pem", cert);
        let key_file = dir.write("key.pem", &key);
        let output = run_demo_with_the_secret(strings(&[
            "--token-url",
            &bound.token_url(),
            "--client-id",
            "svc",
            "--auth",
            "tls",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key_file.to_str().unwrap(),
            "--ca",
            ca.to_str().unwrap(),
            "--url",
            &bound.api_url("/orders"),
            "--requests",
            "20",
            "--concurrency",
            "8",
        ]))
        .await;
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(
                "error: no token could be had: the token endpoint refused the client \
                 certificate during the TLS handshake (UnknownCA): "
            ),
            "{stderr}"
        );
        let all = format!("{stderr}{}", String::from_utf8_lossy(&output.stdout));
        assert!(!all.contains("PRIVATE KEY"), "{all}");
        for slice in support::tls::pem_body_slices(&key) {
            assert!(!all.contains(&slice), "{all}");
        }
        // A permanent refusal: one token request, one handshake, for all.
        let json = summary(&output);
        assert_eq!(json["token_fetches"], 1, "{json}");
        assert_eq!(json["failed"], 20, "{json}");
        assert_eq!(json["ok"], 0, "{json}");
        tokio::time::timeout(Duration::from_secs(5), async {
            while bound.server().handshake_failures() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the server saw no failed handshake");
        assert_eq!(bound.server().handshake_failures(), 1);
        assert_eq!((bound.issued(), bound.refused()), (0, 0));
        assert_eq!((bound.api_ok(), bound.api_refused()), (0, 0));
    }

    #[test]
    fn client_authentication_flags_that_cannot_work_exit_2_naming_the_flag() {
        let dir = TempDir::new("demo-bad-auth");
        let ed = dir.write("ed.pem", TestKey::shared(KeyKind::Ed25519).pkcs8_pem());
        let public = dir.write("public.pem", TestKey::shared(KeyKind::Rsa).public_key_pem());
        let not_a_cert = dir.write("not-a-cert.pem", "hello");
        let missing = dir.path().join("missing.pem");
        let remote = [
            "--token-url",
            "http://127.0.0.1:1/t",
            "--client-id",
            "i",
            "--url",
            "http://127.0.0.1:1/a",
        ];
        let with = |more: &[&str]| -> Vec<String> {
            remote.iter().chain(more).map(|a| a.to_string()).collect()
        };
        let ed = ed.to_str().unwrap();
        let cases: Vec<(Vec<String>, &str)> = vec![
            (with(&["--auth", "private-key-jwt"]), "--private-key"),
            (
                with(&[
                    "--auth",
                    "private-key-jwt",
                    "--private-key",
                    missing.to_str().unwrap(),
                ]),
                "missing.pem",
            ),
            (
                with(&[
                    "--auth",
                    "private-key-jwt",
                    "--private-key",
                    public.to_str().unwrap(),
                ]),
                "no PEM private key",
            ),
            (
                with(&[
                    "--auth",
                    "private-key-jwt",
                    "--private-key",
                    ed,
                    "--alg",
                    "RS256",
                ]),
                "Ed25519 key cannot sign RS256",
            ),
            (
                with(&[
                    "--auth",
                    "private-key-jwt",
                    "--private-key",
                    ed,
                    "--alg",
                    "HS256",
                ]),
                "--alg",
            ),
            (
                with(&["--private-key", ed]),
                "--private-key goes with --auth private-key-jwt",
            ),
            (with(&["--auth", "tls"]), "--cert"),
            (with(&["--auth", "tls", "--cert", ed]), "--key"),
            (
                with(&["--cert", ed, "--key", ed]),
                "--cert and --key go with --auth tls",
            ),
            (
                with(&["--ca", not_a_cert.to_str().unwrap()]),
                "not a PEM certificate",
            ),
            (with(&["--auth", "kerberos"]), "private-key-jwt"),
            (
                strings(&["--auth", "private-key-jwt", "--private-key", ed]),
                "--token-url URL or --issuer URL",
            ),
            (with(&["--issuer", "http://127.0.0.1:1/"]), "--issuer"),
        ];
        for (args, says) in cases {
            let output = Command::new(demo_binary())
                .args(&args)
                .env_remove("CLIENT_SECRET")
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(2), "{args:?}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(says), "{args:?}: {stderr}");
            // No key material: the base64 of a PKCS#8 or SPKI key starts so.
            assert!(
                !stderr.contains("MII") && !stderr.contains("MC4C"),
                "{stderr}"
            );
        }
        let output = Command::new(demo_binary())
            .args(with(&["--auth", "client-secret-jwt"]))
            .env_remove("CLIENT_SECRET")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
    }
}

/// A subject token shaped like a JWT, as the embedded provider wants one.
const SUBJECT_JWT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmVk";
/// An actor token, as opaque as an access token may be.
const ACTOR_TOKEN: &str = "opaque-actor-t0ken";

/// `--grant token-exchange` against the embedded provider started here:
/// the subject token read from its file (trimmed), the actor token beside
/// it, the client authenticated as `--auth post` says, and a token the API
/// accepts.
#[tokio::test]
async fn a_token_exchange_sends_the_token_files_and_its_token_is_accepted() {
    let provider = start_provider().await;
    let dir = TempDir::new("demo-exchange");
    let subject = dir.write("subject", format!("{SUBJECT_JWT}\n"));
    let actor = dir.write("actor", ACTOR_TOKEN);
    let output = run_demo_with_the_secret(remote_args(
        &provider,
        &[
            "--grant",
            "token-exchange",
            "--subject-token-file",
            subject.to_str().unwrap(),
            "--actor-token-file",
            actor.to_str().unwrap(),
            "--actor-token-type",
            "urn:ietf:params:oauth:token-type:access_token",
            "--url",
            &provider.api_url,
            "--requests",
            "10",
        ],
    ))
    .await;
    let stdout = succeeded(&output);
    assert!(stdout.contains("Token exchange (RFC 8693)"), "{stdout}");
    let json = summary(&output);
    assert_eq!(json["ok"], 10);
    assert_eq!(json["token_fetches"], 1);
    let counts = provider.counts();
    assert_eq!(counts.tokens_exchanged, 1);
    assert_eq!(counts.api_accepted, 10);
    let exchange = provider.last_exchange().expect("an exchange came");
    assert_eq!(exchange.subject_token, SUBJECT_JWT);
    assert_eq!(
        exchange.subject_token_type,
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(exchange.actor_token.as_deref(), Some(ACTOR_TOKEN));
    assert_eq!(
        exchange.actor_token_type.as_deref(),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    // The tokens are never printed.
    let stderr = String::from_utf8_lossy(&output.stderr);
    for secret in [SUBJECT_JWT, ACTOR_TOKEN, "s3cret"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret}"
        );
    }
}

/// Without `--token-url`, the demo's own embedded provider exchanges the
/// token.
#[test]
fn the_embedded_provider_exchanges_a_subject_token() {
    let dir = TempDir::new("demo-exchange-embedded");
    let subject = dir.write("subject", SUBJECT_JWT);
    let output = run_demo(&[
        "--grant",
        "token-exchange",
        "--subject-token-file",
        subject.to_str().unwrap(),
        "--requests",
        "20",
    ]);
    let stdout = succeeded(&output);
    assert_eq!(summary(&output)["ok"], 20);
    assert_eq!(summary(&output)["token_fetches"], 1);
    assert!(
        stdout.contains("issued 1 token (1 in exchange for a subject token)"),
        "{stdout}"
    );
}

/// A subject token the provider refuses, and a file that is not there:
/// one line each on stderr saying why (the provider's `invalid_grant`, the
/// file's path), never the token.
#[test]
fn a_refused_or_missing_subject_token_says_why_in_one_line() {
    let dir = TempDir::new("demo-exchange-refused");
    let not_a_jwt = dir.write("subject", "n0t-a-jwt-s3cret\n");
    let missing = dir.path().join("missing-token");
    for (file, says) in [
        (
            not_a_jwt.to_str().unwrap(),
            "error: no token could be had: the token endpoint refused the request: \
             invalid_grant: the subject token is not a JWT (HTTP 400)"
                .to_owned(),
        ),
        (
            missing.to_str().unwrap(),
            format!(
                "error: no token could be had: the subject token file {} cannot be used: \
                 it does not exist",
                missing.display()
            ),
        ),
    ] {
        let output = run_demo(&[
            "--grant",
            "token-exchange",
            "--subject-token-file",
            file,
            "--requests",
            "10",
        ]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim(), says);
        let json = summary(&output);
        assert_eq!(json["failed"], 10);
        assert_eq!(json["token_fetches"], 1, "no fetch storm");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("n0t-a-jwt"));
    }
}

#[test]
fn token_exchange_flags_that_cannot_work_exit_2_naming_the_flag() {
    let te = [
        "--grant",
        "token-exchange",
        "--subject-token-file",
        "/run/t",
    ];
    let with =
        |more: &[&'static str]| -> Vec<&'static str> { te.iter().chain(more).copied().collect() };
    for (args, says) in [
        (
            vec!["--subject-token-file", "/run/t"],
            "--subject-token-file goes with --grant token-exchange",
        ),
        (
            vec![
                "--subject-token-type",
                "urn:ietf:params:oauth:token-type:jwt",
            ],
            "--subject-token-type goes with --grant token-exchange",
        ),
        (
            vec!["--actor-token-file", "/run/a"],
            "--actor-token-file goes with --grant token-exchange",
        ),
        (
            vec!["--grant", "token-exchange"],
            "--grant token-exchange needs --subject-token-file",
        ),
        (
            vec!["--grant", "jwt-bearer"],
            "--grant must be client-credentials or token-exchange",
        ),
        (
            with(&["--actor-token-type", "urn:ietf:params:oauth:token-type:jwt"]),
            "--actor-token-type goes with --actor-token-file",
        ),
        (
            with(&["--subject-token-type", "jwt"]),
            "--subject-token-type needs a token type URI",
        ),
        (
            vec!["--serve", "5", "--grant", "token-exchange"],
            "'--grant <GRANT>'",
        ),
    ] {
        let output = Command::new(demo_binary())
            .args(&args)
            .env("CLIENT_SECRET", "s")
            .env("API_KEY", "k")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stderr.contains("Usage: demo"), "{stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

// --dpop: sender-constrained tokens (RFC 9449).

/// The last line of stdout as printed: serde_json sorts a map's keys, so
/// the order of the keys is checked on the text.
fn last_line(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.lines().last().unwrap_or_default().to_owned()
}

/// With `--concurrency 1`, the first request goes alone: the token request
/// is asked for the endpoint's nonce once, the first API request for the
/// API's once, and every later request carries the nonce it learnt.
#[test]
fn dpop_against_the_embedded_provider_costs_one_nonce_retry_at_each_server() {
    let output = run_demo(&["--dpop", "--requests", "20", "--concurrency", "1"]);
    let stdout = succeeded(&output);
    let json = summary(&output);
    assert_eq!(json["requests"], 20);
    assert_eq!(json["ok"], 20);
    assert_eq!(json["failed"], 0);
    // A fetch counted once, its nonce retry included.
    assert_eq!(json["token_fetches"], 1);
    assert_eq!(json["dpop_nonce_retries"], 2);
    // Right after token_fetches; the keys before and after as they were.
    let line = last_line(&output);
    assert!(
        line.starts_with(
            "{\"requests\":20,\"ok\":20,\"failed\":0,\"status\":{\"200\":20},\
             \"token_fetches\":1,\"dpop_nonce_retries\":2,\"latency_ms\":{"
        ),
        "{line}"
    );
    assert_eq!(histogram_total(&json), 20);
    // The provider agrees: one bound token, one challenge at each server,
    // every proof good, and a challenge is not a rejection.
    assert!(
        stdout.contains(
            "Embedded DPoP: 1 token bound to a key; 2 requests were asked for a nonce \
             (1 at the token endpoint, 1 at the API); 0 proofs refused."
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("the API accepted 20 requests and rejected 0."),
        "{stdout}"
    );
    // The key is named by its thumbprint (43 base64url characters).
    let named = stdout
        .lines()
        .find_map(|line| line.strip_prefix("DPoP: tokens bound to the ES256 key with thumbprint "))
        .unwrap_or_else(|| panic!("no DPoP line in {stdout}"));
    let thumbprint = named.split(',').next().unwrap();
    assert_eq!(thumbprint.len(), 43, "{named}");
    assert!(named.contains("2 nonce retries"), "{named}");
    assert!(output.stderr.is_empty());
}

/// With `--concurrency C`, the first C API requests wait for the token
/// together and then go out together, before any answer has brought the
/// API's nonce: each may be challenged, and is retried once. So between 1
/// and C API retries, plus the token request's one.
#[test]
fn dpop_with_concurrent_first_requests_retries_each_at_most_once() {
    let output = run_demo(&["--dpop", "--requests", "40", "--concurrency", "8"]);
    let stdout = succeeded(&output);
    let json = summary(&output);
    assert_eq!(json["ok"], 40);
    assert_eq!(json["token_fetches"], 1);
    let retries = json["dpop_nonce_retries"].as_u64().unwrap();
    assert!((2..=1 + 8).contains(&retries), "{json}");
    assert!(
        stdout.contains(&format!(
            "{retries} requests were asked for a nonce (1 at the token endpoint, {} at the API)",
            retries - 1
        )),
        "{stdout}"
    );
}

#[test]
fn without_dpop_the_json_line_has_no_nonce_retries() {
    let output = run_demo(&["--requests", "5"]);
    let stdout = succeeded(&output);
    assert!(summary(&output).get("dpop_nonce_retries").is_none());
    assert!(!stdout.contains("DPoP"), "{stdout}");
}

#[test]
fn dpop_with_a_token_exchange_against_the_embedded_provider() {
    let dir = TempDir::new("demo-dpop-exchange");
    let subject = dir.write("subject", SUBJECT_JWT);
    let output = run_demo(&[
        "--dpop",
        "--grant",
        "token-exchange",
        "--subject-token-file",
        subject.to_str().unwrap(),
        "--requests",
        "10",
        "--concurrency",
        "1",
    ]);
    let stdout = succeeded(&output);
    let json = summary(&output);
    assert_eq!(json["ok"], 10);
    assert_eq!(json["token_fetches"], 1);
    assert_eq!(json["dpop_nonce_retries"], 2);
    assert!(
        stdout.contains("issued 1 token (1 in exchange for a subject token)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Embedded DPoP: 1 token bound to a key;"),
        "{stdout}"
    );
}

/// Remote mode against the demo's provider in this process: one URL, then
/// two URLs with a resource each (two tokens, both bound; the second token
/// request already carries the endpoint's nonce).
#[tokio::test]
async fn dpop_with_a_remote_provider_and_one_token_per_url() {
    let provider = start_provider().await;
    let output = run_demo_with_the_secret(remote_args(
        &provider,
        &[
            "--dpop",
            "--url",
            &provider.api_url,
            "--api-header",
            "x-api-key: ap1-k3y",
            "--requests",
            "10",
            "--concurrency",
            "1",
        ],
    ))
    .await;
    succeeded(&output);
    let json = summary(&output);
    assert_eq!(json["ok"], 10);
    assert_eq!(json["token_fetches"], 1);
    assert_eq!(json["dpop_nonce_retries"], 2);
    let counts = provider.counts();
    assert_eq!(
        (counts.tokens_issued, counts.dpop_tokens_issued),
        (1, 1),
        "{counts:?}"
    );
    assert_eq!(
        (counts.token_nonce_challenges, counts.api_nonce_challenges),
        (1, 1)
    );
    assert_eq!((counts.api_accepted, counts.api_rejected), (10, 0));
    assert_eq!(counts.proofs_refused(), 0);

    let origin = provider.api_origin();
    let talents = format!("{origin}/front-office/v1/talents");
    let companies = format!("{origin}/front-office/v1/companies");
    let output = run_demo_with_the_secret(remote_args(
        &provider,
        &[
            "--dpop",
            "--url",
            &talents,
            "--url",
            &companies,
            "--resource",
            &talents,
            "--resource",
            &companies,
            "--requests",
            "20",
            "--concurrency",
            "1",
        ],
    ))
    .await;
    succeeded(&output);
    let json = summary(&output);
    assert_eq!(json["ok"], 20);
    assert_eq!(json["token_fetches"], 2);
    assert_eq!(
        fetches_by_resource(&json),
        counted([(talents.as_str(), 1), (companies.as_str(), 1)])
    );
    // A new process, a new key and no nonce yet: one challenge at the
    // token endpoint (the second token's request carries its nonce) and
    // one at the API (one origin for both URLs).
    assert_eq!(json["dpop_nonce_retries"], 2);
    let line = last_line(&output);
    assert!(
        line.contains("},\"dpop_nonce_retries\":2,\"latency_ms\":{"),
        "after token_fetches_by_resource: {line}"
    );
    let after = provider.counts();
    assert_eq!(after.dpop_tokens_issued, 3);
    assert_eq!(after.api_accepted, 30);
    assert_eq!((after.api_rejected, after.api_wrong_target), (0, 0));
    assert_eq!(after.proofs_refused(), 0);
}

/// A token endpoint that answers every token request `status` and `body`,
/// and counts them, and those that carried a DPoP proof; an API that
/// counts its calls.
async fn canned_token_endpoint(
    status: u16,
    body: &'static str,
) -> (TestServer, TestServer, Arc<[AtomicUsize; 3]>) {
    // [token requests, with a DPoP proof, API calls]
    let seen: Arc<[AtomicUsize; 3]> = Arc::default();
    let counts = Arc::clone(&seen);
    let token_endpoint = TestServer::start(move |req| {
        let counts = Arc::clone(&counts);
        async move {
            counts[0].fetch_add(1, Ordering::SeqCst);
            if req.headers().get("dpop").is_some() {
                counts[1].fetch_add(1, Ordering::SeqCst);
            }
            respond(status, body)
        }
    })
    .await;
    let counts = Arc::clone(&seen);
    let api = TestServer::start(move |_req| {
        let counts = Arc::clone(&counts);
        async move {
            counts[2].fetch_add(1, Ordering::SeqCst);
            respond(200, "{}")
        }
    })
    .await;
    (token_endpoint, api, seen)
}

fn dpop_against(token_endpoint: &TestServer, api: &TestServer) -> Vec<String> {
    [
        "--dpop",
        "--token-url",
        &token_endpoint.url("/token"),
        "--client-id",
        "id",
        "--url",
        &api.url("/api"),
        "--requests",
        "20",
        "--concurrency",
        "8",
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test]
async fn a_refused_dpop_proof_fails_the_run_with_one_line_after_one_token_request() {
    let (token_endpoint, api, seen) = canned_token_endpoint(
        400,
        r#"{"error":"invalid_dpop_proof","error_description":"the proof's signature does not verify"}"#,
    )
    .await;
    let output = run_demo_with_the_secret(dpop_against(&token_endpoint, &api)).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "error: no token could be had: the token endpoint refused the request: \
             invalid_dpop_proof: the proof's signature does not verify"
        ),
        "{stderr}"
    );
    // Not a nonce challenge: not retried, and no fetch storm.
    let json = summary(&output);
    assert_eq!(
        (json["failed"].as_u64(), json["ok"].as_u64()),
        (Some(20), Some(0))
    );
    assert_eq!(json["token_fetches"], 1);
    assert_eq!(json["dpop_nonce_retries"], 0);
    assert_eq!(seen[0].load(Ordering::SeqCst), 1);
    assert_eq!(seen[1].load(Ordering::SeqCst), 1, "the request had a proof");
    assert_eq!(
        seen[2].load(Ordering::SeqCst),
        0,
        "no API call without a token"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("s3cret"));
}

#[tokio::test]
async fn a_bearer_token_given_for_a_dpop_request_is_refused_as_not_bound() {
    let (token_endpoint, api, seen) = canned_token_endpoint(
        200,
        r#"{"access_token":"unb0und-t0ken","token_type":"Bearer","expires_in":3600}"#,
    )
    .await;
    let output = run_demo_with_the_secret(dpop_against(&token_endpoint, &api)).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "error: no token could be had: the token endpoint answered a DPoP token request \
             with a token of type \"Bearer\", not bound to the key"
        ),
        "{stderr}"
    );
    let json = summary(&output);
    assert_eq!(json["failed"], 20);
    assert_eq!(json["token_fetches"], 1);
    assert_eq!(seen[0].load(Ordering::SeqCst), 1);
    // The unbound token is never sent, nor printed.
    assert_eq!(seen[2].load(Ordering::SeqCst), 0);
    let all = format!("{stderr}{}", String::from_utf8_lossy(&output.stdout));
    assert!(!all.contains("unb0und-t0ken"), "{all}");
}

#[test]
fn dpop_flags_that_cannot_work_exit_2_naming_the_flag() {
    for (args, says) in [
        (
            &["--dpop", "--redis", "redis://127.0.0.1:1/"][..],
            "error: --dpop does not go with --redis: a DPoP token is bound to this \
             process's key, so the fleet cannot share it",
        ),
        (
            &["--dpop", "--redis-cluster", "redis://127.0.0.1:1/"],
            "error: --dpop does not go with --redis-cluster: ",
        ),
        (&["--serve", "5", "--dpop"], "'--dpop'"),
        (&["--dpop=yes"], "--dpop"),
    ] {
        let output = Command::new(demo_binary())
            .args(args)
            .env("CLIENT_SECRET", "s")
            .env("API_KEY", "k")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stderr.contains("Usage: demo"), "{stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

/// A DPoP key made here, and proofs made by hand with it: the embedded
/// provider's checks, seen from outside, with no library code involved.
struct HandKey {
    encoding: jsonwebtoken::EncodingKey,
    jwk: Value,
}

impl HandKey {
    fn generate() -> HandKey {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let key = support::keys::TestKey::generate(support::keys::KeyKind::EcP256);
        // The SPKI ends with the uncompressed point 04 || x || y.
        let spki = key.public_key_der();
        let point = &spki[spki.len() - 64..];
        HandKey {
            encoding: key.encoding_key(),
            jwk: serde_json::json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[..32]),
                "y": URL_SAFE_NO_PAD.encode(&point[32..]),
            }),
        }
    }

    /// A good proof for `method` on `url`, with `ath` of `token` and
    /// `nonce` if given.
    fn proof(&self, method: &str, url: &str, token: Option<&str>, nonce: Option<&str>) -> String {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = serde_json::json!({
            "jti": format!("{:032x}", fastrand::u128(..)),
            "htm": method,
            "htu": url,
            "iat": now,
        });
        if let Some(token) = token {
            claims["ath"] = Value::from(support::dpop_verify::ath(token));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::from(nonce);
        }
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &self.encoding,
            jsonwebtoken::Algorithm::ES256,
        )
        .unwrap();
        format!("{message}.{signature}")
    }
}

/// What a server answered: the status, `WWW-Authenticate`, `DPoP-Nonce`
/// and the JSON body.
struct Answer {
    status: u16,
    challenge: String,
    nonce: Option<String>,
    body: Value,
}

async fn answer_of(response: reqwest::Response) -> Answer {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (challenge, nonce) = (header("www-authenticate"), header("dpop-nonce"));
    Answer {
        status: response.status().as_u16(),
        challenge: challenge.unwrap_or_default(),
        nonce,
        body: serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
    }
}

#[tokio::test]
async fn the_embedded_provider_checks_every_dpop_proof() {
    let provider = start_provider().await;
    let key = HandKey::generate();
    let http = reqwest::Client::new();
    let ask = |proof: Option<String>| {
        let mut request = http
            .post(&provider.token_url)
            .header("x-api-key", "ap1-k3y")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&client_id=id&client_secret=s3cret");
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        async move { answer_of(request.send().await.unwrap()).await }
    };
    let token_url = provider.token_url.as_str();

    // Before any DPoP request, no nonce is given out.
    let bearer = ask(None).await;
    assert_eq!((bearer.status, bearer.nonce.as_deref()), (200, None));
    assert_eq!(bearer.body["token_type"], "Bearer");

    // The endpoint wants its nonce, and says which.
    let challenged = ask(Some(key.proof("POST", token_url, None, None))).await;
    assert_eq!(challenged.status, 400);
    assert_eq!(challenged.body["error"], "use_dpop_nonce");
    let token_nonce = challenged.nonce.expect("a DPoP-Nonce");
    let stale = ask(Some(key.proof("POST", token_url, None, Some("stale")))).await;
    assert_eq!(stale.body["error"], "use_dpop_nonce");

    let good = key.proof("POST", token_url, None, Some(&token_nonce));
    let issued = ask(Some(good.clone())).await;
    assert_eq!(issued.status, 200, "{}", issued.body);
    assert_eq!(issued.body["token_type"], "DPoP");
    assert_eq!(issued.nonce.as_deref(), Some(token_nonce.as_str()));
    let token = issued.body["access_token"].as_str().unwrap().to_owned();

    // A proof is good once, for its own URL.
    let replayed = ask(Some(good)).await;
    assert_eq!(
        (replayed.status, replayed.body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    let elsewhere = format!("{}/elsewhere", provider.issuer);
    let misdirected = ask(Some(key.proof(
        "POST",
        &elsewhere,
        None,
        Some(&token_nonce),
    )))
    .await;
    assert_eq!(misdirected.body["error"], "invalid_dpop_proof");
    // Every answer carries the nonce now, a bearer token's too.
    let bearer = ask(None).await;
    assert_eq!(bearer.body["token_type"], "Bearer");
    assert_eq!(bearer.nonce.as_deref(), Some(token_nonce.as_str()));

    // The API: the token comes as DPoP, with a proof of the key carrying
    // the API's own nonce, for the URL without its query.
    let api_url = provider.api_url.as_str();
    let call = |authorization: String, proof: Option<String>| {
        let mut request = http
            .get(format!("{api_url}?page=2"))
            .header("authorization", authorization);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        async move { answer_of(request.send().await.unwrap()).await }
    };
    let dpop = format!("DPoP {token}");
    let as_bearer = call(format!("Bearer {token}"), None).await;
    assert_eq!(as_bearer.status, 401);
    assert!(
        as_bearer.challenge.starts_with("DPoP ")
            && as_bearer.challenge.contains("error=\"invalid_token\""),
        "{}",
        as_bearer.challenge
    );
    let challenged = call(
        dpop.clone(),
        Some(key.proof("GET", api_url, Some(&token), None)),
    )
    .await;
    assert_eq!(challenged.status, 401);
    assert!(
        challenged.challenge.contains("error=\"use_dpop_nonce\""),
        "{}",
        challenged.challenge
    );
    let api_nonce = challenged.nonce.expect("a DPoP-Nonce");
    assert_ne!(api_nonce, token_nonce, "each server has its own");
    // The token endpoint's nonce is not the API's.
    let wrong_nonce = key.proof("GET", api_url, Some(&token), Some(&token_nonce));
    let refused = call(dpop.clone(), Some(wrong_nonce)).await;
    assert!(refused.challenge.contains("use_dpop_nonce"));

    let good = key.proof("GET", api_url, Some(&token), Some(&api_nonce));
    let accepted = call(dpop.clone(), Some(good.clone())).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.nonce.as_deref(), Some(api_nonce.as_str()));
    let replayed = call(dpop.clone(), Some(good)).await;
    assert_eq!(replayed.status, 401);
    assert!(
        replayed.challenge.contains("error=\"invalid_dpop_proof\""),
        "{}",
        replayed.challenge
    );
    // The hash of another token.
    let wrong_ath = key.proof("GET", api_url, Some("another"), Some(&api_nonce));
    let refused = call(dpop.clone(), Some(wrong_ath)).await;
    assert!(refused.challenge.contains("invalid_dpop_proof"));
    // A good proof, by another key than the token's.
    let thief = HandKey::generate().proof("GET", api_url, Some(&token), Some(&api_nonce));
    let refused = call(dpop.clone(), Some(thief)).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused.challenge.contains("error=\"invalid_token\""),
        "{}",
        refused.challenge
    );
    // A bearer token sent as DPoP.
    let bearer_token = bearer.body["access_token"].as_str().unwrap();
    let proof = key.proof("GET", api_url, Some(bearer_token), Some(&api_nonce));
    let refused = call(format!("DPoP {bearer_token}"), Some(proof)).await;
    assert!(refused.challenge.contains("invalid_token"));

    let counts = provider.counts();
    assert_eq!((counts.tokens_issued, counts.dpop_tokens_issued), (3, 1));
    assert_eq!(counts.token_nonce_challenges, 2);
    assert_eq!(counts.api_nonce_challenges, 2);
    // The replay and the other URL; the replay, the wrong ath, the thief.
    assert_eq!(
        (counts.token_proofs_refused, counts.api_proofs_refused),
        (2, 3)
    );
    assert_eq!(counts.token_requests_refused(), 2);
    assert_eq!(counts.api_accepted, 1);
    // Bearer-sent, replay, wrong ath, thief, bearer token as DPoP.
    assert_eq!(counts.api_rejected, 5);
}
