//! One discovery in flight for any number of callers, its outcome kept:
//! the metadata for good, a failure until its retry time.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::Url;
use tokio::sync::watch;
use tokio::time::Instant;

use super::document::{WellKnown, discover, well_known_urls};
use super::{DiscoveryError, FIRST_RETRY_DELAY, MAX_RETRY_DELAY, ProviderMetadata};
use crate::redact::redact_url;

/// One issuer's discovery, run once for any number of callers and kept
/// after it succeeds. Cheap to clone: clones share the discovery.
///
/// Concurrent callers share one attempt, which runs on a task of its own:
/// each gets its outcome, success or error, and a caller that gives up
/// (its future dropped) stops nothing. A failure is remembered until its
/// retry time ([`retry_delay`]): calls until then get its error without a
/// request, and the first call after it starts a new attempt.
#[derive(Clone)]
pub(crate) struct Discovery {
    shared: Arc<Shared>,
}

struct Shared {
    issuer: Url,
    /// The two well-known URLs, or why the issuer has none.
    urls: Result<WellKnown, DiscoveryError>,
    client: reqwest::Client,
    timeout: Duration,
    state: Mutex<State>,
}

pub(super) type Outcome = Result<Arc<ProviderMetadata>, DiscoveryError>;

struct State {
    phase: Phase,
    /// Failed attempts in a row: 0 at first and after a success.
    failures: u32,
}

enum Phase {
    /// Nothing found yet, and no attempt running.
    Idle,
    /// An attempt runs; its outcome comes on this channel.
    Running(watch::Receiver<Option<Outcome>>),
    /// The last attempt failed: its error is every call's answer until
    /// `retry_at`.
    Failed {
        error: DiscoveryError,
        retry_at: Instant,
    },
    /// Found, for good.
    Found(Arc<ProviderMetadata>),
}

impl Discovery {
    /// Discovery for `issuer`, with `client` (redirects off: the caller's
    /// job), each attempt limited to `timeout` in all.
    ///
    /// The document must name `issuer` as [`Url`] writes it: lowercase
    /// scheme and host, no default port. A `Url` cannot tell
    /// `https://idp.example.com` from `https://idp.example.com/`, so an
    /// issuer without a path matches either; any other path must match
    /// exactly, trailing `/` included.
    pub(crate) fn new(issuer: Url, client: reqwest::Client, timeout: Duration) -> Self {
        let urls = well_known_urls(&issuer);
        Self {
            shared: Arc::new(Shared {
                issuer,
                urls,
                client,
                timeout,
                state: Mutex::new(State {
                    phase: Phase::Idle,
                    failures: 0,
                }),
            }),
        }
    }

    /// The issuer's metadata: found before, or found now by the one attempt
    /// that all concurrent callers share; or the last attempt's error, until
    /// its retry time.
    ///
    /// Needs a Tokio runtime ([`DiscoveryError::Interrupted`] otherwise).
    pub(crate) async fn metadata(&self) -> Outcome {
        if let Err(error) = &self.shared.urls {
            return Err(error.clone());
        }
        let (mut receiver, start) = {
            let mut state = self.shared.lock();
            match &state.phase {
                Phase::Found(metadata) => return Ok(Arc::clone(metadata)),
                Phase::Running(receiver) => (receiver.clone(), None),
                Phase::Failed { error, retry_at } if Instant::now() < *retry_at => {
                    return Err(error.clone());
                }
                Phase::Idle | Phase::Failed { .. } => {
                    let runtime = tokio::runtime::Handle::try_current()
                        .map_err(|_| DiscoveryError::Interrupted)?;
                    let (sender, receiver) = watch::channel(None);
                    state.phase = Phase::Running(receiver.clone());
                    let attempt = Attempt {
                        shared: Arc::clone(&self.shared),
                        sender: Some(sender),
                    };
                    (receiver, Some((runtime, attempt)))
                }
            }
        };
        if let Some((runtime, attempt)) = start {
            // Outside the lock: a runtime that is shutting down drops the
            // task inside `spawn`, and the attempt's guard takes the lock.
            runtime.spawn(attempt.run());
        }
        // Bounded here too: the attempt's own timeout runs only while its
        // runtime is driven, and this caller may be on another.
        let deadline = self.shared.timeout + Duration::from_secs(1);
        match tokio::time::timeout(deadline, receiver.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => outcome.clone().unwrap_or(Err(DiscoveryError::Interrupted)),
            // The attempt was dropped unfinished (its guard made the state
            // idle again).
            Ok(Err(_)) => Err(DiscoveryError::Interrupted),
            Err(_) => Err(DiscoveryError::Timeout {
                after: self.shared.timeout,
            }),
        }
    }

