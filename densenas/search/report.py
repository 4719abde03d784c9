"""What a search prints on stderr: the header, per-phase progress bars (on a terminal)
and the per-epoch summary, with expected and derived cost side by side."""

from __future__ import annotations

from typing import Any, Callable

from densenas.console import err, log


def cost_text(r: dict[str, Any], cost_type: str) -> str:
    """'latency expected X | derived Y (gap)' (and the loss's cost when it is not latency)."""
    unit = r["cost_unit"]
    other = f"{cost_type} expected {r['expected_cost']:.4g} {unit} | derived {r['derived_cost']:.4g} {unit}"
    if r.get("expected_latency_ms") is None:
        return other
    exp, der = r["expected_latency_ms"], r["derived_latency_ms"]
    text = f"latency expected {exp:.4g} ms | derived {der:.4g} ms ({100 * (der / exp - 1):+.0f}%)"
    return text if cost_type == "latency" else f"{text}; {other}"


def epoch_report(r: dict[str, Any], epochs: int, cost_type: str) -> None:
    parts = [f"epoch {r['epoch'] + 1}/{epochs}"]
    if r.get("arch_loss") is not None:
        parts.append(f"arch loss {r['arch_loss']:.3f} (cost term {r['arch_cost_term']:+.3f})")
    parts.append(f"train loss {r['train_loss']:.3f} acc {r['train_top1']:.1f}%")
    if r.get("val_top1") is not None:
        parts.append(f"val acc {r['val_top1']:.1f}%")
    if r.get("derived_val_top1") is not None:
        paths = ", ".join(f"{v:.1f}" for v in r["random_paths_val_top1"])
        parts.append(f"paths: argmax {r['argmax_path_val_top1']:.1f}% random {paths}% | "
                     f"derived network (inherited) {r['derived_val_top1']:.1f}%")
    parts.append(f"{r['seconds']:.1f}s")
    log.info("  ".join(parts))
    log.info(f"  {cost_text(r, cost_type)}")
    log.info(f"  entropy head {r['head_entropy']:.2f}/{r['head_entropy_max']:.2f} "
             f"stack {r['stack_entropy']:.2f}/{r['stack_entropy_max']:.2f} | derived: {r['op_mix_text']}, "
             f"{r['macs'] / 1e6:.2f} M MACs, {r['params'] / 1e6:.3f} M params")
    if r["collapsed"] and r["searching"]:
        log.warning(f"the derived network picks the cheapest op for {100 * r['op_mix']['cheapest_share']:.0f}% of its "
                    "choices: the cost term dominates (lower --sub-loss-factor, or aim at a budget with --target-latency)")


class ProgressScope:
    """A rich progress bar for one phase on a terminal; a no-op elsewhere (logs, pipes)."""

    def __init__(self, label: str, total: int, *, enabled: bool) -> None:
        self.label, self.total = label, total
        self.enabled = enabled and err.is_terminal
        self._progress = None

    def __enter__(self) -> Callable[[str], None]:
        if not self.enabled:
            return lambda _text: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=err, transient=True)
        self._progress.start()
        task = self._progress.add_task(self.label, total=self.total, info="")

        def tick(text: str) -> None:
            self._progress.update(task, advance=1, info=text)

        return tick

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
