# Two commands do all set-up on a fresh machine:
#   make run   - the whole course, end to end (CATDOG_FAST=1 for the quick version)
#   make test  - the test suite (notebooks included)
#   make student - the student copy: notebooks without solutions or outputs, in student/
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED_DATA := $(abspath ../shared/data/cat-and-dog)
# Point at the shared real photos when they exist and the caller did not choose a data folder.
export CATDOG_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)/training_set),$(SHARED_DATA),)

.PHONY: run test test-browser bench install clean-notebooks student

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,engine]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/catdog course

test: $(STAMP)
	$(BIN)/python -m pytest -q --nbval-lax

student: $(STAMP)
	$(BIN)/catdog course --student student

# The web demo's browser test; Gradio (the `demo` extra, ~250 MB with its web stack) is installed only here.
test-browser: $(VENV)/.demo-installed
	$(BIN)/python -m pytest -q tests/browser

$(VENV)/.demo-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,demo]'
	touch $@

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py $(ARGS)

clean-notebooks: $(STAMP)
	$(BIN)/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb
