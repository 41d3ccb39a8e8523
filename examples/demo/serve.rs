//! `--serve`: the embedded token endpoint and API alone, for several demo
//! processes to share, until the time is up or the process is told to stop.

use std::collections::BTreeMap;

use tokio::time::Instant;

use crate::args::Serve;
use crate::provider::Embedded;
use crate::report::plural;

/// Serves until the time is up or the process is told to stop, then reports
/// what the endpoint and API did.
pub async fn serve(serve: Serve) -> Result<bool, String> {
    // Listen for the stop signals before saying "ready", so that a SIGTERM
    // sent right after the first line still ends in a report.
    let stop = stop_requested()?;
    let servers = Embedded::start(serve.ttl, serve.credentials)
        .await
        .map_err(|e| format!("could not start the embedded servers: {e}"))?;
    println!(
        "{}",
        serde_json::json!({
            "token_url": servers.token_url,
            "issuer": servers.issuer,
            "api_url": servers.api_url,
            "api_origin": servers.api_origin(),
            "client_id": servers.credentials.client_id,
        })
    );
    println!(
        "Serving an Avionté-shaped token endpoint (tokens live {}s) and an API for {}s; \
         SIGTERM, Ctrl-C or closing a piped standard input stops it sooner.",
        serve.ttl.as_secs(),
        serve.duration.as_secs(),
    );
    let started = Instant::now();
    let why = tokio::select! {
        _ = tokio::time::sleep(serve.duration) => "the time is up",
        why = stop => why,
    };
    let counts = servers.counts();
    println!(
        "Stopped after {:.1}s ({why}): the token endpoint issued {} and refused {}; the API accepted {} and rejected {}.",
        started.elapsed().as_secs_f64(),
        plural(counts.tokens_issued, "token", "tokens"),
        plural(counts.token_requests_refused(), "request", "requests"),
        plural(counts.api_accepted, "request", "requests"),
        counts.api_rejected,
    );
    if counts.dpop_tokens_issued > 0 || counts.nonce_challenges() > 0 || counts.proofs_refused() > 0
    {
        println!(
            "DPoP: {} bound to a key; {} asked for a nonce; {} refused.",
            plural(counts.dpop_tokens_issued, "token", "tokens"),
            plural(counts.nonce_challenges(), "request was", "requests were"),
            plural(counts.proofs_refused(), "proof", "proofs"),
        );
    }
    // The names the token endpoint accepted: on the API's origin, without
    // a query or user info, and at most MAX_TARGETS of them.
    let by_target = servers.issued_by_target();
    let by_audience = servers.issued_by_audience();
    if !by_target.is_empty() {
        let each = |counts: &BTreeMap<String, u64>| -> String {
            let each: Vec<String> = counts
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            each.join(", ")
        };
        let audiences = if by_audience.is_empty() {
            String::new()
        } else {
            format!(" (sent as audience: {})", each(&by_audience))
        };
        println!(
            "Tokens per resource or audience: {}{audiences}; calls with a token for another: {}.",
            each(&by_target),
            counts.api_wrong_target
        );
    }
    // The first four keys in their old order, which scripts read; the
    // later ones added after them.
    println!(
        "{{\"tokens_issued\":{},\"token_requests_refused\":{},\
         \"api_requests_accepted\":{},\"api_requests_rejected\":{},\
         \"invalid_target_refused\":{},\"api_requests_wrong_target\":{},\
         \"tokens_issued_by_target\":{},\"tokens_issued_by_audience\":{},\
         \"tokens_exchanged\":{},\"dpop_tokens_issued\":{},\
         \"dpop_nonce_challenges\":{},\"dpop_proofs_refused\":{}}}",
        counts.tokens_issued,
        counts.token_requests_refused(),
        counts.api_accepted,
        counts.api_rejected,
        counts.targets_refused,
        counts.api_wrong_target,
        serde_json::json!(by_target),
        serde_json::json!(by_audience),
        counts.tokens_exchanged,
        counts.dpop_tokens_issued,
        counts.nonce_challenges(),
        counts.proofs_refused(),
    );
    Ok(true)
}

/// Resolves, with the reason, on SIGTERM or Ctrl-C, or when standard input
/// is a pipe and closes (as it does when the parent holding it exits).
fn stop_requested() -> Result<impl Future<Output = &'static str>, String> {
    let stdin_closed = stdin_pipe_closed();
    #[cfg(unix)]
    let (mut terminate, mut interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind| signal(kind).map_err(|e| format!("cannot listen for signals: {e}"));
        (
            listen(SignalKind::terminate())?,
            listen(SignalKind::interrupt())?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = stdin_closed => "standard input closed",
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "interrupted",
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = stdin_closed => "standard input closed",
            Ok(()) = tokio::signal::ctrl_c() => "interrupted",
        }
    })
}

/// Resolves when standard input, a pipe, reaches its end; never when it is
/// something else: a background job's `/dev/null` must not stop the server
/// at once.
fn stdin_pipe_closed() -> impl Future<Output = ()> {
    let closed = stdin_is_a_pipe().then(|| {
        let (tell, closed) = tokio::sync::oneshot::channel::<()>();
        // A plain thread: tokio's stdin reads on a blocking thread that would
        // hold up the runtime's shutdown until input arrives.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = tell.send(());
        });
        closed
    });
    async move {
        match closed {
            Some(closed) => {
                let _ = closed.await;
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(unix)]
fn stdin_is_a_pipe() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|stdin| stdin.metadata())
        .is_ok_and(|meta| meta.file_type().is_fifo() || meta.file_type().is_socket())
}

#[cfg(not(unix))]
fn stdin_is_a_pipe() -> bool {
    false
}
