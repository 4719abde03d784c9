"""Per-layer times of a whole network, as a backend's own profiler reports them: the
diagnostic that shows which layers cost something else inside a network than alone.

A backend reports times per node (ONNX Runtime's session profiler, a TensorRT
``IProfiler``) or per module (forward hooks on eager PyTorch); ``LayerTimes`` carries
them per layer of the network, named by the layer's module path, with what no layer
owns (layout reorders between layers, the graph's own copies) kept apart.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

OTHER = "(no layer)"


@dataclass(frozen=True)
class LayerTimes:
    """Median time per run of each layer (ms), of what no layer owns, and of all of it,
    over ``runs`` runs of the whole network after warm-up."""

    per_layer_ms: dict[str, float]
    other_ms: float
    total_ms: float
    runs: int
    source: str
    other_parts: dict[str, float]  # what ``other_ms`` is made of, by node type or name


def module_path(node_name: str) -> str | None:
    """The module path an exported ONNX node came from, read off its scoped name. The
    exporter writes one segment per module, a numbered child as its parent's segment
    plus ``.N``: ``/blocks/blocks.0/head/expand/expand.0/Conv`` is ``blocks.0.head.expand.0``.
    A name without a scope (a node the runtime inserted, such as a layout reorder) gives
    None. Text before the first ``/`` and the last segment (the node's own name, which
    ONNX Runtime's fusions suffix, e.g. ``Clip_output_0_nchwc``) are dropped."""
    start = node_name.find("/")
    if start < 0:
        return None
    segments = [s for s in node_name[start + 1:].split("/")[:-1] if s]
    parts: list[str] = []
    previous = ""
    for seg in segments:
        if previous and seg.startswith(previous + "."):
            parts.extend(seg[len(previous) + 1:].split("."))
        else:
            parts.extend(seg.split("."))
        previous = seg
    return ".".join(parts) or None


def owner(path: str | None, layers: Sequence[str]) -> str | None:
    """The layer (a module path of ``layers``) that ``path`` lies in, the deepest one if
    several do; None when none does."""
    if path is None:
        return None
    best: str | None = None
    for layer in layers:
        if (path == layer or path.startswith(layer + ".")) and (best is None or len(layer) > len(best)):
            best = layer
    return best


def summarise(runs: Sequence[Mapping[str, float]], layers: Sequence[str], source: str,
              other_parts: Sequence[Mapping[str, float]] = ()) -> LayerTimes:
    """Per-run times of each layer (``OTHER`` for what no layer owns) -> medians."""
    if not runs:
        raise ValueError("no runs to summarise")
    per_layer = {name: statistics.median(r.get(name, 0.0) for r in runs) for name in layers}
    other = statistics.median(r.get(OTHER, 0.0) for r in runs)
    total = statistics.median(sum(r.values()) for r in runs)
    parts: dict[str, float] = {}
    if other_parts:
        names = sorted({k for p in other_parts for k in p})
        parts = {k: statistics.median(p.get(k, 0.0) for p in other_parts) for k in names}
    return LayerTimes(per_layer, other, total, len(runs), source, parts)


def _credit(runs: Sequence[Sequence[tuple[str, str, float]]], owner_of: Callable[[str], str | None],
            layers: Sequence[str], source: str) -> LayerTimes:
    """Runs of (node, part, ms), each node credited to the layer ``owner_of`` names (asked
    once per node); a node no layer owns goes to ``OTHER``, under its part."""
    owners: dict[str, str | None] = {}
    per_run: list[dict[str, float]] = []
    parts: list[dict[str, float]] = []
    for nodes in runs:
        run: dict[str, float] = {}
        other: dict[str, float] = {}
        for node, part, ms in nodes:
            if node not in owners:
                owners[node] = owner_of(node)
            layer = owners[node] or OTHER
            run[layer] = run.get(layer, 0.0) + ms
            if layer == OTHER:
                other[part] = other.get(part, 0.0) + ms
        per_run.append(run)
        parts.append(other)
    return summarise(per_run, layers, source, parts)


# -- ONNX Runtime's session profiler -------------------------------------------------------


def from_ort_trace(events: Iterable[Mapping[str, object]], layers: Sequence[str], *, skip_runs: int = 0) -> LayerTimes:
    """Per-layer times from an ONNX Runtime profiling trace (``SessionOptions.enable_profiling``):
    each node's ``*_kernel_time`` event falls in one ``model_run`` window; the first
    ``skip_runs`` runs (warm-up) are dropped."""
    run_windows: list[tuple[float, float]] = []
    nodes: list[tuple[float, float, str, str]] = []
    for e in events:
        name, cat = str(e.get("name", "")), e.get("cat")
        ts, dur = float(e.get("ts", 0.0)), float(e.get("dur", 0.0))  # microseconds
        if cat == "Session" and name == "model_run":
            run_windows.append((ts, ts + dur))
        elif cat == "Node" and name.endswith("_kernel_time"):
            args = e.get("args")
            op = str(args.get("op_name", "?")) if isinstance(args, Mapping) else "?"
            nodes.append((ts, dur, name[: -len("_kernel_time")], op))
    run_windows.sort()
    nodes.sort()
    per_run: list[list[tuple[str, str, float]]] = [[] for _ in run_windows]
    w = 0
    for ts, dur, node, op in nodes:
        while w < len(run_windows) and ts > run_windows[w][1]:
            w += 1
        if w == len(run_windows):
            break
        if ts < run_windows[w][0]:
            continue  # a node event outside any run (session initialisation)
        per_run[w].append((node, op, dur * 1e-3))
    return _credit(per_run[skip_runs:], lambda node: owner(module_path(node), layers), layers,
                   "ONNX Runtime session profiler: kernel time of each node")


# -- TensorRT's IProfiler ----------------------------------------------------------------

REFORMAT = "Reformatting CopyNode"
_SCOPED = re.compile(r"/[^\s,+()\[\]{}]+")


def fused_members(layer_name: str) -> list[str]:
    """The ONNX nodes a TensorRT engine layer was built from, read off its name. TensorRT
    names a fused layer after its members: ``A + B`` (a conv and the activation it
    absorbed), ``PWN(A, B)`` (pointwise ops, nested), ``{ForeignNode[A...B]}`` (a range
    handed to Myelin, by its first and last node). A layer TensorRT inserted has no
    members: a layout change (``Reformatting CopyNode for Input Tensor 0 to A`` names the
    layer it feeds, not one it belongs to) or an unnamed one (``(Unnamed Layer* 3) [Shuffle]``)."""
    if layer_name.startswith(REFORMAT):
        return []
    return [m for found in _SCOPED.findall(layer_name) for m in found.split("...") if m]


def from_tensorrt_reports(runs: Sequence[Sequence[tuple[str, float]]], layers: Sequence[str]) -> LayerTimes:
    """Per-layer times from what a TensorRT ``IProfiler`` was told, one list of (layer
    name, ms) per run. A fused layer is credited to the layer of its first member that
    any layer owns; what TensorRT inserted goes to ``OTHER``, its layout changes as one part."""
    def first_owned(name: str) -> str | None:
        return next((found for m in fused_members(name) if (found := owner(module_path(m), layers))), None)

    named = [[(name, REFORMAT if name.startswith(REFORMAT) else name, ms) for name, ms in run] for run in runs]
    return _credit(named, first_owned, layers,
                   "TensorRT IProfiler: time of each engine layer, fused layers credited to their first member's layer")


# -- eager PyTorch: forward hooks ------------------------------------------------------------


def from_forward_hooks(module: "nn.Module", x: "torch.Tensor", layers: Sequence[str], *, runs: int, warmup: int,
                       sync: Callable[[], None] = lambda: None) -> LayerTimes:
    """Per-layer times of eager ``module(x)`` from forward pre/post hooks on each layer's
    module (host clock; ``sync`` waits for a device). What lies between the layers
    (the network's own glue) is ``OTHER``: the whole forward less the layers."""
    import torch

    named = dict(module.named_modules())
    missing = [name for name in layers if name not in named]
    if missing:
        raise ValueError(f"no module named {missing[0]!r} in {type(module).__name__}")
    current: dict[str, float] = {}
    started: dict[str, int] = {}

    def pre(name: str) -> Callable[..., None]:
        def hook(_mod: "nn.Module", _args: object) -> None:
            sync()
            started[name] = time.perf_counter_ns()
        return hook

    def post(name: str) -> Callable[..., None]:
        def hook(_mod: "nn.Module", _args: object, _out: object) -> None:
            sync()
            current[name] = current.get(name, 0.0) + (time.perf_counter_ns() - started[name]) * 1e-6
        return hook

    handles = []
    for name in layers:
        handles.append(named[name].register_forward_pre_hook(pre(name)))
        handles.append(named[name].register_forward_hook(post(name)))
    per_run: list[dict[str, float]] = []
    try:
        with torch.inference_mode():
            for i in range(warmup + runs):
                current.clear()
                sync()
                t0 = time.perf_counter_ns()
                module(x)
                sync()
                whole = (time.perf_counter_ns() - t0) * 1e-6
                if i >= warmup:
                    run = dict(current)
                    run[OTHER] = max(0.0, whole - sum(current.values()))
                    per_run.append(run)
    finally:
        for h in handles:
            h.remove()
    return summarise(per_run, layers, "forward pre/post hooks on each layer's module, host clock")
