//! A tiny seeded pseudo-random generator (SplitMix64).
//!
//! The core only needs randomness for election-timeout jitter. Owning a seeded generator (rather
//! than using a global or thread-local one) keeps every run reproducible from its seed.

/// SplitMix64: small, fast and good enough for timeout jitter and simulated faults.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value uniformly drawn from `[low, high)`; `low` when the range is empty.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low)
    }

    /// `true` with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut c = Rng::new(43);
        assert_ne!(Rng::new(42).next_u64(), c.next_u64());
    }

    #[test]
    fn range_stays_in_bounds() {
        let mut r = Rng::new(7);
        for _ in 0..1000 {
            let v = r.range(10, 20);
            assert!((10..20).contains(&v));
        }
        assert_eq!(r.range(5, 5), 5);
    }

    #[test]
    fn the_sequence_is_splitmix64() {
        // Reference values of SplitMix64 (Steele, Lea and Flood) from seed 0.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
        assert_eq!(Rng::new(42).next_u64(), 0xbdd7_3226_2feb_6e95);
    }

    #[test]
    fn chance_follows_its_probability() {
        let mut r = Rng::new(11);
        assert!((0..1000).all(|_| !r.chance(0.0)));
        assert!((0..1000).all(|_| !r.chance(-1.0)));
        assert!((0..1000).all(|_| r.chance(1.0)));
        for p in [0.1, 0.5, 0.9] {
            let hits = (0..20_000).filter(|_| r.chance(p)).count() as f64 / 20_000.0;
            assert!((hits - p).abs() < 0.02, "chance({p}) came up {hits}");
        }
    }
}
