# Thin aliases for `cargo xtask`; everything real lives in xtask/.
export QEMU_FLAGS KEEL_APPEND KEEL_ACCEL KEEL_KERNEL KEEL_USER_DIR

.PHONY: all build run debug test test-scale test-periodic test-hostile test-soak test-firmware test-bochs iso bench bench-compare proofs check mutants fuzz
all: build
build:
	cargo xtask build
run:
	cargo xtask run
# QEMU stopped under its gdb stub (:1234); then `gdb -x target/keel.gdb` in another terminal.
debug:
	cargo xtask debug
test:
	cargo xtask test
test-scale:
	cargo xtask test-scale
# Every proof of `make test` that chooses no timer mode, with the periodic tick instead of
# the tickless default.
test-periodic:
	cargo xtask test --no-host-tests --timer periodic
# The long hostile proofs (10^6-submission fuzzing), kept out of `make test`.
test-hostile:
	cargo xtask test-hostile
# The endurance proofs (memory, thread, process and capability churn, an interrupt storm),
# kept out of `make test`: minutes, not hours.
test-soak:
	cargo xtask test-soak
# Proofs booted by GRUB from an ISO under SeaBIOS and OVMF (UEFI).
test-firmware:
	cargo xtask test-firmware
# The same proof ISOs under Bochs (x2APIC and xAPIC CPU models); slow, one boot at a time.
test-bochs:
	cargo xtask test-bochs
# Hybrid BIOS+UEFI GRUB ISO: target/keel.iso (CD image or `dd` to a USB stick).
iso:
	cargo xtask iso
bench:
	cargo xtask bench
bench-compare:
	cargo xtask bench-compare
proofs:
	cargo xtask proofs
# Deliberate kernel breaks; each must make its proofs fail (docs/proofs.md, "Break-it").
mutants:
	cargo xtask mutants
# Coverage-guided fuzzing of every parser of untrusted input (cargo-fuzz, nightly; not in
# `make test`): 10^7 executions per target. `cargo xtask fuzz --target NAME --seconds S` for less.
fuzz:
	cargo xtask fuzz
# `make run-<proof>` boots one named proof with serial on the terminal.
run-%:
	cargo xtask run --proof $*
