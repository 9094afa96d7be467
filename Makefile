# One command each, on a fresh machine: `make demo` (the main job), `make test`; `make course` runs every notebook.
# Each creates .venv and installs the project with its dev extra on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Leave PROFILE empty for the automatic choice (fast on CPU, full on CUDA).
PROFILE ?=
PROFILE_ARG := $(if $(PROFILE),--profile $(PROFILE),)

.PHONY: install demo course reproduce test lint test-unit test-notebooks book book-test browser lab bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m medsymmflow demo

bench: $(STAMP)
	$(PY) benchmarks/bench_symmflow.py

# The paper comparison on one GPU (README, "Paper-scale run"); SMOKE=1 checks the pipeline on a CPU in a minute.
reproduce: $(STAMP)
	$(PY) -m medsymmflow reproduce $(if $(SMOKE),--smoke,)

course: $(STAMP)
	$(PY) -m medsymmflow course $(PROFILE_ARG)

test: lint test-unit test-notebooks book-test

# The pre-commit hooks on every tracked file (ruff lint + format, notebooks without outputs,
# whitespace, large files, YAML); they call the tools in .venv, so this works offline.
lint: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/pre-commit run --all-files --show-diff-on-failure

test-unit: $(STAMP)
	MEDSYMMFLOW_PROFILE=fast $(PY) -m pytest tests/

# --durations=0 lists every cell's seconds, slowest first: each notebook's time, cold, in the log.
test-notebooks: $(STAMP)
	MEDSYMMFLOW_PROFILE=fast $(PY) -m pytest --nbval-lax --nbval-current-env --durations=0 notebooks/

# The course as a site: every chapter executed by `medsymmflow course` in the fast profile (reusing
# the trained-once caches in runs/), then rendered by Sphinx + myst-nb without executing again.
BOOK_SRC := runs/course/fast
book: $(STAMP)
	$(PY) -m medsymmflow course --profile fast --out runs/course
	cp book/index.md $(BOOK_SRC)/index.md
	$(PY) -m sphinx -b html -W --keep-going -q -c book -d build/book-doctrees $(BOOK_SRC) build/book
	@echo "The book: build/book/index.html"

# Headless Chromium (the Debian package, installed on first use) opens every chapter page.
book-test: book browser
	$(PY) scripts/check_book.py build/book --chapters notebooks --readme README.md --screenshots build/book-screens

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null || \
	  $(SUDO) apt-get install -y -q chromium || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf runs build .pytest_cache
