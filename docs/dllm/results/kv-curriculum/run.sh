#!/bin/bash
# usage: run.sh NAME extra-flags...
name=$1; shift
source /work/venv/bin/activate
cd /work/kv3-runs
OMP_NUM_THREADS=1 PYTHONPATH=/work/wt-kv exec nice -n 10 python -m diffaccel.dllm.train_recall --task kv --seed 0 \
  --n-records 32 --n-keys 32 --n-values 64 --n-filler 414 --n-filler-symbols 32 --d-model 128 --n-layers 2 \
  --ff 256 --batch-size 32 --warmup 100 --steps 12000 --curriculum-window 40 --curriculum-advance-at 0.9 \
  --curriculum-growth 1.5 --checkpoint-every 50 --probe-every 500 --output /work/kv3-runs/$name "$@"
