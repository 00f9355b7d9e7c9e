# Build the book and run the tests. On a fresh machine with Python 3.11 these are all you need:
#   make book    execute notebooks/*.py, build the HTML book offline (warnings are errors)
#   make test    unit tests and doctests, then re-run the reference notebooks with nbval
# At another scale, with explicit parameters, or from a published edition:
#   make book SCALE=full | make book NB_PARAMS="-p n_molecules 10000" | make book EDITION=NAME
#   make edition NAME=... [SCALE=...] [NB_PARAMS=...] [CHAPTERS=...]   execute chapters into editions/NAME/
# Also: make venv | colab | check-math | check-edition NAME=... | refresh-references | store-references | clean

SHELL := bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
TORCH := torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
VENV_DONE := $(VENV)/.installed

# SCALE: the notebooks' named scale (cpd_core/experiments/scales.py: book, the default, or full);
# NB_PARAMS: explicit papermill parameters on top; EDITION: render editions/EDITION/ instead of executing
# (chapters the edition lacks are executed).
SCALE ?=
NB_PARAMS ?=
EDITION ?=
RUN_PARAMS := $(strip $(if $(SCALE),-p scale $(SCALE)) $(NB_PARAMS))
export RUN_PARAMS
# Kernels look for the venv's kernelspec before ~/.local's. Notebooks draw with the inline
# backend: under MPLBACKEND=Agg a kernel would drop every figure from the outputs.
export JUPYTER_PREFER_ENV_PATH := 1
# OpenMP threads (gradient-boosted trees) sleep instead of spinning while they wait: on a
# 2-core machine shared with another busy process, spinning threads slow GBT fits 10x or more.
export OMP_WAIT_POLICY ?= PASSIVE
# One BLAS / OpenMP thread per process. Measured on the 2-core machine with another process busy:
# a 394 x 394 eigendecomposition took 2.4 s with OpenBLAS's two threads and 0.01 s with one, and
# the models chapter's nested ridge + GBT + MLP for ANI-2x 290 s vs 23 s. Override to use more.
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
INLINE := module://matplotlib_inline.backend_inline

