#!/usr/bin/env python3
"""Captures the Multiboot 2 information GRUB hands the kernel, as a `multiboot2` seed.

Boots the ISO (`cargo xtask iso`) under QEMU, lets GRUB load Keel, saves guest RAM through
the monitor and finds the info structure: an 8-aligned `total_size, 0` header whose tags
chain to an end tag exactly at `total_size` and include GRUB's boot loader name tag.
The seed is the structure's address (4 bytes, little endian) and the structure itself.

Usage: capture_multiboot2.py ISO OUT_FILE [QEMU_ARGS...]   (CAPTURE_WAIT: seconds, default 20)
"""
import os
import struct
import subprocess
import sys
import tempfile
import time

RAM = 256 << 20


def tag_chain(mem, at):
    total, reserved = struct.unpack_from("<II", mem, at)
    if reserved != 0 or not 16 <= total <= 64 << 10 or at + total > len(mem):
        return None
    off, kinds = 8, []
    while off + 8 <= total:
        kind, size = struct.unpack_from("<II", mem, at + off)
        if size < 8 or off + size > total:
            return None
        if kind == 0:
            return kinds if size == 8 and off + 8 == total else None
        kinds.append(kind)
        off = (off + size + 7) & ~7
    return None


def main():
    iso, out, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    dump = os.path.join(tempfile.mkdtemp(), "ram.bin")
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-display", "none", "-m", "256M", "-serial", "null",
         "-monitor", "stdio", "-cdrom", iso, "-boot", "d"] + extra,
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    time.sleep(float(os.environ.get("CAPTURE_WAIT", "20")))
    qemu.stdin.write("stop\npmemsave 0 %#x \"%s\"\nquit\n" % (RAM, dump))
    qemu.stdin.flush()
    qemu.wait(timeout=60)
    mem = open(dump, "rb").read()
    # GRUB's boot loader name tag (type 2) is inside the structure: start from each one
    # and look back for the header whose chain contains it.
    name = mem.find(b"GRUB")
    while name >= 0:
        tag = name - 8
        if tag % 8 == 0 and struct.unpack_from("<I", mem, tag)[0] == 2:
            for at in range(tag - 8, max(tag - (64 << 10), 0), -8):
                kinds = tag_chain(mem, at)
                if kinds and 2 in kinds:
                    total = struct.unpack_from("<I", mem, at)[0]
                    with open(out, "wb") as f:
                        f.write(struct.pack("<I", at) + mem[at:at + total])
                    print(out, hex(at), total, "tags", kinds)
                    return
        name = mem.find(b"GRUB", name + 1)
    raise SystemExit("no Multiboot 2 information found")


if __name__ == "__main__":
    main()
