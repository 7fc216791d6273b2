#!/usr/bin/env python3
"""Count executed guest instructions from a qemu-user log written with
`-d in_asm,exec,nochain -D <log>` (instructions per translated block x executions).

Per-call counts of a kernel: run `kernel_once ... <reps>` with reps 1 and 3 and halve the
difference, e.g.

    B=target/aarch64-unknown-linux-gnu/release/examples/kernel_once
    QEMU_CPU=max qemu-aarch64 -L /usr/aarch64-linux-gnu -d in_asm,exec,nochain -D q.log \
        $B dotprod gemm 64 576 64 1
    python3 kernels/examples/qemu_insn_count.py q.log   # prints: <instructions> <unknown TBs>
"""
import re, sys, collections
# count executed guest instructions from a qemu "-d in_asm,exec,nochain" log
sizes = {}
cur = None; n = 0
execs = collections.Counter()
for line in open(sys.argv[1], errors='replace'):
    if line.startswith('IN:'):
        cur = None; n = 0; continue
    m = re.match(r'^0x([0-9a-f]+):\s', line)
    if m:
        a = int(m.group(1), 16)
        if cur is None: cur = a
        n += 1
        continue
    if line.strip() == '' and cur is not None:
        sizes[cur] = n; cur = None; n = 0; continue
    m = re.search(r'Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/', line)
    if m:
        execs[int(m.group(1), 16)] += 1
if cur is not None: sizes[cur] = n
total = sum(sizes.get(a, 0) * c for a, c in execs.items())
missing = sum(c for a, c in execs.items() if a not in sizes)
print(total, missing)
