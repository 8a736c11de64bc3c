# Thin aliases for `cargo xtask`; everything real lives in xtask/.
export QEMU_FLAGS KEEL_APPEND KEEL_ACCEL KEEL_KERNEL KEEL_USER_DIR

.PHONY: all build run test bench bench-compare proofs check mutants
all: build
build:
	cargo xtask build
run:
	cargo xtask run
test:
	cargo xtask test
bench:
	cargo xtask bench
bench-compare:
	cargo xtask bench-compare
proofs:
	cargo xtask proofs
# Deliberate kernel breaks; each must make its proofs fail (docs/proofs.md, "Break-it").
mutants:
	cargo xtask mutants
# `make run-<proof>` boots one named proof with serial on the terminal.
run-%:
	cargo xtask run --proof $*
