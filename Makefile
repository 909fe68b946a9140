# cask: the two commands a newcomer needs are `make demo` and `make test`.
# Both install their Debian dependencies first (scripts/install-deps).

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
PREFIX     ?= /usr

.PHONY: all deps build asan tsan fuzz guest demo test unit install uninstall clean

all: build

deps:
	scripts/install-deps

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD) -j$(JOBS)

# Guest kernel + initrd with the agent as /init, in $(BUILD)/guest.
guest: build
	ninja -C $(BUILD) guest-assets

asan: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCASK_SANITIZE=ON
	ninja -C $(ASAN_BUILD) -j$(JOBS)

# Unit tests only, under ThreadSanitizer, with clang's -Wthread-safety.
tsan: deps
	cmake -S . -B $(TSAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCASK_TSAN=ON \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
	ninja -C $(TSAN_BUILD) -j$(JOBS) unit-tests
	cd $(TSAN_BUILD) && TSAN_OPTIONS="halt_on_error=1 $(TSAN_OPTIONS)" ctest -L unit --output-on-failure

fuzz: deps
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCASK_FUZZ=ON \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
	ninja -C $(FUZZ_BUILD) -j$(JOBS)

# Runs a container in a VM: through cask-runtime, then through containerd.
demo: guest
	scripts/demo $(BUILD)

# The whole suite: unit tests (also under ASan+UBSan and TSan), fuzz runs
# from the committed corpora, end-to-end tests under real QEMU and real
# containerd. Ends "N passed, N failed, N skipped".
test: deps
	scripts/test

unit: build
	cd $(BUILD) && ctest -L unit --output-on-failure

install: guest
	scripts/install $(BUILD) $(PREFIX)

uninstall:
	scripts/install --uninstall $(BUILD) $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
