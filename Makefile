# cask: the two commands a newcomer needs are `make demo` and `make test`.
# Both install their Debian dependencies first (scripts/install-deps).

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
PREFIX     ?= /usr

.PHONY: all deps build asan fuzz guest demo test unit install uninstall clean

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

fuzz: deps
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCASK_FUZZ=ON \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
	ninja -C $(FUZZ_BUILD) -j$(JOBS)

# Runs a container in a VM: through cask-runtime, then through containerd.
demo: guest
	scripts/demo $(BUILD)

# The whole suite: unit tests (also under ASan+UBSan), fuzz smoke runs,
# end-to-end tests under real QEMU and real containerd.
test: deps
	scripts/test

unit: build
	cd $(BUILD) && ctest -L unit --output-on-failure

install: guest
	scripts/install $(BUILD) $(PREFIX)

uninstall:
	scripts/install --uninstall $(BUILD) $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
