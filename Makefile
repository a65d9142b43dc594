# Two commands do everything on a fresh Debian/Ubuntu machine:
#   make book   builds the HTML book into _build/html
#   make test   runs every test: helper unit tests, the notebooks under nbval, a strict book build
# Each creates .venv, installs requirements.txt, and installs apt.txt's servers when it can.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NB     ?= notebooks
# Two chapters of the Chinese edition under nbval as well: zh/ notebooks run from their own
# folder with the same helpers (their code cells are the English ones, tests/test_i18n.py).
ZH_NB  ?= zh/notebooks/01-process-basics.ipynb zh/notebooks/09-greenlet.ipynb
JB_STRICT := -W -n --keep-going

# test-matrix reads these from make's command line or the environment.
export PYTHONS START_METHODS COMBOS MATRIX_JOBS MATRIX_FRESH MATRIX_PREPARE_ONLY MATRIX_STEPS

.PHONY: book test lint lab unit nbval test-spawn test-matrix check-html check-binder browser-packages setup system-packages bench execute freeze clean

# Both editions: the English book into _build/html, and the Chinese one (generated into zh/ from
# the English notebooks and i18n/zh/'s catalogs by scripts/i18n.py) into _build/html/zh.
define build_books
	$(BIN)/python scripts/i18n.py build
	$(BIN)/jupyter-book build . $(JB_STRICT)
	$(BIN)/jupyter-book build zh --path-output _build/zh $(JB_STRICT)
	rm -rf _build/html/zh && cp -r _build/zh/_build/html _build/html/zh
endef

book: setup
	$(build_books)
	@echo "The book is in _build/html/index.html (中文版: _build/html/zh/index.html)"

test: setup browser-packages lint
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest --nbval $(NB) $(ZH_NB)
	$(build_books)
	$(BIN)/python -m pytest browser_tests

# ruff (pinned in requirements.txt, configured in pyproject.toml): lint and format check of the
# helpers, tests, benchmarks, browser checks and the notebooks' code cells.
lint: setup
	$(BIN)/ruff check
	$(BIN)/ruff format --check

# The notebooks in JupyterLab (with MyST rendering, from jupyterlab-myst), from .venv.
lab: setup
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

# The built book in headless Chromium: every page loads, with its title, outputs, images
# and launch button, and no console errors but offline CDN loads. Screenshots: _build/screenshots/.
check-html: setup browser-packages
	$(build_books)
	$(BIN)/python -m pytest browser_tests

unit: setup
	$(BIN)/python -m pytest

nbval: setup
	$(BIN)/python -m pytest --nbval $(NB)

# Binder as it really runs: an ordinary user, a fresh venv from requirements.txt, the whole nbval suite.
check-binder:
	scripts/check-binder

# The same notebooks with spawn as the default start method (as on macOS and Windows).
test-spawn: setup
	BOOK_START_METHOD=spawn $(BIN)/python -m pytest --nbval $(NB)

# Unit tests and notebooks under each Python (3.11, 3.12, 3.13) and start method (fork, spawn,
# forkserver), each Python in a venv of its own under .venv-matrix/. Choose a subset with
# PYTHONS="3.12 3.13", START_METHODS=spawn, or pairs with COMBOS="3.12:spawn 3.13:forkserver";
# MATRIX_JOBS=2 runs two at a time. Summary and logs: _build/matrix/.
test-matrix: system-packages
	$(PYTHON) scripts/test-matrix

setup: $(STAMP) system-packages

system-packages:
	@scripts/ensure-system-packages

# Chromium for the browser check. Not in apt.txt, which Binder also reads: Ubuntu's chromium
# package is a snap wrapper that cannot install in Binder's image, and readers don't need it.
browser-packages:
	@scripts/ensure-system-packages apt-check.txt

$(STAMP): requirements.txt pyproject.toml
	@# Debian and Ubuntu ship venv separately (python3-venv): install it if venv creation fails.
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  scripts/ensure-system-packages --packages python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

# Benchmarks: separate from the tests, since speed targets flake on a busy machine.
# Each bench/<name>.py prints its table (medians, min-max, fits, targets) into _build/bench/;
# run_all.py runs them one after another while it watches how busy the machine is, and writes
# bench/results.md (which the book shows) and the plots only if it stayed quiet.
# One benchmark only (the report is left alone): make bench BENCH=process_pool
# A busy machine is refused (exit 2); to write the report anyway: make bench BENCH_FLAGS=--force
bench: setup
	$(BIN)/python bench/run_all.py $(if $(BENCH),--only $(BENCH)) $(BENCH_FLAGS)

# Re-execute notebooks and store their outputs: make execute NB=notebooks/01-process-basics.ipynb
# Each cell has a timeout, and a notebook is written back only if it ran without errors or stderr.
execute: setup
	$(BIN)/python scripts/execute-notebook $(if $(filter notebooks,$(NB)),notebooks/*.ipynb,$(NB))
	@$(BIN)/python scripts/i18n.py build || echo "execute: zh/ not regenerated; see CONTRIBUTING.md, Translations"

# Re-pin requirements.txt from requirements.in in a scratch venv.
freeze:
	rm -rf /tmp/book-freeze && $(PYTHON) -m venv /tmp/book-freeze
	/tmp/book-freeze/bin/python -m pip install --quiet -r requirements.in
	{ sed -n '1,2p' requirements.txt; /tmp/book-freeze/bin/python -m pip freeze | grep -v '^-e'; echo '-e .'; } > requirements.txt.new
	mv requirements.txt.new requirements.txt

clean:
	rm -rf _build
