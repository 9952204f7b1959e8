# lineage: two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed
export DVC_NO_ANALYTICS = 1
export HF_HUB_OFFLINE   = 1

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned: this takes the CPU build already on disk; a looser
	# requirement would pull gigabytes of CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m lineage.demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# docs/cli.md from the commands' --help texts; tests/test_docs.py fails when it is stale.
.PHONY: docs
docs: $(STAMP)
	$(BIN)/python -m lineage.docs

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
