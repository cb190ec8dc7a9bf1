# Two commands set everything up on a fresh machine: `make test` and `make demo`.
# `make docs` builds the HTML reference into docs/_build/html; `make notebooks` re-executes the
# tutorials and stores their outputs (and the README's figure, taken from the first tutorial).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test demo docs notebooks lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

$(VENV)/.installed-docs: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[docs]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	touch $@

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

demo: $(VENV)/.installed-bench
	$(BIN)/python -m captum_infocam.benchmark run

docs: $(VENV)/.installed-docs
	$(BIN)/python -m sphinx -W --keep-going -b html -c docs . docs/_build/html

notebooks: $(VENV)/.installed-test
	PYTHONPATH=$(CURDIR) $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=600 tutorials/*.ipynb
	$(BIN)/python tutorials/readme_figure.py

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build docs/_build *.egg-info .pytest_cache .ruff_cache
