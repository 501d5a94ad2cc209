#!/usr/bin/env bash
# Train the small default model shipped in cina/assets/default_model (used by `cina estimate`
# without --model). DEVICE=cuda selects the GPU recipe the shipped model was trained with
# (scripts/configs/default_model_gpu.json, ~2.5 min on an H200); otherwise the CPU recipe
# (default_model.json, ~70 s on two cores), which scores the same. The recorded run is in
# cina/assets/default_model/TRAINING.md.
#   [DEVICE=cuda] [CONFIG=FILE] [PY=python] bash scripts/pretrain_default.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-runs/default_model}"
TASKS="${TASKS:-8000}"
PY="${PY:-.venv/bin/python}"
if [ "${DEVICE:-}" = cuda ]; then RECIPE=scripts/configs/default_model_gpu.json; else RECIPE=scripts/configs/default_model.json; fi
CONFIG="${CONFIG:-$RECIPE}"
mkdir -p "$WORK"
$PY -m causalgen.cli generate --preset default --num-tasks "$TASKS" --shard-size 500 --seed 2026 \
    --workers "${WORKERS:-$(nproc)}" --out "$WORK/corpus"
$PY -m causalgen.cli verify "$WORK/corpus" --quiet
$PY -m cina.cli train --corpus "$WORK/corpus" --out "$WORK/run" --config "$CONFIG" \
    ${STEPS:+--max-steps "$STEPS"} ${DEVICE:+--device "$DEVICE"}
# the weights and config only: TRAINING.md (the record of how it was trained) stays
mkdir -p cina/assets/default_model
cp "$WORK/run/model/model.safetensors" "$WORK/run/model/config.json" cina/assets/default_model/
du -sh cina/assets/default_model
