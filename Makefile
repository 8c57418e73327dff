# Thin wrapper around CMake.  Targets:
#   make                  Release build in build/
#   make check            build and run every test (SANITIZE=address,undefined or thread)
#   make run              Release build, then the quick benchmark (mmkit vs plain calls)
#   make bench            the full benchmark
#   make install PREFIX=/usr/local
#   make clean

PREFIX   ?= /usr/local
SANITIZE ?=
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE    ?= cmake
comma    := ,

ifeq ($(strip $(SANITIZE)),)
  BUILD      ?= build
  BUILD_TYPE ?= Release
else
  BUILD      ?= build-$(subst $(comma),-,$(SANITIZE))
  BUILD_TYPE ?= RelWithDebInfo
endif

CONFIGURE = $(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
            -DMMK_SANITIZE=$(SANITIZE) -DCMAKE_INSTALL_PREFIX=$(PREFIX)

.PHONY: all build configure check run bench install clean

all: build

configure:
	@$(CONFIGURE) $(CMAKE_ARGS) >/dev/null

build: configure
	@$(CMAKE) --build $(BUILD) -j $(JOBS)

check:
	@$(CONFIGURE) -DMMK_REQUIRE_TESTS=ON $(CMAKE_ARGS) >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

run: build
	$(BUILD)/bench/mmk-bench --quick

bench: build
	$(BUILD)/bench/mmk-bench

install: build
	$(CMAKE) --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf build build-*
