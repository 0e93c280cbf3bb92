# The front door. `make demo` and `make test` are the whole set-up on a fresh machine:
# both run scripts/setup (idempotent: installs only what is missing) before building.
#
#   make          release programs in build/bin (tern, later tern-sim, tern-edge)
#   make demo     set up, build, run tern's main job with its embedded defaults
#   make test     set up, build the dev preset (ASan+UBSan), run every ctest
#   make format   clang-format every C file in place; `make format-check` only checks

SHELL := /bin/bash
C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

.PHONY: all release dev setup demo test unit format format-check bench clean

all: release

release:
	cmake --preset release >/dev/null
	cmake --build --preset release

dev:
	cmake --preset dev >/dev/null
	cmake --build --preset dev

setup:
	scripts/setup

demo: setup release
	scripts/demo

test: setup format-check dev
	ctest --preset dev

# Unit and fuzz-replay tests only: no services, no set-up; quick while editing.
unit: dev
	ctest --preset dev -L 'unit|fuzz'

format:
	clang-format -i $(C_FILES)

format-check:
	@clang-format --dry-run --Werror $(C_FILES) && echo "clang-format: clean"

bench: release
	@echo "benchmarks: see bench/README.md"

clean:
	rm -rf build
