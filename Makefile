# The two commands a fresh machine needs:  make demo   and   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CORES  ?= 2

.PHONY: venv demo test lint format bench clean

# Pinned install: constraints.txt holds the exact version of every package. torch is
# installed first and on its own so that the pin selects the CPU build where one is offered.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -c constraints.txt torch==2.13.0
	$(BIN)/pip install -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/snakemake --cores $(CORES) results/toy_memae_auc.json
	$(BIN)/snakemake --cores 1 results/viewer.html
	@echo
	@$(BIN)/vadbench summary results/toy_memae_auc.json
	@echo "Viewer of every run in results/ (static HTML, works from file://): $(CURDIR)/results/viewer.html"

test: venv
	$(BIN)/python -m pytest -q

# Style checks, also run by CI (.ci/run): Snakemake's linter, snakefmt on the Snakefile and rule
# files, ruff's lint rules and its formatter on the Python; versions pinned in constraints.txt.
PY_DIRS := src workflow/scripts tests benchmarks envs

lint: venv
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)

format: venv
	$(BIN)/snakefmt Snakefile workflow/rules
	$(BIN)/ruff check --fix $(PY_DIRS)
	$(BIN)/ruff format $(PY_DIRS)

bench: venv
	$(BIN)/python benchmarks/loader_and_training.py
	$(BIN)/python benchmarks/cpu_isa.py

clean:
	rm -rf results resources logs .snakemake
