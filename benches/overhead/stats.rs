//! Statistics over rounds of samples: medians, spreads, ratios.

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The 25th and 75th percentiles, to show the spread of rounds.
pub(crate) fn quartiles(values: &[f64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.75))
}

/// A named measurement that returns one sample.
pub(crate) type Variant<'a> = (&'static str, Box<dyn FnMut() -> f64 + 'a>);

/// Runs every variant once per round, rotating which goes first, and returns
/// each variant's samples (index: variant, then round).
pub(crate) fn interleave(rounds: usize, variants: &mut [Variant<'_>]) -> Vec<Vec<f64>> {
    let n = variants.len();
    // One untimed round warms caches, allocator and branch predictors.
    for (_, run) in variants.iter_mut() {
        run();
    }
    let mut samples = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            samples[i].push((variants[i].1)());
        }
    }
    samples
}

pub(crate) fn ratio_of_rounds(numerator: &[f64], denominator: &[f64]) -> f64 {
    let ratios: Vec<f64> = numerator
        .iter()
        .zip(denominator)
        .map(|(a, b)| a / b)
        .collect();
    median(&ratios)
}

pub(crate) fn print_samples(names: &[&str], samples: &[Vec<f64>], unit: &str) {
    println!(
        "  {:<12} {:>12} {:>12} {:>12}",
        "variant", "median", "p25", "p75"
    );
    for (name, s) in names.iter().zip(samples) {
        let (p25, p75) = quartiles(s);
        println!(
            "  {:<12} {:>12.1} {:>12.1} {:>12.1}  {unit}",
            name,
            median(s),
            p25,
            p75
        );
    }
}
