#!/usr/bin/env bash
# Train a model shipped inside the package: the default one in cina/assets/default_model (used by
# `cina estimate` without --model), or with MODEL=fast the fast one (`--model fast`).
#
# Both are pretrained on a mixture of three priors, one corpus each, mixed in proportion to
# their sizes (`cina train --corpus A B C`):
#   default         8,000 tasks (seed 2026)  the original prior
#   realistic       4,000 tasks (seed 2027)  typed, distorted, irrelevant and weak covariates,
#                                            up to 130 nodes, N 50-20,000, binary outcomes
#   semi-synthetic  3,000 tasks (seed 2028)  real-table covariates (the default pool)
# and trained by the supervised ATE loss (on the doubly robust estimate) plus the outcome
# head's loss against every unit's y0 and y1 (scripts/configs/{default,fast}_model.json; 256
# units per task and step). CPU: about 3 min of generation and 20-40 min of training on two
# cores (cina/assets/*_model/TRAINING.md has the runs). DEVICE=cuda: the same corpora, 10x
# larger (TASKS_SCALE=10), scripts/configs/default_model_gpu.json.
#   [MODEL=default|fast] [DEVICE=cuda] [CONFIG=FILE] [TASKS_SCALE=K] [STEPS=N] [PY=python] \
#       bash scripts/pretrain_default.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${MODEL:-default}"
WORK="${1:-runs/${MODEL}_model}"
PY="${PY:-.venv/bin/python}"
if [ "$MODEL" = fast ]; then
    RECIPE=scripts/configs/fast_model.json; SCALE=1
elif [ "$MODEL" != default ]; then
    echo "MODEL must be 'default' or 'fast', got '$MODEL'" >&2; exit 2
elif [ "${DEVICE:-}" = cuda ]; then
    RECIPE=scripts/configs/default_model_gpu.json; SCALE=10
else
    RECIPE=scripts/configs/default_model.json; SCALE=1
fi
SCALE="${TASKS_SCALE:-$SCALE}"
CONFIG="${CONFIG:-$RECIPE}"
mkdir -p "$WORK"
corpora=()
for spec in "default 8000 2026" "realistic 4000 2027" "semi-synthetic 3000 2028"; do
    set -- $spec
    out="$WORK/corpus-$1"
    $PY -m causalgen.cli generate --preset "$1" --num-tasks "$(( $2 * SCALE ))" --shard-size 250 --seed "$3" \
        --workers "${WORKERS:-$(nproc)}" --out "$out" --quiet
    $PY -m causalgen.cli verify "$out" --quiet
    corpora+=("$out")
done
$PY -m cina.cli train --corpus "${corpora[@]}" --out "$WORK/run" --config "$CONFIG" \
    ${STEPS:+--max-steps "$STEPS"} ${DEVICE:+--device "$DEVICE"}
# the interval scale, chosen on validation-split tasks of the same corpora (never the test splits)
$PY scripts/calibrate_intervals.py --model "$WORK/run/model" --corpus "${corpora[@]}" --tasks 300 \
    --write "$WORK/calibrated"
# the weights and config only: TRAINING.md (the record of how it was trained) stays
mkdir -p "cina/assets/${MODEL}_model"
cp "$WORK/calibrated/model.safetensors" "$WORK/calibrated/config.json" "cina/assets/${MODEL}_model/"
du -sh "cina/assets/${MODEL}_model"
