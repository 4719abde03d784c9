"""Does the search find a better network than chance at the same latency?

    python benchmarks/search_vs_random.py [--data digits-clutter] [--search-epochs 36] [--arch-update-epoch 8]
        [--train-epochs 10] [--random 10] [--seeds 0 1 2] [--tolerance 0.03] [--device cpu] [--jobs 2]

1. searches the tiny space on ``--data`` (its shipped CPU LUT, the space's settings but
   36 epochs with architecture steps from epoch 8, three times the space's own);
2. draws random networks of the space (seeded) whose predicted latency on the same LUT is
   within ``--tolerance`` of the searched network's, keeping the first ``--random``;
3. scores every one inside the final supernet (inherited weights, batch statistics): the
   supernet's own ranking; and again after ``--tune-steps`` SGD steps from those weights,
   beside the same steps from scratch (what the inherited weights add);
4. retrains the searched network and each random one from scratch with the same seeds
   (paired: seed s of the searched network against seed s of each random one), under the
   built-in data's recipe with ``--train-epochs`` epochs;
5. reports the searched network's rank by mean accuracy, a paired sign test
   (``scipy.stats.binomtest``, one-sided: searched better), and Kendall's tau between the
   supernet's accuracies and the retrained ones, beside the retraining's own agreement
   (the tau of each seed's ranking against the mean of the other seeds': how well any
   predictor can be seen to rank these networks) and the networks' parameter and MAC
   counts as rankers that train nothing; writes a section of
   benchmarks/RESULTS.md, and with ``--save`` every figure as JSON.

With ``--jobs 2`` on 2 CPU cores the 33 retrainings take about 16 minutes and the
36-epoch search about as long again; ``--search-dir`` keeps the search for a rerun. On a
GPU the same runs on real data with ``--data PATH`` (an ImageFolder with train/ and val/,
e.g. CIFAR-10 exported as images, or ImageNet-100 packed with ``densenas data
pack-lmdb``) and ``--device cuda``, with ``--space`` the space for that input size and
more ``--search-epochs`` and ``--train-epochs``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import write_section  # noqa: E402

SECTION = "## Searched network against random networks at its latency (`benchmarks/search_vs_random.py`)"


def _search(args, scratch: Path):
    """The search: into ``--search-dir`` when given, continuing (or, when it finished,
    just reading) the search already there, else into a scratch folder."""
    from densenas.search import SearchOptions
    from densenas.search.engine import run_search
    from densenas.search.settings import CHECKPOINT

    out = args.search_dir or scratch
    options = SearchOptions(space=args.space, lut=args.lut, data=args.data, epochs=args.search_epochs,
                            arch_update_epoch=args.arch_update_epoch, seed=args.search_seed, out=str(out),
                            device=args.device, max_steps=args.max_steps, resume=(out / CHECKPOINT).is_file())
    return run_search(options, progress=False)


def _random_at(space, lut, latency: float, n: int, tolerance: float, seed: int, exclude: str):
    """The first ``n`` distinct random networks predicted within ``tolerance`` of ``latency``."""
    from densenas.cost import arch_cost
    from densenas.lut.networks import sample_archs

    picked, tried = [], 0
    for arch in sample_archs(space, 20000, seed):
        tried += 1
        ms = float(arch_cost(arch, lut).total)
        if abs(ms / latency - 1) <= tolerance and arch.to_dict()["net_config"] != exclude:
            picked.append((arch, ms))
            if len(picked) == n:
                break
    return picked, tried


TUNE_LR, TUNE_MOMENTUM = 0.01, 0.9


def _sgd_steps(net: torch.nn.Module, batches, device: torch.device) -> torch.nn.Module:
    """``net`` after one plain SGD step on each of ``batches``."""
    import torch.nn.functional as F

    from densenas import runtime as rt

    opt = torch.optim.SGD(net.parameters(), lr=TUNE_LR, momentum=TUNE_MOMENTUM)
    net.train()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(rt.images_to(x, device)), y.to(device)).backward()
        opt.step()
    return net


def _supernet_scores(result, archs, args) -> dict[str, list[float]]:
    """Each architecture's val accuracy inside the final supernet (its inherited weights,
    batch statistics); with ``--tune-steps`` K also after K SGD steps on the first K
    training batches from those weights, and, as the control, after the same K steps from
    the network's own initialisation: what the inherited weights add to K steps."""
    import itertools

    from densenas import runtime as rt
    from densenas.data import build_loaders
    from densenas.nets import SuperNet, build_derived
    from densenas.search.checkpoint import load_checkpoint
    from densenas.search.diagnostics import batch_stat_correct, inherited_network
    from densenas.space import SearchSpace

    space = SearchSpace.load(result.settings.space_path)
    state = load_checkpoint(result.files.checkpoint)["model"]
    weights = "shared" if any(".shared." in k for k in state) else "independent"
    supernet = SuperNet(space, int(state["classifier.fc.weight"].shape[0]), weights=weights)
    supernet.load_state_dict(state)
    data = build_loaders(args.data, image_size=space.input_size, batch_size=result.settings.batch_size,
                         seed=result.settings.seed)
    val = list(data.val)
    train = list(itertools.islice(itertools.cycle(data.train), args.tune_steps))
    device = torch.device(args.device)

    def top1(net: torch.nn.Module) -> float:
        correct, count = batch_stat_correct(net.train(), val, device)
        return 100 * correct / count

    scores: dict[str, list[float]] = {"inherited": [], "tuned": [], "scratch": []}
    for arch in archs:
        scores["inherited"].append(top1(inherited_network(supernet, arch, space, device)))
        if args.tune_steps:
            torch.manual_seed(0)
            scores["tuned"].append(top1(_sgd_steps(inherited_network(supernet, arch, space, device), train, device)))
            torch.manual_seed(0)
            scores["scratch"].append(top1(_sgd_steps(rt.to_device(build_derived(arch), device), train, device)))
    return scores


