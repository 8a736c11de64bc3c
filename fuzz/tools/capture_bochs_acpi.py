#!/usr/bin/env python3
"""Captures the ACPI MADT of a Bochs machine as a fuzz seed.

Boots Bochs (the same BIOS and options `cargo xtask test-bochs` uses) with nothing to boot,
so its BIOS builds the ACPI tables and stops. Debian's Bochs has the debugger: an interrupt
drops into it, `writemem` saves guest RAM, and the tables are found as capture_acpi.py finds
QEMU's.

Usage: capture_bochs_acpi.py OUT_DIR NAME MODEL CPUS   (writes OUT_DIR/madt/NAME.bin)
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

from capture_acpi import save_tables

MEGS = 32


def main():
    out_dir, name, model, cpus = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    work = tempfile.mkdtemp()
    rc, dump = os.path.join(work, "bochsrc"), os.path.join(work, "ram.bin")
    with open(rc, "w") as f:
        f.write("\n".join([
            "megs: %d" % MEGS,
            "cpu: model=%s, count=%d, ips=100000000" % (model, cpus),
            'display_library: rfb, options="timeout=0"',
            "sound: driver=dummy",
            "romimage: file=/usr/share/bochs/BIOS-bochs-latest",
            "vgaromimage: file=/usr/share/vgabios/vgabios.bin",
            "boot: cdrom",
            "log: " + os.path.join(work, "log"),
            "panic: action=fatal", "error: action=report", "info: action=ignore",
            "clock: sync=none, time0=local",
            "pci: enabled=1, chipset=i440fx",
            "mouse: enabled=0", ""]))
    bochs = subprocess.Popen(["bochs", "-q", "-f", rc], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    bochs.stdin.write("c\n")
    bochs.stdin.flush()
    time.sleep(float(os.environ.get("CAPTURE_WAIT", "10")))
    bochs.send_signal(signal.SIGINT)
    time.sleep(1)
    bochs.stdin.write('writemem "%s" 0 %#x\nquit\n' % (dump, MEGS << 20))
    bochs.stdin.flush()
    try:
        bochs.wait(timeout=60)
    except subprocess.TimeoutExpired:
        bochs.kill()
    save_tables(open(dump, "rb").read(), out_dir, name)


if __name__ == "__main__":
    main()
