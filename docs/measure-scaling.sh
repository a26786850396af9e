#!/bin/bash
# Throughput with 1 and 2 CPU processes (docs/scaling-out.md). Run it on an idle machine
# (`uptime` load < 1): a loaded one measures the other load. Arguments narrow the work as for
# `rlcf-bench run` (default: the whole embedded suite), e.g.
#   docs/measure-scaling.sh --method rlcf-prompt --dataset micro-hard
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
uptime
/usr/bin/time -f "1 process  (--jobs 1): %e s" "$BIN/rlcf-bench" run --device cpu --jobs 1 --db "$OUT/one.sqlite" -q "$@"
/usr/bin/time -f "2 processes (torchrun): %e s" "$BIN/python" -m torch.distributed.run --standalone --nproc-per-node 2 \
  -m rlcf_bench run --device cpu --db "$OUT/two.sqlite" -q "$@"
/usr/bin/time -f "2 processes (--jobs 2, whole runs): %e s" "$BIN/rlcf-bench" run --device cpu --jobs 2 --db "$OUT/jobs.sqlite" -q "$@"
echo "stores in $OUT"
