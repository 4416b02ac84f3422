# SPDX-License-Identifier: Apache-2.0
# Entry points: `make demo` and `make check` (both install missing Debian packages first).
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build build-asan build-fuzz check test demo demo-vm bench fuzz clean format

all: build

deps:
	@sh scripts/install-deps.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTC_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-asan -j $(JOBS)

build-fuzz: deps
	@CC=clang-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DTC_SANITIZE=ON -DTC_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

# Every test (unit, integration with real swtpm, e2e, fuzz-corpus replay), twice: a normal
# build and an ASan+UBSan build; the libFuzzer harnesses are compiled with clang too.
check: build build-asan build-fuzz
	@echo "== tests: normal build =="
	@cd build && ctest --output-on-failure -j $(JOBS)
	@echo "== tests: ASan+UBSan build =="
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

test: check

demo: build
	@bash scripts/demo.sh build/trustcloud

# One real guest through libvirt (TCG): trusted, then a program outside policy inside it.
demo-vm: build
	@bash scripts/demo-vm.sh build/trustcloud

bench: build
	@bash bench/run.sh build

# Fuzz each harness for FUZZ_SECONDS (default 60) and add new inputs to its corpus.
FUZZ_SECONDS ?= 60
fuzz: build-fuzz
	@bash scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz
