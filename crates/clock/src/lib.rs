//! Which clock calibrates the TSC, and the arithmetic of calibrating it.
//!
//! Keel keeps time with the TSC, whose rate must be learned at boot. The references, in the
//! order they are preferred: CPUID leaf 15H (crystal and ratio) or 16H (base frequency), the
//! HPET's main counter, the ACPI PM timer, and the PIT's channel 2. Modern platforms may lack
//! the PIT (QEMU's `q35,pit=off`), the HPET (`hpet=off`), or report zeros in CPUID, so each
//! source is probed and the first one present is used; a command-line `clocksource=` can
//! force one. A second source, when one exists, measures the TSC again and the two are
//! compared, and a rate outside [`PLAUSIBLE_TSC_HZ`] is never taken: an absent PIT reads as
//! a window that ends at once, which once gave a TSC "rate" 600 times too low.
//!
//! Pure logic: the kernel reads the counters, this crate decides and computes.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// The ACPI PM timer's fixed rate (ACPI 6.5, 4.8.3.3).
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// The PIT's input clock.
pub const PIT_HZ: u64 = 1_193_182;
/// TSC rates a calibration may yield: 100 MHz to 20 GHz. Slower or faster means the reference
/// lied (an absent device, a vCPU descheduled inside the window), never a real CPU.
pub const PLAUSIBLE_TSC_HZ: core::ops::RangeInclusive<u64> = 100_000_000..=20_000_000_000;
/// Two sources agree when their TSC rates differ by at most this many parts per million.
pub const AGREEMENT_PPM: u64 = 100_000;

/// A reference the TSC can be calibrated against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockSource {
    /// CPUID 15H with a crystal frequency, or 16H's base frequency.
    Cpuid,
    /// The HPET's main counter (ACPI `HPET` table).
    Hpet,
    /// The ACPI PM timer (FADT `PM_TMR_BLK`), 3.579545 MHz, 24 or 32 bits.
    PmTimer,
    /// The 8254 PIT's channel 2, gated through port 0x61.
    Pit,
}

impl ClockSource {
    /// Every source, most preferred first.
    pub const ORDER: [ClockSource; 4] =
        [ClockSource::Cpuid, ClockSource::Hpet, ClockSource::PmTimer, ClockSource::Pit];

    /// The name used in evidence and on the command line (`clocksource=`).
    pub const fn name(self) -> &'static str {
        match self {
            ClockSource::Cpuid => "cpuid",
            ClockSource::Hpet => "hpet",
            ClockSource::PmTimer => "pm-timer",
            ClockSource::Pit => "pit",
        }
    }

    /// The source a `clocksource=` value names.
    pub fn from_name(name: &str) -> Option<ClockSource> {
        Self::ORDER.into_iter().find(|s| s.name() == name)
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The set of sources found present on this machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Available(u8);

impl Available {
    /// No source.
    pub const NONE: Available = Available(0);

    /// This set with `source` added when `present`.
    pub const fn with(self, source: ClockSource, present: bool) -> Available {
        if present {
            Available(self.0 | source.bit())
        } else {
            self
        }
    }

    /// Whether `source` is present.
    pub const fn has(self, source: ClockSource) -> bool {
        self.0 & source.bit() != 0
    }

    /// The present sources, most preferred first.
    pub fn iter(self) -> impl Iterator<Item = ClockSource> {
        ClockSource::ORDER.into_iter().filter(move |s| self.has(*s))
    }
}

/// What calibration should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The source the TSC rate is taken from.
    pub primary: ClockSource,
    /// A second source to measure again and compare with, if any (never CPUID: it is read,
    /// not measured, and the comparison should catch a wrong report).
    pub cross_check: Option<ClockSource>,
    /// The `clocksource=` request could not be honoured (that source is absent).
    pub forced_absent: Option<ClockSource>,
}

/// Chooses the primary source (`forced` when present, else the first available) and a second,
/// measured one to compare with. `None` when no source at all is present.
pub fn plan(available: Available, forced: Option<ClockSource>) -> Option<Plan> {
    let forced_absent = forced.filter(|f| !available.has(*f));
    let primary = forced.filter(|f| available.has(*f)).or_else(|| available.iter().next())?;
    let cross_check = available.iter().find(|s| *s != primary && *s != ClockSource::Cpuid);
    Some(Plan { primary, cross_check, forced_absent })
}

/// The TSC rate CPUID reports: leaf 15H's `crystal_hz * numerator / denominator` when it gives
/// a crystal, else leaf 16H's base frequency (the TSC's nominal rate on the CPUs that report
/// 15H without a crystal). `None` when neither says anything.
pub fn cpuid_tsc_hz(leaf15: Option<(u32, u32, u32)>, base_mhz: Option<u32>) -> Option<u64> {
    match leaf15 {
        Some((den, num, crystal)) if den != 0 && num != 0 && crystal != 0 => {
            Some(crystal as u64 * num as u64 / den as u64)
        }
        _ => base_mhz.filter(|m| *m != 0).map(|m| m as u64 * 1_000_000),
    }
}

/// Ticks a free-running counter of `bits` bits advanced from `earlier` to `later`, across at
/// most one wrap (the PM timer wraps every 4.7 s at 24 bits).
pub fn counter_delta(earlier: u64, later: u64, bits: u32) -> u64 {
    let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
    later.wrapping_sub(earlier) & mask
}

/// The HPET's counter rate from its capabilities register's period (femtoseconds per tick,
/// bits 63:32). The specification bounds the period to (0, 100 ns]; anything else is `None`.
pub fn hpet_hz(capabilities: u64) -> Option<u64> {
    let period_fs = capabilities >> 32;
    (period_fs != 0 && period_fs <= 100_000_000).then(|| 1_000_000_000_000_000 / period_fs)
}

/// The TSC rate from one window: `tsc_ticks` TSC ticks while the reference counted
/// `reference_ticks` at `reference_hz`. `None` for an empty window.
pub fn tsc_hz_from_window(tsc_ticks: u64, reference_ticks: u64, reference_hz: u64) -> Option<u64> {
    if reference_ticks == 0 {
        return None;
    }
    let hz = tsc_ticks as u128 * reference_hz as u128 / reference_ticks as u128;
    u64::try_from(hz).ok()
}

/// The median of the windows' rates (a vCPU descheduled inside one window makes that window's
/// rate wrong in either direction; the median ignores a minority of them). Sorts in place.
pub fn median(rates: &mut [u64]) -> Option<u64> {
    rates.sort_unstable();
    rates.get(rates.len() / 2).copied()
}

/// Whether a calibrated TSC rate can be a real CPU's.
pub fn plausible(tsc_hz: u64) -> bool {
    PLAUSIBLE_TSC_HZ.contains(&tsc_hz)
}

/// How far apart two rates are, in parts per million of the first.
pub fn difference_ppm(a: u64, b: u64) -> u64 {
    (a.abs_diff(b) as u128 * 1_000_000 / a.max(1) as u128).min(u64::MAX as u128) as u64
}

/// Whether two sources' rates agree within [`AGREEMENT_PPM`].
pub fn agree(a: u64, b: u64) -> bool {
    difference_ppm(a, b) <= AGREEMENT_PPM
}

#[cfg(test)]
mod tests;
