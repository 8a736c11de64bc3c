#!/usr/bin/env python3
"""Captures the PCI configuration space of QEMU's devices as fuzz seeds for `pci_config`.

Starts QEMU under its qtest protocol (no guest code runs: the script itself reads
configuration space through ports 0xCF8/0xCFC, as a kernel does), then, for each function
on bus 0, sizes every BAR (all ones written, read back, restored) and writes the 256 bytes
of configuration space followed by the six BAR sizes (little-endian u64, 0 when absent):
the input layout the fuzz target reads.

Usage: capture_pci.py OUT_DIR NAME [QEMU_ARGS...]   (writes OUT_DIR/NAME-DD.F.bin)
"""
import os
import struct
import subprocess
import sys


class Qtest:
    def __init__(self, extra):
        self.p = subprocess.Popen(
            ["qemu-system-x86_64", "-display", "none", "-accel", "tcg", "-S",
             "-qtest", "stdio", "-m", "128M"] + extra,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        while True:
            reply = self.p.stdout.readline().split()
            if reply and reply[0] == "OK":
                return reply[1:]
            if reply and reply[0] == "FAIL":
                raise RuntimeError(line)

    def cfg_read(self, dev, fn, off):
        self.cmd("outl 0xcf8 %#x" % (0x80000000 | dev << 11 | fn << 8 | off))
        return int(self.cmd("inl 0xcfc")[0], 16)

    def cfg_write(self, dev, fn, off, value):
        self.cmd("outl 0xcf8 %#x" % (0x80000000 | dev << 11 | fn << 8 | off))
        self.cmd("outl 0xcfc %#x" % value)


def bar_sizes(q, dev, fn):
    sizes, bar = [0] * 6, 0
    while bar < 6:
        off = 0x10 + bar * 4
        old = q.cfg_read(dev, fn, off)
        q.cfg_write(dev, fn, off, 0xFFFFFFFF)
        probe = q.cfg_read(dev, fn, off)
        q.cfg_write(dev, fn, off, old)
        is_io, is_64 = old & 1, (old >> 1) & 3 == 2
        mask = probe & (~3 if is_io else ~0xF) & 0xFFFFFFFF
        if is_64 and bar < 5:
            hi_old = q.cfg_read(dev, fn, off + 4)
            q.cfg_write(dev, fn, off + 4, 0xFFFFFFFF)
            hi = q.cfg_read(dev, fn, off + 4)
            q.cfg_write(dev, fn, off + 4, hi_old)
            mask |= hi << 32
            size = (~mask + 1) & 0xFFFFFFFFFFFFFFFF if mask else 0
            sizes[bar] = size
            bar += 2
            continue
        if is_io:
            mask |= 0xFFFF0000
        sizes[bar] = (~mask + 1) & 0xFFFFFFFF if mask else 0
        bar += 1
    return sizes


def main():
    out_dir, name, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    q = Qtest(extra)
    os.makedirs(out_dir, exist_ok=True)
    for dev in range(32):
        for fn in range(8):
            if q.cfg_read(dev, fn, 0) & 0xFFFF == 0xFFFF:
                continue
            config = b"".join(struct.pack("<I", q.cfg_read(dev, fn, o)) for o in range(0, 256, 4))
            header_type = config[0x0E] & 0x7F
            sizes = bar_sizes(q, dev, fn) if header_type == 0 else [0] * 6
            path = os.path.join(out_dir, "%s-%02x.%x.bin" % (name, dev, fn))
            with open(path, "wb") as f:
                f.write(config + struct.pack("<6Q", *sizes))
            print(path, "%04x:%04x" % struct.unpack_from("<HH", config, 0), sizes)
    q.p.stdin.close()
    q.p.terminate()


if __name__ == "__main__":
    main()
