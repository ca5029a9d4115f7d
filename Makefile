# svemig: the two commands of the README.
#   make demo   the main job, on the embedded sim backend
#   make test   every test tier that runs here (unit, integration, real libvirt, arm64 rig)
# Both install missing Debian packages first (scripts/install-deps.sh).

BUILD ?= build
# A second build with clang, libFuzzer and AddressSanitizer for the decoders' fuzz run.
FUZZ_BUILD ?= build-fuzz
MESON_OPTS ?=
ifeq ($(CI),true)
MESON_OPTS += -Dwerror=true
endif

.PHONY: all deps deps-test build demo test test-unit test-stress test-fuzz test-rig test-libvirt bench format clean

all: build

deps:
	@scripts/install-deps.sh base

# The tests also need the arm64 rig's packages (QEMU, the cross toolchain).
deps-test:
	@scripts/install-deps.sh all

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	meson compile -C $(BUILD)

demo: build
	scripts/demo.sh $(BUILD)

# Timeouts only catch hangs: on a loaded CI machine everything takes longer.
TEST_OPTS ?= --print-errorlogs --timeout-multiplier 3

test: deps-test build test-fuzz
	meson test -C $(BUILD) $(TEST_OPTS)

test-unit: build
	meson test -C $(BUILD) --suite unit $(TEST_OPTS)

# svemig with real libvirtd and aarch64 TCG guests (tests/libvirt/).
test-libvirt: build
	@scripts/install-deps.sh libvirt
	meson test -C $(BUILD) --suite libvirt --print-errorlogs

# The integration suite RUNS times in a row with every CPU kept busy (scripts/test-stress.sh).
RUNS ?= 20
test-stress: build
	scripts/test-stress.sh $(BUILD) $(RUNS)

# A short, repeatable libFuzzer run of the stream reader (tests/fuzz/README.md).
$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true -Dtests=disabled -Db_sanitize=address -Db_lundef=false

test-fuzz: deps $(FUZZ_BUILD)/build.ninja
	meson compile -C $(FUZZ_BUILD) fuzz-stream-reader
	meson test -C $(FUZZ_BUILD) --no-rebuild --suite fuzz --print-errorlogs

bench: build
	bench/run.sh $(BUILD)

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
