"""``densenas train`` and ``densenas eval``: retrain a searched network (or a torchvision
reference model) and measure it on the validation split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from densenas.console import out, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ArchOpt = Annotated[Optional[Path], typer.Option("--arch", help="arch.json of a searched network.")]
ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", help="A torchvision classification model (e.g. mobilenet_v2, resnet18), randomly initialised; "
                 "built for 224 and run unchanged (stem stride too) at the data's size, 32 for digits."),
]
DataOpt = Annotated[
    str, typer.Option("--data", help="'digits' (built in), an image folder with train/ and val/, or a packed LMDB directory.")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda (under torchrun: each rank's own GPU).")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", help="Data-loading processes (default: 0 for digits).")]


def train(
    arch: ArchOpt = None,
    model: ModelOpt = None,
    data: DataOpt = "digits",
    config: Annotated[
        Optional[str],
        typer.Option("--config", help="Recipe: a YAML path or a name in configs/train/ (default: 'digits' for the digits, else 'default').")
    ] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Overrides the recipe's epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Global batch (split over DDP ranks).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate of the cosine schedule.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seeds the initialisation, the batch order and the digits split.")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Input size (default: the arch's; 32 for --model).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default: runs/train/NAME-TIME).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    device: DeviceOpt = "cpu",
    workers: WorkersOpt = None,
    nproc: Annotated[
        Optional[int], typer.Option("--nproc", help="Run N processes with torch.distributed on this host (NCCL on GPUs, gloo on CPU).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a network from scratch with the paper's retraining recipe.

    Writes checkpoint.pt every epoch, best.pt, weights.pt, TensorBoard events; DDP: --nproc N or torchrun."""
    from densenas.errors import DensenasError
    from densenas.train.recipe import build_job, default_run_dir

    job = build_job(
        arch=arch, model=model, data=data, config=config, run_dir=out_dir, resume=resume, device=device,
        workers=workers, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, image_size=image_size,
    )
    from densenas.runtime import launch, launched_by_torchrun

    if nproc is not None and not launched_by_torchrun():
        if nproc < 1:
            raise DensenasError(f"--nproc must be at least 1, got {nproc}")
        if job.recipe.batch_size % nproc:
            raise DensenasError(f"--batch-size {job.recipe.batch_size} does not split evenly over --nproc {nproc}")
        run_dir = job.run_dir or default_run_dir(job)
        passed = {"--arch": arch, "--model": model, "--data": data, "--config": config, "--epochs": epochs,
                  "--batch-size": batch_size, "--lr": lr, "--seed": seed, "--image-size": image_size,
                  "--out": run_dir, "--device": device, "--workers": workers}
        argv = ["train", *(x for k, v in passed.items() if v is not None for x in (k, str(v)))]
        argv += ["--resume"] * resume + ["--json"] * as_json
        code = launch(nproc, argv)
        if code:
            raise typer.Exit(code)
        return
    from densenas.runtime import is_main_process
    from densenas.train.trainer import train as run_training

    try:
        result = run_training(job)
    except DensenasError:
        if is_main_process():
            raise
        raise typer.Exit(2) from None  # rank 0 says it; the others leave quietly
    if not is_main_process():
        return
    if as_json:
        print_json(result)
        return
    _table(f"trained {result['network']} on {result['data']}", result, [
        ("run directory", "run_dir"), ("weights", "weights"), ("epochs", "epochs"), ("top-1 (%)", "top1"),
        ("top-5 (%)", "top5"), ("best top-1 (%)", "best_top1"), ("best epoch", "best_epoch"),
        ("params", "params"), ("seconds", "seconds"),
    ])


def eval_(
    weights: Annotated[Path, typer.Option("--weights", help="weights.pt or best.pt from densenas train (or its checkpoint.pt).")],
    arch: ArchOpt = None,
    model: ModelOpt = None,
    data: DataOpt = "digits",
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Default: the training run's.")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Default: the training run's.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Digits split seed (default: the training run's).")] = None,
    device: DeviceOpt = "cpu",
    workers: WorkersOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Top-1, top-5, loss and images per second on the validation split.

    The network is the one the weights file names, unless --arch or --model is given (it must match)."""
    from densenas.train.evaluate import evaluate_weights

    result = evaluate_weights(
        weights, arch=arch, model=model, data=data, batch_size=batch_size, image_size=image_size,
        seed=seed, device=device, workers=workers,
    )
    if as_json:
        print_json(result)
        return
    _table(f"{result['network']} on {result['data']} (val)", result, [
        ("top-1 (%)", "top1"), ("top-5 (%)", "top5"), ("loss", "loss"), ("images", "images"),
        ("images/s", "images_per_sec"), ("device", "device"),
    ])


def _table(title: str, result: dict[str, Any], rows: list[tuple[str, str]]) -> None:
    t = Table("", "", title=title, show_header=False)
    for label, key in rows:
        v = result[key]
        t.add_row(label, f"{v:.2f}" if isinstance(v, float) else str(v))
    out.print(t)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("eval")(eval_)
