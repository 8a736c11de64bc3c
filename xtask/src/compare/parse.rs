//! Parsers for the Linux guest's console (`RESULT`/`SAMPLES`/`DMESG` lines from
//! `bench/linux/kbench.c` and `bench/linux/init`) and the summary statistics.

use std::collections::BTreeMap;

/// What one Linux guest boot printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestOutput {
    /// `RESULT key=value`, last value wins.
    pub results: BTreeMap<String, String>,
    /// `SAMPLES metric v1 v2 ...`.
    pub samples: BTreeMap<String, Vec<u64>>,
    /// The kernel's `smp: Brought up N nodes, M CPUs` time, microseconds since its clock started.
    pub all_online_us: Option<u64>,
    /// The kernel's `smp: Bringing up secondary CPUs ...` time (same clock): where AP
    /// bring-up starts.
    pub bringup_start_us: Option<u64>,
    /// The latest printk timestamp seen (a stopped run's bring-up lasted at least until it).
    pub last_time_us: Option<u64>,
    /// M of `smp: Brought up N nodes, M CPUs`.
    pub brought_up_cpus: Option<u32>,
    /// Linux's own words when it fell back to one AP at a time
    /// (`Parallel CPU startup disabled ...`, `Disabling parallel bringup ...`).
    pub parallel_disabled: Option<String>,
    /// `KBENCH done` seen: the init script ran to the end.
    pub done: bool,
    /// Linux's own report of its APIC mode, from the kernel log, if it said.
    pub apic_mode: Option<&'static str>,
    /// `Kernel panic - not syncing: <reason>`.
    pub panic: Option<String>,
}

impl GuestOutput {
    pub fn parse(console: &str) -> GuestOutput {
        let mut g = GuestOutput::default();
        for raw in console.lines() {
            let line = raw.trim_end_matches('\r');
            // Kernel messages can land in the middle of a line; find our markers anywhere.
            if let Some(i) = line.find("RESULT ") {
                if let Some((k, v)) = line[i + 7..].trim().split_once('=') {
                    if !k.is_empty() && !k.contains(char::is_whitespace) {
                        g.results.insert(k.to_string(), v.trim().to_string());
                    }
                }
            } else if let Some(i) = line.find("SAMPLES ") {
                let mut words = line[i + 8..].split_whitespace();
                if let Some(metric) = words.next() {
                    let v: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
                    g.samples.insert(metric.to_string(), v);
                }
            } else if line.contains("KBENCH done") {
                g.done = true;
            }
            if let Some(i) = line.find("Kernel panic - not syncing: ") {
                g.panic.get_or_insert_with(|| line[i + 28..].trim().to_string());
            }
            if line.contains("IRQ remapping doesn't support X2APIC mode") {
                g.apic_mode = Some(X2APIC_REFUSED);
            } else if line.contains("Enabled IRQ remapping in x2apic mode") {
                g.apic_mode = Some(X2APIC_REMAPPED);
            } else if line.contains("x2apic enabled")
                || line.contains("APIC routing to cluster x2apic")
                || line.contains("APIC routing to physical x2apic")
            {
                g.apic_mode.get_or_insert("x2apic");
            }
            if g.all_online_us.is_none() && line.contains("smp: Brought up") {
                g.all_online_us = dmesg_time_us(line);
                g.brought_up_cpus = line
                    .rsplit(", ")
                    .next()
                    .and_then(|w| w.split_whitespace().next())
                    .and_then(|n| n.parse().ok());
            }
            if line.starts_with('[') {
                g.last_time_us = g.last_time_us.max(dmesg_time_us(line));
            }
            if g.bringup_start_us.is_none() && line.contains(BRINGUP_START) {
                g.bringup_start_us = dmesg_time_us(line);
            }
            if let Some(i) = line
                .find("Parallel CPU startup disabled")
                .or_else(|| line.find("Disabling parallel bringup"))
            {
                g.parallel_disabled.get_or_insert_with(|| line[i..].trim().to_string());
            }
        }
        g
    }

    /// Microseconds from `smp: Bringing up secondary CPUs` to `smp: Brought up`: the
    /// kernel's AP bring-up, in its own printk clock.
    pub fn bringup_us(&self) -> Option<u64> {
        self.all_online_us?.checked_sub(self.bringup_start_us?)
    }

    pub fn u64(&self, key: &str) -> Option<u64> {
        self.results.get(key).and_then(|v| parse_u64(v))
    }
}

/// Linux's `smp_init()` prints this before it starts the first AP.
pub const BRINGUP_START: &str = "smp: Bringing up secondary CPUs";

/// Linux enabled interrupt remapping and x2APIC (the IOMMU machine).
pub const X2APIC_REMAPPED: &str = "x2apic (\"DMAR-IR: Enabled IRQ remapping in x2apic mode\")";
/// A finished Linux run whose log names no x2APIC mode: it ran the xAPIC interface.
pub const NO_X2APIC_MESSAGE: &str = "xapic (no x2APIC message in its kernel log)";

