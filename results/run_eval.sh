#!/usr/bin/env bash
# The exact commands behind results/default_model/ (the shipped default model's evaluation).
# Rows already in results.csv are skipped, so the baselines can run before the model exists.
#   bash results/run_eval.sh [MODEL] [CORPUS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-cina/assets/default_model}"
CORPUS="${2:-runs/default_model/corpus}"     # the pretraining corpus: its test split is held out
OUT=results/default_model
PY=.venv/bin/python
BASE=(dim ipw snipw or aipw svm)
$PY -m cina.cli evaluate --model "$MODEL" --suite synthetic --corpus "$CORPUS" --n-synthetic 40 \
    --out "$OUT" --estimators "${BASE[@]}" cina-zs --quiet
$PY -m cina.cli evaluate --model "$MODEL" --suite synthetic --n-synthetic 40 \
    --synthetic-config er5000-nonlinear --out "$OUT/er5000" --estimators "${BASE[@]}" cina-zs --quiet
$PY -m cina.cli evaluate --model "$MODEL" --suite ihdp --limit 100 --out "$OUT" --estimators "${BASE[@]}" cina-zs --quiet
$PY -m cina.cli evaluate --model "$MODEL" --suite lalonde --out "$OUT" --estimators "${BASE[@]}" cina-zs --quiet
$PY -m cina.cli evaluate --model "$MODEL" --suite realcause --limit 10 --out "$OUT" --estimators "${BASE[@]}" cina-zs --quiet
$PY -m cina.cli evaluate --model "$MODEL" --suite twins --out "$OUT" --estimators "${BASE[@]}" cina-zs --quiet
# Algorithm 1 (per-dataset CInA) is quadratic and slow on CPU: held-out synthetic tasks only.
$PY -m cina.cli evaluate --model "$MODEL" --suite synthetic --corpus "$CORPUS" --n-synthetic 15 \
    --out "$OUT/alg1" --estimators svm cina-single aipw --quiet
