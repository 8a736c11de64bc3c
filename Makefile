# Thin aliases for `cargo xtask`; everything real lives in xtask/.
export QEMU_FLAGS KEEL_APPEND KEEL_ACCEL KEEL_KERNEL KEEL_USER_DIR

.PHONY: all build run test test-firmware iso bench bench-compare proofs check
all: build
build:
	cargo xtask build
run:
	cargo xtask run
test:
	cargo xtask test
# Proofs booted by GRUB from an ISO under SeaBIOS and OVMF (UEFI).
test-firmware:
	cargo xtask test-firmware
# Hybrid BIOS+UEFI GRUB ISO: target/keel.iso (CD image or `dd` to a USB stick).
iso:
	cargo xtask iso
bench:
	cargo xtask bench
bench-compare:
	cargo xtask bench-compare
proofs:
	cargo xtask proofs
# `make run-<proof>` boots one named proof with serial on the terminal.
run-%:
	cargo xtask run --proof $*
