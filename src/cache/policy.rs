//! The timing rules, as pure functions of a lifetime, the observed fetch
//! time and a random sample: when a token stops being used, when its
//! refresh starts, how long the cache backs off after a failure.
//!
//! Nothing here reads a clock or draws a random number, so every rule has a
//! unit test over lifetimes from a second to a year.
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::{Backoff, ErrorClass};
//!
//! let backoff = Backoff::default().jitter(0.0);
//! assert_eq!(backoff.delay(3, ErrorClass::TRANSIENT), Duration::from_secs(4));
//! assert_eq!(backoff.delay(1, ErrorClass::Permanent), Duration::from_secs(60));
//! ```

use std::time::Duration;

use tokio::time::Instant;

use crate::error::ErrorClass;

/// Default for [`TokenCacheBuilder::expiry_margin`](super::TokenCacheBuilder::expiry_margin): 30 seconds.
pub const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Default for [`TokenCacheBuilder::refresh_ahead`](super::TokenCacheBuilder::refresh_ahead): 5 minutes.
pub const DEFAULT_REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// Default for [`TokenCacheBuilder::refresh_share`](super::TokenCacheBuilder::refresh_share): 5% of the usable lifetime.
pub const DEFAULT_REFRESH_SHARE: f64 = 0.05;
/// Default for [`TokenCacheBuilder::refresh_jitter`](super::TokenCacheBuilder::refresh_jitter): 20% of the share.
pub const DEFAULT_REFRESH_JITTER: f64 = 0.2;
/// Default for [`TokenCacheBuilder::default_lifetime`](super::TokenCacheBuilder::default_lifetime): 5 minutes.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Lifetimes above this (about a year) are treated as this long.
pub const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// How long before the usable end, at least, the hot path stops trusting a
/// timer and reads the clock (a quarter of the usable time for tokens that
/// live less than four seconds): a timer fires late when its runtime falls
/// behind, never early.
const TIMER_SLACK: Duration = Duration::from_secs(1);

/// How the cache backs off after failed fetches.
///
/// After the `n`th failure in a row, the next fetch may start after
/// `initial * multiplier^(n-1)`, capped at `max`, less a random part
/// (`jitter`, a fraction) so that a fleet does not retry in step. A permanent
/// failure (see [`ErrorClass`]) waits the full `max`. A `Retry-After` from the
/// provider is honoured, up to `max_retry_after`.
///
/// New settings may come: build one from [`Backoff::default`] (or
/// [`Backoff::none`]) and its setters.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::Backoff;
///
/// let backoff = Backoff::default().max(Duration::from_secs(30)).jitter(0.0);
/// assert_eq!(backoff.initial, Duration::from_secs(1));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first delay. Defaults to 1 second.
    pub initial: Duration,
    /// The cap. Defaults to 60 seconds.
    pub max: Duration,
    /// Growth per failure. Defaults to 2.
    pub multiplier: f64,
    /// The fraction of each delay that is random, 0 to 1. Defaults to 0.2.
    pub jitter: f64,
    /// The longest `Retry-After` honoured. Defaults to 5 minutes.
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// No backoff: every request after a failure may start a new fetch.
    /// (Still one fetch at a time.)
    pub fn none() -> Self {
        Self {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 1.0,
            jitter: 0.0,
            max_retry_after: Duration::ZERO,
        }
    }

    /// Sets [`initial`](Self::initial), the first delay.
    pub fn initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// Sets [`max`](Self::max), the cap.
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Sets [`multiplier`](Self::multiplier), the growth per failure.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets [`jitter`](Self::jitter), the random fraction of each delay.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`max_retry_after`](Self::max_retry_after), the longest
    /// `Retry-After` honoured.
    pub fn max_retry_after(mut self, max_retry_after: Duration) -> Self {
        self.max_retry_after = max_retry_after;
        self
    }

    /// The delay before the next attempt after `failures` failures in a row,
    /// with a random jitter.
    ///
    /// Never panics: a multiplier or jitter that is not a finite number is
    /// ignored, and every delay is capped at [`MAX_LIFETIME`].
    pub fn delay(&self, failures: u32, class: ErrorClass) -> Duration {
        self.delay_with(failures, class, fastrand::f64())
    }

    /// [`delay`](Self::delay) with the random draw given, `0.0..1.0`.
    pub(crate) fn delay_with(&self, failures: u32, class: ErrorClass, sample: f64) -> Duration {
        let max = self.max.min(MAX_LIFETIME);
        let base = match class {
            ErrorClass::Permanent => max,
            ErrorClass::Transient { .. } => {
                let multiplier = if self.multiplier.is_finite() {
                    self.multiplier.max(1.0)
                } else {
                    1.0
                };
                let exponent = failures.saturating_sub(1).min(64) as i32;
                scaled(self.initial, multiplier.powi(exponent)).min(max)
            }
        };
        let delay = scaled(base, 1.0 - fraction(self.jitter) * sample);
        match class {
            ErrorClass::Transient {
                retry_after: Some(after),
            } => delay.max(after.min(self.max_retry_after).min(MAX_LIFETIME)),
            _ => delay,
        }
    }
}

