#!/bin/bash
# usage: chain.sh NAME INIT G1 G2 ... : stages with gen_length G (4 records, pairs layout), each from the previous
# stage's checkpoint, ending when a 40-step window reaches 0.9 on fully masked rows; then the final stage G=32.
name=$1; init=$2; shift 2
for G in "$@"; do
  ./run.sh $name-g$G --gen-length $G --n-records 4 --n-filler 1 --batch-size 32 --n-heads 4 --lr 2e-3 --warmup 20 \
    --steps 3000 --full-mask-rows 1.0 --curriculum-axes records:2:4 filler:0:1 --stop-at-accuracy 0.9 \
    --probe-every 100000 --eval-count 32 --init-from $init > $name-g$G.log 2>&1 || exit 1
  init=/work/kv3-runs/$name-g$G/checkpoint
done
./run.sh $name-final --init-from $init --n-heads 4 --lr 2e-3 --warmup 50 --steps 12000 --full-mask-rows 0.5 \
  --curriculum-axes records:2:32 filler:0:414 --probe-every 500 > $name-final.log 2>&1
