"""Retraining: a searched network (or a torchvision reference model) trained from scratch
under one recipe, with a checkpoint every epoch and a resume that continues exactly.

A run directory holds ``checkpoint.pt`` (the last finished epoch: weights, optimiser,
RNG states, history), ``best.pt`` and, at the end, ``weights.pt`` (``densenas.weights/1``),
plus ``recipe.yaml``, ``metrics.json`` and TensorBoard events under ``tb/``. Batch order is
fixed by (seed, epoch) and the augmentation by the batch's images, so after a kill the
resumed run computes what the uninterrupted one would have. Under torchrun every rank
trains its shard (DDP; gloo on CPU, NCCL on GPU) and only rank 0 writes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from densenas import runtime as rt
from densenas.console import err, log
from densenas.errors import DensenasError
from densenas.fileio import torch_save, write_json, write_text
from densenas.train.evaluate import (
    CHECKPOINT_SCHEMA,
    CHECKPOINT_SCHEMAS,
    EvalResult,
    NetworkSpec,
    accuracy_counts,
    build_network,
    check_runs,
    data_name,
    evaluate,
    logits_of,
    network_spec,
    resolve_device,
    save_weights,
    weights_record,
)
from densenas.train.recipe import TrainJob, default_run_dir, lr_at

CHECK_EVERY = 20  # steps between NaN/inf checks (each one waits for the device)


class TrainingDiverged(DensenasError):
    """The loss went NaN or infinite; the last checkpoint on disk is left as it was."""


class Trainer:
    """Owns the model, optimiser, data and run directory of one retraining run."""

    def __init__(self, job: TrainJob, ctx: rt.DistContext | None = None) -> None:
        from densenas.data import build_loaders

        self.job = job
        self.recipe = recipe = job.recipe
        self.dist = ctx or rt.DistContext(device=resolve_device(job.device))
        self.device = self.dist.device
        world = self.dist.world_size
        if recipe.batch_size % world:
            raise DensenasError(f"--batch-size {recipe.batch_size} does not split evenly over {world} processes")
        self.batch_per_rank = recipe.batch_size // world
        rt.seed_everything(recipe.seed)

        probe = network_spec(arch=job.arch, model=job.model)
        self.image_size = recipe.image_size or probe.default_image_size()
        self.data = build_loaders(
            job.data, image_size=self.image_size, batch_size=self.batch_per_rank, seed=recipe.seed,
            workers=job.workers, distributed=self.dist.enabled, device=str(self.device), augment=recipe.augment,
        )
        if job.arch is not None and job.arch.num_classes != self.data.num_classes:
            self._log(f"arch.json says {job.arch.num_classes} classes; training for the data's {self.data.num_classes}")
        self.spec: NetworkSpec = network_spec(arch=job.arch, model=job.model, num_classes=self.data.num_classes)
        self.data_record = {"name": data_name(job.data), "seed": recipe.seed, "image_size": self.image_size}

        self.model = build_network(self.spec, bn_momentum=recipe.bn_momentum, bn_eps=recipe.bn_eps)
        check_runs(self.model, self.spec, self.image_size)
        rt.to_device(self.model, self.device)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
            weight_decay=recipe.weight_decay, nesterov=recipe.nesterov,
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        self.steps_per_epoch = len(self.data.train)
        if self.steps_per_epoch == 0:
            raise DensenasError(f"--data {job.data}: the train split holds no batch of {self.batch_per_rank}")

        self.run_dir = self._run_dir()
        self.checkpoint_path, self.weights_path, self.best_path = (
            self.run_dir / f"{name}.pt" for name in ("checkpoint", "weights", "best"))
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": 0, "top1": -1.0, "top5": 0.0}
        self.start_epoch = 0
        self._prepare_run_dir()
        self.net = rt.wrap_ddp(self.model, self.dist)
        self.writer = self._tensorboard()

    # -- the run directory ---------------------------------------------------------------

    def _run_dir(self) -> Path:
        if self.job.run_dir is not None:
            return Path(self.job.run_dir)
        return Path(rt.broadcast_object(self.dist, str(default_run_dir(self.job))))  # rank 0's clock everywhere

    def _prepare_run_dir(self) -> None:
        exists = self.checkpoint_path.is_file()
        if exists and not self.job.resume:
            raise DensenasError(f"{self.run_dir}: already holds a training run; pass --resume to continue it or choose another --out")
        if exists:
            self._load_checkpoint()
        elif self.job.resume:
            self._log(f"{self.checkpoint_path} not found: starting from epoch 1")
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.run_dir / "recipe.yaml", yaml.safe_dump(self.recipe.model_dump(), sort_keys=False))
            if self.spec.arch is not None:
                self.spec.arch.save(self.run_dir / "arch.json")

    def _tensorboard(self) -> Any:
        if not self.dist.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run wrote past its last checkpoint
        return SummaryWriter(str(self.run_dir / "tb"), purge_step=self.start_epoch + 1 if self.start_epoch else None)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Train the remaining epochs, write weights.pt, return the summary."""
        start = time.perf_counter()
        try:
            for epoch in range(self.start_epoch, self.recipe.epochs):
                self.run_epoch(epoch)
        finally:
            self.close()
        last = self.history[-1]
        if self.dist.is_main:
            save_weights(self.weights_path, self._weights(top1=last["val_top1"], top5=last["val_top5"], epoch=last["epoch"]))
            self._log(f"wrote {self.weights_path} (top-1 {last['val_top1']:.2f}%, best {self.best['top1']:.2f}% at epoch {self.best['epoch']})")
        return {
            "run_dir": str(self.run_dir),
            "weights": str(self.weights_path),
            "best": str(self.best_path),
            "checkpoint": str(self.checkpoint_path),
            "network": self.spec.name,
            "params": sum(p.numel() for p in self.model.parameters()),
            "data": self.data.name,
            "image_size": self.image_size,
            "num_classes": self.spec.num_classes,
            "epochs": self.recipe.epochs,
            "resumed_from_epoch": self.start_epoch,
            "best_top1": self.best["top1"],
            "best_epoch": self.best["epoch"],
            "top1": last["val_top1"],
            "top5": last["val_top5"],
            "loss": last["val_loss"],
            "train_loss": last["train_loss"],
            "train_top1": last["train_top1"],
            "seconds": time.perf_counter() - start,
            "world_size": self.dist.world_size,
            "device": str(self.device),
        }

    def close(self) -> None:
        """Flush and close the TensorBoard writer (run() does it; callers of run_epoch must)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch (0-based), validate, and on rank 0 save the checkpoint."""
        t0 = time.perf_counter()
        train = self.train_epoch(epoch)
        val = self.validate()
        row = {
            "epoch": epoch + 1,
            **train,
            "val_loss": val.loss,
            "val_top1": val.top1,
            "val_top5": val.top5,
            "seconds": time.perf_counter() - t0,
        }
        self.history.append(row)
        if val.top1 > self.best["top1"]:
            self.best = {"epoch": epoch + 1, "top1": val.top1, "top5": val.top5}
            if self.dist.is_main:
                save_weights(self.best_path, self._weights(top1=val.top1, top5=val.top5, epoch=epoch + 1))
        if self.dist.is_main:
            self._save_checkpoint(epoch + 1)
            self._tensorboard_epoch(row)
            self._log(
                f"epoch {epoch + 1}/{self.recipe.epochs}  lr {train['lr']:.4g}  "
                f"train loss {train['train_loss']:.4f} top-1 {train['train_top1']:.2f}%  |  "
                f"val loss {val.loss:.4f} top-1 {val.top1:.2f}% top-5 {val.top5:.2f}%  |  {row['seconds']:.1f} s"
            )
        return row

    def train_epoch(self, epoch: int) -> dict[str, float]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.net.train()
        self.data.set_epoch(epoch)
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, top1, top5, images
        lr = self.recipe.lr
        start = time.perf_counter()
        progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{self.recipe.epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
            console=err, transient=True, disable=not (self.dist.is_main and err.is_terminal),
        )
        with progress:
            task = progress.add_task("train", total=self.steps_per_epoch, loss="-")
            for i, (images, labels) in enumerate(self.data.train):
                lr = lr_at(self.recipe, epoch * self.steps_per_epoch + i, self.steps_per_epoch)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                images = rt.images_to(images, self.device)
                labels = labels.to(self.device, non_blocking=True)
                logits = logits_of(self.net(images))
                loss = self.criterion(logits, labels)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.recipe.grad_clip is not None:
                    nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
                self.optimizer.step()
                counts = accuracy_counts(logits.detach(), labels, sum_loss=False)
                counts[0] = loss.detach().double() * labels.shape[0]
                sums += counts
                if (i + 1) % CHECK_EVERY == 0 or i + 1 == self.steps_per_epoch:
                    self._check_finite(sums[0], epoch, i, lr)
                    progress.update(task, loss=f"{sums[0].item() / max(sums[3].item(), 1):.4f}")
                progress.advance(task)
        if self.dist.enabled:
            import torch.distributed as dist

            dist.all_reduce(sums)
        seconds = time.perf_counter() - start
        loss_sum, top1, _, n = sums.tolist()
        return {
            "lr": lr,
            "train_loss": loss_sum / n,
            "train_top1": 100.0 * top1 / n,
            "train_images_per_sec": n / seconds if seconds > 0 else 0.0,
        }

    def validate(self) -> EvalResult:
        # rank 0's BN statistics everywhere, as saved and as eval loads them
        rt.broadcast_(self.dist, list(self.model.buffers()))
        return evaluate(self.model, self.data.val, self.device, distributed=self.dist.enabled)

    def _check_finite(self, loss_sum: torch.Tensor, epoch: int, step: int, lr: float) -> None:
        bad = (~torch.isfinite(loss_sum)).to(torch.float32).reshape(1)
        if self.dist.enabled:
            import torch.distributed as dist

            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item():
            kept = (f"the last good checkpoint {self.checkpoint_path} (epoch {self._saved_epoch()}) is intact"
                    if self._saved_epoch() else "no checkpoint was written yet")
            raise TrainingDiverged(
                f"training diverged: the loss became NaN or infinite in epoch {epoch + 1} by step {step + 1} "
                f"(lr {lr:.4g}); {kept}; lower --lr, add warm-up or set grad_clip"
            )

    def _saved_epoch(self) -> int:
        return self.history[-1]["epoch"] if self.history else self.start_epoch

    def _log(self, message: str) -> None:
        if self.dist.is_main:
            log.info(message)

    def _tensorboard_epoch(self, row: dict[str, Any]) -> None:
        step = row["epoch"]
        for key in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr"):
            self.writer.add_scalar(key.replace("_", "/", 1) if "_" in key else key, row[key], step)
        self.writer.flush()

    # -- files ---------------------------------------------------------------------------

    def _weights(self, *, top1: float, top5: float, epoch: int) -> dict[str, Any]:
        return weights_record(
            self.spec, self.model.state_dict(), top1=top1, top5=top5, epoch=epoch,
            data=self.data_record, eval_batch_size=self.batch_per_rank,
        )

    def _save_checkpoint(self, epoch: int) -> None:
        last = self.history[-1]
        torch_save(self.checkpoint_path, {
            "schema": CHECKPOINT_SCHEMA,
            "epoch": epoch,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": rt.capture_rng(),
            "recipe": self.recipe.model_dump(),
            "arch": self.spec.describe(),
            "num_classes": self.spec.num_classes,
            "data": self.data_record,
            "eval_batch_size": self.batch_per_rank,
            "world_size": self.dist.world_size,
            "history": self.history,
            "best": self.best,
            "last": {"top1": last["val_top1"], "top5": last["val_top5"], "loss": last["val_loss"]},
        })
        write_json(self.run_dir / "metrics.json", {"history": self.history, "best": self.best})

    def _load_checkpoint(self) -> None:
        ckpt = rt.read_torch_file(self.checkpoint_path)
        where = str(self.checkpoint_path)
        if not isinstance(ckpt, dict) or ckpt.get("schema") not in CHECKPOINT_SCHEMAS:
            raise DensenasError(f"{where}: not a densenas training checkpoint")
        for key, now in (("recipe", self.recipe.model_dump()), ("arch", self.spec.describe()), ("data", self.data_record)):
            then = ckpt.get(key)
            if then != now:
                field = _first_difference(then, now)
                raise DensenasError(
                    f"{where}: cannot resume: {key} differs from the run's ({field}); "
                    "resume with the same settings or start a new --out"
                )
        if ckpt.get("world_size") != self.dist.world_size:
            self._log(f"resuming a {ckpt.get('world_size')}-process run on {self.dist.world_size}: "
                      "batches split differently from here on")
        rt.load_state(self.model, ckpt["model"], source=where, target=self.spec.name)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        rt.restore_rng(ckpt["rng"], self.device)
        self.history = list(ckpt["history"])
        self.best = dict(ckpt["best"])
        self.start_epoch = int(ckpt["epoch"])
        self._log(f"resuming {self.run_dir} after epoch {self.start_epoch}/{self.recipe.epochs}")


def train(job: TrainJob) -> dict[str, Any]:
    """Run ``densenas train``; under torchrun, join the process group first (gloo on CPU,
    NCCL on GPU) and leave it after."""
    resolve_device(job.device)
    with rt.process_group(job.device) as ctx:
        return Trainer(job, ctx).run()


def _first_difference(then: Any, now: Any, path: str = "") -> str:
    if isinstance(then, dict) and isinstance(now, dict):
        for key in list(now) + [k for k in then if k not in now]:
            if then.get(key) != now.get(key):
                return _first_difference(then.get(key), now.get(key), f"{path}.{key}" if path else str(key))
    return f"{path or 'value'}: {then!r} then, {now!r} now"
