//! Exponential reconnection back-off with seeded jitter.

use std::time::Duration;

use raft::Rng;

/// Doubles the delay after each failure up to a cap; each delay is drawn from the upper half of
/// the current step so that peers restarting together do not reconnect in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    rng: Rng,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        Self {
            initial,
            max,
            current: initial,
            rng: Rng::new(seed),
        }
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.current.as_micros() as u64;
        let delay = Duration::from_micros(self.rng.range(step / 2, step + 1));
        self.current = (self.current * 2).min(self.max);
        delay
    }

    /// Called after a success: the next failure starts from the initial delay again.
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(800), 7);
        let steps = [100, 200, 400, 800, 800];
        for step in steps {
            let d = backoff.next_delay();
            assert!(
                d >= ms(step) / 2 && d <= ms(step),
                "{d:?} outside step {step}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= ms(100));
    }
}
