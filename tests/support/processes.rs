//! Helpers for the tests that run other processes: a `redis-server` on a
//! free loopback port, a three-node Redis Cluster, and the compiled
//! examples.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The compiled `demo` example: see [`example_binary`].
pub fn demo_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| example_binary("demo")).clone()
}

/// The compiled example `name`, built (or found up to date) when called:
/// `cargo test` builds examples with tests only as test harnesses, and a
/// binary left from an earlier build may be stale.
pub fn example_binary(name: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", name, "--all-features"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the {name} example failed");
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from <target>/<profile>/deps");
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

#[cfg(feature = "redis")]
#[allow(unused_imports)]
pub use redis_cluster::RedisCluster;
#[cfg(feature = "redis")]
#[allow(unused_imports)]
pub use redis_server::RedisServer;

/// Whether `program --version` runs. When it does not: panics if `CI` is
/// set, and otherwise says the tests are skipped.
#[cfg(feature = "redis")]
fn installed(program: &str) -> bool {
    use std::process::Stdio;
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{program} is not installed, and CI is set: install it (apt-get install redis-server)"
            );
        }
        eprintln!("SKIPPED: {program} not found on PATH; install it to run the Redis tests");
    }
    found
}

#[cfg(feature = "redis")]
mod redis_server {
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use redis::aio::MultiplexedConnection;
    use tokio::time::{Instant, timeout};

    /// A `redis-server` child process, killed on drop.
    pub struct RedisServer {
        child: Child,
        pub url: String,
    }

    impl RedisServer {
        /// Starts a server on a free loopback port, or returns `None` (after
        /// saying so) when `redis-server` is not installed and `CI` is not set.
        pub async fn start() -> Option<Self> {
            if !super::installed("redis-server") {
                return None;
            }
            // Another process may take the port between our probe and the
            // server's bind: try a few ports.
            for _ in 0..5 {
                let port = {
                    let probe =
                        std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
                    probe.local_addr().expect("probe address").port()
                };
                let child = Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn redis-server");
                let mut server = RedisServer {
                    child,
                    url: format!("redis://127.0.0.1:{port}/"),
                };
                if server.wait_until_ready().await {
                    return Some(server);
                }
            }
            panic!("redis-server did not start on any of 5 ports");
        }

        async fn wait_until_ready(&mut self) -> bool {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return false; // exited: most likely the port was taken
                }
                if let Ok(mut conn) = self.connect().await {
                    let pong: redis::RedisResult<String> =
                        redis::cmd("PING").query_async(&mut conn).await;
                    if pong.is_ok() {
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            false
        }

        pub async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
            let client = redis::Client::open(self.url.as_str())?;
            timeout(
                Duration::from_secs(1),
                client.get_multiplexed_async_connection(),
            )
            .await
            .map_err(|_| {
                redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
            })?
        }

        pub fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            self.kill();
        }
    }
}

#[cfg(feature = "redis")]
mod redis_cluster {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::time::{Instant, timeout};

    /// How long the cluster may take to form once its nodes run.
    const FORMING: Duration = Duration::from_secs(15);

    /// A three-node Redis Cluster (three masters, no replicas) of
    /// `redis-server` child processes on free loopback ports, each with its
    /// files in one temporary directory. Killed, and the directory removed,
    /// on drop.
    pub struct RedisCluster {
        children: Vec<Child>,
        dir: PathBuf,
        /// Each node's URL, `redis://127.0.0.1:<port>/`.
        pub urls: Vec<String>,
    }

    impl RedisCluster {
        /// Starts the nodes, joins them in a cluster and waits until every
        /// node says the cluster is ok; or returns `None` (after saying so)
        /// when `redis-server` or `redis-cli` is not installed and `CI` is
        /// not set.
        pub async fn start() -> Option<Self> {
            if !super::installed("redis-server") || !super::installed("redis-cli") {
                return None;
            }
            // Another process may take a port between our probe and the
            // nodes' binds: try a few sets of ports.
            for _ in 0..5 {
                let mut cluster = Self::spawn_nodes();
                if cluster.wait_until_nodes_answer().await {
                    cluster.create().await;
                    return Some(cluster);
                }
            }
            panic!("the cluster's redis-server nodes did not start on any of 5 sets of ports");
        }

