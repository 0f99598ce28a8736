# The README's two commands are `make demo` and `make test`; both build .venv on first use.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-slow lint typecheck bench-retrieval bench-losses clean

install:
	@bash scripts/bootstrap.sh

demo: install
	$(BIN)/mmgeom demo

# pytest exits 5 when it collected nothing: a broken setup, reported as a failure.
test: install
	@$(BIN)/python -m pytest -m "not slow" -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected: failing" >&2; exit 1; fi; exit $$rc

test-slow: install
	$(BIN)/python -m pytest -m slow -q

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

bench-retrieval: install
	$(BIN)/python benchmarks/bench_retrieval.py

bench-losses: install
	$(BIN)/python benchmarks/bench_losses.py

study-%: install
	$(BIN)/mmgeom study $* --out benchmarks/results/$*

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
