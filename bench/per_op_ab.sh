#!/usr/bin/env bash
# Alternating per-op A/B of two temper-run binaries on one model: for every op, the minimum over
# ROUNDS of its per-op median (`bench --per-op`), old vs new, and the sum of those minima.
#   bench/per_op_ab.sh OLD_TEMPER_RUN NEW_TEMPER_RUN MODEL.tmf [RUNS=400] [ROUNDS=6]
# (MODEL relative to $TEMPER_BENCH_WORK, default /tmp/temper-bench-work; pinned to core 1.)
OLD=$1; NEW=$2; M=$3; RUNS=${4:-400}; ROUNDS=${5:-6}
cd "${TEMPER_BENCH_WORK:-/tmp/temper-bench-work}"
for i in $(seq $ROUNDS); do
  for b in old new; do
    bin=$OLD; [ $b = new ] && bin=$NEW
    taskset -c 1 $bin bench $M --runs $RUNS --per-op | awk -v b=$b '/^ +[0-9]+ [A-Z]/ {print b, $1, $2, $3, $(NF-2)} /^latency/ {print b, "T", "total", "-", $3}'
  done
done | python3 -c '
import sys, collections
d = collections.defaultdict(lambda: collections.defaultdict(list))
names = {}
for l in sys.stdin:
    b, i, op, name, v = l.split()
    d[i][b].append(float(v)); names[i] = op + " " + name
keys = sorted(d, key=lambda k: (k == "T", int(k) if k != "T" else 0))
so = sn = 0
for k in keys:
    o, n = min(d[k]["old"]), min(d[k]["new"])
    if k != "T": so += o; sn += n
    if o > 3 or k == "T": print(f"{k:>3} {names[k]:32s} old {o:8.2f} new {n:8.2f}  {n/o:5.2f}")
print(f"sum of per-op minima: old {so:.1f} new {sn:.1f} ({sn/so:.3f})")
'
