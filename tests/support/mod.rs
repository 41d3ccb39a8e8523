//! Helpers shared by the integration tests: a real HTTP server on loopback,
//! token sources that count their fetches, the requests, inner services and
//! runtimes the cache tests share, the processes some tests run (the
//! compiled examples, `redis-server`), what the Redis store's tests
//! share, test keys and a token endpoint that verifies JWT client
//! assertions, a token endpoint and an API that verify DPoP proofs, a
//! token-exchange endpoint, and mutual TLS (a test PKI, an HTTPS server,
//! certificate-bound tokens).

// Each test binary uses a different part of this module.
#![allow(dead_code, unused_imports)]

#[cfg(feature = "client-credentials")]
pub mod assertion;
#[cfg(feature = "client-credentials")]
pub mod dpop;
#[cfg(feature = "client-credentials")]
pub mod dpop_state;
#[cfg(feature = "client-credentials")]
pub mod dpop_verify;
#[cfg(feature = "client-credentials")]
pub mod exchange;
#[cfg(feature = "client-credentials")]
pub mod keys;
pub mod processes;
pub mod readme;
pub mod scrape;
mod server;
mod services;
mod sources;
#[cfg(feature = "redis")]
pub mod store;
pub mod temp;
#[cfg(all(feature = "client-credentials", feature = "rustls"))]
pub mod tls;

pub use server::{TestServer, authorization, json_response, respond};
pub use services::{
    ClockHold, echo, error_chain, hold_the_clock, no_jitter, request, strand_a_fetch, within,
};
pub use sources::{Counting, counting_source, failing_source};
