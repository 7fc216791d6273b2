#!/usr/bin/env bash
# Alternating before/after: temper-run bench of a base build (OLD=path) vs this tree (NEW), pinned,
# 3 rounds, best median per binary and model.
W=${TEMPER_BENCH_WORK:-/tmp/temper-bench-work}; CORE=${CORE:-1}
OLD=${OLD:?path of the base temper-run}; NEW=${NEW:-$(cd "$(dirname "$0")/.." && pwd)/target/release/temper-run}
for round in 1 2 3; do
  for m in temper/student_kd temper/teacher synth/fmnist_cnn synth/mobilenet_v2_like_96 synth/mobilenet_v2_like_224; do
    case $m in *224) runs=600;; *96) runs=2000;; *) runs=5000;; esac
    for b in old new; do
      if [ $(( round % 2 )) = 0 ]; then [ $b = old ] && b2=new || b2=old; else b2=$b; fi
      bin=$OLD; [ $b2 = new ] && bin=$NEW
      med=$(taskset -c $CORE $bin bench $W/$m.tmf --runs $runs --warmup 200 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["latency_us"]["median"])')
      echo "$round $(basename $m) $b2 $med $(cut -d' ' -f1-3 /proc/loadavg)"
    done
  done
done
