#!/usr/bin/env bash
# Everything measured on a lent GPU, in one go (the README's "GPU" section records the output):
#   1. default-preset corpora: 8,000 tasks (seed 2026, the benchmarks' and the CPU recipe's),
#      64,000 (seed 4242) and 100,000 (seed 4343) for the supervised runs;
#   2. training-step throughput (scripts/bench_train.py: fp32 / bf16 / bf16 + torch.compile);
#   3. zero-shot latency on the GPU against DML on one CPU thread (scripts/bench_zero_shot.py);
#   4. three pretraining runs side by side: the shipped default (default_model_gpu.json: ZS-S
#      loss alone, lam 4e-5), the self-supervised recipe at GPU scale (ss_model_gpu.json) and
#      ZS-S with the balancing loss (zs_s_model_gpu.json, the scoreboard's cina-zs-s).
#      cina/assets/default_model/TRAINING.md records the runs as they were made.
# Every stage has a time limit, so one hung stage cannot eat the others' time.
#   bash scripts/run_gpu_session.sh OUT_DIR [bench|train|all]   (PY=python3 WORK=/tmp/gpu by default)
# Re-running is cheap: generation skips finished shards.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: run_gpu_session.sh OUT_DIR [bench|train|all]}"
WHAT="${2:-all}"
PY="${PY:-python3}"
W="${WORK:-/tmp/gpu}"
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1
stage() { echo; echo "=== $1 ($(date +%T))"; }

stage "device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
nproc

stage "corpora"
timeout 120 $PY -m causalgen.cli generate --preset default --num-tasks 8000 --shard-size 500 --seed 2026 \
    --workers 16 --out "$W/corpus" --quiet && echo "default corpus ok"
if [ "$WHAT" != bench ]; then  # the supervised runs' corpora
timeout 180 $PY -m causalgen.cli generate --preset default --num-tasks 64000 --shard-size 1000 --seed 4242 \
    --workers 16 --out "$W/big64" --quiet && echo "64k corpus ok"
timeout 240 $PY -m causalgen.cli generate --preset default --num-tasks 100000 --shard-size 1000 --seed 4343 \
    --workers 16 --out "$W/big100" --quiet && echo "100k corpus ok"
fi

if [ "$WHAT" != train ]; then
stage "training-step throughput (eager)"
timeout 150 $PY scripts/bench_train.py --corpus "$W/corpus" --device cuda --modes fp32,bf16 \
    --batch-sizes 16,64,256 --units 256,1024 --steps 20 --json "$OUT/bench_train.json"
stage "training-step throughput (torch.compile)"
timeout 180 $PY scripts/bench_train.py --corpus "$W/corpus" --device cuda --modes bf16,bf16+compile \
    --batch-sizes 64 --units 1024 --steps 20 --warmup 8 --json "$OUT/bench_train_compile.json"

stage "zero-shot latency"
for units in 1000 16000; do
    tasks=$([ "$units" = 1000 ] && echo 30 || echo 4)
    timeout 100 $PY scripts/bench_zero_shot.py --device cuda --units "$units" --tasks "$tasks" \
        --skip cina_single | tee "$OUT/zero_shot_$units.txt"
done

fi

if [ "$WHAT" != bench ]; then
stage "pretraining runs (side by side)"
timeout 420 $PY -m cina.cli train --corpus "$W/big100" --out "$W/run_default" \
    --config scripts/configs/default_model_gpu.json --quiet > "$W/run_default.log" 2>&1 &
timeout 420 $PY -m cina.cli train --corpus "$W/corpus" --out "$W/run_ss" \
    --config scripts/configs/ss_model_gpu.json --quiet > "$W/run_ss.log" 2>&1 &
timeout 420 $PY -m cina.cli train --corpus "$W/big64" --out "$W/run_zss" \
    --config scripts/configs/zs_s_model_gpu.json --quiet > "$W/run_zss.log" 2>&1 &
wait
for r in run_default run_ss run_zss; do
    echo "--- $r"; tail -3 "$W/$r.log"; cat "$W/$r/metrics.csv" 2>/dev/null
done
tar -C "$W" -cf "$OUT/runs.tar" --exclude='*/optimizer.pt' run_default run_ss run_zss run_default.log run_ss.log run_zss.log
fi
ls -la "$OUT"
