#!/usr/bin/env bash
# The CUDA checks, in one call of the device tool (about 2 minutes on an H200):
#   here, once: python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 -d .whl faiss-cpu==1.15.1
#   then: bash benchmarks/gpu/run_cuda_checks.sh   (carry .whl; without it FAISS stages are skipped)
# Each step has its own time limit and a failing step does not stop the next. The steps' output
# (logs.txt) and the results/*.json files they wrote in this call go to $OUT (or
# /tmp/cuda_checks_out); the exit status is 1 when a step failed (the failed ones are named).
set -uo pipefail
OUTDIR="${OUT:-/tmp/cuda_checks_out}"
mkdir -p "$OUTDIR"
STAMP=$(mktemp)  # a results file older than this is the committed one, not this call's
failed=""
if ls .whl/faiss_cpu-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/faiss_cpu-*.whl
fi
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >/tmp/step.log 2>&1
  local rc=$?
  [ "$rc" -eq 0 ] || failed="$failed $name"
  { echo "======== $name: rc $rc, $((SECONDS - t0)) s: $*"; cat /tmp/step.log; } >>"$OUTDIR/logs.txt"
  echo "== $name: rc $rc, $((SECONDS - t0)) s"
  grep -E "^bar |MISSED|FAILED|Error|error:|passed|failed" /tmp/step.log | tail -12
}
nvidia-smi -L
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name())"
python3 -c "import faiss; print('faiss', faiss.__version__)" 2>&1 | tail -1
step edits 150 python3 benchmarks/cuda_mol_edits_check.py
step core 90 python3 benchmarks/cuda_check.py
step mol 200 python3 benchmarks/cuda_mol_check.py --profile
step neg_l2 60 python3 benchmarks/bench_neg_l2.py --device cuda --no-step
step pytest_gpu 120 python3 -m pytest -m gpu -q -p no:cacheprovider tests/core/test_device.py tests/rerankers/test_maxsim_train.py tests/gaussian/test_gaussian_data_train.py
# the index and core suites under the image's torch and numpy (other versions than CI's; they
# run on the CPU: the tests pin their device)
step pytest_index_core 300 python3 -m pytest -q -p no:cacheprovider -x tests/index tests/core
for f in cuda_mol_edits cuda_check cuda_mol neg_l2_cuda; do
  if [ "benchmarks/results/$f.json" -nt "$STAMP" ]; then cp "benchmarks/results/$f.json" "$OUTDIR/"; fi
done
ls "$OUTDIR"
if [ -n "$failed" ]; then echo "== failed steps:$failed"; exit 1; fi