def _retrain(path: Path, seed: int, data: str, device: str, epochs: int, threads: int | None) -> float:
    """Retrain the network of ``path`` (arch.json) from scratch with ``seed``; val top-1."""
    from densenas.train.recipe import build_job
    from densenas.train.trainer import train

    if threads:
        torch.set_num_threads(threads)
    job = build_job(arch=path, data=data, run_dir=path.with_name(f"{path.stem}-s{seed}"), device=device,
                    epochs=epochs, seed=seed)
    with contextlib.redirect_stderr(io.StringIO()):  # per-epoch logs of 30-odd runs
        return float(train(job)["top1"])


def _retrain_all(archs, args, tmp: Path) -> list[list[float]]:
    """Every network with every seed; ``--jobs`` runs them in that many processes at once."""
    paths = []
    for i, arch in enumerate(archs):
        paths.append(tmp / f"net{i}.json")
        arch.save(paths[-1])
    runs = [(p, s, args.data, args.device, args.train_epochs, 1 if args.jobs > 1 else None)
            for p in paths for s in args.seeds]
    if args.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            flat = list(pool.map(_retrain, *zip(*runs)))
    else:
        flat = [_retrain(*r) for r in runs]
    k = len(args.seeds)
    return [flat[i * k:(i + 1) * k] for i in range(len(archs))]


def retraining_agreement(acc: list[list[float]]) -> tuple[float | None, float | None]:
    """How far retraining reproduces its own ranking of the networks: (mean Kendall's tau
    of one seed's accuracies against another's over all seed pairs, mean tau of each seed
    against the mean of the others). The yardstick for the supernet's tau: with retraining
    this noisy, no ranking of these networks can be seen to agree with it much better."""
    from itertools import combinations

    from scipy.stats import kendalltau

    k = len(acc[0]) if acc else 0
    if k < 2 or len(acc) < 3:
        return None, None
    column = [[a[s] for a in acc] for s in range(k)]
    pairs = [kendalltau(column[i], column[j]).statistic for i, j in combinations(range(k), 2)]
    rest = [kendalltau(column[s], [statistics.mean(a[t] for t in range(k) if t != s) for a in acc]).statistic
            for s in range(k)]
    return _mean_finite(pairs), _mean_finite(rest)


def _finite(value: float) -> float | None:
    """``value``, or None where it is undefined (a tau over tied accuracies is NaN)."""
    return float(value) if math.isfinite(value) else None


def _mean_finite(values: list[float]) -> float | None:
    """The mean of the defined values."""
    kept = [v for v in map(_finite, values) if v is not None]
    return statistics.mean(kept) if kept else None


