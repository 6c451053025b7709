# Single entry point for humans and CI. Every target creates .venv if missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: test demo compile-runtime bench bench-tls bench-decode attack fmt fuzz soak clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

# Two workers (one per core of a small CI machine): most tests wait on servers
# and subprocesses. A test file stays on one worker, so its module fixtures (a
# compiled build, a served example) are made once. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# Compiled mode for the runtime's hot modules (Cython, from the test extra);
# protogen.runtime loads them while they match their sources, PROTOGEN_COMPILED=0
# ignores them.
compile-runtime: $(STAMP)
	$(BIN)/protogen compile-runtime

bench: $(BENCH_STAMP) compile-runtime
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# TLS: protogen over tls:// against uvloop with ssl= (typed echo at depth 16
# through haproxy, https with wrk, handshakes per second); pure Python peers.
bench-tls: $(BENCH_STAMP)
	$(BIN)/python bench/tls.py $(BENCH_ARGS)

# Decode speed of the generated codecs vs hand-written struct code vs Construct.
bench-decode: $(BENCH_STAMP)
	$(BIN)/python bench/decode.py --cpu 0 $(BENCH_ARGS)

# Long (not in CI): every property test of the codec generator (hand-built IR for
# each framing kind and every top-level example spec, tests/codegen), then the
# property tests `protogen build --with-tests` emits for every example spec
# (examples/**), each with FUZZ_EXAMPLES hypothesis examples per property.
FUZZ_EXAMPLES ?= 100000
fuzz: $(STAMP)
	PROTOGEN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider tests/codegen -k property $(PYTEST_ARGS)
	PROTOGEN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python tests/robustness/fuzz_examples.py $(PYTEST_ARGS)

soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# Hostile clients (slowloris, never-reading, data+FIN, oversize+burst) against
# every example server, a bounded time each (about 3 minutes in all); prints a
# table per server. ATTACK_ARGS="--check" exits non-zero when a goal is missed.
attack: $(STAMP)
	$(BIN)/python bench/attack.py $(ATTACK_ARGS)

fmt: $(STAMP)
	$(BIN)/python -m black toolkit runtime tests examples bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
