"""Do two seeds of the same search agree on the architecture? One search per seed (same
space, data, LUT and settings), then, for every pair of seeds: the Pearson correlation of
their op logits (each mixed op's row centred, since a softmax ignores a shift) and of
their path logits, beside the same correlation with the second seed's rows shuffled among
rows of the same size (what agreement by structure alone gives); the share of mixed ops
whose most probable op agrees, beside chance and beside the same with rows shuffled; and
the correlation of the derived networks' op counts. With three seeds or more, all pairs
are also tested together.

    python benchmarks/seed_agreement.py                       # mbv2-tiny, digits, seeds 1 2
    python benchmarks/seed_agreement.py --seeds 1 2 3 --data digits-clutter

Searches run one after another, each with every usable thread (``--runs DIR`` keeps them,
and reuses searches already there); figures go into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import write_section  # noqa: E402
from densenas.profilers.hostinfo import cpu_model  # noqa: E402

SHUFFLES = 2000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="mbv2-tiny")
    p.add_argument("--data", default="digits")
    p.add_argument("--lut", default=None, help="default: the space's shipped CPU LUT")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--epochs", type=int, default=None, help="default: the space's search epochs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", type=Path, default=None,
                   help="keep each seed's search in RUNS/seedN; a search already there is continued, or reused when finished")
    p.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-write", action="store_true", help="print the section; leave RESULTS.md alone")
    args = p.parse_args(argv)
    if len(args.seeds) < 2:
        p.error("--seeds needs at least two seeds")
    return args


def centred_rows(arch_params: dict, kinds: tuple[str, ...]) -> dict[tuple, np.ndarray]:
    """Each choice's logits less their mean, keyed by (kind, block, row); single-choice rows dropped."""
    rows = {}
    for kind in kinds:
        for i, block in enumerate(arch_params[kind]):
            for j, row in enumerate(block if kind != "betas" else [block]):
                r = np.asarray(row, dtype=np.float64)
                if r.size > 1:
                    rows[(kind, i, j)] = r - r.mean()
    return rows


def _shuffle(keys: list, sizes: dict, rng: random.Random) -> dict:
    """Each row key mapped to a random key of a row of the same size."""
    by_size: dict[int, list] = {}
    for k in keys:
        by_size.setdefault(sizes[k], []).append(k)
    mapping = {}
    for group in by_size.values():
        shuffled = group[:]
        rng.shuffle(shuffled)
        mapping.update(zip(group, shuffled))
    return mapping


def agreement(a: dict, b: dict, seed: int) -> dict[str, float]:
    keys = sorted(set(a) & set(b))
    sizes = {k: a[k].size for k in keys}
    x = np.concatenate([a[k] for k in keys])
    r = float(np.corrcoef(x, np.concatenate([b[k] for k in keys]))[0, 1])
    top_a, top_b = {k: a[k].argmax() for k in keys}, {k: b[k].argmax() for k in keys}
    agree = float(np.mean([top_a[k] == top_b[k] for k in keys]))
    rng = random.Random(seed)
    null, null_agree = [], []
    for _ in range(SHUFFLES):
        mapping = _shuffle(keys, sizes, rng)
        null.append(np.corrcoef(x, np.concatenate([b[mapping[k]] for k in keys]))[0, 1])
        null_agree.append(np.mean([top_a[k] == top_b[mapping[k]] for k in keys]))
    null_arr, agree_arr = np.asarray(null), np.asarray(null_agree)
    return {"rows": len(keys), "r": r, "null_mean": float(null_arr.mean()), "null_95": float(np.quantile(null_arr, 0.95)),
            "p": float(np.mean(null_arr >= r)),
            "argmax_agree": agree, "chance": float(np.mean([1.0 / a[k].size for k in keys])),
            # agreement of the most probable ops with rows shuffled: what the ops' overall preferences give
            "argmax_null_mean": float(agree_arr.mean()), "argmax_p": float(np.mean(agree_arr >= agree))}


def pooled_agreement(rows: list[dict], seed: int) -> dict[str, float]:
    """The mean correlation over every pair of seeds, beside the same with every seed but
    the first given its own shuffle of rows (one per seed, so all pairs see the same
    relabelling): one test for all pairs together, which share seeds and so are not
    independent tests."""
    keys = sorted(set.intersection(*(set(r) for r in rows)))
    sizes = {k: rows[0][k].size for k in keys}

    def mean_r(seqs: list[np.ndarray]) -> float:
        return float(np.mean([np.corrcoef(a, b)[0, 1] for a, b in itertools.combinations(seqs, 2)]))

    observed = mean_r([np.concatenate([r[k] for k in keys]) for r in rows])
    rng = random.Random(seed)
    null = []
    for _ in range(SHUFFLES):
        maps = [{k: k for k in keys}] + [_shuffle(keys, sizes, rng) for _ in rows[1:]]
        null.append(mean_r([np.concatenate([r[m[k]] for k in keys]) for r, m in zip(rows, maps)]))
    null_arr = np.asarray(null)
    return {"pairs": len(rows) * (len(rows) - 1) // 2, "r": observed, "null_mean": float(null_arr.mean()),
            "null_95": float(np.quantile(null_arr, 0.95)), "p": float(np.mean(null_arr >= observed))}


