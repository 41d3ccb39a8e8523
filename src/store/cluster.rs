//! The connection to a Redis Cluster, and one connection type for the
//! store's operations whatever Redis it talks to.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::watch;

/// How many operation timeouts one attempt to connect to a cluster may
/// take. It is several steps in turn (the seeds, the slot map, every node),
/// each bounded by an operation timeout.
const CLUSTER_CONNECT_TIMEOUTS: u32 = 4;

/// A connection to a Redis Cluster, made on first use and shared by every
/// operation.
///
/// Unlike a `ConnectionManager`, which connects lazily by itself, a cluster
/// connection is made by an async call (the seeds, the slot map, then every
/// node) that may outlast the operation waiting for it. So each attempt
/// runs on its own task: an operation that gives up waiting does not abort
/// it, and a later one finds the connection made. One attempt at a time;
/// after a failed one, the next operation starts another.
pub(super) struct ClusterLink {
    client: ClusterClient,
    state: Mutex<LinkState>,
}

/// The outcome of one attempt to connect, `None` while it runs.
type Attempt = watch::Receiver<Option<RedisResult<ClusterConnection>>>;

enum LinkState {
    Idle,
    Connecting(Attempt),
    Connected(ClusterConnection),
}

/// A connection of either kind, for an operation to run on.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ClusterLink {
    /// A link that connects on first use.
    pub(super) fn new(client: ClusterClient) -> Self {
        Self {
            client,
            state: Mutex::new(LinkState::Idle),
        }
    }

    /// Whether no connection is made or being made.
    #[cfg(test)]
    pub(super) fn is_idle(&self) -> bool {
        matches!(*self.state(), LinkState::Idle)
    }

    fn state(&self) -> MutexGuard<'_, LinkState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops a connection that no longer works; the next operation connects
    /// again. A running attempt is left to finish.
    pub(super) fn forget_connection(&self) {
        let mut state = self.state();
        if matches!(&*state, LinkState::Connected(_)) {
            *state = LinkState::Idle;
        }
    }

    /// The cluster connection, once an attempt to connect has made it:
    /// the running attempt, or a new one.
    pub(super) async fn connection(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> RedisResult<ClusterConnection> {
        let mut attempt = {
            let mut state = self.state();
            match &*state {
                LinkState::Connected(connection) => return Ok(connection.clone()),
                LinkState::Connecting(attempt) => attempt.clone(),
                LinkState::Idle => {
                    let (outcome, attempt) = watch::channel(None);
                    *state = LinkState::Connecting(attempt.clone());
                    tokio::spawn(Arc::clone(self).connect(timeout, outcome));
                    attempt
                }
            }
        };
        let outcome = match attempt.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        outcome.unwrap_or_else(|| {
            // The attempt's task was dropped unfinished (its runtime shut
            // down): let the next operation try again.
            let mut state = self.state();
            if matches!(&*state, LinkState::Connecting(running) if running.same_channel(&attempt)) {
                *state = LinkState::Idle;
            }
            Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the attempt to connect to the cluster was dropped",
            )))
        })
    }

    async fn connect(
        self: Arc<Self>,
        timeout: Duration,
        outcome: watch::Sender<Option<RedisResult<ClusterConnection>>>,
    ) {
        let config = ClusterConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let connected = tokio::time::timeout(
            timeout.saturating_mul(CLUSTER_CONNECT_TIMEOUTS),
            self.client.get_async_connection_with_config(config),
        )
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting to the cluster took too long",
            )))
        });
        *self.state() = match &connected {
            Ok(connection) => LinkState::Connected(connection.clone()),
            Err(error) => {
                tracing::debug!(error = %error, "could not connect to the Redis cluster");
                LinkState::Idle
            }
        };
        outcome.send_replace(Some(connected));
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(manager) => manager.req_packed_command(cmd),
            Conn::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(manager) => manager.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(manager) => manager.get_db(),
            Conn::Cluster(cluster) => cluster.get_db(),
        }
    }
}
