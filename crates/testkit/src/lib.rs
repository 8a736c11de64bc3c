//! Helpers shared by the host unit tests of Keel's crates: a dev-dependency only, never part
//! of the kernel or of user programs.

#![forbid(unsafe_code)]

/// xorshift64 (13, 7, 17): deterministic, dependency-free fuzz input. The seed must not be 0.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n` (`n > 0`; the slight modulo bias does not matter for fuzzing).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::XorShift;

    #[test]
    fn deterministic_nonzero_and_bounded() {
        let (mut a, mut b) = (XorShift(42), XorShift(42));
        for _ in 0..1000 {
            let x = a.next();
            assert_eq!(x, b.next());
            assert_ne!(x, 0);
            assert!(a.below(7) < 7);
            b.below(7);
        }
    }
}