/// The timing settings of a cache.
#[derive(Clone, Debug)]
pub(crate) struct Timing {
    pub(crate) expiry_margin: Duration,
    pub(crate) refresh_ahead: Duration,
    pub(crate) refresh_share: f64,
    pub(crate) refresh_jitter: f64,
    pub(crate) default_lifetime: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            expiry_margin: DEFAULT_EXPIRY_MARGIN,
            refresh_ahead: DEFAULT_REFRESH_AHEAD,
            refresh_share: DEFAULT_REFRESH_SHARE,
            refresh_jitter: DEFAULT_REFRESH_JITTER,
            default_lifetime: DEFAULT_LIFETIME,
        }
    }
}

/// When a token's times fall, as offsets from when its request was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// How long the token lives.
    pub(crate) lifetime: Duration,
    /// Until when it is used.
    pub(crate) usable: Duration,
    /// From when a background refresh starts.
    pub(crate) refresh: Duration,
    /// Until when the hot path may trust a timer instead of the clock.
    pub(crate) fresh: Duration,
}

impl Timing {
    /// The lifetime the cache works with: the source's, or the default when
    /// the source said nothing or zero; at most [`MAX_LIFETIME`].
    pub(crate) fn lifetime(&self, said: Option<Duration>) -> Duration {
        lifetime(said, self.default_lifetime)
    }

    /// The schedule of a token that lives `lifetime`, when fetches take about
    /// `fetch_estimate`; `sample` (`0.0..1.0`) draws the jitter.
    ///
    /// The refresh window is a share of the usable time (capped by
    /// `refresh_ahead`, moved earlier by the jitter) plus twice the fetch
    /// time, so that the refresh and one retry finish before the usable end;
    /// never more than half the usable time. Sized so, a token is refetched
    /// about once per usable lifetime, not twice or three times.
    pub(crate) fn schedule(
        &self,
        lifetime: Duration,
        fetch_estimate: Duration,
        sample: f64,
    ) -> Schedule {
        let usable = lifetime - margin(self.expiry_margin, lifetime);
        let window = if self.refresh_ahead.is_zero() {
            Duration::ZERO
        } else {
            let share = scaled(usable, fraction(self.refresh_share)).min(self.refresh_ahead);
            let jittered = scaled(share, 1.0 + fraction(self.refresh_jitter) * sample);
            jittered
                .saturating_add(fetch_estimate.saturating_mul(2))
                .min(usable / 2)
        };
        let refresh = usable - window;
        let fresh = refresh.min(usable.saturating_sub(TIMER_SLACK.min(usable / 4)));
        Schedule {
            lifetime,
            usable,
            refresh,
            fresh,
        }
    }
}

/// The lifetime a token is kept for: what its source said, or `default`
/// when the source said nothing or zero (a zero `expires_in` means the
/// provider did not know, not that the token is dead); at most
/// [`MAX_LIFETIME`]. One rule for the cache and the fleet store.
pub(crate) fn lifetime(said: Option<Duration>, default: Duration) -> Duration {
    said.filter(|l| !l.is_zero())
        .unwrap_or_else(|| default_lifetime(default))
        .min(MAX_LIFETIME)
}

/// A default lifetime setting, clamped: at least a second, at most
/// [`MAX_LIFETIME`].
pub(crate) fn default_lifetime(setting: Duration) -> Duration {
    setting.clamp(Duration::from_secs(1), MAX_LIFETIME)
}

/// The expiry margin for a token that lives `lifetime`: `margin`, but no
/// more than a quarter of the lifetime (at least one second, since providers
/// stamp expiry in whole seconds) and never more than half, so that a
/// short-lived token is still cached and used.
pub(crate) fn margin(margin: Duration, lifetime: Duration) -> Duration {
    margin
        .min((lifetime / 4).max(Duration::from_secs(1)))
        .min(lifetime / 2)
}

