#!/usr/bin/env bash
# The GPU checks of issues 22 and 24 in one go, resumable: `bench runs` (one run at a time, N processes and
# one pack, same row and seeds), then shards of the decisive study (`python -m mtlib study --profile gpu`)
# until the budget runs out. Everything lands in OUT_DIR: machine.txt, bench-runs.txt, study-<i>.log,
# summary.txt (a line per finished run) and runs/ (run folders without checkpoints: small enough to come back).
# Run again with the same OUT_DIR (and its runs/ carried back), it finds finished runs and resumes the others.
#
#   benchmarks/study_session.sh OUT_DIR
#   env: SHARDS (4), SEEDS (10), PACK (auto), BENCH_SEEDS (8), BUDGET (seconds for the whole script), PYTHON
set -u
start=$(date +%s)
deadline=$(( start + ${BUDGET:-100000} ))
out=${1:?usage: benchmarks/study_session.sh OUT_DIR}
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$out/runs"
{ date -u; nvidia-smi -L 2>/dev/null; "$py" -c "import torch, transformers; print('torch', torch.__version__,
'transformers', transformers.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; nproc; } \
  >> "$out/machine.txt" 2>&1

if [ ! -s "$out/bench-runs.txt" ]; then
  t0=$(date +%s)
  timeout 240 "$py" -m mtlib bench runs --profile gpu --seeds "${BENCH_SEEDS:-8}" --nproc 4 > "$out/bench-runs.txt" 2>&1
  echo "bench runs: exit $? in $(( $(date +%s) - t0 )) s" | tee -a "$out/machine.txt"
fi

shards=${SHARDS:-4}
for i in $(seq 1 "$shards"); do
  left=$(( deadline - $(date +%s) - 30 ))
  (( left < 60 )) && { echo "shard $i/$shards: no time left" | tee -a "$out/machine.txt"; continue; }
  t0=$(date +%s)
  timeout "$left" "$py" -m mtlib study --profile gpu --seeds "${SEEDS:-10}" --shard "$i/$shards" \
    --pack "${PACK:-auto}" --out "$out/runs" --set progress=false >> "$out/study-$i.log" 2>&1
  echo "shard $i/$shards: exit $? in $(( $(date +%s) - t0 )) s" | tee -a "$out/machine.txt"
done

"$py" - "$out/runs" > "$out/summary.txt" 2>&1 <<'PY'
import json, sys
from pathlib import Path
for m in sorted(Path(sys.argv[1]).glob("*/seed*/metrics.json")):
    d = json.loads(m.read_text())
    dev = " ".join(f"{k} {v:.4f}" for k, v in d.get("dev", {}).items() if isinstance(v, float))
    print(f"{m.parent.parent.name:32s} {m.parent.name:10s} {dev} | {d.get('train_seconds', 0):.0f} s {d.get('precision')}")
PY
# checkpoints do not come back (too large): a finished run needs none to be found; an unfinished one starts over
find "$out/runs" -name "*.pt" -delete
