#!/usr/bin/env bash
# The exact commands behind results/default_model/ and results/fast_model/ (the shipped models'
# evaluations). Rows already in a results.csv are skipped, so an interrupted run resumes; each
# suite has its own folder.
#   bash results/run_eval.sh [MODEL] [OUT] [MIX]
# MODEL: the model to evaluate (default cina/assets/default_model); OUT: its results folder
# (default results/default_model); MIX: the folder of the three pretraining corpora of
# scripts/pretrain_default.sh (default, realistic, semi-synthetic), whose test splits are held out.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-cina/assets/default_model}"
OUT="${2:-results/default_model}"
MIX="${3:-runs/mix}"
DATA="${CINA_BENCHMARKS:-../shared/benchmarks}"
PY=.venv/bin/python
EST="${ESTIMATORS:-dim aipw doubleml cina-zs cina-zs-w}"
# DoubleML with our learners and folds gives exactly our AIPW's estimates (tests/test_baselines.py);
# it runs where it is cheap, and the large suites (DML: ~1 min per 16,000-unit dataset) run AIPW only
BIG="${BIG_ESTIMATORS:-dim aipw cina-zs cina-zs-w}"
ev() { $PY -m cina.cli evaluate --model "$MODEL" --quiet "$@"; }

# held-out test-split tasks of each prior of the pretraining mixture: 300 each
ev --suite synthetic --corpus "$MIX/default" --n-synthetic 300 --no-ood --out "$OUT/test-default" --estimators $EST
ev --suite synthetic --corpus "$MIX/realistic" --synthetic-config realistic --n-synthetic 300 --no-ood \
   --out "$OUT/test-realistic" --estimators $BIG
ev --suite synthetic --corpus "$MIX/semi-synthetic" --synthetic-config semi-synthetic --n-synthetic 300 --no-ood \
   --out "$OUT/test-semi-synthetic" --estimators $EST
# IHDP: all 1000 replications (ATE, interval coverage), and the CFRNet IHDP-100 protocol (672 train
# units as the dataset, the 75 test units as new units: sqrt PEHE in and out of sample)
ev --suite ihdp --data-dir "$DATA" --out "$OUT/ihdp-1000" --estimators dim cina-zs cina-zs-w
ev --suite ihdp-100 --data-dir "$DATA" --out "$OUT/ihdp-100" --estimators dim or aipw doubleml cina-zs
# LaLonde (ATT against the experimental $1,794.34), RealCause (20 samples of each family), Twins
ev --suite lalonde --data-dir "$DATA" --out "$OUT/lalonde" --estimators $EST
ev --suite realcause --limit 20 --data-dir "$DATA" --out "$OUT/realcause" --estimators $BIG
ev --suite twins --data-dir "$DATA" --out "$OUT/twins" --estimators $EST