        /// Each node's port and cluster bus port: free loopback ports, all
        /// different (the probes are held until all are found). The bus port
        /// is set, not left to be port + 10000, which may be taken or out of
        /// range.
        fn free_ports() -> Vec<(u16, u16)> {
            let probes: Vec<_> = (0..6)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port"))
                .collect();
            let ports: Vec<u16> = probes
                .iter()
                .map(|probe| probe.local_addr().expect("probe address").port())
                .collect();
            ports.chunks(2).map(|pair| (pair[0], pair[1])).collect()
        }

        fn spawn_nodes() -> Self {
            static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "tower-bearer-cluster-{}-{}",
                std::process::id(),
                CLUSTERS.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the cluster's directory");
            let mut cluster = RedisCluster {
                children: Vec::new(),
                dir,
                urls: Vec::new(),
            };
            for (port, bus_port) in Self::free_ports() {
                let config_file = cluster.dir.join(format!("nodes-{port}.conf"));
                let child = Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--cluster-enabled", "yes"])
                    .args(["--cluster-port", &bus_port.to_string()])
                    .arg("--cluster-config-file")
                    .arg(&config_file)
                    .arg("--dir")
                    .arg(&cluster.dir)
                    .args(["--save", "", "--appendonly", "no"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn redis-server");
                cluster.children.push(child);
                cluster.urls.push(format!("redis://127.0.0.1:{port}/"));
            }
            cluster
        }

        /// Waits until every node answers PING; false (the nodes killed)
        /// when one exits first, most likely because its port was taken.
        async fn wait_until_nodes_answer(&mut self) -> bool {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut answered = 0;
            while answered < self.urls.len() && Instant::now() < deadline {
                if self
                    .children
                    .iter_mut()
                    .any(|child| matches!(child.try_wait(), Ok(Some(_))))
                {
                    break;
                }
                let pong: redis::RedisResult<String> =
                    self.query(answered, redis::cmd("PING")).await;
                if pong.is_ok() {
                    answered += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            if answered == self.urls.len() {
                return true;
            }
            self.kill();
            false
        }

        /// Joins the nodes into one cluster and waits until each says it is
        /// ok: all slots assigned, as each node sees them.
        async fn create(&mut self) {
            let nodes: Vec<String> = self
                .urls
                .iter()
                .map(|url| {
                    url.trim_start_matches("redis://")
                        .trim_end_matches('/')
                        .to_owned()
                })
                .collect();
            let output = tokio::process::Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&nodes)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdin(Stdio::null())
                .output();
            let output = timeout(FORMING, output)
                .await
                .expect("redis-cli --cluster create finished in time")
                .expect("run redis-cli");
            assert!(
                output.status.success(),
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            let deadline = Instant::now() + FORMING;
            for node in 0..self.urls.len() {
                loop {
                    let info: redis::RedisResult<String> = self
                        .query(node, redis::cmd("CLUSTER").arg("INFO").clone())
                        .await;
                    if info.is_ok_and(|info| info.contains("cluster_state:ok")) {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "the cluster was not ok on {} within {FORMING:?}",
                        self.urls[node]
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }

        /// Runs `cmd` on node `node` alone, over a connection of its own.
        pub async fn query<T: redis::FromRedisValue>(
            &self,
            node: usize,
            cmd: redis::Cmd,
        ) -> redis::RedisResult<T> {
            let client = redis::Client::open(self.urls[node].as_str())?;
            let timed_out =
                || redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
            let mut conn = timeout(
                Duration::from_secs(1),
                client.get_multiplexed_async_connection(),
            )
            .await
            .map_err(|_| timed_out())??;
            timeout(Duration::from_secs(1), cmd.query_async(&mut conn))
                .await
                .map_err(|_| timed_out())?
        }

        pub fn kill(&mut self) {
            for child in &mut self.children {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for RedisCluster {
        fn drop(&mut self) {
            self.kill();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
