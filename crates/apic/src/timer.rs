//! LAPIC timer calibration math.
//!
//! The LAPIC timer ticks at an unspecified bus/core-crystal frequency
//! divided by [`TimerDivide`]. The kernel measures how many timer ticks
//! elapse over a known interval (PIT, HPET, ACPI PM timer, or CPUID.15H) and
//! uses these functions to turn that into a frequency and initial counts.
//! All intermediate math is `u128`, so nothing overflows silently.

use crate::lvt::TimerDivide;

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Why a calibration computation has no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerError {
    /// The measurement interval was zero.
    ZeroElapsed,
    /// The result does not fit its integer type.
    Overflow,
    /// The period rounds to 0 ticks (a 0 initial count stops the timer).
    PeriodTooShort,
    /// The period needs more than `u32::MAX` ticks even at this divider.
    PeriodTooLong,
}

/// The undivided timer input frequency in Hz, from `counted_ticks` timer
/// ticks observed at divider `divide` over `elapsed_ns` nanoseconds.
pub fn frequency_hz(
    counted_ticks: u64,
    divide: TimerDivide,
    elapsed_ns: u64,
) -> Result<u64, TimerError> {
    if elapsed_ns == 0 {
        return Err(TimerError::ZeroElapsed);
    }
    let input_ticks = u128::from(counted_ticks) * u128::from(divide.divisor());
    let hz = input_ticks * NANOS_PER_SECOND / u128::from(elapsed_ns);
    u64::try_from(hz).map_err(|_| TimerError::Overflow)
}

/// The initial count that makes a timer with input frequency `freq_hz` and
/// divider `divide` expire after `period_ns`, rounded to the nearest tick.
pub fn initial_count_for(
    freq_hz: u64,
    divide: TimerDivide,
    period_ns: u64,
) -> Result<u32, TimerError> {
    let numerator = u128::from(freq_hz) * u128::from(period_ns);
    let denominator = u128::from(divide.divisor()) * NANOS_PER_SECOND;
    let ticks = (numerator + denominator / 2) / denominator;
    if ticks == 0 {
        return Err(TimerError::PeriodTooShort);
    }
    u32::try_from(ticks).map_err(|_| TimerError::PeriodTooLong)
}

