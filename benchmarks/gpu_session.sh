#!/usr/bin/env bash
# The GPU checks of issue 11 in one go, as they ran on a lent H200 (docs/gpu.md): `bench train` for
# MiniLM and the bert-base shape in fp32 and bf16, then rows of the `gpu` profile (10 epochs x 300 batches,
# full dev sets) as parallel processes on the one GPU. Everything lands in OUT_DIR: bench-*.txt, row logs,
# summary.txt (a line per row from its metrics.json) and runs/ (run folders without their checkpoints).
#
#   benchmarks/gpu_session.sh OUT_DIR [ROW ...]
#   env: DEVICE (cuda), BENCH_STEPS (20: batches per task per bench row), BENCH_REPEATS (3), BENCH_TIMEOUT
#        and ROW_TIMEOUT (seconds), ROW_SET (extra KEY=VALUE overrides for the rows, separated by ';', e.g.
#        "epochs=1;batches_per_epoch=2"), PROFILE (gpu; a YAML extending it for a dry run on a CPU), PYTHON,
#        BUDGET (seconds for the whole script: the rows get what the benchmarks left, less 30 s)
set -u
start=$(date +%s)
deadline=$(( start + ${BUDGET:-100000} ))
out=${1:?usage: benchmarks/gpu_session.sh OUT_DIR [ROW ...]}
shift
rows=${*:-base concat_embed base_pal base_pal_h1 pcgrad gradvac sum_all compromise}
device=${DEVICE:-cuda}
steps=${BENCH_STEPS:-20}
mkdir -p "$out/runs"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

{ date -u; nvidia-smi -L 2>/dev/null; "$py" -c "import torch, transformers; print('torch', torch.__version__,
'transformers', transformers.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; nproc; } \
  > "$out/machine.txt" 2>&1

for backbone in minilm-l6 bert-base; do
  t0=$(date +%s)
  timeout "${BENCH_TIMEOUT:-200}" "$py" -m mtlib bench train --device "$device" --backbone "$backbone" \
    --precision fp32,bf16 --steps "$steps" --repeats "${BENCH_REPEATS:-3}" > "$out/bench-$backbone.txt" 2>&1
  echo "bench $backbone: exit $? in $(( $(date +%s) - t0 )) s" | tee -a "$out/machine.txt"
done

sets=(--set "out_dir=$out/runs" --set threads=2 --set progress=false --set "device=$device")
IFS=';' read -ra extra <<< "${ROW_SET:-}"
for kv in "${extra[@]}"; do sets+=(--set "$kv"); done
t0=$(date +%s)
row_timeout=$(( deadline - t0 - 30 ))
(( row_timeout > ${ROW_TIMEOUT:-100000} )) && row_timeout=$ROW_TIMEOUT
echo "gpu rows: $row_timeout s each at most" | tee -a "$out/machine.txt"
(( row_timeout < 30 )) && rows=""  # no time left for training
if command -v nvidia-smi > /dev/null; then nvidia-smi dmon -s um -d 5 > "$out/gpu-utilisation.txt" 2>&1 & monitor=$!; fi
pids=()
for row in $rows; do
  timeout "$row_timeout" "$py" -m mtlib run "${PROFILE:-gpu}" --row "$row" "${sets[@]}" > "$out/row-$row.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
[ -n "${monitor:-}" ] && kill "$monitor"
echo "gpu rows ($rows): $(( $(date +%s) - t0 )) s wall, in parallel" | tee -a "$out/machine.txt"

"$py" - "$out/runs" > "$out/summary.txt" 2>&1 <<'PY'
import json, sys
from pathlib import Path
for m in sorted(Path(sys.argv[1]).glob("*/seed*/metrics.json")):
    d = json.loads(m.read_text())
    dev, speed = d.get("dev", {}), d.get("speed", {}).get("all", {})
    print(f"{m.parent.parent.name:28s} best epoch {d.get('best_epoch')}, {d.get('examples_seen')} examples; dev " +
          " ".join(f"{k} {v:.4f}" for k, v in dev.items() if isinstance(v, float)) +
          f" | {d.get('train_seconds', 0):.0f} s, train {speed.get('examples_per_s', 0):.0f} ex/s, eval "
          f"{speed.get('eval_examples_per_s', 0):.0f} ex/s, {d.get('device')} {d.get('precision')}")
for h in sorted(Path(sys.argv[1]).glob("*/seed*/history.jsonl")):
    evals = [json.loads(x) for x in h.read_text().splitlines() if '"eval"' in x]
    print(h.parent.parent.name, "dev mean by epoch:", " ".join(f"{e.get('mean', float('nan')):.3f}" for e in evals))
PY
find "$out/runs" -name "*.pt" -delete
