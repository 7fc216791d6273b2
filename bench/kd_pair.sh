#!/usr/bin/env bash
# Run both arms of one configuration side by side (scratch and kd, each over SEEDS, one run
# per arm at a time, THREADS threads each):  bench/kd_pair.sh NAME "COMMON OPTIONS" ["KD OPTIONS"]
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; common=$2; kdopts=${3:-}
# shellcheck disable=SC2086
JOBS=1 bench/kd_seeds.sh "$name" scratch $common &
# shellcheck disable=SC2086
JOBS=1 bench/kd_seeds.sh "$name" kd $common $kdopts &
wait
