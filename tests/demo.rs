//! The `demo` example, run end to end: in its embedded mode, and in its
//! remote mode against its embedded provider (or a plain endpoint) started
//! here, on 127.0.0.1, nothing else.
#![cfg(feature = "client-credentials")]

mod support;
// The demo's own token endpoint and API; these tests use a part of it.
#[path = "../examples/demo/provider.rs"]
#[allow(dead_code)]
mod provider;

use std::process::{Command, Output};
use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::Value;

use provider::{Counts, Credentials, Embedded};
use support::processes::demo_binary;
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
            credentials_refused: 0,
            api_accepted: 10,
            api_rejected: 0,
            // The API header reached the API on every call.
            api_with_key: 10,
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
