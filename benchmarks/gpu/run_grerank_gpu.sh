#!/usr/bin/env bash
# G-Rerank benchmarks on a lent GPU machine (no network, no gguf, no model packages there).
# The GGUF file of SmolLM2 (98 MB) and the MiniLM (fp16, 46 MB) travel in three calls of the device
# tool, each carrying at most 64 MiB (.cache/gpu1: first half + the pure-Python gguf package,
# .cache/gpu2: second half, .cache/gpu3: MiniLM + the HotpotQA file):
#   bash benchmarks/gpu/prepare_carry.sh   (here, once)
#   then three device calls in a row (the machine stays warm 30 s between calls):
#   bash benchmarks/gpu/run_grerank_gpu.sh part1 (carry .cache/gpu1); ... part2 (carry .cache/gpu2);
#   ... run [signal] [sweep] [quality] (carry .cache/gpu3)
# Files written under the repository there are replaced by the next call's copy of the working
# tree: run the stages that depend on each other (sweep -> quality) in one call.
set -euo pipefail
W=/tmp/grerank_w
mkdir -p "$W/site"
case "${1:-run}" in
  part1) cp .cache/gpu1/gguf.aa "$W/"; cp -r .cache/gpu1/gguf "$W/site/"; ls -la "$W" ;;
  part2) cp .cache/gpu2/gguf.ab "$W/"; ls -la "$W" ;;
  run)
    shift || true
    STAGES="${*:-signal sweep quality}"
    for s in $STAGES; do  # all checked before anything runs: a misspelt last stage lost the earlier ones' results
      case $s in signal|sweep|quality) ;; *) echo "unknown stage '$s' (signal, sweep, quality)" >&2; exit 2 ;; esac
    done
    cp -r .cache/gpu3/gguf-*.dist-info "$W/site/" 2>/dev/null || true
    export PYTHONPATH="$PWD:$PWD/benchmarks:$W/site" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    export RAG_RELAX_DATA="$PWD/.cache/gpu3/data" TOKENIZERS_PARALLELISM=false
    OUTDIR="${OUT:-/tmp/grerank_out}"; mkdir -p "$OUTDIR"
    # results of the stages that ran come back even when a later one fails (set -e exits early)
    trap 'cp benchmarks/results/*.json "$OUTDIR/" 2>/dev/null || true' EXIT
    if [ ! -f "$W/smol/converted.ok" ]; then
      cat "$W/gguf.aa" "$W/gguf.ab" > "$W/smol.gguf"
      python3 -c "from rag_relax_plugins.readers.loading import convert_gguf; convert_gguf('$W/smol.gguf', '$W/smol')"
    fi
    M="$PWD/.cache/gpu3/minilm"
    for s in $STAGES; do
      case $s in
        signal) python3 benchmarks/bench_grerank_signal.py --rows 60 --device cuda --reader-path "$W/smol" 2>&1 | grep -v Warning | tail -8 ;;
        sweep) python3 benchmarks/sweep_gumbel_defaults.py --train --train-rows 160 --variant independent --device cuda --backbone "$M" --reader-path "$W/smol" 2>&1 | grep -v "Warning\|it/s\]" | tail -15 ;;
        quality)
          TK=$(python3 -c "import json;b=json.load(open('benchmarks/results/gumbel_sweep.json'))['training']['best'];print(b['tau'],b['kappa'])" 2>/dev/null || python3 -c "from rag_relax_plugins.rerankers.gumbel import DEFAULT_TAU as t, DEFAULT_KAPPA as k; print(t, k)")
          set -- $TK
          python3 benchmarks/bench_rerankers_quality.py --variant independent --device cuda --backbone "$M" --reader-path "$W/smol" --tau "$1" --kappa "$2" --epochs ${EPOCHS:-2} --sup-epochs ${EPOCHS:-2} 2>&1 | grep -v "Warning\|it/s\]" | tail -15
          cp runs/bench_quality/grerank/curves.png "$OUTDIR/grerank_curves.png" || true
          cp runs/bench_quality/supervised/curves.png "$OUTDIR/supervised_curves.png" || true ;;
      esac
    done ;;
  *) echo "usage: $0 part1 | part2 | run [signal] [sweep] [quality]" >&2; exit 2 ;;
esac
