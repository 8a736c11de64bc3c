#!/usr/bin/env python3
"""Writes the synthetic seeds: ring submissions, command lines and Multiboot hand-overs.

The real captures come from elsewhere (ACPI tables: capture_acpi.py; ELFs: target/user
after `cargo xtask build`; manifests: manifests/); these fill in the inputs the kernel only
ever receives at run time. Usage: make_seeds.py SEEDS_DIR
"""
import os
import struct
import sys

SEEDS = sys.argv[1]


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def sub(method, args=(0, 0, 0, 0), cap=1, flags=0, user_data=0x1234):
    return struct.pack("<IHH4QQ", cap, method, flags, *args, user_data)


# Ring: what user/rt submits (one per method, valid arguments), a full queue, and the
# usual user mistakes; the last 20 bytes double as ring indices.
ring = {
    "nop": sub(0x0000),
    "console-write": sub(0x0101, (0x40_0000, 13, 0, 0)),
    "interrupt": sub(0x0201) + sub(0x0202) + sub(0x0203),
    "device-memory": sub(0x0301, (0x1000_0000, 0, 0, 0)) + sub(0x0302) + sub(0x0401),
    "timer": sub(0x0501) + sub(0x0502, (1_000_000, 0, 0, 0)) + sub(0x0503),
    "process": sub(0x0601, (0x40_1000, 0x7000_0000, 7, 1)) + sub(0x0602, (1, 0, 0, 0))
    + sub(0x0603) + sub(0x0604),
    "vm": sub(0x0701, (0x5000_0000, 4, 1, 0)) + sub(0x0702, (0x5000_0000, 4, 0, 0))
    + sub(0x0703, (0x5000_0000, 4, 0, 0)),
    "caps": sub(0x0001) + sub(0x0002) + sub(0x0003),
    "full-queue": b"".join(sub(0x0101, (0x40_0000, i, 0, 0), user_data=i) for i in range(32)),
    "mistakes": sub(0x0101, flags=1) + sub(0x7777) + sub(0x0000, (1, 0, 0, 0))
    + sub(0x0101, (0, 8, 0, 0)) + sub(0x0701, (0x5000_0001, 1, 0, 0)),
    "indices": struct.pack("<5I", 0xFFFF_FFF0, 0x10, 60, 4, 3),
}
for name, data in ring.items():
    write("ring", name, data)

# Kernel command lines as xtask and GRUB pass them.
cmdlines = {
    "smp": "proof=smp lapic=x2apic",
    "grub": "/boot/keel proof=smp lapic=x2apic",
    "quoted": 'proof=ring manifest=default msg="a b" verbose',
    "numbers": "proof=bench trips=10000 mask=0xff cpus=4",
    "empty": "",
}
for name, line in cmdlines.items():
    write("cmdline", name, line.encode())


def mb1(info_phys, cmdline, loader, mmap, modules):
    """A Multiboot 1 info structure with the fields QEMU's loader fills in, followed by
    what it points to (memory map, module list, strings)."""
    flags = 1 | 2 | 4 | 8 | 64 | 512  # mem, boot device, cmdline, mods, mmap, loader name
    tail = bytearray()

    def place(data):
        at = info_phys + 88 + len(tail)
        tail.extend(data)
        return at

    mmap_bytes = b"".join(struct.pack("<IQQI", 20, b, l, t) for b, l, t in mmap)
    mmap_addr = place(mmap_bytes)
    names = [place(n.encode() + b"\0") for _, _, n in modules]
    mods_addr = place(b"".join(struct.pack("<IIII", s, e, n, 0)
                               for (s, e, _), n in zip(modules, names)))
    cmd_addr = place(cmdline.encode() + b"\0")
    loader_addr = place(loader.encode() + b"\0")
    info = struct.pack("<IIIIIIIIIIIIII", flags, 639, 130048, 0x8000FFFF, cmd_addr,
                       len(modules), mods_addr, 0, 0, 0, 0, len(mmap_bytes), mmap_addr, 0)
    info += struct.pack("<II", 0, loader_addr) + bytes(88 - len(info) - 8)
    return struct.pack("<I", info_phys) + info + bytes(tail)


E820 = [(0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0xF0000, 0x10000, 2), (0x100000, 0x7EE0000, 1),
        (0x7FE0000, 0x20000, 2), (0xFFFC0000, 0x40000, 2)]
write("multiboot1", "qemu-kernel", mb1(0x9000, "proof=smp lapic=x2apic", "qemu",
                                       E820, [(0x20_0000, 0x20_1234, "manifest"),
                                              (0x20_2000, 0x21_0000, "hello")]))
write("multiboot1", "bare", mb1(0x9000, "", "qemu", E820[:1], []))


def mb2(info_phys, tags):
    body = b""
    for kind, payload in tags + [(0, b"")]:
        t = struct.pack("<II", kind, 8 + len(payload)) + payload
        body += t + bytes(-len(t) % 8)
    return struct.pack("<I", info_phys) + struct.pack("<II", 8 + len(body), 0) + body


def rsdp(v2):
    b = bytearray(b"RSD PTR \0BOCHS \x00" + struct.pack("<I", 0x7FE0000))
    b[8] = -sum(b) & 0xFF
    if v2:
        b[15] = 2
        b[8] = 0
        b[8] = -sum(b) & 0xFF
        b += struct.pack("<IQ", 36, 0x7FE1000) + b"\0\0\0\0"
        b[32] = -sum(b) & 0xFF
    return bytes(b)


def mmap_tag(entries):
    return struct.pack("<II", 24, 0) + b"".join(struct.pack("<QQII", b, l, t, 0)
                                                  for b, l, t in entries)


def efi_mmap_tag(descs):
    out = struct.pack("<II", 48, 1)
    for kind, base, pages in descs:
        out += struct.pack("<IIQQQQ", kind, 0, base, 0, pages, 0) + bytes(8)
    return out


def module(start, end, name):
    return struct.pack("<II", start, end) + name.encode() + b"\0"


common = [(1, b"/boot/keel proof=smp lapic=x2apic\0"), (2, b"GRUB 2.06\0"),
          (3, module(0x20_0000, 0x20_1234, "/boot/manifest")),
          (3, module(0x20_2000, 0x21_0000, "/boot/hello")),
          (4, struct.pack("<II", 639, 130048)), (5, struct.pack("<IIII", 0xE0, 0, 0, 0))]
# GRUB under SeaBIOS: the BIOS map and the old RSDP.
write("multiboot2", "grub-bios", mb2(0xFE000, common + [(6, mmap_tag(E820)), (14, rsdp(False))]))
# GRUB under OVMF: both RSDPs, the EFI system table and map, boot services exited.
write("multiboot2", "grub-uefi", mb2(0xFE000, common + [
    (8, bytes(24)), (6, mmap_tag(E820[:1] + E820[3:4])), (12, struct.pack("<Q", 0x7FD0000)),
    (14, rsdp(False)), (15, rsdp(True)),
    (17, efi_mmap_tag([(3, 0, 1), (7, 0x1000, 0x9F), (2, 0x100000, 0x100),
                       (7, 0x200000, 0x7D00), (5, 0x7F00000, 0x10), (9, 0x7F10000, 0x10)]))]))
