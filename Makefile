# Switchboard: the everyday commands. The real build is CMake (CMakeLists.txt).
#
#   make run      install what is missing, build, start the server on :8080
#   make test     install what is missing, build (plain + ASan/UBSan + fuzz), run every suite
#   make fuzz     build the libFuzzer targets (clang) and fuzz each for FUZZ_SECONDS
#   make fuzz-merge  add what `make fuzz` found (new coverage only) to tests/fuzz/corpus
#   make bench    install and build the peer servers, then benchmark Switchboard
#                 against them (bench/README.md); never part of `make test`
#   make soak     thousands of chat clients for minutes under faults (churn, slow
#                 consumers, garbage, dropped connections) against the release
#                 build; SOAK_ARGS passes options (node bench/soak.mjs --help)
#
# Variables: BUILD (build dir), ASAN_BUILD, FUZZ_BUILD, JOBS, ARGS (server
# arguments), PREFIX, FUZZ_SECONDS (make fuzz, per target), FUZZ_TEST_SECONDS
# (make test, per target), FUZZ_TARGETS (default: all of tests/fuzz/fuzz_*.c).

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= 2
PREFIX     ?= /usr/local
ARGS       ?=
FUZZ_SECONDS      ?= 60
FUZZ_TEST_SECONDS ?= 15
FUZZ_TARGETS      ?=

# cmake --build runs make below us; keep its output free of directory chatter.
MAKEFLAGS  += --no-print-directory

.PHONY: all build run test install clean format bench bench-setup fuzz fuzz-build fuzz-merge soak

all: build

# $(call cmake_build,DIR,CMAKE-ARGS): configure DIR once, then (re)build it.
define cmake_build
	@test -f $(1)/CMakeCache.txt || cmake -S . -B $(1) $(2)
	cmake --build $(1) -j$(JOBS)
endef

build:
	@scripts/deps.sh --build-only
	$(call cmake_build,$(BUILD),-DCMAKE_BUILD_TYPE=RelWithDebInfo)

run: build
	exec ./$(BUILD)/switchboard $(ARGS)

test:
	@scripts/deps.sh
	$(call cmake_build,$(BUILD),-DCMAKE_BUILD_TYPE=RelWithDebInfo)
	$(call cmake_build,$(ASAN_BUILD),-DSB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
	@$(MAKE) fuzz-build
	ASAN_BUILD=$(ASAN_BUILD) BUILD=$(BUILD) FUZZ_BUILD=$(FUZZ_BUILD) \
		FUZZ_TEST_SECONDS=$(FUZZ_TEST_SECONDS) scripts/test.sh

# The fuzz build is clang with libFuzzer, ASan and UBSan; only the fuzz
# targets and what they link are built (not the tests, examples or bench).
fuzz-build:
	@scripts/deps.sh --build-only
	@test -f $(FUZZ_BUILD)/CMakeCache.txt || CC=clang cmake -S . -B $(FUZZ_BUILD) \
		-DSB_FUZZ=ON -DSB_SANITIZE=ON -DSB_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzzers

fuzz: fuzz-build
	tests/fuzz/run.sh run $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-merge: fuzz-build
	tests/fuzz/run.sh merge $(FUZZ_BUILD) $(FUZZ_TARGETS)

# Peer servers (Node ws, Go gorilla/websocket, libwebsockets) and their
# packages; then every scenario against Switchboard and each peer, written to
# bench/results/. BENCH_SECONDS, BENCH_SERVERS...: see bench/run.sh.
bench-setup:
	@BUILD=$(BUILD) bench/setup.sh

bench: bench-setup
	BUILD=$(BUILD) bench/run.sh

# Soak under faults (bench/README.md, "Soak"): 3 minutes, 2,000 clients in 20
# rooms plus churners, slow consumers and garbage senders; prints a summary
# and fails when a check does not hold. The short version is in `make test`.
SOAK_ARGS ?=
soak: build
	@scripts/deps.sh
	node bench/soak.mjs --bin $(BUILD)/switchboard $(SOAK_ARGS)

# The install prefix is baked into switchboard.pc, so set it before installing.
install: build
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

format:
	@command -v clang-format >/dev/null || { echo "format: install clang-format (apt-get install clang-format)"; exit 1; }
	find src include tests/unit tests/fuzz tools examples -name '*.[ch]' 2>/dev/null | xargs -r clang-format -i
