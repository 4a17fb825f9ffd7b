# The two commands of the README: `make demo` (run the toy study) and `make test` (run the tests).
# Both create the virtual environment on first use: torch is pinned to the CPU wheel (2.13.0)
# through constraints.txt; the `peft` extra (LoRA adapter checkpoints) is installed and tested,
# vLLM (the optional `vllm` extra, GPU only) is not.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sparkql-installed
PYTEST_ARGS ?=

.PHONY: install demo test check-studies bench clean-demo

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[test,peft]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sparkql run studies/toy.spark --db toy.duckdb

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

check-studies: $(STAMP)
	$(VENV)/bin/sparkql fmt --check studies/*.spark

bench: $(STAMP)
	$(PY) benchmarks/compile.py
	$(PY) benchmarks/store.py
	$(PY) benchmarks/eap_ig.py
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/tui.py
	$(PY) benchmarks/grading.py