/// Linux kept the xAPIC (MMIO) interface although the CPU offers x2APIC.
pub const X2APIC_REFUSED: &str =
    "xapic (Linux refused x2APIC: no IRQ remapping, hypervisor not recognised)";

/// `[    1.234567] text` -> 1234567.
pub fn dmesg_time_us(line: &str) -> Option<u64> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let (s, us) = line[open + 1..close].trim().split_once('.')?;
    let us = format!("{us:0<6}");
    Some(s.parse::<u64>().ok()? * 1_000_000 + us[..6].parse::<u64>().ok()?)
}

/// Decimal or `0x` hex.
pub fn parse_u64(v: &str) -> Option<u64> {
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Median and p99 with the index rule Keel's kernel and `kbench` use: `sorted[(n-1)*p/100]`.
pub fn percentiles(samples: &[u64]) -> Option<(u64, u64)> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let at = |p: usize| s[(s.len() - 1) * p / 100];
    Some((at(50), at(99)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_console() {
        let out = "[    0.000000] Linux version 6.1\r\n\
                   [    0.412345] smp: Brought up 1 node, 8 CPUs\r\n\
                   KBENCH start cpus=8\n\
                   RESULT ipi.samples=3\n\
                   SAMPLES ipi 30 10 20\n\
                   [    5.1] random: crng init doneRESULT ipi.median_cycles=20\n\
                   RESULT uio.edu_id=0x10000ed\n\
                   RESULT bogus line\n\
                   KBENCH done\n";
        let g = GuestOutput::parse(out);
        assert!(g.done);
        assert_eq!(g.all_online_us, Some(412_345));
        assert_eq!(g.u64("ipi.samples"), Some(3));
        assert_eq!(g.u64("ipi.median_cycles"), Some(20));
        assert_eq!(g.u64("uio.edu_id"), Some(0x10000ed));
        assert_eq!(g.samples["ipi"], vec![30, 10, 20]);
        assert_eq!(g.results.len(), 3);
        assert!(!GuestOutput::parse("RESULT a=1\n").done);
        assert_eq!(g.apic_mode, None);
        let x = GuestOutput::parse(
            "DMESG [    0.269997] x2apic: IRQ remapping doesn't support X2APIC mode\n",
        );
        assert_eq!(x.apic_mode, Some(X2APIC_REFUSED));
        let ir = GuestOutput::parse("DMESG [    0.1] DMAR-IR: Enabled IRQ remapping in x2apic mode\nDMESG [    0.2] x2apic enabled\n");
        assert_eq!(ir.apic_mode, Some(X2APIC_REMAPPED));
        let p = GuestOutput::parse(
            "[   22.169316] Kernel panic - not syncing: System is deadlocked on memory\n",
        );
        assert_eq!(p.panic.as_deref(), Some("System is deadlocked on memory"));
    }

    #[test]
    fn bringup_interval() {
        let out = "DMESG [    0.912000] smp: Bringing up secondary CPUs ...\n\
                   DMESG [    0.913500] smpboot: x86: Booting SMP configuration:\n\
                   DMESG [   18.712001] smp: Brought up 1 node, 64 CPUs\n";
        let g = GuestOutput::parse(out);
        assert_eq!(g.bringup_start_us, Some(912_000));
        assert_eq!(g.all_online_us, Some(18_712_001));
        assert_eq!(g.bringup_us(), Some(17_800_001));
        assert_eq!(g.brought_up_cpus, Some(64));
        assert_eq!(
            GuestOutput::parse("[    2.5] smp: Bringing up secondary CPUs ...\n[   13.25] x\n")
                .last_time_us,
            Some(13_250_000)
        );
        assert_eq!(g.parallel_disabled, None);
        assert_eq!(
            GuestOutput::parse("[ 1.0] smp: Brought up 1 node, 2 CPUs\n").bringup_us(),
            None,
            "no start line, no interval"
        );
        let serial = GuestOutput::parse(
            "[    0.5] smpboot: Parallel CPU startup disabled by the platform\n",
        );
        assert_eq!(
            serial.parallel_disabled.as_deref(),
            Some("Parallel CPU startup disabled by the platform")
        );
    }

    #[test]
    fn dmesg_times_and_stats() {
        assert_eq!(dmesg_time_us("[   12.5] x"), Some(12_500_000));
        assert_eq!(dmesg_time_us("no stamp"), None);
        assert_eq!(percentiles(&[5, 1, 3, 2, 4]), Some((3, 4)));
        assert_eq!(percentiles(&(1..=100).collect::<Vec<_>>()), Some((50, 99)));
        assert_eq!(percentiles(&[]), None);
    }
}
