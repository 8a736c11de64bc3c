#!/usr/bin/env python3
"""Captures a QEMU machine's ACPI MADT, DMAR and IVRS as fuzz seeds.

Boots the machine with no disk, so SeaBIOS installs QEMU's ACPI tables and stops at
"no bootable device"; the monitor then saves guest RAM, and the tables are found through
the RSDP and the RSDT exactly as a kernel finds them (checksums as the firmware left them).

Usage: capture_acpi.py OUT_DIR NAME [QEMU_ARGS...]   (writes OUT_DIR/{madt,dmar,ivrs}/NAME.bin)
"""
import os
import struct
import subprocess
import sys
import tempfile
import time

RAM = 128 << 20


def table(mem, addr):
    length = struct.unpack_from("<I", mem, addr + 4)[0]
    return mem[addr:addr + length]


def save_tables(mem, out_dir, name):
    """Finds the RSDP in the BIOS area, follows the RSDT and writes each MADT, DMAR and IVRS."""
    rsdp = next(a for a in range(0xE0000, 0x100000, 16) if mem[a:a + 8] == b"RSD PTR ")
    rsdt = table(mem, struct.unpack_from("<I", mem, rsdp + 16)[0])
    pointers = struct.unpack_from("<%dI" % ((len(rsdt) - 36) // 4), rsdt, 36)
    for addr in pointers:
        t = table(mem, addr)
        label = {b"APIC": "madt", b"DMAR": "dmar", b"IVRS": "ivrs"}.get(t[:4])
        if label is None:
            continue
        assert sum(t) & 0xFF == 0, "bad checksum in " + label
        path = os.path.join(out_dir, label, name + ".bin")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(t)
        print(path, len(t))


def main():
    out_dir, name, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    dump = os.path.join(tempfile.mkdtemp(), "ram.bin")
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-display", "none", "-m", "128M", "-serial", "none",
         "-monitor", "stdio"] + extra,
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    time.sleep(float(os.environ.get("CAPTURE_WAIT", "8")))
    qemu.stdin.write("pmemsave 0 %#x \"%s\"\nquit\n" % (RAM, dump))
    qemu.stdin.flush()
    qemu.wait(timeout=60)
    save_tables(open(dump, "rb").read(), out_dir, name)


if __name__ == "__main__":
    main()