    /// Failed attempts in a row.
    #[cfg(test)]
    pub(super) fn failures(&self) -> u32 {
        self.shared.lock().failures
    }

    /// Puts a remembered failure's retry time an hour off.
    #[cfg(test)]
    pub(super) fn put_off_retry(&self) {
        if let Phase::Failed { retry_at, .. } = &mut self.shared.lock().phase {
            *retry_at = Instant::now() + Duration::from_secs(3600);
        }
    }

    /// The metadata, if found.
    pub(crate) fn found(&self) -> Option<Arc<ProviderMetadata>> {
        match &self.shared.lock().phase {
            Phase::Found(metadata) => Some(Arc::clone(metadata)),
            _ => None,
        }
    }

    /// How long the remembered failure still answers calls; `None` when
    /// none does.
    pub(crate) fn retry_in(&self) -> Option<Duration> {
        match &self.shared.lock().phase {
            Phase::Failed { retry_at, .. } => {
                Some(retry_at.saturating_duration_since(Instant::now()))
            }
            _ => None,
        }
    }
}

/// How long a failure is remembered when it is the `failures`-th in a row
/// (from 1): [`FIRST_RETRY_DELAY`], doubled for each failure before it, at
/// most [`MAX_RETRY_DELAY`].
pub(super) fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    FIRST_RETRY_DELAY
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_DELAY)
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("issuer", &redact_url(self.shared.issuer.as_str()))
            .field("timeout", &self.shared.timeout)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every step under the lock leaves the state whole, so a poisoned
        // lock holds a consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The one attempt running: it sets the state and tells the waiters when it
/// ends, and sets the state idle again if it is dropped unfinished (a
/// panic, a runtime shutting down).
struct Attempt {
    shared: Arc<Shared>,
    sender: Option<watch::Sender<Option<Outcome>>>,
}

impl Attempt {
    async fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let outcome = match &shared.urls {
            Ok(urls) => {
                let discover = discover(&shared.client, &shared.issuer, urls);
                match tokio::time::timeout(shared.timeout, discover).await {
                    Ok(result) => result.map(Arc::new),
                    Err(_) => Err(DiscoveryError::Timeout {
                        after: shared.timeout,
                    }),
                }
            }
            Err(error) => Err(error.clone()),
        };
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        // The state first, and nothing but the state under the lock: a
        // caller that comes after the waiters are told must find the
        // metadata, or the error until its retry time.
        let failures = {
            let mut state = self.shared.lock();
            match &outcome {
                Ok(metadata) => {
                    state.failures = 0;
                    state.phase = Phase::Found(Arc::clone(metadata));
                }
                Err(error) => {
                    state.failures = state.failures.saturating_add(1);
                    state.phase = Phase::Failed {
                        error: error.clone(),
                        retry_at: Instant::now() + retry_delay(state.failures),
                    };
                }
            }
            state.failures
        };
        // Then the waiters; `send_replace` stores the outcome even when no
        // caller waits. The sender is taken only now, so a guard dropped
        // before this point still finds it and sets the state idle.
        if let Some(sender) = self.sender.take() {
            sender.send_replace(Some(outcome.clone()));
        }
        match &outcome {
            Ok(metadata) => tracing::debug!(
                document = %redact_url(metadata.document_url.as_str()),
                "authorization server metadata found"
            ),
            Err(error) => tracing::debug!(
                %error,
                failures,
                retry_in = ?retry_delay(failures),
                "authorization server metadata not found"
            ),
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.sender.is_some() {
            // Unfinished, so no failure to remember: the waiters see the
            // channel close, and the next call starts afresh.
            self.shared.lock().phase = Phase::Idle;
        }
    }
}
