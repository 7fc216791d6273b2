#!/usr/bin/env bash
# Mutation check of the test suite itself: each mutant below plants one bug (a kernel's rounding,
# a loader bound, the softmax, the gate comparison, …) in a scratch copy of HEAD, then runs the
# tests that should catch it. A mutant is KILLED when they fail, SURVIVES when they pass.
#
#   scripts/mutation_test.sh            all mutants
#   scripts/mutation_test.sh NAME…      only these
#
# The scratch copy is `git archive HEAD` in $TEMPER_MUTATION_DIR (default /tmp/temper-mutation);
# its cargo target dir is kept between runs (warm rebuilds). A mutant whose pattern no longer
# matches the source, or whose code does not compile, is an error of this script (exit 2): the
# list must follow the code. Exit 1 when any mutant survives, 0 when all are killed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${TEMPER_MUTATION_DIR:-/tmp/temper-mutation}
src="$work/src"
export CARGO_TARGET_DIR="$work/target"
export CI=true # missing data must fail, not skip: a skipped test would "kill" nothing

# Four fields a mutant: name, file, perl substitution (applied once to the whole file), test command.
mutants=(
  requant-round-half-down kernels/src/requant.rs
    's/let r = \(p \+ \(1i64 << \(shift - 1\)\)\) >> shift;/let r = (p + (1i64 << (shift - 1)) - 1) >> shift;/'
    'cargo test -q -p temper-kernels'
  requant-i64-no-rounding kernels/src/requant.rs
    's/let r = \(acc \+ \(1i64 << \(shift - 1\)\)\) >> shift;/let r = acc >> shift;/'
    'cargo test -q -p temper-kernels'
  softmax-round-down kernels/src/reference/softmax.rs
    's/let p = \(512 \* e \+ sum\) \/ \(2 \* sum\);/let p = (512 * e) \/ (2 * sum);/'
    'cargo test -q -p temper-kernels --lib'
  softmax-max-row kernels/src/reference/softmax.rs
    's/let m = x.iter\(\).copied\(\).max\(\)/let m = x.iter().copied().min()/'
    'cargo test -q -p temper-kernels --lib'
  crc32-polynomial runtime/src/format.rs
    's/0xEDB8_8320/0xEDB8_8321/'
    'cargo test -q -p temper-runtime --lib'
  loader-section-end runtime/src/model/load.rs
    's/if s.offset < hlen as u64 \|\| end > bytes.len\(\) as u64 \{/if s.offset < hlen as u64 {/'
    'cargo test -q -p temper-tests --test mutation'
  loader-file-len runtime/src/model/load.rs
    's/if header.file_len != bytes.len\(\) as u64 \{/if header.file_len > bytes.len() as u64 {/'
    'cargo test -q -p temper-tests --test mutation'
  gate-inverted converter/src/ptq.rs
    's/if drop.is_nan\(\) \|\| drop > m \{/if drop < m {/'
    'cargo test -q -p temper-converter --lib gate_tests'
  gate-inverted-seen-by-quantize converter/src/ptq.rs
    's/if drop.is_nan\(\) \|\| drop > m \{/if drop < m {/'
    'cargo test -q -p temper-converter --test quantize_e2e'
  gate-inverted-seen-by-pipeline converter/src/ptq.rs
    's/if drop.is_nan\(\) \|\| drop > m \{/if drop < m {/'
    'cargo test -q -p temper-converter --test pipeline_e2e'
  gate-max-drop-never-fails converter/src/ptq.rs
    's/if drop.is_nan\(\) \|\| drop > m \{/if drop > m + 100.0 {/'
    'cargo test -q -p temper-converter --lib gate_tests'
  gate-boundary-strict converter/src/ptq.rs
    's/if drop.is_nan\(\) \|\| drop > m \{/if drop >= m {/'
    'cargo test -q -p temper-converter --lib gate_tests'
  gate-nan-passes converter/src/ptq.rs
    's/if int8.is_nan\(\) \|\| int8 < m \{/if int8 < m {/'
    'cargo test -q -p temper-converter --lib gate_tests'
  idx-magic-ignored converter/data/src/idx.rs
    's/if magic\[..n.min\(2\)\].iter\(\).any\(\|&b\| b != 0\) \{/if false {/'
    'cargo test -q -p temper-data --test idx'
)

only=("$@")
mkdir -p "$work"
rm -rf "$src"
mkdir -p "$src"
git -C "$root" archive HEAD | tar -x -C "$src"
# ../shared as the real checkout sees it
[ -e "$work/shared" ] || ln -s "$root/../shared" "$work/shared"

killed=0
survived=0
errors=0
report=()
for ((i = 0; i < ${#mutants[@]}; i += 4)); do
  name=${mutants[i]} file=${mutants[i + 1]} subst=${mutants[i + 2]} cmd=${mutants[i + 3]}
  if [ ${#only[@]} -gt 0 ] && ! printf '%s\n' "${only[@]}" | grep -qx "$name"; then
    continue
  fi
  cp "$src/$file" "$src/$file.orig"
  perl -0pi -e "$subst" "$src/$file"
  if cmp -s "$src/$file" "$src/$file.orig"; then
    echo "!! $name: the pattern no longer matches $file (update the mutant list)"
    errors=$((errors + 1))
    report+=("| $name | $file | ERROR: pattern not found |")
    mv "$src/$file.orig" "$src/$file"
    continue
  fi
  echo "== $name: $file; $cmd"
  log="$work/$name.log"
  t0=$SECONDS
  # Build first: a mutant that does not compile says nothing about the tests.
  if ! (cd "$src" && $cmd --no-run) >"$log" 2>&1; then
    echo "!! $name does not compile (see $log)"
    errors=$((errors + 1))
    report+=("| $name | $file | ERROR: does not compile |")
  elif (cd "$src" && $cmd) >>"$log" 2>&1; then
    echo "   SURVIVED ($((SECONDS - t0)) s): the tests pass with the bug"
    survived=$((survived + 1))
    report+=("| $name | $file | **survived** |")
  else
    first=$(grep -m1 -E "^test .* FAILED|panicked at|assertion" "$log" | cut -c1-160)
    echo "   killed ($((SECONDS - t0)) s): $first"
    killed=$((killed + 1))
    report+=("| $name | $file | killed: \`${first//|/\\|}\` |")
  fi
  mv "$src/$file.orig" "$src/$file"
done

echo
echo "| mutant | file | result |"
echo "|---|---|---|"
printf '%s\n' "${report[@]}"
total=$((killed + survived))
echo
echo "mutation score: $killed killed of $total ($survived survived, $errors errors)"
[ $errors -eq 0 ] || exit 2
[ $survived -eq 0 ] || exit 1
exit 0