/// How long fetches take, for sizing the refresh window: the latest fetch,
/// or half the previous estimate if that is longer, so that one slow fetch
/// widens the window for a few lifetimes and then fades.
pub(crate) fn fetch_estimate(previous: Duration, latest: Duration) -> Duration {
    latest.max(previous / 2).min(MAX_LIFETIME)
}

/// How long after a failed refresh the next attempt starts, while the token
/// is still usable for `until_unusable`.
///
/// The backoff's `delay` as a rule; but when the first failure's backoff
/// would let the token run out, one retry starts early enough to finish
/// before it does. Not for permanent failures, nor when the provider asked
/// for a `Retry-After`.
pub(crate) fn refresh_retry(
    delay: Duration,
    failures: u32,
    class: ErrorClass,
    until_unusable: Duration,
    fetch_estimate: Duration,
) -> Duration {
    let last_chance = until_unusable.saturating_sub(fetch_estimate);
    let may_shorten = failures == 1 && class == ErrorClass::TRANSIENT && !last_chance.is_zero();
    if may_shorten {
        delay.min(last_chance)
    } else {
        delay
    }
}

/// A setting that must be a fraction: clamped to `0..=1`, zero if not a
/// finite number.
fn fraction(value: f64) -> f64 {
    if !value.is_finite() {
        0.0
    } else {
        value.clamp(0.0, 1.0)
    }
}

/// `duration * factor` without panicking: a NaN or negative factor gives
/// zero, an overflow gives [`MAX_LIFETIME`].
pub(crate) fn scaled(duration: Duration, factor: f64) -> Duration {
    if factor.is_nan() || factor <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor)
        .unwrap_or(MAX_LIFETIME)
        .min(MAX_LIFETIME)
}