/// The finest divider whose initial count for `period_ns` fits in 32 bits,
/// with that count. Finest divider = best resolution.
pub fn smallest_divide_for(freq_hz: u64, period_ns: u64) -> Result<(TimerDivide, u32), TimerError> {
    let mut last = TimerError::PeriodTooLong;
    for divide in TimerDivide::ALL {
        match initial_count_for(freq_hz, divide, period_ns) {
            Ok(count) => return Ok((divide, count)),
            // A coarser divider only makes a too-short period shorter.
            Err(TimerError::PeriodTooShort) => return Err(TimerError::PeriodTooShort),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The one-shot initial count that expires `delta_ns` from now at input frequency `freq_hz`
/// and divider `divide`, for a deadline timer: rounded **up** (the interrupt never comes
/// before the deadline), at least 1 (0 stops the timer) and at most `u32::MAX`. A deadline
/// beyond the counter's range gets that first piece; the caller arms the rest when it ends.
pub fn oneshot_count_for(freq_hz: u64, divide: TimerDivide, delta_ns: u64) -> u32 {
    let denominator = u128::from(divide.divisor()) * NANOS_PER_SECOND;
    // Rounded up by hand: `div_ceil` is newer than this crate's MSRV.
    let ticks = (u128::from(freq_hz) * u128::from(delta_ns) + denominator - 1) / denominator;
    ticks.clamp(1, u128::from(u32::MAX)) as u32
}

/// How long `count` ticks last at `freq_hz` and `divide` (ns, rounded down): the longest
/// one-shot piece is `count_duration_ns(.., u32::MAX)`.
pub fn count_duration_ns(freq_hz: u64, divide: TimerDivide, count: u32) -> u64 {
    if freq_hz == 0 {
        return u64::MAX;
    }
    let ns =
        u128::from(count) * u128::from(divide.divisor()) * NANOS_PER_SECOND / u128::from(freq_hz);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oneshot_count_rounds_up_never_early() {
        // 1 GHz / 16: one count is 16 ns. 17 ns needs 2 counts (32 ns), never 1 (16 ns).
        assert_eq!(oneshot_count_for(1_000_000_000, TimerDivide::By16, 17), 2);
        assert_eq!(oneshot_count_for(1_000_000_000, TimerDivide::By16, 16), 1);
        for delta in [1u64, 999, 10_000_000, 1_234_567_891] {
            let count = oneshot_count_for(999_681_270, TimerDivide::By16, delta);
            assert!(count_duration_ns(999_681_270, TimerDivide::By16, count) + 1 >= delta);
        }
    }

    #[test]
    fn oneshot_count_never_zero() {
        assert_eq!(oneshot_count_for(1_000_000_000, TimerDivide::By16, 0), 1);
        assert_eq!(oneshot_count_for(0, TimerDivide::By16, 5_000), 1);
    }

    #[test]
    fn long_deadline_is_a_first_piece_of_the_full_range() {
        // 2^32 counts of 16 ns: 68.7 s. 100 s is longer: the first piece is the full range.
        let max_ns = count_duration_ns(1_000_000_000, TimerDivide::By16, u32::MAX);
        assert_eq!(max_ns / 1_000_000_000, 68);
        assert_eq!(oneshot_count_for(1_000_000_000, TimerDivide::By16, 100_000_000_000), u32::MAX);
        assert_eq!(oneshot_count_for(u64::MAX, TimerDivide::By16, u64::MAX), u32::MAX);
        assert_eq!(oneshot_count_for(1_000_000_000, TimerDivide::By16, max_ns), u32::MAX);
    }

    #[test]
    fn frequency_from_calibration_window() {
        // 1_000_000 ticks at /16 over 10 ms => 1.6 GHz input clock.
        assert_eq!(frequency_hz(1_000_000, TimerDivide::By16, 10_000_000), Ok(1_600_000_000));
        assert_eq!(frequency_hz(25_000, TimerDivide::By1, 1_000_000), Ok(25_000_000));
        assert_eq!(frequency_hz(5, TimerDivide::By1, 0), Err(TimerError::ZeroElapsed));
        assert_eq!(frequency_hz(u64::MAX, TimerDivide::By128, 1), Err(TimerError::Overflow));
    }

    #[test]
    fn initial_count_math() {
        // 1 GHz input, /16, 1 ms => 62_500 ticks.
        assert_eq!(initial_count_for(1_000_000_000, TimerDivide::By16, 1_000_000), Ok(62_500));
        // Rounds to nearest: 25 MHz, /1, 100 ns => 2.5 -> 3.
        assert_eq!(initial_count_for(25_000_000, TimerDivide::By1, 100), Ok(3));
        assert_eq!(
            initial_count_for(25_000_000, TimerDivide::By128, 1),
            Err(TimerError::PeriodTooShort)
        );
        // 4 GHz, /1, 2 s => 8e9 ticks > u32::MAX.
        assert_eq!(
            initial_count_for(4_000_000_000, TimerDivide::By1, 2_000_000_000),
            Err(TimerError::PeriodTooLong)
        );
    }

    #[test]
    fn smallest_divider_that_fits() {
        // 4 GHz, 2 s: /1 needs 8e9 ticks, /2 needs 4e9 (fits just under 2^32).
        assert_eq!(
            smallest_divide_for(4_000_000_000, 2_000_000_000),
            Ok((TimerDivide::By2, 4_000_000_000))
        );
        assert_eq!(
            smallest_divide_for(1_000_000_000, 1_000_000),
            Ok((TimerDivide::By1, 1_000_000))
        );
        assert_eq!(smallest_divide_for(4_000_000_000, u64::MAX), Err(TimerError::PeriodTooLong));
        assert_eq!(smallest_divide_for(1_000, 1), Err(TimerError::PeriodTooShort));
    }

    #[test]
    fn calibration_round_trip() {
        let freq = frequency_hz(123_456, TimerDivide::By8, 10_000_000).unwrap();
        assert_eq!(initial_count_for(freq, TimerDivide::By8, 10_000_000), Ok(123_456));
    }
}
