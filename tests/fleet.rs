//! A fleet of demo processes, started at once against one token endpoint (a
//! `demo --serve` process) and one `redis-server` this test starts on a free
//! loopback port: with `--redis` they fetch one token between them, without
//! it one each.
//!
//! Without `redis-server` on the PATH this test prints a skip message and
//! passes, unless the `CI` environment variable is set: then it fails.
#![cfg(all(feature = "client-credentials", feature = "redis"))]

mod support;

use support::processes::{RedisServer, demo_binary};

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinSet;
use tokio::time::timeout;

const PROCESSES: usize = 8;
const REQUESTS_PER_PROCESS: &str = "20";
const CLIENT_SECRET: &str = "fleet-client-secret-never-printed";
const API_KEY: &str = "fleet-api-key-never-printed";
/// Bounds each wait on the demo processes; a run takes well under a second.
const PROCESS_DEADLINE: Duration = Duration::from_secs(10);
/// Bounds the whole test; dropping its future kills every child still running.
const TEST_DEADLINE: Duration = Duration::from_secs(25);

/// A `demo --serve` process: the one token endpoint and API of a run.
/// Killed on drop if it is still running.
struct Provider {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    token_url: String,
    api_url: String,
    client_id: String,
}

impl Provider {
    async fn start() -> Provider {
        let mut child = Command::new(demo_binary())
            .args(["--serve", "60"])
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("API_KEY", API_KEY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the demo starts");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = timeout(PROCESS_DEADLINE, stdout.next_line())
            .await
            .expect("the provider says where it listens in time")
            .expect("its stdout reads")
            .expect("a first line");
        let ready: Value =
            serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
        let field = |name: &str| {
            ready[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in {first:?}"))
                .to_owned()
        };
        assert!(!first.contains(CLIENT_SECRET) && !first.contains(API_KEY));
        Provider {
            token_url: field("token_url"),
            api_url: field("api_url"),
            client_id: field("client_id"),
            child,
            stdin,
            stdout,
        }
    }

    /// Stops it by closing its standard input, and returns its closing
    /// report.
    async fn stop(mut self) -> Value {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        let read_all = async {
            while let Some(line) = self.stdout.next_line().await.expect("its stdout reads") {
                rest.push(line);
            }
        };
        timeout(PROCESS_DEADLINE, read_all)
            .await
            .expect("the provider stops when its stdin closes");
        let status = timeout(PROCESS_DEADLINE, self.child.wait())
            .await
            .expect("the provider exits")
            .expect("its status");
        assert!(status.success(), "{status}: {rest:?}");
        let last = rest.last().expect("a closing report");
        assert!(
            rest.iter()
                .all(|line| !line.contains(CLIENT_SECRET) && !line.contains(API_KEY))
        );
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last:?}"))
    }
}

/// What one workload process printed.
struct Workload {
    stdout: String,
    summary: Value,
}

impl Workload {
    /// From its human line `Shared store: ... M from the token endpoint.`.
    fn endpoint_fetches(&self) -> u64 {
        let line = self
            .stdout
            .lines()
            .find(|line| line.starts_with("Shared store: "))
            .unwrap_or_else(|| panic!("no shared store line in {}", self.stdout));
        line.trim_end_matches(" from the token endpoint.")
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line:?}"))
    }
}

/// Starts `PROCESSES` workload demos at once against `provider` and waits
/// for all of them; each must succeed.
async fn run_fleet(provider: &Provider, redis_url: Option<&str>) -> Vec<Workload> {
    let mut processes = JoinSet::new();
    for _ in 0..PROCESSES {
        let mut command = Command::new(demo_binary());
        command
            .args(["--token-url", &provider.token_url])
            .args(["--client-id", &provider.client_id])
            .args(["--auth", "post"])
            .args(["--token-header", &format!("x-api-key: {API_KEY}")])
            .args(["--url", &provider.api_url])
            .args(["--requests", REQUESTS_PER_PROCESS, "--concurrency", "4"])
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(url) = redis_url {
            command.args(["--redis", url]);
        }
        processes.spawn(async move { command.output().await.expect("the demo runs") });
    }
    let outputs = timeout(PROCESS_DEADLINE, processes.join_all())
        .await
        .expect("every workload process finishes in time");
    outputs
        .into_iter()
        .map(|output| {
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{stdout}\n{stderr}");
            for text in [stdout.as_str(), &stderr] {
                assert!(!text.contains(CLIENT_SECRET) && !text.contains(API_KEY));
            }
            let last = stdout.lines().last().expect("some output");
            let summary: Value =
                serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last:?}"));
            assert_eq!(summary["ok"], summary["requests"], "{stdout}");
            Workload { stdout, summary }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_with_redis_make_one_provider_fetch_and_eight_without() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    timeout(TEST_DEADLINE, fleet_runs(&redis))
        .await
        .expect("both runs finish in time");
}

async fn fleet_runs(redis: &RedisServer) {
    let provider = Provider::start().await;
    let alone = run_fleet(&provider, None).await;
    let report = provider.stop().await;
    assert_eq!(report["tokens_issued"], PROCESSES, "{report}");
    assert_eq!(report["token_requests_refused"], 0, "{report}");
    for process in &alone {
        assert_eq!(process.summary["token_fetches"], 1, "{}", process.stdout);
        assert!(!process.stdout.contains("Shared store: "));
    }

    let provider = Provider::start().await;
    let shared = run_fleet(&provider, Some(&redis.url)).await;
    let report = provider.stop().await;
    assert_eq!(report["tokens_issued"], 1, "{report}");
    assert_eq!(report["token_requests_refused"], 0, "{report}");
    // Each process's cache fetched once; one of those fetches reached the
    // provider, the others were answered from Redis.
    for process in &shared {
        assert_eq!(process.summary["token_fetches"], 1, "{}", process.stdout);
    }
    let from_endpoint: u64 = shared.iter().map(Workload::endpoint_fetches).sum();
    assert_eq!(from_endpoint, 1);
}