def _tau_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _p_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def run(args) -> dict:
    from scipy.stats import binomtest, kendalltau

    from densenas.archinfo import summarize
    from densenas.cost import arch_cost
    from densenas.lut.store import load_lut
    from densenas.space import SearchSpace

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        result = _search(args, tmp / "search")
        space = SearchSpace.load(result.settings.space_path)
        lut = load_lut(result.settings.lut_path)
        searched = result.arch
        latency = float(arch_cost(searched, lut).total)
        history = result.summary
        randoms, tried = _random_at(space, lut, latency, args.random, args.tolerance, args.draw_seed,
                                    searched.to_dict()["net_config"])
        if len(randoms) < 3:
            raise SystemExit(f"only {len(randoms)} of {tried} random networks lie within "
                             f"{100 * args.tolerance:g}% of {latency:.4f} ms; widen --tolerance")
        archs = [searched] + [a for a, _ in randoms]
        scores = _supernet_scores(result, archs, args)
        acc = _retrain_all(archs, args, tmp)
    inherited = scores["inherited"]
    means = [statistics.mean(a) for a in acc]
    rank = 1 + sum(m > means[0] for m in means[1:])
    wins = sum(acc[0][k] > r[k] for r in acc[1:] for k in range(len(args.seeds)))
    losses = sum(acc[0][k] < r[k] for r in acc[1:] for k in range(len(args.seeds)))
    sign = binomtest(wins, wins + losses, 0.5, alternative="greater") if wins + losses else None
    tau = kendalltau(inherited[1:], means[1:])
    extra = {}
    for key in ("tuned", "scratch"):
        if scores[key]:
            t = kendalltau(scores[key][1:], means[1:])
            extra.update({f"{key}_top1": scores[key], f"{key}_tau": _finite(t.statistic), f"{key}_p": _finite(t.pvalue)})
    sizes = [summarize(a) for a in archs]
    for key in ("params", "macs"):  # rankers that train nothing: what the supernet must beat
        values = [int(size[key]) for size in sizes]
        t = kendalltau(values[1:], means[1:])
        extra.update({key: values, f"{key}_tau": _finite(t.statistic), f"{key}_p": _finite(t.pvalue)})
    seed_pairs_tau, seed_vs_rest_tau = retraining_agreement(acc[1:])
    return {
        "args": vars(args), "latency_ms": latency, "search_top1": history.get("val_top1"),
        "search_derived_top1": history.get("derived_val_top1"), "net_config": searched.to_dict()["net_config"],
        "random_latency_ms": [ms for _, ms in randoms], "random_drawn": tried,
        "random_net_configs": [a.to_dict()["net_config"] for a, _ in randoms],
        "inherited_top1": inherited, "retrained_top1": acc, "mean_top1": means, "rank": rank,
        "of": len(archs), "median_random_top1": statistics.median(means[1:]), "wins": wins, "losses": losses,
        "sign_p": None if sign is None else sign.pvalue, "kendall_tau": _finite(tau.statistic),
        "kendall_p": _finite(tau.pvalue), "seed_pairs_tau": seed_pairs_tau, "seed_vs_rest_tau": seed_vs_rest_tau,
        "tune_steps": args.tune_steps, **extra,
        "wall_s": time.perf_counter() - t0, "threads": torch.get_num_threads(),
    }


