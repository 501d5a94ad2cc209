#!/usr/bin/env bash
# The exact commands behind results/default_model/ (the shipped default model's evaluation).
# Rows already in a results.csv are skipped, so an interrupted run resumes; each suite has its
# own folder, so suites can run in parallel.
#   bash results/run_eval.sh [MODEL] [CORPUS] [ER_CORPUS] [ZS_S_MODEL]
# CORPUS: the pretraining corpus of scripts/pretrain_default.sh (its test split is held out).
# ER_CORPUS: causalgen generate --preset er5000-nonlinear --num-tasks 4000 --shard-size 500 --seed 2027
# ZS_S_MODEL: causalgen generate --preset default --num-tasks 64000 --shard-size 1000 --seed 4242 --out BIG;
#   cina train --corpus BIG --out RUN --config scripts/configs/zs_s_model_gpu.json  (on a GPU, ~4.5 min)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-cina/assets/default_model}"
CORPUS="${2:-runs/default_model/corpus}"
ER_CORPUS="${3:-runs/er5000/corpus}"
ZS_S="${4:-}"
DATA="${CINA_BENCHMARKS:-../shared/benchmarks}"
OUT=results/default_model
PY=.venv/bin/python
ALL="dim ipw snipw or aipw doubleml svm cina-single cina-zs"
SUP=()
if [ -n "$ZS_S" ]; then SUP=(--model-supervised "$ZS_S"); ALL="$ALL cina-zs-s"; fi
ev() { $PY -m cina.cli evaluate --model "$MODEL" "${SUP[@]}" --quiet "$@"; }

# synthetic: 20 held-out test-split tasks of the pretraining corpus + 3 x 20 shifted tasks;
# er5000: 20 test-split tasks of an er5000-nonlinear corpus
ev --suite synthetic --corpus "$CORPUS" --n-synthetic 20 --out "$OUT/synthetic" --estimators $ALL
ev --suite synthetic --corpus "$ER_CORPUS" --synthetic-config er5000-nonlinear --n-synthetic 20 --no-ood \
   --out "$OUT/er5000" --estimators $ALL
# a tighter check of the default-preset comparison: 100 test-split tasks, the key estimators
$PY -m cina.cli evaluate --model "$MODEL" --quiet --suite synthetic --corpus "$CORPUS" --n-synthetic 100 --no-ood \
   --out "$OUT/synthetic-100" --estimators dim aipw svm cina-single cina-zs
# the tightest check of the 0.8x-DML bars: 300 default-preset and 100 er5000 test-split tasks
$PY -m cina.cli evaluate --model "$MODEL" --quiet --suite synthetic --corpus "$CORPUS" --n-synthetic 300 --no-ood \
   --out "$OUT/synthetic-300" --estimators dim aipw cina-single cina-zs
$PY -m cina.cli evaluate --model "$MODEL" --quiet --suite synthetic --corpus "$ER_CORPUS" --synthetic-config er5000-nonlinear \
   --n-synthetic 100 --no-ood --out "$OUT/er5000-100" --estimators dim aipw cina-single cina-zs
# IHDP: every estimator on replications 1-100 (ihdp/); the zero-shot model (and the difference in
# means) on all 1000 (ihdp-1000/)
ev --suite ihdp --limit 100 --data-dir "$DATA" --out "$OUT/ihdp" --estimators $ALL
$PY -m cina.cli evaluate --model "$MODEL" --quiet --suite ihdp --data-dir "$DATA" --out "$OUT/ihdp-1000" --estimators dim cina-zs
# IHDP-100, the CFRNet protocol: the 672 train units of each of reps 1-100 are the dataset (ATE,
# in-sample sqrt PEHE), the 75 test units are predicted (out-of-sample sqrt PEHE)
ev --suite ihdp-100 --data-dir "$DATA" --out "$OUT/ihdp-100" --estimators $ALL
# LaLonde (ATT against the experimental $1,794.34), RealCause (first 3 samples of each of the
# three families; cross-fitted DML takes ~1 min per 16,000-unit sample here), Twins
ev --suite lalonde --data-dir "$DATA" --out "$OUT/lalonde" --estimators $ALL
ev --suite realcause --limit 3 --data-dir "$DATA" --out "$OUT/realcause" --estimators $ALL
ev --suite twins --data-dir "$DATA" --out "$OUT/twins" --estimators $ALL
