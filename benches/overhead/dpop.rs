//! The DPoP hot path beside the bearer one: what a proof per request costs.

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use http::Uri;
use tower::Layer;
use tower_bearer::dpop::{Dpop, DpopAlgorithm, DpopKey};
use tower_bearer::{BearerAuthLayer, Token};

use super::services::{multi_thread_runtime, noop_service, static_token, warm_cache};
use super::stats::{Variant, interleave, median, print_samples, ratio_of_rounds};
use super::wall_clock::per_request_ns;
use crate::{Plan, Summary, TOKEN, URI};

fn bound_token(algorithm: DpopAlgorithm) -> Token {
    let dpop = Dpop::new(DpopKey::generate_with(algorithm).expect("a DPoP key"));
    static_token().with_dpop(dpop)
}

/// Nanoseconds per bare signature of a proof-sized message: the floor a
/// proof cannot go below.
fn sign_ns(iters: u64, sign: impl Fn(&[u8])) -> f64 {
    // A header with its JWK, and claims with a jti, htm, htu, iat and ath.
    let message = [b'x'; 330];
    let start = std::time::Instant::now();
    for _ in 0..iters {
        sign(black_box(&message));
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

pub(crate) fn dpop_hot_path(plan: &Plan, summary: &mut Summary) {
    println!(
        "\n## 8. DPoP: ns per request over a no-op service, a fresh proof each ({} rounds x {} requests)",
        plan.dpop_rounds, plan.dpop_iters
    );
    let uri = Uri::from_static(URI);
    let iters = plan.dpop_iters;
    let runtime = multi_thread_runtime(1);
    let mut bearer =
        BearerAuthLayer::with_cache(warm_cache(&runtime, static_token())).layer(noop_service());
    let mut es256 =
        BearerAuthLayer::with_cache(warm_cache(&runtime, bound_token(DpopAlgorithm::Es256)))
            .layer(noop_service());
    let mut eddsa =
        BearerAuthLayer::with_cache(warm_cache(&runtime, bound_token(DpopAlgorithm::EdDsa)))
            .layer(noop_service());
    assert!(TOKEN.len() > 40, "a token of realistic length");

    let rng = SystemRandom::new();
    let p256 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("a P-256 key");
    let ed25519 = Ed25519KeyPair::generate().expect("an Ed25519 key");

    let names = [
        "bearer",
        "dpop_es256",
        "dpop_eddsa",
        "sign_es256",
        "sign_eddsa",
    ];
    let samples = {
        let uri = &uri;
        let mut variants: Vec<Variant<'_>> = vec![
            (
                names[0],
                Box::new(|| per_request_ns(&mut bearer, iters, uri)),
            ),
            (
                names[1],
                Box::new(|| per_request_ns(&mut es256, iters, uri)),
            ),
            (
                names[2],
                Box::new(|| per_request_ns(&mut eddsa, iters, uri)),
            ),
            (
                names[3],
                Box::new(|| {
                    sign_ns(iters, |m| {
                        black_box(p256.sign(&rng, m).expect("signed"));
                    })
                }),
            ),
            (
                names[4],
                Box::new(|| {
                    sign_ns(iters, |m| {
                        black_box(ed25519.sign(m));
                    })
                }),
            ),
        ];
        interleave(plan.dpop_rounds, &mut variants)
    };
    print_samples(&names, &samples, "ns/request");
    let es256_ratio = ratio_of_rounds(&samples[1], &samples[0]);
    let eddsa_ratio = ratio_of_rounds(&samples[2], &samples[0]);
    // What a proof costs beyond its signature: header, claims, encoding,
    // nonce lookup, the header insert.
    let es256_over_sign = ratio_of_rounds(&samples[1], &samples[3]);
    let eddsa_over_sign = ratio_of_rounds(&samples[2], &samples[4]);
    // One thread drives the requests: proofs per second on one core.
    let per_core = |ns: f64| (1e9 / ns).round();
    let (es256_rate, eddsa_rate) = (per_core(median(&samples[1])), per_core(median(&samples[2])));
    println!("  dpop_es256 / bearer = {es256_ratio:.1}, {es256_rate} proofs/s on one core");
    println!("  dpop_eddsa / bearer = {eddsa_ratio:.1}, {eddsa_rate} proofs/s on one core");
    println!("  dpop_es256 / sign_es256 = {es256_over_sign:.3} (the request beyond its signature)");
    println!("  dpop_eddsa / sign_eddsa = {eddsa_over_sign:.3}");
    summary.ratio("dpop_es256_over_signature", es256_over_sign);
    summary.ratio("dpop_eddsa_over_signature", eddsa_over_sign);
    summary.ratio("dpop_es256_over_bearer", es256_ratio);
    summary.ratio("dpop_eddsa_over_bearer", eddsa_ratio);
    summary.figure("dpop_es256_proofs_per_core", es256_rate, "proofs/s");
    summary.figure("dpop_eddsa_proofs_per_core", eddsa_rate, "proofs/s");
}
