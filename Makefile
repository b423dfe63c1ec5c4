# pg_trickle: build, install, test and demo.
#
#   make install   build the extension and install it into the server PG_CONFIG names
#   make test      every test layer on PostgreSQL 15 and 18 (what CI runs)
#   make demo      a private cluster with the spec's Pattern 1 and 4 stream tables
#   make stop      stop the demo cluster
#   make bench     differential refresh vs full recompute, capture overhead (prints ratios)
#
# Every target first runs scripts/setup.sh, which installs what is missing on a Debian machine
# (as root) and does nothing when everything is there.

PG_CONFIG ?= /usr/bin/pg_config
PG18_CONFIG ?= /opt/pg_trickle/pg18/bin/pg_config
PROFILE ?= debug

PG_MAJOR = $(shell $(PG_CONFIG) --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
RELEASE_FLAG = $(if $(filter release,$(PROFILE)),--release,)


.PHONY: bench setup install install-pg15 install-pg18 test lint unit-test integration-test \
        integration-test-pg15 integration-test-pg18 demo stop clean

setup:
	@bash scripts/setup.sh

install: setup
	cd extension && CARGO_TARGET_DIR=../target/pg$(PG_MAJOR) \
	    cargo pgrx install --pg-config $(PG_CONFIG) --no-default-features \
	    --features pg$(PG_MAJOR) $(RELEASE_FLAG)

install-pg15:
	@$(MAKE) --no-print-directory install PG_CONFIG=/usr/bin/pg_config

install-pg18:
	@$(MAKE) --no-print-directory install PG_CONFIG=$(PG18_CONFIG)

lint: setup
	cargo fmt --all -- --check
	cargo clippy -p pg_trickle_core -p pg_trickle_tests -p pg_trickle_bench --all-targets -- -D warnings
	CARGO_TARGET_DIR=target/pg15 cargo clippy -p pg_trickle --no-default-features --features pg15 -- -D warnings

unit-test:
	cargo test -p pg_trickle_core

integration-test-pg15: install-pg15
	PGT_PG_CONFIG=/usr/bin/pg_config cargo test -p pg_trickle_tests

integration-test-pg18: install-pg18
	PGT_PG_CONFIG=$(PG18_CONFIG) cargo test -p pg_trickle_tests

integration-test: integration-test-pg15 integration-test-pg18

test: lint unit-test integration-test

# Benchmarks print ratios measured in one run; they install a release build first.
bench:
	@$(MAKE) --no-print-directory install PG_CONFIG=/usr/bin/pg_config PROFILE=release
	PGT_PG_CONFIG=/usr/bin/pg_config cargo run --release -q -p pg_trickle_bench

demo: install
	@bash scripts/demo.sh start

stop:
	@bash scripts/demo.sh stop

clean:
	cargo clean
	rm -rf .demo