# Chapters execute in the book's order (_toc.yml): the models and task-alignment chapters extract the
# features and scan the blocks that the later chapters read from the cache. Notebooks not in the
# table of contents come last.
TOC_ORDER := $(shell grep -o 'build/notebooks/[A-Za-z0-9_]*' _toc.yml | sed 's|build/notebooks/||')
ALL_NAMES := $(patsubst notebooks/%.py,%,$(wildcard notebooks/*.py))
NAMES := $(foreach n,$(TOC_ORDER),$(filter $(n),$(ALL_NAMES))) $(filter-out $(TOC_ORDER),$(ALL_NAMES))
SOURCES := $(NAMES:%=notebooks/%.py)
CONVERTED := $(NAMES:%=build/jupytext/%.ipynb)
EXECUTED := $(NAMES:%=build/notebooks/%.ipynb)
LIB_FILES := $(shell find cpd_core -type f ! -path '*/__pycache__/*' 2>/dev/null | LC_ALL=C sort)
BOOK_FILES := _config.yml _toc.yml $(wildcard book/*) $(wildcard book/_ext/*.py)

.PHONY: help venv notebooks book colab mathjax check-math edition check-edition test refresh-references store-references \
  clean FORCE
.SECONDARY: $(CONVERTED)

help:
	@sed -n '1,8s/^# \{0,1\}//p' Makefile

# --- virtual environment: pip runs again only when requirements.txt or pyproject.toml change
venv: $(VENV_DONE)

$(VENV_DONE): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps -e .
	touch $@

# --- notebooks: .py (jupytext) -> build/jupytext/NAME.ipynb -> papermill -> build/notebooks/NAME.ipynb
# The parameters and the edition, rewritten only when they change: other parameters or another edition
# re-execute (or re-copy) every notebook.
build/notebook-inputs.txt: FORCE
	@mkdir -p $(@D)
	@printf '%s\n' "RUN_PARAMS=$$RUN_PARAMS" "EDITION=$(EDITION)" > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

# Per-chapter dependencies: each notebook depends on the cpd_core files it imports, directly or not
# (scripts/notebook_deps.py), so a change to one module re-executes only the chapters that use it.
build/deps.mk: $(SOURCES) $(filter %.py,$(LIB_FILES)) scripts/notebook_deps.py
	@mkdir -p $(@D)
	@$(PYTHON) scripts/notebook_deps.py $(SOURCES) > $@
-include build/deps.mk

build/jupytext/%.ipynb: notebooks/%.py | $(VENV_DONE)
	@mkdir -p $(@D)
	$(BIN)/jupytext --quiet --to ipynb --set-kernel python3 --output $@ $<

ifneq ($(EDITION),)
# An edition's executed chapters, rendered as they are (nothing recomputed). Listed first, so make
# prefers it; a chapter the edition lacks falls through to the rule below and is executed.
build/notebooks/%.ipynb: editions/$(EDITION)/%.ipynb build/notebook-inputs.txt
	@mkdir -p $(@D)
	cp $< $@
endif

# Runs with the repository root as working directory; a failed run keeps NAME.partial.ipynb.
build/notebooks/%.ipynb: PARTIAL = $(@:.ipynb=.partial.ipynb)
build/notebooks/%.ipynb: build/jupytext/%.ipynb build/notebook-inputs.txt requirements.txt | $(VENV_DONE)
	@mkdir -p $(@D)
	@echo "papermill $< -> $@ $(RUN_PARAMS)"
	@start=$$(date +%s); MPLBACKEND=$(INLINE) $(BIN)/papermill --cwd "$(CURDIR)" --log-output --no-progress-bar \
	    $< $(PARTIAL) $(RUN_PARAMS) \
	  || { echo "error: notebook $* failed (traceback above); partly executed: $(PARTIAL)" >&2; exit 1; }; \
	  echo "$*: $$(( $$(date +%s) - start )) s" | tee -a build/notebook-times.txt
	@$(if $(RUN_PARAMS),$(BIN)/python -m cpd_core.editions hide-injected $(PARTIAL))
	@mv $(PARTIAL) $@

notebooks: $(EXECUTED)

# The scorecard reads what every other chapter recorded (cpd_core/scorecard.py): it runs after them all,
# and the front page's summary figure and findings (build/front/) come from its executed notebook.
build/notebooks/scorecard.ipynb: $(filter-out build/notebooks/scorecard.ipynb,$(EXECUTED))

build/front/findings.md: $(EXECUTED) cpd_core/front.py cpd_core/scorecard.py | $(VENV_DONE)
	$(BIN)/python -m cpd_core.front build/notebooks build/front

# --- editions: every chapter executed at a scale into editions/NAME/ with a manifest (cpd_core/editions.py)
edition: $(CONVERTED) | $(VENV_DONE)
	@test -n "$(NAME)" || { echo "usage: make edition NAME=... [SCALE=book|full] [NB_PARAMS='-p KEY VALUE ...'] [CHAPTERS='a b']" >&2; exit 2; }
	MPLBACKEND=$(INLINE) $(BIN)/python -m cpd_core.editions make "$(NAME)" --scale $(or $(SCALE),book) \
	  $(subst -p ,--param ,$(NB_PARAMS)) --chapters $(if $(CHAPTERS),$(CHAPTERS:%=build/jupytext/%.ipynb),$(CONVERTED))

check-edition: | $(VENV_DONE)
	$(BIN)/python -m cpd_core.editions check "$(NAME)"

# The front page's table of what each chapter shows (this build's scale, or an edition's provenance).
build/provenance.md: $(EXECUTED) | $(VENV_DONE)
	$(BIN)/python -m cpd_core.editions provenance build/notebooks --edition "$(EDITION)" > $@

# --- MathJax, served by the book itself (_static/mathjax) instead of a CDN, so that equations render
# offline. The npm registry's package at a pinned version and checksum, unpacked into build/static/mathjax
# (git-ignored), which _config.yml names in html_static_path and mathjax_path. Kept from its es5/ folder:
# the component Sphinx loads (tex-mml-chtml.js), its CHTML fonts, and what that loads later on demand:
# TeX extensions (autoload, \require), MathML entities and extensions, and what the right-click menu's
# options load (SVG output, a11y/, sre/). 7.7 MB of the package's 24. `make check-math` opens the built
# pages in headless Chromium without a network and fails unless MathJax typeset every equation.
MATHJAX_VERSION := 3.2.2
MATHJAX_SHA256 := 1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09
MATHJAX_DIR := build/static/mathjax
MATHJAX_DONE := $(MATHJAX_DIR)/.version-$(MATHJAX_VERSION)
MATHJAX_TGZ := build/mathjax-npm/mathjax-$(MATHJAX_VERSION).tgz
MATHJAX_FILES := tex-mml-chtml.js output/chtml/fonts/woff-v2 input/tex/extensions input/mml/entities.js \
  input/mml/extensions output/svg.js output/svg/fonts a11y sre

mathjax: $(MATHJAX_DONE)

$(MATHJAX_DONE):
	@rm -rf $(MATHJAX_DIR) $(dir $(MATHJAX_TGZ))
	@mkdir -p $(MATHJAX_DIR) $(dir $(MATHJAX_TGZ))
	cd $(dir $(MATHJAX_TGZ)) && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null \
	  || { echo "error: npm pack mathjax@$(MATHJAX_VERSION) failed: the book needs npm and the npm registry" >&2; exit 1; }
	echo "$(MATHJAX_SHA256)  $(MATHJAX_TGZ)" | sha256sum --check --quiet
	tar -xzf $(MATHJAX_TGZ) -C $(MATHJAX_DIR) --strip-components=2 $(MATHJAX_FILES:%=package/es5/%)
	tar -xzf $(MATHJAX_TGZ) -O package/LICENSE > $(MATHJAX_DIR)/LICENSE
	@rm -rf $(dir $(MATHJAX_TGZ))
	@touch $@

check-math:
	$(or $(wildcard $(BIN)/python),python3) scripts/check_offline_math.py _build/html

# --- book: jupyter-book 1 reads the executed notebooks (execute_notebooks: off in _config.yml)
book: _build/html/.built
	@echo "$(CURDIR)/_build/html/index.html"

# A full rebuild (--all) whenever an input changed: an incremental Sphinx build does not
# repeat the warnings of pages it does not re-read, and warnings are errors here.
_build/html/.built: $(EXECUTED) build/provenance.md build/front/findings.md $(BOOK_FILES) $(MATHJAX_DONE) | $(VENV_DONE)
	@mkdir -p build
	@rm -f $@
	@echo "jupyter-book build . --all -W -n --keep-going (log: build/jupyter-book.log)"
	@$(BIN)/jupyter-book build . --all -W -n --keep-going 2>&1 | tee build/jupyter-book.log \
	  || { echo "error: jupyter-book build failed; its warnings and errors:" >&2; \
	       grep -E 'WARNING|ERROR|CRITICAL|Error' build/jupyter-book.log >&2 || true; exit 1; }
	@touch $@

# --- Colab: colab/NAME.ipynb, each chapter with a setup cell at scale "full" (cpd_core/colab.py); tests fail
# when a committed one differs from what its chapter gives now
colab: | $(VENV_DONE)
	$(BIN)/python -m cpd_core.colab write

# --- tests: unit tests + doctests, then nbval on the references (tests/conftest.py gives the
# nbval run its sanitizer, kernel and working directory). Exit code 5, "no tests", is no failure.
test: $(VENV_DONE)
	MPLBACKEND=Agg $(BIN)/python -m pytest || [ $$? -eq 5 ]
	$(BIN)/python -m pytest --nbval tests/notebooks || [ $$? -eq 5 ]

# Re-executes every notebook at its default (CI-sized) parameters and stores it, without
# volatile metadata (timestamps, durations, random cell ids), as tests/notebooks/NAME.ipynb.
define STRIP_NOTEBOOKS
import pathlib, sys
import nbformat
for path in map(pathlib.Path, sys.argv[1:]):
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    nb.metadata.get("language_info", {}).pop("version", None)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
    out = pathlib.Path("tests/notebooks") / path.name
    nbformat.write(nb, out)
    print("wrote", out)
endef
export STRIP_NOTEBOOKS

refresh-references: | $(VENV_DONE)
	rm -f $(EXECUTED)
	$(MAKE) --no-print-directory store-references NB_PARAMS= SCALE= EDITION=

# Stores the executions `make book` already made (at default parameters) as the references.
store-references: notebooks
	@grep -qx 'RUN_PARAMS=' build/notebook-inputs.txt && grep -qx 'EDITION=' build/notebook-inputs.txt \
	  || { echo "error: build/notebooks ran with SCALE/NB_PARAMS or from an edition; use make refresh-references" >&2; exit 1; }
	mkdir -p tests/notebooks
	rm -f tests/notebooks/*.ipynb
	$(BIN)/python -c "$$STRIP_NOTEBOOKS" $(EXECUTED)

clean:
	rm -rf build _build
