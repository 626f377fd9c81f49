# The two commands a fresh machine needs:  make demo   and   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CORES  ?= 2

.PHONY: venv demo test lint bench clean

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
	@echo
	@$(BIN)/vadbench summary results/toy_memae_auc.json

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/snakemake --lint

bench: venv
	$(BIN)/python benchmarks/loader_and_training.py

clean:
	rm -rf results resources logs .snakemake
