# Thin aliases for `cargo xtask`; everything real lives in xtask/.
export QEMU_FLAGS KEEL_APPEND KEEL_ACCEL KEEL_KERNEL KEEL_USER_DIR

.PHONY: all build run test test-scale bench bench-compare proofs check
all: build
build:
	cargo xtask build
run:
	cargo xtask run
test:
	cargo xtask test
test-scale:
	cargo xtask test-scale
bench:
	cargo xtask bench
bench-compare:
	cargo xtask bench-compare
proofs:
	cargo xtask proofs
# `make run-<proof>` boots one named proof with serial on the terminal.
run-%:
	cargo xtask run --proof $*
