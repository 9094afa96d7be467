#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (see ../shared/gpu/README.md and the README's
# "Paper-scale run"). From the project root, with the wheel kit in .whl/ and the data in .data/:
#
#   bash scripts/gpu_run.sh [SECONDS]       # SECONDS: the whole script's time (default 480)
#
# 1. installs the offline wheel kit into a temporary folder (if .whl/ exists);
# 2. writes nvidia-smi and pip list once to $OUT/environment.txt;
# 3. `medsymmflow reproduce`: times 100 training steps of each model, then trains the full
#    recipe for 100 epochs if that fits the time left (keeping NOTEBOOK_SECONDS for step 4),
#    else as many epochs as fit (FIT_BUDGET=0 stops instead, with the estimate);
# 4. runs the notebooks under nbval in the full profile, 00, 02, 05, then 01, each while time
#    is left; MEDSYMMFLOW_EPOCHS is set to the epochs trained so 02 and 05 reuse the checkpoints.
#
# Everything lands in $OUT (at most 6 files): gpu_run.log, environment.txt, results.md,
# results.json, nbval.log, nbval.xml. Rehearse on a CPU (the kit is for Python 3.12; test its
# install apart): SMOKE=1 NOTEBOOK_PROFILE=fast WHEELS=none PYTHON=.venv/bin/python bash scripts/gpu_run.sh 900
set -uo pipefail

SECONDS_TOTAL=${1:-480}
OUT=${OUT:-runs/gpu}
PY=${PYTHON:-python3}
NOTEBOOK_SECONDS=${NOTEBOOK_SECONDS:-150}
FIT_BUDGET=${FIT_BUDGET:-1}
SMOKE=${SMOKE:-0}
WHEELS=${WHEELS:-.whl}
NOTEBOOK_PROFILE=${NOTEBOOK_PROFILE:-full}
start=$(date +%s)
left() { echo $((SECONDS_TOTAL - ($(date +%s) - start))); }

mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_run.log") 2>&1
echo "== gpu_run.sh: $(date -u), budget ${SECONDS_TOTAL} s, notebooks in the $NOTEBOOK_PROFILE profile, smoke=$SMOKE"

if [ -d "$WHEELS" ]; then
  site=$(mktemp -d)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$WHEELS"/*.whl \
    || { echo "ERROR: the offline wheel kit did not install"; exit 1; }
  export PYTHONPATH="$PWD:$site"
else
  export PYTHONPATH="$PWD"
fi
[ -d .data ] && export MEDSYMMFLOW_DATA="$PWD/.data"
export PYTHONUNBUFFERED=1 MEDSYMMFLOW_PROFILE=$NOTEBOOK_PROFILE MEDSYMMFLOW_REQUIRE_REAL_DATA=1
echo "== data: ${MEDSYMMFLOW_DATA:-default}; $(($(date +%s) - start)) s in"

{ nvidia-smi || echo "(no nvidia-smi)"; echo; "$PY" -m pip list 2>/dev/null; echo; [ -n "${site:-}" ] && ls "$site"; } > "$OUT/environment.txt"
"$PY" -c "import torch, diffusers, medsymmflow; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else ''); print('diffusers', diffusers.__version__)" \
  || { echo "ERROR: the project does not import"; exit 1; }

smoke=(); [ "$SMOKE" = 1 ] && smoke=(--smoke)
fit=(); [ "$FIT_BUDGET" = 1 ] && fit=(--fit-budget)
budget=$(($(left) - NOTEBOOK_SECONDS))
echo "== reproduce: ${budget} s for probe, training and evaluation"
"$PY" -m medsymmflow reproduce "${smoke[@]}" "${fit[@]}" --time-budget "$budget" --out "$OUT"
status=$?
echo "== reproduce exited $status after $(($(date +%s) - start)) s"
[ $status -ne 0 ] && [ ! -f "$OUT/results.json" ] && exit $status

epochs=$("$PY" -c "import json; print(json.load(open('$OUT/results.json'))['epochs'])")
export MEDSYMMFLOW_EPOCHS=$epochs
for notebook in notebooks/00_*.ipynb notebooks/02_*.ipynb notebooks/05_*.ipynb notebooks/01_*.ipynb; do
  remaining=$(($(left) - 10))
  if [ "$remaining" -lt 30 ]; then
    echo "== SKIPPED (time): $notebook"
    echo "SKIPPED (no time left): $notebook" >> "$OUT/nbval.log"
    continue
  fi
  echo "== nbval, $NOTEBOOK_PROFILE profile, ${remaining} s left: $notebook"
  timeout "$remaining" "$PY" -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env "$notebook" \
    --junitxml="$OUT/nbval_$(basename "$notebook" .ipynb).xml" >> "$OUT/nbval.log" 2>&1
  code=$?
  echo "$notebook: exit $code ($([ $code = 124 ] && echo 'timed out' || ([ $code = 0 ] && echo passed || echo FAILED)))" | tee -a "$OUT/nbval.log"
done
# one junit file comes back: merge the per-notebook ones
"$PY" - "$OUT" <<'EOF'
import sys, pathlib
out = pathlib.Path(sys.argv[1])
parts = sorted(out.glob("nbval_*.xml"))
(out / "nbval.xml").write_text("<runs>\n" + "\n".join(p.read_text().split("?>", 1)[-1] for p in parts) + "\n</runs>\n")
for p in parts:
    p.unlink()
EOF
echo "== done in $(($(date +%s) - start)) s"
