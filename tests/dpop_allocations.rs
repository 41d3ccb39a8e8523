//! What a DPoP proof allocates: the proof's own buffer and nothing else.
//! Counted, not timed: a global allocator counts this thread's
//! allocations while requests go through the layer.
#![cfg(feature = "client-credentials")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower::{Layer, Service};
use tower_bearer::dpop::{Dpop, DpopAlgorithm, DpopKey};
use tower_bearer::source::StaticSource;
use tower_bearer::{BearerAuthLayer, Token, TokenCache};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counter is a const-initialized thread local, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations per request through a layer over a warm cache holding
/// `token`, on this thread, requests driven by hand.
fn allocations_per_request(runtime: &tokio::runtime::Runtime, token: Token) -> f64 {
    let cache = TokenCache::new(StaticSource::new(token));
    runtime.block_on(cache.refresh()).unwrap();
    let mut service =
        BearerAuthLayer::with_cache(cache).layer(tower::service_fn(|request: http::Request<()>| {
            std::hint::black_box(&request);
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(())))
        }));
    let uri = http::Uri::from_static("https://api.example.com/v1/items?page=2");
    let mut cx = Context::from_waker(Waker::noop());
    let mut send = || {
        let Poll::Ready(Ok(())) = service.poll_ready(&mut cx) else {
            panic!("not ready")
        };
        let mut request = http::Request::new(());
        *request.uri_mut() = uri.clone();
        let mut future = pin!(service.call(request));
        let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
            panic!("not answered at once")
        };
        drop(response);
    };
    // The first request makes the origin's nonce slot: once per origin.
    send();
    const REQUESTS: u64 = 1_000;
    let before = allocations();
    for _ in 0..REQUESTS {
        send();
    }
    (allocations() - before) as f64 / REQUESTS as f64
}

/// Allocations per signature of a proof-sized message by aws-lc-rs itself,
/// outside this crate's reach (its ECDSA signs into DER, then converts).
fn signature_allocations(algorithm: DpopAlgorithm) -> f64 {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
    const SIGNATURES: u64 = 1_000;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let message = [b'x'; 330];
    let p256 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let ed25519 = Ed25519KeyPair::generate().unwrap();
    let before = allocations();
    for _ in 0..SIGNATURES {
        match algorithm {
            DpopAlgorithm::Es256 => drop(p256.sign(&rng, &message).unwrap()),
            _ => drop(ed25519.sign(&message)),
        }
    }
    (allocations() - before) as f64 / SIGNATURES as f64
}

#[test]
fn a_proof_costs_one_allocation_beyond_the_bearer_request_and_its_signature() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let token =
        || Token::bearer("eyJhbGciOiJFUzI1NiJ9.e30.c2ln").with_lifetime(Duration::from_secs(3600));
    let bearer = allocations_per_request(&runtime, token());
    for algorithm in [DpopAlgorithm::Es256, DpopAlgorithm::EdDsa] {
        let dpop = Dpop::new(DpopKey::generate_with(algorithm).unwrap());
        let bound = allocations_per_request(&runtime, token().with_dpop(dpop));
        let signing = signature_allocations(algorithm);
        let ours = bound - bearer - signing;
        eprintln!("{algorithm:?}: bearer {bearer}, bound {bound}, signing {signing}");
        // The proof's buffer; a DER signature's length varies by a byte
        // now and then, and with it aws-lc-rs's own count.
        assert!(
            (ours - 1.0).abs() < 0.1,
            "{algorithm:?}: bearer {bearer}, bound {bound}, signing {signing}"
        );
    }
}
