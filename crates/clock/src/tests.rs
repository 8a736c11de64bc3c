use super::*;

fn set(sources: &[ClockSource]) -> Available {
    sources.iter().fold(Available::NONE, |a, s| a.with(*s, true))
}

#[test]
fn preferred_order_is_cpuid_hpet_pm_timer_pit() {
    let all = set(&ClockSource::ORDER);
    let p = plan(all, None).unwrap();
    assert_eq!(p.primary, ClockSource::Cpuid);
    assert_eq!(p.cross_check, Some(ClockSource::Hpet));
    let no_cpuid = set(&[ClockSource::Pit, ClockSource::PmTimer, ClockSource::Hpet]);
    assert_eq!(plan(no_cpuid, None).unwrap().primary, ClockSource::Hpet);
    assert_eq!(plan(no_cpuid, None).unwrap().cross_check, Some(ClockSource::PmTimer));
}

#[test]
fn pitless_machines_fall_back_to_what_is_there() {
    // q35,pit=off: HPET and PM timer.
    let p = plan(set(&[ClockSource::Hpet, ClockSource::PmTimer]), None).unwrap();
    assert_eq!((p.primary, p.cross_check), (ClockSource::Hpet, Some(ClockSource::PmTimer)));
    // q35,pit=off,hpet=off: the PM timer alone, nothing to compare with.
    let p = plan(set(&[ClockSource::PmTimer]), None).unwrap();
    assert_eq!((p.primary, p.cross_check), (ClockSource::PmTimer, None));
    // microvm without a PIT: nothing.
    assert_eq!(plan(Available::NONE, None), None);
}

#[test]
fn a_forced_source_is_used_when_present_and_reported_when_absent() {
    let avail = set(&[ClockSource::Hpet, ClockSource::PmTimer, ClockSource::Pit]);
    let p = plan(avail, Some(ClockSource::Pit)).unwrap();
    assert_eq!(
        (p.primary, p.cross_check, p.forced_absent),
        (ClockSource::Pit, Some(ClockSource::Hpet), None)
    );
    let p = plan(set(&[ClockSource::PmTimer]), Some(ClockSource::Pit)).unwrap();
    assert_eq!((p.primary, p.forced_absent), (ClockSource::PmTimer, Some(ClockSource::Pit)));
}

#[test]
fn cpuid_is_never_the_cross_check() {
    let p = plan(set(&[ClockSource::Cpuid, ClockSource::Pit]), Some(ClockSource::Pit)).unwrap();
    assert_eq!((p.primary, p.cross_check), (ClockSource::Pit, None));
}

#[test]
fn names_round_trip() {
    for s in ClockSource::ORDER {
        assert_eq!(ClockSource::from_name(s.name()), Some(s));
    }
    assert_eq!(ClockSource::from_name("tsc"), None);
}

#[test]
fn cpuid_rates() {
    // A 24 MHz crystal at ratio 2/250: 3 GHz... (Skylake-style leaf 15H.)
    assert_eq!(cpuid_tsc_hz(Some((2, 250, 24_000_000)), None), Some(3_000_000_000));
    // Crystal unreported: the base frequency from 16H.
    assert_eq!(cpuid_tsc_hz(Some((2, 250, 0)), Some(2100)), Some(2_100_000_000));
    assert_eq!(cpuid_tsc_hz(None, Some(0)), None);
    assert_eq!(cpuid_tsc_hz(Some((0, 0, 0)), None), None);
}

#[test]
fn counter_delta_crosses_one_wrap_at_each_width() {
    assert_eq!(counter_delta(0xff_fff0, 0x10, 24), 0x20);
    assert_eq!(counter_delta(0xffff_fff0, 0x10, 32), 0x20);
    assert_eq!(counter_delta(u64::MAX - 1, 3, 64), 5);
    assert_eq!(counter_delta(5, 5, 24), 0);
    // Bits above the counter's width (a 24-bit timer read through a 32-bit port) are ignored.
    assert_eq!(counter_delta(0xab00_0000, 0xcd00_0010, 24), 0x10);
}

#[test]
fn hpet_period_bounds() {
    // QEMU's HPET: 10 ns period = 100 MHz.
    assert_eq!(hpet_hz(10_000_000u64 << 32), Some(100_000_000));
    // 69.841279 ns (a 14.318 MHz HPET).
    assert_eq!(hpet_hz(69_841_279u64 << 32), Some(14_318_179));
    assert_eq!(hpet_hz(0), None);
    assert_eq!(hpet_hz((100_000_001u64) << 32), None);
}

#[test]
fn windows_and_medians() {
    // 10 ms of PM timer at 2.4 GHz.
    let ticks = PM_TIMER_HZ / 100;
    assert_eq!(tsc_hz_from_window(24_000_000, ticks, PM_TIMER_HZ), Some(2_400_030_171));
    assert_eq!(tsc_hz_from_window(1, 0, PM_TIMER_HZ), None);
    assert_eq!(tsc_hz_from_window(u64::MAX, 1, u64::MAX), None);
    let mut rates = [5, 1, 3, 1_000_000, 2];
    assert_eq!(median(&mut rates), Some(3));
    assert_eq!(median(&mut []), None);
}

#[test]
fn the_absent_pit_rate_is_implausible() {
    // The figure an absent PIT gave: 3.9 MHz for a multi-GHz TSC.
    assert!(!plausible(3_947_000));
    assert!(plausible(2_400_000_000));
    assert!(!plausible(40_000_000_000));
}

#[test]
fn agreement_is_relative() {
    assert!(agree(2_400_000_000, 2_500_000_000));
    assert!(!agree(2_400_000_000, 3_000_000_000));
    assert!(!agree(2_400_000_000, 3_947_000));
    assert_eq!(difference_ppm(1_000, 1_100), 100_000);
    assert_eq!(difference_ppm(0, 5), 5_000_000);
}
