#!/usr/bin/env bash
# Train a model shipped inside the package: the default one in cina/assets/default_model (used by
# `cina estimate` without --model), or with MODEL=fast the fast one (`--model fast`).
#   DEVICE=cuda: the recipe the shipped model was trained with. It uses a 100,000-task
#     default-preset corpus (seed 4343) and scripts/configs/default_model_gpu.json: the
#     supervised ZS-S loss alone, lam 4e-5, 5,000 steps of 16 tasks. About 3 min on an H200
#     plus 1 min of generation on 16 cores.
#   otherwise: the CPU recipe. It uses 8,000 tasks (seed 2026) and
#     scripts/configs/default_model.json: the same loss and lam, 2,000 steps of 16 tasks with
#     256 units, about 6 min on two cores. It recovers most of the GPU model's gain
#     (cina/assets/default_model/TRAINING.md has both).
#   MODEL=fast: the shipped fast model (cina/assets/fast_model): the CPU recipe's corpus with
#     scripts/configs/fast_model.json, a width-16 network and 10 balancing layers on a
#     32-landmark kernel; 2,000 steps, about 1 min on two cores.
#   [MODEL=default|fast] [DEVICE=cuda] [CONFIG=FILE] [TASKS=N] [PY=python] bash scripts/pretrain_default.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${MODEL:-default}"
WORK="${1:-runs/${MODEL}_model}"
PY="${PY:-.venv/bin/python}"
if [ "$MODEL" = fast ]; then
    RECIPE=scripts/configs/fast_model.json; DEFAULT_TASKS=8000; SEED=2026; SHARD=500
elif [ "$MODEL" != default ]; then
    echo "MODEL must be 'default' or 'fast', got '$MODEL'" >&2; exit 2
elif [ "${DEVICE:-}" = cuda ]; then
    RECIPE=scripts/configs/default_model_gpu.json; DEFAULT_TASKS=100000; SEED=4343; SHARD=1000
else
    RECIPE=scripts/configs/default_model.json; DEFAULT_TASKS=8000; SEED=2026; SHARD=500
fi
CONFIG="${CONFIG:-$RECIPE}"
mkdir -p "$WORK"
$PY -m causalgen.cli generate --preset default --num-tasks "${TASKS:-$DEFAULT_TASKS}" --shard-size "$SHARD" \
    --seed "$SEED" --workers "${WORKERS:-$(nproc)}" --out "$WORK/corpus"
$PY -m causalgen.cli verify "$WORK/corpus" --quiet
$PY -m cina.cli train --corpus "$WORK/corpus" --out "$WORK/run" --config "$CONFIG" \
    ${STEPS:+--max-steps "$STEPS"} ${DEVICE:+--device "$DEVICE"}
# the weights and config only: TRAINING.md (the record of how it was trained) stays
mkdir -p "cina/assets/${MODEL}_model"
cp "$WORK/run/model/model.safetensors" "$WORK/run/model/config.json" "cina/assets/${MODEL}_model/"
du -sh "cina/assets/${MODEL}_model"
