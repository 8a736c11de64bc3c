//! The PC's PIT (channel 2, the one not wired to an interrupt): the reference the LAPIC
//! timer is calibrated against, and the busy-wait delays of the INIT / start-up IPI sequence.

use x86_64::instructions::port::Port;

/// The PIT's input clock.
const PIT_HZ: u64 = 1_193_182;
/// Longest single wait: the 16-bit counter at PIT_HZ (about 54.9 ms).
const MAX_CHUNK_US: u64 = 50_000;

/// Waits `us` microseconds, counting PIT channel 2 down in mode 0 (interrupt on terminal
/// count) and polling its output on port 0x61 bit 5. Interrupts may stay enabled.
pub fn wait_us(mut us: u64) {
    while us > 0 {
        let chunk = us.min(MAX_CHUNK_US);
        one_shot((chunk * PIT_HZ / 1_000_000).max(1) as u16);
        us -= chunk;
    }
}

/// Reads `counter` twice, about `us` microseconds apart, and measures the time between the
/// two reads on the PIT. Each read of `counter` is bracketed by two PIT reads and retried
/// until the bracket is tight: a vCPU descheduled between the two clocks' reads (common under
/// emulation) would otherwise skew the result by the time it lost. A measurement the 16-bit
/// counter wrapped during (the vCPU lost over 55 ms) is taken again. Returns (first read,
/// second read, nanoseconds between them).
pub fn measure(us: u64, mut counter: impl FnMut() -> u32) -> (u32, u32, u64) {
    let ticks = (us.min(MAX_CHUNK_US) * PIT_HZ / 1_000_000) as u16;
    loop {
        start(u16::MAX);
        // The count is loaded on the PIT's next clock edge; wait until it runs.
        while read_count() == u16::MAX {
            core::hint::spin_loop();
        }
        let (first, pit_first) = bracketed(&mut counter);
        while pit_first.wrapping_sub(read_count()) < ticks && !terminal_count() {
            core::hint::spin_loop();
        }
        let (second, pit_second) = bracketed(&mut counter);
        if terminal_count() {
            continue;
        }
        let elapsed_ns = u64::from(pit_first - pit_second) * 1_000_000_000 / PIT_HZ;
        return (first, second, elapsed_ns);
    }
}

/// PIT ticks (about 0.84 µs each) a read of `counter` may take between its two PIT reads.
const TIGHT_BRACKET: u16 = 40;

/// One read of `counter` and the PIT count at its midpoint, from the tightest of a few tries.
fn bracketed(counter: &mut impl FnMut() -> u32) -> (u32, u16) {
    let mut best = (u16::MAX, 0, 0);
    for _ in 0..100 {
        let before = read_count();
        let value = counter();
        let after = read_count();
        let width = before.wrapping_sub(after);
        if width < best.0 {
            best = (width, value, before.wrapping_sub(width / 2));
        }
        if width <= TIGHT_BRACKET {
            break;
        }
    }
    (best.1, best.2)
}

fn one_shot(count: u16) {
    start(count);
    while !terminal_count() {
        core::hint::spin_loop();
    }
}

/// Channel 2's output (port 0x61 bit 5): in mode 0 it goes high when the count reaches zero.
fn terminal_count() -> bool {
    // SAFETY: as in `start`; reading the gate port has no side effect.
    unsafe { Port::<u8>::new(0x61).read() & 0x20 != 0 }
}

/// The channel 2 count now (latched, so the two bytes belong together).
fn read_count() -> u16 {
    // SAFETY: as in `start`; the latch command (channel 2, counter latch) freezes the count
    // until both bytes are read.
    unsafe {
        Port::<u8>::new(0x43).write(0x80); // channel 2, counter latch
        let mut channel2 = Port::<u8>::new(0x42);
        let low = channel2.read();
        u16::from_le_bytes([low, channel2.read()])
    }
}

/// Loads channel 2 with `count` in mode 0 (output goes high at terminal count, then the
/// counter keeps counting down) and opens its gate.
fn start(count: u16) {
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: the PIT's channel 2 and its gate belong to this code alone (the PC speaker is
    // kept off: bit 1 clear).
    unsafe {
        let g = gate.read();
        gate.write((g & !0x02) & !0x01); // gate low: channel 2 holds
        command.write(0xB0); // channel 2, low then high byte, mode 0, binary
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        gate.write((g & !0x02) | 0x01); // gate high: counting starts
    }
}
