# The README's two commands are `make demo` and `make test`; both build .venv on first use.
VENV ?= .venv
SHELL := /bin/bash
BIN := $(VENV)/bin

.PHONY: install demo test test-slow lint typecheck bench-retrieval bench-vs-faiss bench-losses bench-trainer bench-import bench-store-training clean

install:
	@bash scripts/bootstrap.sh

demo: install
	$(BIN)/mmgeom demo

# pytest exits 5 when it collected nothing: a broken setup, reported as a failure.
# -rs lists every skipped test with its reason; with MMGEOM_NO_SKIPS=1 (set by .ci/run on a root machine,
# where the bootstrap installs everything the tests need) any skipped test fails the run.
test: install
	@log=$$(mktemp); $(BIN)/python -m pytest -m "not slow" -q -rs 2>&1 | tee $$log; rc=$${PIPESTATUS[0]}; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected: failing" >&2; rm -f $$log; exit 1; fi; \
	if [ "$${MMGEOM_NO_SKIPS:-0}" = 1 ] && grep -q '^SKIPPED' $$log; then \
	  echo "skipped tests on a machine the bootstrap fully set up: the set-up is broken (see above)" >&2; \
	  rm -f $$log; exit 1; fi; \
	rm -f $$log; exit $$rc

test-slow: install
	$(BIN)/python -m pytest -m slow -q

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

bench-retrieval: install
	$(BIN)/python benchmarks/bench_retrieval.py

bench-vs-faiss: install
	$(BIN)/python benchmarks/bench_vs_faiss.py

bench-losses: install
	$(BIN)/python benchmarks/bench_losses.py

bench-trainer: install
	$(BIN)/python benchmarks/bench_trainer.py

bench-import: install
	$(BIN)/python benchmarks/bench_import.py

bench-store-training: install
	$(BIN)/python benchmarks/bench_store_training.py

study-%: install
	$(BIN)/mmgeom study $* --out benchmarks/results/$*

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
