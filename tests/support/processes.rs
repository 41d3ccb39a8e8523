//! Helpers for the tests that run other processes: a `redis-server` on a
//! free loopback port, and the compiled examples.

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
pub use redis_server::RedisServer;

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
            let installed = Command::new("redis-server")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
            if !installed {
                if std::env::var_os("CI").is_some() {
                    panic!(
                        "redis-server is not installed, and CI is set: install it (apt-get install redis-server)"
                    );
                }
                eprintln!(
                    "SKIPPED: redis-server not found on PATH; install it to run the Redis tests"
                );
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