/// `at + duration`, never panicking: durations are capped at
/// [`MAX_LIFETIME`], which no clock is near overflowing; were it to, `at`.
pub(crate) fn later(at: Instant, duration: Duration) -> Instant {
    at.checked_add(duration.min(MAX_LIFETIME)).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn backoff_grows_to_its_cap_and_honours_retry_after() {
        let backoff = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        let t = ErrorClass::TRANSIENT;
        let secs: Vec<u64> = (1..=8).map(|n| backoff.delay(n, t).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff.delay(1, ErrorClass::Permanent), MINUTE);
        let asked = ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(120)),
        };
        assert_eq!(backoff.delay(1, asked), Duration::from_secs(120));
        let absurd = ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(86_400)),
        };
        assert_eq!(backoff.delay(1, absurd), Duration::from_secs(300));
        assert_eq!(backoff.delay(u32::MAX, t), MINUTE);
    }

    #[test]
    fn jitter_only_shortens_within_its_fraction() {
        let backoff = Backoff::default();
        let t = ErrorClass::TRANSIENT;
        assert_eq!(backoff.delay_with(3, t, 0.0), secs(4.0));
        assert_eq!(backoff.delay_with(3, t, 0.999_999), secs(3.2000008));
        for _ in 0..1000 {
            let d = backoff.delay(3, t);
            assert!(d <= secs(4.0) && d >= secs(3.2), "{d:?}");
        }
    }

    #[test]
    fn odd_backoff_settings_never_panic() {
        let odd = Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
            multiplier: f64::NAN,
            jitter: f64::INFINITY,
            max_retry_after: Duration::MAX,
        };
        assert_eq!(odd.delay_with(40, ErrorClass::TRANSIENT, 0.5), MAX_LIFETIME);
        assert_eq!(
            Backoff::none().delay_with(9, ErrorClass::Permanent, 0.5),
            Duration::ZERO
        );
    }

    #[test]
    fn the_margin_is_clamped_for_short_lifetimes() {
        let m = |l: Duration| margin(DEFAULT_EXPIRY_MARGIN, l);
        assert_eq!(m(secs(1.0)), secs(0.5));
        assert_eq!(m(secs(3.0)), SECOND);
        assert_eq!(m(MINUTE), secs(15.0));
        assert_eq!(m(5 * MINUTE), secs(30.0));
        assert_eq!(m(HOUR), secs(30.0));
        assert_eq!(m(MAX_LIFETIME), secs(30.0));
        assert_eq!(m(Duration::ZERO), Duration::ZERO);
    }

    /// Usable end, refresh point and tokens per usable lifetime for every
    /// lifetime from a second to a year, with a 300 ms provider and the
    /// jitter at its widest: the refresh and one retry fit before the usable
    /// end, and tokens are not refetched needlessly.
    #[test]
    fn the_schedule_spends_tokens_sparingly_and_leaves_time_for_a_retry() {
        let timing = Timing::default();
        let fetch = secs(0.3);
        let mut lifetime = SECOND;
        while lifetime <= MAX_LIFETIME {
            for sample in [0.0, 0.999_999] {
                let s = timing.schedule(lifetime, fetch, sample);
                assert!(s.refresh <= s.usable && s.usable < s.lifetime, "{s:?}");
                assert!(s.fresh <= s.refresh, "{s:?}");
                let window = s.usable - s.refresh;
                if s.usable >= 4 * fetch {
                    // A refresh and a retry right after it fit in the window.
                    assert!(window >= 2 * fetch, "{s:?}");
                }
                let per_usable_lifetime = s.usable.as_secs_f64() / s.refresh.as_secs_f64();
                let goal = match lifetime {
                    l if l >= 5 * MINUTE => 1.15,
                    l if l >= MINUTE => 1.5,
                    _ => 2.01,
                };
                assert!(
                    per_usable_lifetime <= goal,
                    "{lifetime:?}: {per_usable_lifetime}"
                );
            }
            lifetime = lifetime.mul_f64(1.7);
        }
    }

    #[test]
    fn a_three_second_token_from_a_300ms_provider_costs_at_most_8_tokens_in_10s() {
        let s = Timing::default().schedule(secs(3.0), secs(0.3), 0.999_999);
        // Tokens start at 0, r, 2r, ...: at most 8 start within 10 s.
        let started_within_10s = (10.0 / s.refresh.as_secs_f64()).floor() as u32 + 1;
        assert!(started_within_10s <= 8, "{s:?}");
        assert_eq!(s.usable, secs(2.0));
    }

    #[test]
    fn refresh_ahead_zero_turns_the_window_off() {
        let timing = Timing {
            refresh_ahead: Duration::ZERO,
            ..Timing::default()
        };
        let s = timing.schedule(HOUR, secs(1.0), 0.5);
        assert_eq!(s.refresh, s.usable);
        assert_eq!(s.fresh, s.usable - TIMER_SLACK);
    }

    #[test]
    fn a_slow_provider_widens_the_window_up_to_half_the_usable_time() {
        let timing = Timing::default();
        let quick = timing.schedule(HOUR, secs(0.1), 0.0);
        let slow = timing.schedule(HOUR, secs(20.0), 0.0);
        assert_eq!(slow.refresh + secs(39.8), quick.refresh);
        let hopeless = timing.schedule(secs(10.0), secs(20.0), 0.0);
        assert_eq!(hopeless.refresh, hopeless.usable / 2);
    }

    #[test]
    fn unknown_and_zero_lifetimes_use_the_default() {
        let timing = Timing::default();
        assert_eq!(timing.lifetime(None), DEFAULT_LIFETIME);
        assert_eq!(timing.lifetime(Some(Duration::ZERO)), DEFAULT_LIFETIME);
        assert_eq!(timing.lifetime(Some(Duration::MAX)), MAX_LIFETIME);
    }

    #[test]
    fn the_fetch_estimate_follows_slow_fetches_and_fades() {
        let mut estimate = Duration::ZERO;
        for (latest, expected) in [
            (0.3, 0.3),
            (10.0, 10.0),
            (0.3, 5.0),
            (0.3, 2.5),
            (0.3, 1.25),
        ] {
            estimate = fetch_estimate(estimate, secs(latest));
            assert_eq!(estimate, secs(expected));
        }
    }

    #[test]
    fn one_retry_is_brought_forward_to_finish_before_the_usable_end() {
        let t = ErrorClass::TRANSIENT;
        // 1 s backoff, 0.36 s of usable life left, 0.3 s fetches: retry at once-ish.
        let d = refresh_retry(SECOND, 1, t, secs(0.36), secs(0.3));
        assert_eq!(d, secs(0.06));
        // Plenty of time: the backoff as it is.
        assert_eq!(refresh_retry(SECOND, 1, t, MINUTE, secs(0.3)), SECOND);
        // Only the first failure, only transient ones without Retry-After.
        assert_eq!(refresh_retry(SECOND, 2, t, secs(0.36), secs(0.3)), SECOND);
        assert_eq!(
            refresh_retry(SECOND, 1, ErrorClass::Permanent, secs(0.36), secs(0.3)),
            SECOND
        );
        let asked = ErrorClass::Transient {
            retry_after: Some(SECOND),
        };
        assert_eq!(
            refresh_retry(SECOND, 1, asked, secs(0.36), secs(0.3)),
            SECOND
        );
        // Past the last chance: no retry storm at the usable end.
        assert_eq!(refresh_retry(SECOND, 1, t, secs(0.3), secs(0.3)), SECOND);
    }
}