def markdown(r: dict) -> str:
    a = r["args"]
    seeds = " ".join(str(s) for s in a["seeds"])
    epochs = f" --search-epochs {a['search_epochs']}" if a["search_epochs"] else ""
    search_epochs = f"{a['search_epochs']} epochs" if a["search_epochs"] else "the space's epochs"
    if a.get("arch_update_epoch") is not None:
        epochs += f" --arch-update-epoch {a['arch_update_epoch']}"
    space = "" if a["space"] == "mbv2-tiny" else f" --space {a['space']}"
    lut = "" if a["lut"] is None else f" --lut {a['lut']}"
    cmd = (f"python benchmarks/search_vs_random.py{space}{lut} --data {a['data']}{epochs} "
           f"--train-epochs {a['train_epochs']} --random {a['random']} --seeds {seeds} --jobs {a['jobs']}"
           f"{'' if a.get('tune_steps', 30) == 30 else ' --tune-steps ' + str(a['tune_steps'])}")
    lines = [
        SECTION, "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {a['device']}, {r['threads']} threads; space {a['space']}, "
        f"data `{a['data']}`, search seed {a['search_seed']} ({search_epochs}), "
        f"retraining {a['train_epochs']} epochs under the data's recipe, seeds {seeds}. Command: `{cmd}`.",
        "",
        f"Searched network: predicted {r['latency_ms']:.4f} ms; supernet validation at the end of the search "
        f"{r['search_top1']:.1f}% (all ops), derived path {r['search_derived_top1']:.1f}%. "
        f"`{r['net_config']}`",
        f"Random networks: the first {r['of'] - 1} of {r['random_drawn']} drawn within "
        f"±{100 * a['tolerance']:g}% of that latency (draw seed {a['draw_seed']}).",
        "",
    ]
    steps = r.get("tune_steps") if r.get("tuned_top1") else 0
    extra = f" after {steps} SGD steps: from inherited (from scratch) top-1 % |" if steps else ""
    lines += [
        f"| network | predicted ms | inside the supernet (inherited) top-1 % |{extra} retrained top-1 % per seed | mean |",
        "|---|---:|---:|" + ("---:|" if steps else "") + "---|---:|",
    ]
    lat = [r["latency_ms"], *r["random_latency_ms"]]
    for i, (ms, inh, acc, m) in enumerate(zip(lat, r["inherited_top1"], r["retrained_top1"], r["mean_top1"])):
        name = "**searched**" if i == 0 else f"random {i}"
        tuned = f" {r['tuned_top1'][i]:.1f} ({r['scratch_top1'][i]:.1f}) |" if steps else ""
        lines.append(f"| {name} | {ms:.4f} | {inh:.1f} |{tuned} {', '.join(f'{x:.1f}' for x in acc)} | {m:.2f} |")
    p = "n/a" if r["sign_p"] is None else f"{r['sign_p']:.3g}"
    tau_p = _p_text(r["kendall_p"])
    lines += [
        "",
        f"- Searched network's rank by mean retrained accuracy: **{r['rank']} of {r['of']}**; median random "
        f"network {r['median_random_top1']:.2f}%, searched {r['mean_top1'][0]:.2f}% "
        f"({'beats' if r['mean_top1'][0] > r['median_random_top1'] else 'does not beat'} the median).",
        f"- Paired sign test (searched vs each random network, same seed): {r['wins']} wins, {r['losses']} losses, "
        f"one-sided p = {p}.",
        f"- Kendall's tau, supernet (inherited) accuracy vs retrained mean, random networks: "
        f"**{_tau_text(r['kendall_tau'])}** (p = {tau_p}); retraining against itself: one seed against "
        f"another {_tau_text(r['seed_pairs_tau'])}, one seed against the mean of the others "
        f"{_tau_text(r['seed_vs_rest_tau'])} "
        "(mean tau over seeds).",
        *([f"- Kendall's tau after {steps} SGD steps (lr {TUNE_LR:g}, momentum {TUNE_MOMENTUM:g}, the same "
           f"training batches for every network) from the inherited weights: **{_tau_text(r['tuned_tau'])}** "
           f"(p = {_p_text(r['tuned_p'])}); the same steps from scratch: {_tau_text(r['scratch_tau'])} "
           f"(p = {_p_text(r['scratch_p'])})."] if steps else []),
        *([f"- The networks' sizes as rankers (nothing trained): parameters tau {_tau_text(r['params_tau'])} "
           f"(p = {_p_text(r['params_p'])}), MACs {_tau_text(r['macs_tau'])} (p = {_p_text(r['macs_p'])})."]
          if "params_tau" in r else []),
        f"- Wall time {r['wall_s'] / 60:.1f} min.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="mbv2-tiny")
    ap.add_argument("--lut", default=None, help="default: the space's shipped CPU LUT")
    ap.add_argument("--data", default="digits-clutter", help="digits-clutter, digits, or an image folder / LMDB directory")
    ap.add_argument("--search-epochs", type=int, default=36,
                    help="search epochs (default 36: the space's 12 leave a supernet too weak to rank networks)")
    ap.add_argument("--arch-update-epoch", type=int, default=8,
                    help="first search epoch with architecture steps (default 8)")
    ap.add_argument("--search-seed", type=int, default=1)
    ap.add_argument("--train-epochs", type=int, default=10)
    ap.add_argument("--random", type=int, default=10, help="random networks at the searched latency")
    ap.add_argument("--tolerance", type=float, default=0.03, help="relative latency window")
    ap.add_argument("--draw-seed", type=int, default=0)
    ap.add_argument("--tune-steps", type=int, default=30,
                    help="also score each network after this many SGD steps from its inherited weights, and from "
                         "scratch as the control (0: inherited weights only)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="paired retraining seeds")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="retraining processes at once (one thread each)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads of the search (default: torch's)")
    ap.add_argument("--max-steps", type=int, default=None, help="cap the search's steps per phase (a quick check)")
    ap.add_argument("--search-dir", type=Path, default=None,
                    help="keep the search here; a search already in it is continued, or reused when finished")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--save", type=Path, default=None, help="also write every figure of the run to this JSON file")
    args = ap.parse_args()
    if args.tune_steps < 0:
        ap.error("--tune-steps must be 0 or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    if args.save:
        from densenas.fileio import write_json

        write_json(args.save, {**result, "args": {k: str(v) if isinstance(v, Path) else v
                                                   for k, v in result["args"].items()}})
    text = markdown(result)
    print(text)
    if not args.no_write:
        write_section(text, "search-vs-random", path=args.results)
        print(f"wrote {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
