# svemig: the two commands of the README.
#   make demo   the main job, on the embedded sim backend
#   make test   every test tier that runs here (unit, integration, arm64 rig,
#               the fuzz run)
# Both install missing Debian packages first (scripts/install-deps.sh).

BUILD ?= build
# A second build with clang, libFuzzer, ASan and UBSan for the decoders' fuzz run.
FUZZ_BUILD ?= build-fuzz
# UBSan must fail a run, not only print: no recovery.
SAN_CFLAGS = -Dc_args=-fno-sanitize-recover=all -Db_lundef=false
MESON_OPTS ?=
ifeq ($(CI),true)
MESON_OPTS += -Dwerror=true
endif

.PHONY: all deps deps-test build demo test test-unit test-fuzz fuzz-seeds test-rig bench format clean

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

test: deps-test build test-fuzz
	meson test -C $(BUILD) --print-errorlogs

test-unit: build
	meson test -C $(BUILD) --suite unit --print-errorlogs

# A short, repeatable libFuzzer run of every decoder (tests/fuzz/README.md).
$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true -Dtests=disabled -Db_sanitize=address,undefined $(SAN_CFLAGS)

test-fuzz: deps $(FUZZ_BUILD)/build.ninja
	meson compile -C $(FUZZ_BUILD) $(patsubst %,fuzz-%,stream-reader peer api-request conf guest-record ledger)
	meson test -C $(FUZZ_BUILD) --no-rebuild --suite fuzz --print-errorlogs

# Rewrites the committed seed corpora (tests/fuzz/corpus/) from the real writers.
fuzz-seeds: deps $(FUZZ_BUILD)/build.ninja
	meson compile -C $(FUZZ_BUILD) fuzz-seeds
	scripts/make-fuzz-seeds.sh $(FUZZ_BUILD)/tests/fuzz/fuzz-seeds

bench: build
	bench/run.sh $(BUILD)

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
