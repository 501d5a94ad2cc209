#!/usr/bin/env bash
# Train the small default model shipped in cina/assets/default_model (used by `cina estimate`
# without --model). On a GPU pass DEVICE=cuda and larger STEPS; the recorded run is in
# cina/assets/default_model/TRAINING.md.
#   bash scripts/pretrain_default.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-runs/default_model}"
TASKS="${TASKS:-8000}"
PY=.venv/bin/python
mkdir -p "$WORK"
$PY -m causalgen.cli generate --preset default --num-tasks "$TASKS" --shard-size 500 --seed 2026 \
    --workers "${WORKERS:-2}" --out "$WORK/corpus"
$PY -m causalgen.cli verify "$WORK/corpus" --quiet
$PY -m cina.cli train --corpus "$WORK/corpus" --out "$WORK/run" --config scripts/configs/default_model.json \
    ${STEPS:+--max-steps "$STEPS"} ${DEVICE:+--device "$DEVICE"}
rm -rf cina/assets/default_model
mkdir -p cina/assets
cp -r "$WORK/run/model" cina/assets/default_model
du -sh cina/assets/default_model
