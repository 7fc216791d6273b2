"""Markdown table of bench/results/kd.tsv (written by bench/kd_seeds.sh): for every recipe, the
scratch arm and each distillation variant, per-seed test accuracy, 3-seed means and the KD gain
(KD mean − scratch mean of the same recipe, i.e. the same options without the KD-only ones).

    python3 bench/kd_table.py [bench/results/kd.tsv]
"""
import sys
from collections import defaultdict

KD_ONLY = {"--T", "--alpha", "--alpha-schedule", "--alpha-end", "--teacher-weights", "--mimic", "--mimic-weight"}


def common(args):
    toks, out, i = args.split(), [], 0
    while i < len(toks):
        if toks[i] in KD_ONLY:
            i += 2
            continue
        out.append(toks[i])
        i += 1
    return " ".join(out)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "bench/results/kd.tsv"
    rows = [l.rstrip("\n").split("\t") for l in open(path)][1:]
    runs = defaultdict(dict)  # (arm, args) -> {seed: acc}
    for name, arm, seed, acc, _val, _secs, args in rows:
        if acc != "FAIL":
            runs[(arm, args)][seed] = float(acc)
    scratch = {args: accs for (arm, args), accs in runs.items() if arm == "scratch"}
    print("| recipe (both arms) | distillation | seeds | scratch (per seed) | KD (per seed) | scratch mean | KD mean | gain |")
    print("|---|---|---:|---|---|---:|---:|---:|")
    for (arm, args), accs in runs.items():
        if arm != "kd":
            continue
        base = common(args)
        kd_opts = args[len(base):].strip() if args.startswith(base) else " ".join(t for t in args.split() if t not in base.split())
        sc = scratch.get(base, {})
        seeds = sorted(set(accs) & set(sc))
        if not seeds:
            print(f"| `{base}` | `{kd_opts}` | 0 | – | {', '.join(f'{accs[s]:.2f}' for s in sorted(accs))} | – | – | – |")
            continue
        ms = sum(sc[s] for s in seeds) / len(seeds)
        mk = sum(accs[s] for s in seeds) / len(seeds)
        print(
            f"| `{base}` | `{kd_opts}` | {len(seeds)} | {', '.join(f'{sc[s]:.2f}' for s in seeds)} "
            f"| {', '.join(f'{accs[s]:.2f}' for s in seeds)} | {ms:.2f} | {mk:.2f} | **{mk - ms:+.2f}** |"
        )


if __name__ == "__main__":
    main()
