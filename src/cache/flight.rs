//! The one fetch in flight: its task, its generation, its waiters, and the
//! guard that always reports back.
//!
//! The fetch runs on a task of its own, so a dropped request cancels
//! nothing. Each flight has a generation: when the cache gives up on a
//! flight (its task cannot run) and starts another, a late report from the
//! first one changes nothing.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::Shared;
use super::entry::Entry;
use super::policy::later;
use super::telemetry::{Stamp, Telemetry};
use crate::error::TokenError;
use crate::token::Token;

/// What a flight gives its waiters.
pub(crate) type Outcome = Result<Arc<Entry>, TokenError>;

/// Why a fetch started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// A request found no usable token.
    NoUsableToken,
    /// The token passed its refresh point.
    RefreshAhead,
    /// [`TokenCache::refresh`](super::TokenCache::refresh) was called.
    Requested,
    /// The API rejected the token.
    Rejected,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::NoUsableToken => "no usable token",
            Reason::RefreshAhead => "refresh-ahead",
            Reason::Requested => "requested",
            Reason::Rejected => "rejected by the API",
        }
    }
}

/// How a fetch ended, as its span and the metrics name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Ok,
    TransientError,
    PermanentError,
}

impl Ending {
    /// Every ending, in the order of their discriminants.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const ALL: [Ending; 3] =
        [Ending::Ok, Ending::TransientError, Ending::PermanentError];

    pub(crate) fn of<T>(result: &Result<T, TokenError>) -> Self {
        match result {
            Ok(_) => Ending::Ok,
            Err(error) if error.is_transient() => Ending::TransientError,
            Err(_) => Ending::PermanentError,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ending::Ok => "ok",
            Ending::TransientError => "transient_error",
            Ending::PermanentError => "permanent_error",
        }
    }
}

/// A fetch in progress.
pub(crate) struct Flight {
    pub(crate) generation: u64,
    pub(crate) started: Instant,
    pub(crate) reason: Reason,
    waiters: Vec<Waiter>,
    task: AbortHandle,
}

impl Flight {
    /// Starts the fetch on its own task, on the current runtime.
    pub(crate) fn start(
        shared: &Arc<Shared>,
        generation: u64,
        reason: Reason,
    ) -> Result<Self, TokenError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TokenError::no_runtime())?;
        let source = Arc::clone(&shared.source);
        let timeout = shared.config.fetch_timeout;
        let span = tracing::info_span!(
            "token_fetch",
            cache = shared.config.name.as_deref(),
            source = source.kind_dyn(),
            reason = reason.as_str(),
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let spawn_state = Arc::new(AtomicU8::new(SPAWNING));
        let guard = Guard {
            shared: Arc::downgrade(shared),
            generation,
            started,
            reason,
            span: span.clone(),
            spawn_state: Arc::clone(&spawn_state),
            done: false,
        };
        let task = runtime.spawn(
            async move {
                let mut guard = guard;
                guard.running();
                // The deadline counts from the start, as the waiters'
                // patience does, however late the task is first polled. The
                // timer is made here, on the fetch's own task.
                let deadline = later(started, timeout);
                let result = match tokio::time::timeout_at(deadline, source.fetch_dyn()).await {
                    Ok(Ok(token)) => Ok(token),
                    Ok(Err(error)) => Err(TokenError::source_failed(error)),
                    Err(_) => Err(TokenError::timeout(timeout)),
                };
                guard.finish(result);
            }
            .instrument(span.clone()),
        );
        let dropped =
            spawn_state.compare_exchange(SPAWNING, SPAWNED, Ordering::AcqRel, Ordering::Acquire)
                == Err(DROPPED_WHILE_SPAWNING);
        if dropped {
            // The runtime is shutting down and dropped the task at once.
            return Err(TokenError::cancelled());
        }
        tracing::debug!(parent: &span, "token fetch started");
        Ok(Self {
            generation,
            started,
            reason,
            waiters: Vec::new(),
            task: task.abort_handle(),
        })
    }

    /// Adds a waiter, which joined at `joined`; it gives up at the
    /// deadline returned.
    pub(crate) fn join(
        &mut self,
        patience: Duration,
        joined: Stamp,
    ) -> (oneshot::Receiver<Outcome>, Instant) {
        let (tx, rx) = oneshot::channel();
        self.waiters.push(Waiter { tx, joined });
        (rx, later(self.started, patience))
    }

    /// Whether the task has had `patience` and not reported: its runtime is
    /// idle or gone.
    pub(crate) fn is_stalled(&self, now: Instant, patience: Duration) -> bool {
        now >= later(self.started, patience)
    }

    /// Stops the task; returns the waiters to tell.
    pub(crate) fn abandon(self) -> Vec<Waiter> {
        self.task.abort();
        self.waiters
    }

    /// Ends the flight; returns the waiters to tell.
    pub(crate) fn land(self) -> Vec<Waiter> {
        self.waiters
    }

    /// Stops the task, when the cache is gone.
    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

/// A waiter of a flight, and when it joined (with the `metrics` feature).
pub(crate) struct Waiter {
    tx: oneshot::Sender<Outcome>,
    joined: Stamp,
}

/// Tells every waiter still listening, and how long each waited.
pub(crate) fn tell(waiters: Vec<Waiter>, outcome: &Outcome, telemetry: &Telemetry) {
    let told = telemetry.stamp();
    for waiter in waiters {
        if waiter.tx.send(outcome.clone()).is_ok() {
            telemetry.waiter_told(waiter.joined, told);
        }
    }
}

const SPAWNING: u8 = 0;
const SPAWNED: u8 = 1;
const DROPPED_WHILE_SPAWNING: u8 = 2;

/// Reports a fetch's outcome, even when the source panics or the task is
/// dropped: waiters always hear back.
struct Guard {
    shared: Weak<Shared>,
    generation: u64,
    started: Instant,
    reason: Reason,
    span: tracing::Span,
    // A runtime that is shutting down drops the task inside `spawn`, while
    // `Flight::start`'s caller holds the state lock: the guard must not take
    // it then.
    spawn_state: Arc<AtomicU8>,
    done: bool,
}

impl Guard {
    /// The task runs: from now on a drop is a real ending (a panic, an
    /// abort), even if the spawner has not yet seen `spawn` return.
    fn running(&self) {
        let _ = self.spawn_state.compare_exchange(
            SPAWNING,
            SPAWNED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    fn finish(&mut self, result: Result<Token, TokenError>) {
        self.done = true;
        let elapsed = Instant::now().saturating_duration_since(self.started);
        self.span.record("duration_ms", elapsed.as_millis() as u64);
        self.span.record("outcome", Ending::of(&result).as_str());
        if let Some(shared) = self.shared.upgrade() {
            let _entered = self.span.enter();
            shared.complete(self.generation, self.started, self.reason, result);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let dropped_while_spawning = self
            .spawn_state
            .compare_exchange(
                SPAWNING,
                DROPPED_WHILE_SPAWNING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if dropped_while_spawning {
            return;
        }
        let error = if std::thread::panicking() {
            TokenError::panicked()
        } else {
            TokenError::cancelled()
        };
        self.finish(Err(error));
    }
}
