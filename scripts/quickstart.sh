#!/usr/bin/env bash
# The main job end to end on a small default: set up .venv, then
# generate -> verify -> publish -> pretrain -> zero-shot estimate -> summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" MPLBACKEND=Agg
exec .venv/bin/python scripts/quickstart.py "$@"
