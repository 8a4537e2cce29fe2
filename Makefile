# Switchboard: the everyday commands. The real build is CMake (CMakeLists.txt).
#
#   make run      install what is missing, build, start the server on :8080
#   make test     install what is missing, build (plain + ASan/UBSan), run every suite
#
# Variables: BUILD (build dir), ASAN_BUILD, JOBS, ARGS (server arguments), PREFIX.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= 2
PREFIX     ?= /usr/local
ARGS       ?=

# cmake --build runs make below us; keep its output free of directory chatter.
MAKEFLAGS  += --no-print-directory

.PHONY: all build run test install clean format

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
	ASAN_BUILD=$(ASAN_BUILD) scripts/test.sh

# The install prefix is baked into switchboard.pc, so set it before installing.
install: build
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

format:
	@command -v clang-format >/dev/null || { echo "format: install clang-format (apt-get install clang-format)"; exit 1; }
	find src include tests/unit tools examples -name '*.[ch]' 2>/dev/null | xargs -r clang-format -i
