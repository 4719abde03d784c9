"""The DenseNAS search (the paper's Sec. 3.4 and run_apis/search.py), on one process or
under torch.distributed.

Each epoch, as the paper's code orders it:

1. from ``arch_update_epoch`` on, architecture steps on the validation split: two ops
   per mixed op sampled from softmax(alpha), loss = cross-entropy + the cost term of the
   chained cost of the sampled path (``densenas.search.loss``), Adam on alpha and beta,
   then the sampled alphas rescaled so the unsampled ops keep their probability;
2. weight steps on the train split: one op per mixed op, uniformly during the warm-up
   and from softmax(alpha) after it; SGD with momentum, cosine learning rate;
3. validation on the held-out split with every op (BN in training mode, as the paper);
4. the epoch's summary (expected and derived cost side by side, alpha entropies, the
   derived network's op mix), arch_params.json, arch.json, history.json, TensorBoard
   scalars and, last, checkpoint.pt.

The supernet and the cost tables are built once; a step changes only index tensors.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from densenas import runtime as rt
from densenas.choices import CostType
from densenas.console import log
from densenas.errors import DensenasError
from densenas.fileio import write_json
from densenas.search.checkpoint import load_checkpoint, save_checkpoint
from densenas.search.diagnostics import (RANDOM_PATHS, OpMix, at_chance, max_entropy, mean_entropy, op_mix, path_correct,
                                         supernet_path_correct)
from densenas.search.loss import CostObjective, choice_log_prob
from densenas.search.optim import arch_optimizer, cosine_schedule, rescale_sampled_, weight_optimizer
from densenas.search.report import ProgressScope, cost_text, epoch_report
from densenas.search.sampler import NonFiniteError, PathSampler, SampledPath
from densenas.search.settings import CHECKPOINT, RunSettings, SearchOptions, resolve

RUN_SCHEMA = "densenas.search_run/1"
HISTORY_SCHEMA = "densenas.search_history/1"


@dataclass
class RunFiles:
    """The files of a search's run directory."""

    root: Path

    def __post_init__(self) -> None:
        self.run, self.arch, self.arch_params, self.history = (
            self.root / f"{name}.json" for name in ("run", "arch", "arch_params", "history"))
        self.checkpoint, self.tensorboard = self.root / CHECKPOINT, self.root / "tensorboard"


@dataclass
class SearchResult:
    """What a finished search produced (every rank returns one; rank 0 wrote the files)."""

    files: RunFiles
    arch: Any  # densenas.arch.Arch
    summary: dict[str, Any]
    settings: RunSettings
    is_main: bool = True
    epochs_done: int = 0  # epochs finished, including those before a resume
    wall_s: float = 0.0
    rank_check: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        s = self.summary
        return {
            "run_dir": str(self.files.root),
            "arch": str(self.files.arch),
            "arch_params": str(self.files.arch_params),
            "checkpoint": str(self.files.checkpoint),
            "history": str(self.files.history),
            "tensorboard": str(self.files.tensorboard),
            "latency_ms": s.get("derived_latency_ms"),
            "expected_latency_ms": s.get("expected_latency_ms"),
            "target_latency_ms": self.settings.target_latency,
            "cost_type": self.settings.cost,
            "expected_cost": s.get("expected_cost"),
            "derived_cost": s.get("derived_cost"),
            "cost_unit": s.get("cost_unit"),
            "macs": s.get("macs"),
            "params": s.get("params"),
            "top1": s.get("val_top1"),
            "epochs": self.settings.epochs,
            "epochs_done": self.epochs_done,
            "wall_s": round(self.wall_s, 3),
            "world_size": self.settings.world_size,
            "rank_check": self.rank_check,
            "net_config": self.arch.to_dict()["net_config"],
        }


def run_search(options: SearchOptions, *, progress: bool = True) -> SearchResult:
    """Resolve the options, join the process group if torchrun started us, and search."""
    with rt.process_group(options.device) as ctx:
        settings, run_dir, error = None, None, None
        if ctx.is_main:
            try:
                settings, run_dir = resolve(options, world_size=ctx.world_size)
            except DensenasError as exc:
                error = str(exc)
        # rank 0 resolves (its clock names the run directory); the others take its answer
        settings, run_dir, error = rt.broadcast_object(ctx, (settings, run_dir, error))
        if error is not None:
            raise DensenasError(error)
        engine = SearchEngine(settings, run_dir, ctx, resume=options.resume,
                              workers=options.workers, progress=progress)
        return engine.run()


