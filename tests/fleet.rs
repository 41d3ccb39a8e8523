//! A fleet of demo processes, started at once against one token endpoint (a
//! `demo --serve` process) and one `redis-server` this test starts on a free
//! loopback port: with `--redis` they fetch one token between them, without
//! it one each. With two resources each (two `--url`, two `--resource`),
//! on one Redis or on a three-node Redis Cluster (`--redis-cluster`), they
//! fetch one token per resource between them.
//!
//! Without `redis-server` (and, for the cluster, `redis-cli`) on the PATH
//! these tests print a skip message and pass, unless the `CI` environment
//! variable is set: then they fail.
#![cfg(all(feature = "client-credentials", feature = "redis"))]

mod support;

use support::processes::{RedisCluster, RedisServer, demo_binary};

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinSet;
use tokio::time::timeout;

const PROCESSES: usize = 8;
/// The processes of a run with two resources each.
const KEYED_PROCESSES: usize = 6;
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
    /// `http://127.0.0.1:PORT`: the resources the provider accepts are
    /// under it.
    api_origin: String,
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
            api_origin: field("api_origin"),
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

    /// Its JSON line's `token_fetches_by_resource`.
    fn fetches_by_resource(&self) -> BTreeMap<String, u64> {
        serde_json::from_value(self.summary["token_fetches_by_resource"].clone())
            .unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// Starts `PROCESSES` workload demos at once against `provider` and waits
/// for all of them; each must succeed.
async fn run_fleet(provider: &Provider, redis_url: Option<&str>) -> Vec<Workload> {
    let mut args = vec!["--url".to_owned(), provider.api_url.clone()];
    if let Some(url) = redis_url {
        args.extend(["--redis".to_owned(), url.to_owned()]);
    }
    run_processes(provider, PROCESSES, &args).await
}

/// Starts `count` workload demos at once against `provider`, each with
/// `args` besides the provider's and the workload's, and waits for all of
/// them; each must succeed.
async fn run_processes(provider: &Provider, count: usize, args: &[String]) -> Vec<Workload> {
    let mut processes = JoinSet::new();
    for _ in 0..count {
        let mut command = Command::new(demo_binary());
        command
            .args(["--token-url", &provider.token_url])
            .args(["--client-id", &provider.client_id])
            .args(["--auth", "post"])
            .args(["--token-header", &format!("x-api-key: {API_KEY}")])
            .args(args)
            .args(["--requests", REQUESTS_PER_PROCESS, "--concurrency", "4"])
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .stdin(Stdio::null())
            .kill_on_drop(true);
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

/// The arguments of a process with two resources: two URLs on the
/// provider's API, each paired with itself as its resource, and the shared
/// store's; and the two resources.
fn two_resources(provider: &Provider, store: &[&str]) -> (Vec<String>, [String; 2]) {
    let talents = format!("{}/front-office/v1/talents", provider.api_origin);
    let companies = format!("{}/front-office/v1/companies", provider.api_origin);
    let mut args: Vec<String> = [
        "--url",
        &talents,
        "--url",
        &companies,
        "--resource",
        &talents,
        "--resource",
        &companies,
    ]
    .map(String::from)
    .to_vec();
    args.extend(store.iter().map(|arg| arg.to_string()));
    (args, [talents, companies])
}

/// Runs `KEYED_PROCESSES` processes with two resources each through the
/// store `store` names (`--redis URL`, `--redis-cluster URL`...), and checks
/// that the fleet fetched one token per resource at the provider, and that
/// no request carried the token of the other resource.
async fn keyed_fleet_run(store: &[&str]) {
    let provider = Provider::start().await;
    let (args, resources) = two_resources(&provider, store);
    let processes = run_processes(&provider, KEYED_PROCESSES, &args).await;
    let report = provider.stop().await;
    let once_each: BTreeMap<String, u64> = resources.iter().map(|r| (r.clone(), 1)).collect();
    assert_eq!(report["tokens_issued"], 2, "{report}");
    let issued: BTreeMap<String, u64> =
        serde_json::from_value(report["tokens_issued_by_target"].clone()).unwrap();
    assert_eq!(issued, once_each, "{report}");
    assert_eq!(report["token_requests_refused"], 0, "{report}");
    assert_eq!(report["api_requests_wrong_target"], 0, "{report}");
    assert_eq!(report["api_requests_rejected"], 0, "{report}");
    assert_eq!(
        report["api_requests_accepted"],
        KEYED_PROCESSES as u64 * REQUESTS_PER_PROCESS.parse::<u64>().unwrap(),
        "{report}"
    );
    // Each process's cache fetched each resource's token once; two of those
    // fetches, one per resource, reached the provider, the others were
    // answered from the store.
    for process in &processes {
        assert_eq!(process.summary["token_fetches"], 2, "{}", process.stdout);
        assert_eq!(
            process.fetches_by_resource(),
            once_each,
            "{}",
            process.stdout
        );
    }
    let from_endpoint: u64 = processes.iter().map(Workload::endpoint_fetches).sum();
    assert_eq!(from_endpoint, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_processes_with_two_resources_on_a_redis_cluster_make_two_provider_fetches() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let mut store: Vec<&str> = Vec::new();
    for url in &cluster.urls {
        store.extend(["--redis-cluster", url]);
    }
    timeout(TEST_DEADLINE, keyed_fleet_run(&store))
        .await
        .expect("the run finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_processes_with_two_resources_on_one_redis_make_two_provider_fetches() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    timeout(TEST_DEADLINE, keyed_fleet_run(&["--redis", &redis.url]))
        .await
        .expect("the run finishes in time");
}