def op_counts(arch) -> Counter:
    counts: Counter = Counter()
    for block in arch.blocks:
        counts[str(block.head_op)] += 1
        counts.update(str(op) for op in block.stack_ops)
    return counts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from densenas.search import SearchOptions
    from densenas.search.engine import run_search
    from densenas.search.settings import CHECKPOINT

    started = dt.datetime.now(dt.timezone.utc)
    load_start = os.getloadavg()[0]
    runs = {}
    with tempfile.TemporaryDirectory(prefix="densenas-seeds-") as tmp:
        for seed in args.seeds:
            print(f"searching {args.space} on {args.data}, seed {seed} ...", file=sys.stderr, flush=True)
            out = (args.runs or Path(tmp)) / f"seed{seed}"
            options = SearchOptions(space=args.space, lut=args.lut, data=args.data, epochs=args.epochs, seed=seed,
                                    out=str(out), device=args.device, max_steps=args.max_steps,
                                    resume=(out / CHECKPOINT).is_file())
            result = run_search(options, progress=False)
            params = json.loads(result.files.arch_params.read_text())
            epochs = json.loads(result.files.history.read_text())["epochs"]  # a reused search's own time
            runs[seed] = {"params": params, "arch": result.arch, "val": result.summary.get("val_top1"),
                          "wall_s": sum(e["seconds"] for e in epochs)}
    lines = ["| seeds | op logits: r (shuffled rows: mean, 95th pct; p) | most probable op agrees (chance; shuffled rows, p) "
             "| path logits: r (shuffled: mean, 95th pct) | derived op counts: r |", "|---|---|---|---|---|"]
    for s1, s2 in itertools.combinations(args.seeds, 2):
        p1, p2 = runs[s1]["params"], runs[s2]["params"]
        ops = agreement(centred_rows(p1, ("head_alphas", "stack_alphas")), centred_rows(p2, ("head_alphas", "stack_alphas")), 0)
        paths = agreement(centred_rows(p1, ("betas",)), centred_rows(p2, ("betas",)), 1)
        c1, c2 = op_counts(runs[s1]["arch"]), op_counts(runs[s2]["arch"])
        names = sorted(set(c1) | set(c2))
        mix_r = float(np.corrcoef([c1[n] for n in names], [c2[n] for n in names])[0, 1]) if len(names) > 1 else float("nan")
        lines.append(f"| {s1}, {s2} | {ops['r']:.2f} ({ops['null_mean']:.2f}, {ops['null_95']:.2f}; p {ops['p']:.3f}) "
                     f"| {ops['argmax_agree']:.0%} of {ops['rows']} ({ops['chance']:.0%}; "
                     f"{ops['argmax_null_mean']:.0%}, p {ops['argmax_p']:.3f}) "
                     f"| {paths['r']:.2f} ({paths['null_mean']:.2f}, {paths['null_95']:.2f}) | {mix_r:.2f} |")
    if len(args.seeds) > 2:
        pooled = pooled_agreement([centred_rows(runs[s]["params"], ("head_alphas", "stack_alphas")) for s in args.seeds], 2)
        lines += ["", f"All {pooled['pairs']} pairs together: mean op-logit r {pooled['r']:.2f} (every seed's rows shuffled: "
                      f"mean {pooled['null_mean']:.2f}, 95th pct {pooled['null_95']:.2f}; p {pooled['p']:.4f})."]
    seeds_line = "; ".join(f"seed {s}: supernet val top-1 {r['val']:.1f}%, {r['wall_s']:.0f} s" for s, r in runs.items())
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join(lines + [
        "",
        f"{started:%Y-%m-%d %H:%M} UTC on {cpu_model()} ({platform.machine()}, {os.cpu_count()} CPUs), "
        f"load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end; space {args.space}, data {args.data}. "
        f"{seeds_line}.",
        "",
        f"Command: `{' '.join(['python benchmarks/seed_agreement.py', *([argv_text] if argv_text else [])])}`",
    ])
    print(text)
    if not args.no_write:
        write_section(text, "seed-agreement", title="Two seeds of the same search (`benchmarks/seed_agreement.py`)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
