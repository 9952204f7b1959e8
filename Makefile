# lineage: two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed
export DVC_NO_ANALYTICS = 1
export HF_HUB_OFFLINE   = 1

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned: this takes the CPU build already on disk; a looser
	# requirement would pull gigabytes of CUDA packages.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m lineage.ui.demo $(DEMO_ARGS)

# tests/test_report.py renders the HTML report in headless Chromium: install it when missing,
# where that is possible (root with apt-get); elsewhere the test fails and names the install.
.PHONY: browser
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
	  || if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	       (apt-get update -qq -o DPkg::Lock::Timeout=300 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 chromium >/dev/null) \
	         || echo "note: apt-get install chromium failed; the report's browser test cannot run"; \
	     else echo "note: no Chromium on PATH; install it (apt-get install chromium) to run the report's browser test"; fi

# tests/test_hub_http.py serves a hub through lighttpd and sshd (lineage hub serve): install them when
# missing, where that is possible (root with apt-get); elsewhere those tests fail and name the install.
.PHONY: webserver
webserver:
	@(command -v lighttpd >/dev/null || test -x /usr/sbin/lighttpd) && (command -v sshd >/dev/null || test -x /usr/sbin/sshd) \
	  || if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	       (apt-get update -qq -o DPkg::Lock::Timeout=300 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 lighttpd openssh-server >/dev/null) \
	         || echo "note: apt-get install lighttpd openssh-server failed; the served-hub tests cannot run"; \
	     else echo "note: install lighttpd and openssh-server (apt-get) to run the served-hub tests"; fi

# Two workers (the machines have 2 cores); each test module runs whole on one worker, in the
# order tests/conftest.py collects them (the longest first; see
# tests/conftest.py), so its fixtures are built once. JOBS=0 runs in this process.
JOBS ?= 2
test: $(STAMP) browser webserver lint
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadscope --no-loadscope-reorder --durations=15 $(PYTEST_ARGS)

# ruff (pyflakes, pycodestyle, isort, bugbear, pyupgrade) and mypy (strict on lineage/core); both
# configured in pyproject.toml. `make test` runs them first.
lint: $(STAMP)
	$(BIN)/ruff check lineage tests bench stages
	$(BIN)/mypy

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# docs/cli.md from the commands' --help texts; tests/test_docs.py fails when it is stale.
.PHONY: docs
docs: $(STAMP)
	$(BIN)/python -m lineage.ui.docs

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