def check(options: SearchOptions, *, world_size: int) -> tuple[RunSettings, Path]:
    """Everything that can fail before training, in this process: the settings, the LUT
    against every op the space needs, the data. ``--nproc`` calls it before launching."""
    from densenas.cost.tables import CostTables
    from densenas.data import describe_data
    from densenas.lut.store import load_lut
    from densenas.space.graph import SearchSpace

    settings, run_dir = resolve(options, world_size=world_size)
    space = SearchSpace.load(settings.space_path)
    num_classes = describe_data(settings.data, image_size=space.input_size, seed=settings.seed)["num_classes"]
    lut = load_lut(settings.lut_path) if settings.lut_path else None
    CostTables.build(space, settings.cost, lut=lut, num_classes=num_classes)
    return settings, run_dir


class SearchEngine:
    """One search: the supernet, both optimizers, the data and the cost tables, built once."""

    def __init__(self, settings: RunSettings, run_dir: Path, ctx: rt.DistContext, *, resume: bool = False,
                 workers: int | None = None, progress: bool = True) -> None:
        from densenas.cost.tables import CostTables
        from densenas.data import build_loaders
        from densenas.lut.store import load_lut
        from densenas.nets import SuperNet
        from densenas.space.graph import SearchSpace

        self.settings = settings
        self.ctx = ctx
        self.files = RunFiles(run_dir)
        self.device = ctx.device
        self.show = progress and ctx.is_main
        self.space = SearchSpace.load(settings.space_path)
        self.cfg = settings.search
        self.lut = load_lut(settings.lut_path) if settings.lut_path else None
        rt.seed_everything(settings.seed)
        self.data = build_loaders(settings.data, image_size=self.space.input_size, batch_size=settings.batch_size,
                                  seed=settings.seed, workers=workers, distributed=ctx.enabled,
                                  device=str(self.device))
        self.num_classes = self.data.num_classes
        # the LUT is checked against every op here, before any training
        self.cost_tables = CostTables.build(self.space, settings.cost, lut=self.lut,
                                            num_classes=self.num_classes).to(self.device)
        if settings.cost == CostType.LATENCY:
            self.latency_tables = self.cost_tables
        elif self.lut is not None:
            self.latency_tables = CostTables.build(self.space, CostType.LATENCY, lut=self.lut,
                                                   num_classes=self.num_classes).to(self.device)
        else:
            self.latency_tables = None
        self.net = rt.to_device(SuperNet(self.space, self.num_classes, bn_momentum=self.cfg.bn_momentum,
                                         bn_eps=self.cfg.bn_eps, weights=self.cfg.weights), self.device)
        self.arch_params = self.net.arch_parameters()
        self.weight_params = self.net.weight_parameters()
        arch_ids = {id(p) for p in self.arch_params}
        # only the sampled ops run in a step, so DDP must look for the unused ones; the
        # architecture parameters are updated outside its forward and averaged here
        self.model = rt.wrap_ddp(self.net, ctx, find_unused_parameters=True,
                                 ignore=[n for n, p in self.net.named_parameters() if id(p) in arch_ids])
        self.wopt = weight_optimizer(self.weight_params, self.cfg)
        self.aopt = arch_optimizer(self.net.alpha_parameters(), self.net.beta_parameters(), self.cfg)
        self.weight_steps = rt.all_min(ctx, _cap(len(self.data.train), settings.max_steps))
        self.arch_steps = rt.all_min(ctx, _cap(len(self.data.val), settings.max_steps))
        self.val_steps = _cap(len(self.data.val), settings.max_steps)
        if self.weight_steps < 1 or self.arch_steps < 1:
            raise DensenasError(f"--data {settings.data}: too few images for one batch of {settings.batch_size} per process")
        self.sched = cosine_schedule(self.wopt, settings.epochs * self.weight_steps, self.cfg.weight.min_lr)
        self.sampler = PathSampler(settings.seed)
        self.objective = CostObjective(settings.sub_loss_factor, self.cfg.cost.log_base, settings.target_latency)
        self.history: list[dict[str, Any]] = []
        self.initial: dict[str, Any] = {}
        self.start_epoch = 0
        if resume and self.files.checkpoint.exists():
            self._load(self.files.checkpoint)
        elif resume and ctx.is_main:
            log.warning(f"{self.files.checkpoint} does not exist; starting the search from the beginning")
        # architecture parameters are not DDP's: rank 0's values are everyone's, at start and on resume
        rt.broadcast_(ctx, self.arch_params)

    # -- setup ---------------------------------------------------------------------------------

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path)
        try:
            rt.load_state(self.net, state["model"], source=str(path), target="this search")
            self.wopt.load_state_dict(state["weight_optimizer"])
            self.aopt.load_state_dict(state["arch_optimizer"])
            self.sched.load_state_dict(state["scheduler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise DensenasError(f"{path}: does not fit this search ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        rt.restore_rng(state["rng"])
        self.sampler.load_state(state["sampler"])
        self.history = list(state["history"])
        self.initial = dict(state.get("initial", {}))
        self.start_epoch = int(state["epoch"]) + 1

    def _checkpoint(self, epoch: int) -> None:
        save_checkpoint(self.files.checkpoint, {
            "epoch": epoch,
            "settings": self.settings.model_dump(),
            "model": self.net.state_dict(),
            "weight_optimizer": self.wopt.state_dict(),
            "arch_optimizer": self.aopt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": rt.capture_rng(),
            "sampler": self.sampler.state(),
            "history": self.history,
            "initial": self.initial,
        })

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> SearchResult:
        t0 = time.perf_counter()
        s = self.settings
        writer = None
        if self.ctx.is_main:
            self.files.root.mkdir(parents=True, exist_ok=True)
            if self.start_epoch == 0:
                self.initial = self._summary()
                write_json(self.files.run, self._run_record())
            self._header()
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops what a killed run logged for the epoch being redone
            writer = SummaryWriter(str(self.files.tensorboard), purge_step=self.start_epoch)
        rank_check: dict[str, Any] = {}
        try:
            for epoch in range(self.start_epoch, s.epochs):
                e0 = time.perf_counter()
                self.data.set_epoch(epoch)
                searching = epoch >= s.arch_update_epoch
                arch = self._arch_epoch(epoch) if searching else {}
                train = self._weight_epoch(epoch, searching)
                val = self._validate(epoch) if epoch >= self.cfg.val_start_epoch else {}
                rank_check = self._rank_check()
                record = {"epoch": epoch, "searching": searching, **train, **arch, **val, **rank_check}
                if self.ctx.is_main:
                    record.update(self._summary())
                    record["seconds"] = time.perf_counter() - e0
                    self.history.append(record)
                    self._write_epoch(epoch, record, writer)
                    epoch_report(record, s.epochs, s.cost)
                    if epoch >= s.arch_update_epoch and at_chance(record.get("argmax_path_val_top1"), self.num_classes):
                        log.warning(f"the supernet is at chance after the warm-up (its argmax path {record['argmax_path_val_top1']:.1f}%, "
                                    f"chance {100 / self.num_classes:.0f}%): its accuracy gradients are noise and the search "
                                    "follows the cost term alone (more epochs, or search.weights: shared in the space)")
        except NonFiniteError as exc:
            raise self._stopped(exc) from None
        finally:
            if writer is not None:
                writer.close()
        last = self.history[-1] if self.history else {}
        arch = self.derive()[0]
        return SearchResult(self.files, arch, last, s, self.ctx.is_main, len(self.history),
                            time.perf_counter() - t0, rank_check)

    def _arch_epoch(self, epoch: int) -> dict[str, float]:
        self.net.train()
        meters = _Meters()
        with self._progress(f"epoch {epoch} arch", self.arch_steps) as tick:
            for step, (x, y) in _batches(self.data.val, self.arch_steps):
                meters.add(self.arch_step(x, y, epoch, step))
                tick(f"loss {meters.mean('loss'):.3f} acc {meters.acc():.1f}% cost {meters.mean('cost'):.4g}")
        return {"arch_loss": meters.mean("loss"), "arch_top1": meters.acc(), "arch_cost_term": meters.mean("term"),
                "arch_sampled_cost": meters.mean("cost"), "arch_steps": meters.steps}

    def arch_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> dict[str, float]:
        """One architecture step on a validation batch:
        two sampled ops per mixed op, CE + cost term, averaged gradients, Adam, rescale."""
        net = self.net
        _requires_grad(self.arch_params, True)
        x, y = rt.images_to(x, self.device), y.to(self.device, non_blocking=True)
        where = f" (epoch {epoch}, arch step {step})"
        self.sampler.reseed(epoch, "arch", step)
        path = self.sampler.sample(net.head_alphas, net.stack_alphas, 2, self.cfg.sample_policy,
                                   where=where).to(self.device)
        old_head = [a.detach().gather(-1, i).clone() for a, i in zip(net.head_alphas, path.head)]
        old_stack = [a.detach().gather(-1, i).clone() for a, i in zip(net.stack_alphas, path.stack)]
        logits = net(x, path.head, path.stack)
        cost = self._chained(self.cost_tables, path)
        if self.objective.target is None:
            loss, term = self.objective.loss(logits, y, cost)
        else:
            choice, derived = self._derived_choice()
            log_prob = choice_log_prob(self.space, net.betas, net.head_alphas, net.stack_alphas, choice)
            loss, term = self.objective.loss(logits, y, cost, derived, log_prob)
        values = self._step_values(loss, logits, y, where, extra=(float(term.detach()), float(cost.detach())))
        # weights are not in `inputs`: no weight gradients are computed, no DDP hook fires
        grads = torch.autograd.grad(loss, self.arch_params, allow_unused=True)
        for p, g in zip(self.arch_params, grads):
            p.grad = g
        rt.average_grads_(self.ctx, self.arch_params)
        self.aopt.step()
        self.aopt.zero_grad(set_to_none=True)
        rescale_sampled_(net.head_alphas, old_head, path.head)
        rescale_sampled_(net.stack_alphas, old_stack, path.stack)
        _requires_grad(self.arch_params, False)
        return values

    def _weight_epoch(self, epoch: int, searching: bool) -> dict[str, float]:
        self.net.train()
        policy = self.cfg.sample_policy if searching else "uniform"
        lr = self.wopt.param_groups[0]["lr"]
        meters = _Meters()
        with self._progress(f"epoch {epoch} weights", self.weight_steps) as tick:
            for step, (x, y) in _batches(self.data.train, self.weight_steps):
                meters.add(self.weight_step(x, y, epoch, step, policy))
                tick(f"loss {meters.mean('loss'):.3f} acc {meters.acc():.1f}% lr {self.wopt.param_groups[0]['lr']:.4g}")
        return {"lr": lr, "train_loss": meters.mean("loss"), "train_top1": meters.acc(), "weight_steps": meters.steps}

    def weight_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int, policy: str) -> dict[str, float]:
        """One weight step on a train batch: one sampled op per mixed op (on one sampled
        route of blocks where the space asks for it), SGD, the LR schedule (the arch
        parameters take no part in the backward pass)."""
        net = self.net
        _requires_grad(self.arch_params, False)
        x, y = rt.images_to(x, self.device), y.to(self.device, non_blocking=True)
        where = f" (epoch {epoch}, weight step {step})"
        self.sampler.reseed(epoch, "weights", step)
        path = self.sampler.sample(net.head_alphas, net.stack_alphas, self.cfg.weight_sample_num, policy,
                                   where=where).to(self.device)
        route = None
        if self.cfg.routes == "sampled":
            route = self.sampler.route(self.space, net.branch_weights(), policy)
            path = path.skips_last(self.space.stack_skip_ids)
        self.wopt.zero_grad(set_to_none=True)
        logits = self.model(x, path.head, path.stack, route)
        loss = F.cross_entropy(logits, y)
        values = self._step_values(loss, logits, y, where)
        loss.backward()
        self.wopt.step()
        self.sched.step()
        return values

    @torch.no_grad()
    def _validate(self, epoch: int) -> dict[str, float]:
        net = self.net
        net.train()  # the paper validates the supernet with batch statistics
        head, stack = net.all_indices()
        loss_sum = correct1 = correct5 = count = 0.0
        with self._progress(f"epoch {epoch} val", self.val_steps) as tick:
            for _, (x, y) in _batches(self.data.val, self.val_steps):
                x, y = rt.images_to(x, self.device), y.to(self.device, non_blocking=True)
                logits = net(x, head, stack)
                loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                top = logits.topk(min(5, logits.shape[1]), dim=1).indices
                correct1 += float((top[:, 0] == y).sum())
                correct5 += float((top == y[:, None]).any(dim=1).sum())
                count += y.numel()
                tick(f"acc {100 * correct1 / count:.1f}%")
        batches = [b for _, b in _batches(self.data.val, self.val_steps)]
        derived = path_correct(net, self.derive()[0], self.space, batches, self.device)
        argmax = ([a.argmax(-1, keepdim=True) for a in net.head_alphas],
                  [a.argmax(-1, keepdim=True) for a in net.stack_alphas])
        paths = [supernet_path_correct(net, head, stack, batches, self.device)
                 for head, stack in [argmax, *self._random_paths()]]
        sums = rt.all_sum(self.ctx, [loss_sum, correct1, correct5, count, *derived, *(v for p in paths for v in p)])
        loss_sum, correct1, correct5, count = sums[:4]
        if not math.isfinite(loss_sum):
            self._non_finite(loss_sum, f" (epoch {epoch}, validation)")
        path_top1 = [100 * c / n for c, n in zip(sums[6::2], sums[7::2])]
        return {"val_loss": loss_sum / count, "val_top1": 100 * correct1 / count, "val_top5": 100 * correct5 / count,
                "derived_val_top1": 100 * sums[4] / sums[5], "argmax_path_val_top1": path_top1[0],
                "random_paths_val_top1": path_top1[1:],
                "random_paths_val_top1_mean": sum(path_top1[1:]) / len(path_top1[1:])}

    def _random_paths(self) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """The same few uniformly drawn single paths every epoch (from their own generator,
        seeded by the run's seed), so their accuracy is comparable from epoch to epoch."""
        if not hasattr(self, "_paths"):
            sampler = PathSampler(self.settings.seed)
            self._paths = []
            for i in range(RANDOM_PATHS):
                sampler.reseed(0, "diagnostics", i)
                p = sampler.sample(self.net.head_alphas, self.net.stack_alphas, 1, "uniform").to(self.device)
                self._paths.append((p.head, p.stack))
        return self._paths

    def _step_values(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, where: str,
                     extra: tuple[float, ...] = ()) -> dict[str, float]:
        """This step's loss, summed over ranks before anyone steps: a non-finite loss on any
        rank stops every rank at the same step (no rank waits forever in a collective)."""
        n = y.numel()
        correct = float((logits.detach().argmax(1) == y).sum())
        local = float(loss.detach())
        finite = 1.0 if math.isfinite(local) else 0.0
        sums = rt.all_sum(self.ctx, [local * n if finite else 0.0, correct, n, 1.0 - finite, *extra])
        if sums[3] > 0:
            self._non_finite(local if not finite else float("nan"), where)
        w = self.ctx.world_size
        out = {"loss": sums[0] / sums[2], "correct": sums[1], "n": sums[2]}
        if extra:
            out["term"], out["cost"] = sums[4] / w, sums[5] / w
        return out

    def _non_finite(self, value: float, where: str) -> None:
        raise NonFiniteError(f"the loss became {value}{where}")

    def _stopped(self, exc: NonFiniteError) -> DensenasError:
        """The one-line message for a diverged search: what happened, where, and what is safe."""
        ck = self.files.checkpoint
        if ck.exists() and self.history:
            kept = f"the last good checkpoint {ck} (after epoch {self.history[-1]['epoch'] + 1}) is intact"
        else:
            kept = "no checkpoint had been written yet"
        return DensenasError(
            f"search stopped: {exc}; {kept}; lower the learning rates in the space's search section "
            f"({self.settings.space_path}) and start a new search"
        )

    # -- summaries -----------------------------------------------------------------------------------

    def _chained(self, tables, path: SampledPath | None = None) -> torch.Tensor:
        from densenas.cost import chained_cost

        net = self.net
        head = None if path is None else path.head
        stack = None if path is None else path.stack
        return chained_cost(self.space, tables, net.betas, net.head_alphas, net.stack_alphas, head, stack)

    def _derived_choice(self):
        """The network derivation gives from the current parameters, and its cost."""
        from densenas.arch_params import ArchParams
        from densenas.derive import choice_cost, viterbi_choice

        choice = viterbi_choice(self.space, ArchParams.from_supernet(self.net))
        return choice, choice_cost(self.space, self.cost_tables, choice)

    def derive(self):
        from densenas.arch_params import ArchParams
        from densenas.derive import derive_viterbi

        params = ArchParams.from_supernet(self.net)
        return derive_viterbi(self.space, params, num_classes=self.num_classes), params

    @torch.no_grad()
    def _summary(self) -> dict[str, Any]:
        """Expected and derived cost, entropies and the derived network's op mix."""
        from densenas.cost import arch_cost
        from densenas.counting import count_macs, count_params
        from densenas.derive import arch_table_cost
        from densenas.nets import build_derived

        net, space = self.net, self.space
        arch, params = self.derive()
        derived_net = build_derived(arch)
        mix: OpMix = op_mix(arch, space, self.cost_tables)
        out: dict[str, Any] = {
            "cost_unit": self.cost_tables.unit,
            "expected_cost": float(self._chained(self.cost_tables)),
            "derived_cost": float(arch_table_cost(space, self.cost_tables, arch)),
            "expected_latency_ms": None,
            "derived_latency_ms": None,
            "head_entropy": mean_entropy(net.head_alphas),
            "stack_entropy": mean_entropy(net.stack_alphas),
            "beta_entropy": mean_entropy([b[None] for b in net.betas], space.softmax_temp),
            "head_entropy_max": max_entropy(len(space.head_primitives)),
            "stack_entropy_max": max_entropy(len(space.stack_primitives)),
            "macs": count_macs(derived_net, (1, 3, space.input_size, space.input_size)),
            "params": count_params(derived_net),
            "derived_blocks": [b.block_id for b in arch.blocks],
            "op_mix": mix.to_dict(),
            "op_mix_text": mix.describe(),
            "collapsed": mix.collapsed,
            "net_config": arch.to_dict()["net_config"],
        }
        if self.latency_tables is not None and self.lut is not None:
            out["expected_latency_ms"] = float(self._chained(self.latency_tables))
            out["derived_latency_ms"] = float(arch_cost(arch, self.lut).total)
        self._last_derived = (arch, params)
        return out

    def _rank_check(self) -> dict[str, Any]:
        """Replicated state really is replicated: max |rank - rank 0| of the architecture
        parameters (exact) and of per-tensor weight checksums. A drift is an error."""
        if not self.ctx.enabled:
            return {}
        arch_diff = rt.max_rank_difference(self.ctx, self.arch_params)
        sums = torch.stack([p.detach().double().sum() for p in self.weight_params])
        weight_diff = rt.max_rank_difference(self.ctx, [sums])
        if arch_diff > 0 or weight_diff > 1e-6 * max(1.0, float(sums.abs().max())):
            raise DensenasError(
                f"ranks disagree after an epoch (architecture parameters differ by {arch_diff:.3g}, "
                f"weight checksums by {weight_diff:.3g}); the ranks did not see the same updates"
            )
        return {"rank_arch_max_diff": arch_diff, "rank_weight_checksum_max_diff": weight_diff,
                "world_size": self.ctx.world_size}

    # -- files and output ------------------------------------------------------------------------------

    def _run_record(self) -> dict[str, Any]:
        import densenas

        lut = None
        if self.lut is not None:
            lut = {"backend": self.lut.backend,
                   "device": self.lut.device, "lut_version": self.lut.lut_version, "batch": self.lut.batch,
                   "precision": self.lut.precision, "overhead_ms": self.lut.overhead_ms}
        return {
            "schema": RUN_SCHEMA,
            "space": self.settings.space_path,  # strings, as `densenas derive --run` reads them
            "space_name": self.space.name,
            "lut": self.settings.lut_path,
            "lut_name": self.settings.lut,
            "lut_info": lut,
            "data": self.data.name,
            "num_classes": self.num_classes,
            "seed": self.settings.seed,
            "world_size": self.ctx.world_size,
            "device": str(self.device),
            "settings": self.settings.model_dump(),
            "steps_per_epoch": {"weights": self.weight_steps, "arch": self.arch_steps, "val": self.val_steps},
            "initial": self.initial,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": {"densenas": getattr(densenas, "__version__", "unknown"), "torch": torch.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
            "notes": "the cost term is one chained cost per step, not per sample: it does not scale with the batch size",
        }

    def _write_epoch(self, epoch: int, record: dict[str, Any], writer) -> None:
        arch, params = self._last_derived
        params.save(self.files.arch_params)
        arch.save(self.files.arch)
        write_json(self.files.history, {"schema": HISTORY_SCHEMA, "initial": self.initial, "epochs": self.history})
        for tag, key in (("loss/train", "train_loss"), ("loss/arch", "arch_loss"), ("loss/val", "val_loss"),
                         ("acc/train", "train_top1"), ("acc/arch", "arch_top1"), ("acc/val", "val_top1"),
                         ("acc/val_derived", "derived_val_top1"), ("acc/val_argmax_path", "argmax_path_val_top1"),
                         ("acc/val_random_paths", "random_paths_val_top1_mean"),
                         ("latency_ms/expected", "expected_latency_ms"), ("latency_ms/derived", "derived_latency_ms"),
                         ("cost/expected", "expected_cost"), ("cost/derived", "derived_cost"),
                         ("cost/arch_term", "arch_cost_term"), ("entropy/head", "head_entropy"),
                         ("entropy/stack", "stack_entropy"), ("entropy/beta", "beta_entropy"), ("lr", "lr"),
                         ("derived/macs", "macs"), ("derived/params", "params")):
            value = record.get(key)
            if value is not None:
                writer.add_scalar(tag, value, epoch)
        writer.add_scalar("derived/skip_share", record["op_mix"]["skip_share"], epoch)
        writer.flush()
        self._checkpoint(epoch)  # last: a kill before this line redoes the epoch

    def _header(self) -> None:
        s = self.settings
        lut = f"LUT {s.lut}" if s.lut else "no LUT"
        target = f", target {s.target_latency:g} ms" if s.target_latency else ""
        dist = f", {self.ctx.world_size} processes ({self.ctx.backend})" if self.ctx.enabled else ""
        what = "resuming" if self.start_epoch else "searching"
        log.info(f"{what} space {s.space} on {self.data.name} ({self.num_classes} classes), {lut}, "
                 f"cost {s.cost} x {s.sub_loss_factor:g}{target}, {s.epochs} epochs "
                 f"(arch updates from epoch {s.arch_update_epoch}), batch {s.batch_size}, seed {s.seed}, "
                 f"device {self.device}{dist}")
        log.info(f"run directory: {self.files.root}" + (f" (from epoch {self.start_epoch + 1})" if self.start_epoch else ""))
        if self.start_epoch == 0:
            log.info(f"initial: {cost_text(self.initial, s.cost)}")

    def _progress(self, label: str, total: int) -> ProgressScope:
        return ProgressScope(label, total, enabled=self.show)


# -- small helpers ---------------------------------------------------------------------------------------


class _Meters:
    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0

    def add(self, values: dict[str, float]) -> None:
        self.steps += 1
        n = values["n"]
        for k, v in values.items():
            weight = n if k == "loss" else 1.0
            self.sums[k] = self.sums.get(k, 0.0) + v * weight

    def mean(self, key: str) -> float:
        if key == "loss":
            return self.sums.get("loss", 0.0) / max(self.sums.get("n", 0.0), 1.0)
        return self.sums.get(key, 0.0) / max(self.steps, 1)

    def acc(self) -> float:
        return 100 * self.sums.get("correct", 0.0) / max(self.sums.get("n", 0.0), 1.0)


def _batches(loader, limit: int) -> Iterator[tuple[int, Any]]:
    for step, batch in enumerate(loader):
        if step >= limit:
            break
        yield step, batch


def _cap(n: int, limit: int | None) -> int:
    return n if limit is None else min(n, limit)


def _requires_grad(params, flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)
