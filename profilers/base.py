"""The profiler interface. The base class owns the checks and the protocol, once; a
backend supplies only how to prepare one op and how to time ``n`` calls of it
(Polygraphy's ``BaseRunner.infer`` / ``infer_impl`` split)."""

from __future__ import annotations

import contextlib
import copy
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, TypeVar

from densenas.profilers import hostinfo
from densenas.profilers.errors import ProfilerError, ProfilerUnavailable
from densenas.profilers.layers import LayerTimes
from densenas.profilers.protocol import Prepared, Protocol, run_protocol
from densenas.profilers.stats import Measurement

if TYPE_CHECKING:
    import torch
    from torch import nn

K = TypeVar("K", bound=Hashable)

PRECISIONS = ("fp32", "fp16")
NULL_INPUT_SHAPE: tuple[int, ...] = (1, 1, 1, 1)

ModuleFactory = Callable[[], "nn.Module"]
OnDone = Callable[[K, Measurement], None]


def _null_op() -> nn.Module:
    from torch import nn

    class NullOp(nn.Module):
        """``x * 1``: one trivial kernel, so a call pays the backend's dispatch and launch
        costs and nothing else. A bare identity would launch nothing on eager CUDA."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 1

    return NullOp()


def check_input_shape(input_shape: object) -> tuple[int, ...]:
    """A shape is a non-empty sequence of positive ints; anything else is a ProfilerError."""
    if (
        not isinstance(input_shape, Sequence)
        or isinstance(input_shape, str)
        or len(input_shape) == 0
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)
    ):
        raise ProfilerError(f"input_shape must be a non-empty sequence of positive ints, got {input_shape!r}")
    return tuple(input_shape)


class Profiler(ABC):
    """Measures the latency of a torch module at an input shape on one backend.

    Use as a context manager (``with TorchCPUProfiler(threads=4) as p: ...``) to hold
    the backend's settings (thread count, cuDNN autotuning) across many calls; the
    public methods also work outside one, activating for the duration of the call.
    """

    name: ClassVar[str]
    device_kind: ClassVar[str]  # "cpu" or "cuda"
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    def __init__(
        self,
        *,
        threads: int | None = None,
        precision: str = "fp32",
        device_index: int = 0,
        cache_dir: str | None = None,
        protocol: Protocol | None = None,
    ) -> None:
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ProfilerError(f"{self.name}: threads must be a positive integer or None, got {threads!r}")
        if precision not in PRECISIONS:
            raise ProfilerError(f"{self.name}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision not in self.precisions:
            raise ProfilerError(
                f"{self.name}: precision {precision!r} is not supported on this backend "
                f"(supported: {', '.join(self.precisions)}); use precision 'fp32' or a GPU backend"
            )
        if not isinstance(device_index, int) or isinstance(device_index, bool) or device_index < 0:
            raise ProfilerError(f"{self.name}: device_index must be a non-negative integer, got {device_index!r}")
        if protocol is not None and not isinstance(protocol, Protocol):
            raise ProfilerError(f"{self.name}: protocol must be a profilers.Protocol, got {type(protocol).__name__}")
        self.threads = threads
        self.precision = precision
        self.device_index = device_index
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.protocol = protocol if protocol is not None else Protocol()
        self._active = False

    # --- what a backend provides -------------------------------------------------

    @classmethod
    @abstractmethod
    def available(cls) -> tuple[bool, str]:
        """Whether the backend can run here; the reason is one line naming the fix when not."""

    @classmethod
    @abstractmethod
    def backend_version(cls) -> str | None:
        """Version of the library doing the work (torch, onnxruntime, tensorrt)."""

    @property
    @abstractmethod
    def timing_scope(self) -> str:
        """One sentence: exactly what the timed interval contains and excludes."""

    @abstractmethod
    def _prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Prepared:
        """Make one op ready to run: place weights, build a session, allocate the input."""

    @abstractmethod
    def _fingerprint_extra(self) -> dict[str, object]:
        """Backend-specific facts that change the numbers (provider, GPU, cuDNN flags...)."""

    @classmethod
    def options_from_fingerprint(cls, facts: Mapping[str, object]) -> dict[str, object]:
        """Constructor options that re-create the settings a recorded fingerprint (a LUT's
        ``meta.host``) was measured with, beyond threads, precision and protocol."""
        return {}

    @classmethod
    def deployment_options(cls) -> dict[str, object]:
        """Constructor options that time a whole network as a deployment runs it, where
        they differ from what suits interleaved op timing (ONNX Runtime's spinning)."""
        return {}

    def _activate(self) -> None:
        """Apply process-wide settings (thread count...) for the measurement's duration."""

    def _deactivate(self) -> None:
        """Undo ``_activate``."""

    def _null_module(self) -> nn.Module:
        """The op whose latency is the backend's fixed per-call overhead."""
        return _null_op()

    def device_name(self) -> str:
        return hostinfo.cpu_model()

    def threads_in_effect(self) -> int:
        """Host threads the backend computes with: the requested count, else torch's default."""
        if self.threads is not None:
            return self.threads
        import torch

        return torch.get_num_threads()

    @classmethod
    def missing_parts(cls) -> list[str]:
        """What a backend class still lacks before it can be made: its unimplemented
        abstract methods and unset class attributes, by name. The registry checks this on
        loading, so an incomplete plug-in is named instead of failing when constructed."""
        attrs = ("name", "device_kind")
        missing = [f"{attr} (class attribute)" for attr in attrs if not isinstance(getattr(cls, attr, None), str)]
        missing += [f"{method}()" for method in sorted(getattr(cls, "__abstractmethods__", ()))]
        return missing

    # --- lifecycle -----------------------------------------------------------------

    def check_available(self) -> None:
        ok, reason = self.available()
        if not ok:
            message = reason if reason.startswith(f"{self.name}:") else f"{self.name}: {reason}"
            raise ProfilerUnavailable(message)

    @property
    def is_active(self) -> bool:
        return self._active

    def activate(self) -> None:
        if self._active:
            return
        self.check_available()
        self._activate()
        self._active = True

    def deactivate(self) -> None:
        if not self._active:
            return
        try:
            self._deactivate()
        finally:
            self._active = False

    def __enter__(self) -> Profiler:
        self.activate()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.deactivate()

    @contextlib.contextmanager
    def _activated(self) -> Iterator[None]:
        if self._active:
            yield
            return
        self.activate()
        try:
            yield
        finally:
            self.deactivate()

    # --- measuring -----------------------------------------------------------------

    def measure(self, module: nn.Module, input_shape: Sequence[int]) -> Measurement:
        """One op through the full protocol. The module is copied, so the caller's is not
        moved to another device or dtype."""
        result = self.measure_many([("op", lambda: copy.deepcopy(module), input_shape)])
        return result["op"]

    def measure_many(
        self,
        items: Iterable[tuple[K, ModuleFactory, Sequence[int]]],
        on_done: OnDone[K] | None = None,
    ) -> dict[K, Measurement]:
        """Measure many ops, ``protocol.chunk_size`` at a time.

        Modules are built from their factories only when their chunk comes up and are
        dropped after it, so a large space never sits in memory at once. ``on_done``
        is called for every op of a chunk as soon as that chunk is measured, so a
        caller that saves there loses at most one chunk to a kill.
        """
        results: dict[K, Measurement] = {}
        with self._activated():
            iterator = iter(items)
            while chunk := list(itertools.islice(iterator, self.protocol.chunk_size)):
                for key, measurement in self._measure_chunk(chunk, seen=results).items():
                    results[key] = measurement
                    if on_done is not None:
                        on_done(key, measurement)
        return results

    def runner(self, module: nn.Module, input_shape: Sequence[int]) -> Prepared:
        """The runner ``measure`` times, for a copy of ``module`` (in eval mode) at
        ``input_shape``: to ``infer`` with, or time by hand. Close it when done (it is a
        context manager); it is prepared under the profiler's settings."""
        with self._activated():
            return self._prepare_one("module", lambda: copy.deepcopy(module), check_input_shape(input_shape))

    def _measure_chunk(
        self, chunk: list[tuple[K, ModuleFactory, Sequence[int]]], *, seen: dict[K, Measurement]
    ) -> dict[K, Measurement]:
        prepared: dict[K, Prepared] = {}
        try:
            for item in chunk:
                if not isinstance(item, tuple) or len(item) != 3:
                    raise ProfilerError(f"{self.name}: items must be (key, module_factory, input_shape), got {item!r}")
                key, factory, shape = item
                if key in prepared or key in seen:
                    raise ProfilerError(f"{self.name}: duplicate key {key!r} in measure_many items")
                prepared[key] = self._prepare_one(key, factory, check_input_shape(shape))
            return run_protocol(prepared, self.protocol)
        finally:
            for p in prepared.values():
                p.close()

    def _build(self, key: Hashable, factory: ModuleFactory) -> nn.Module:
        """The module ``factory`` makes, with seeded weights, in eval mode."""
        import torch
        from torch import nn

        if not callable(factory):
            raise ProfilerError(f"{self.name}: module_factory for {key!r} is not callable: {factory!r}")
        # Seeded weights make runs repeatable (CPU speed can depend on values, e.g. denormals)
        # and make exported graphs byte-identical, so engine caches hit.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.protocol.seed)
            module = factory()
        if not isinstance(module, nn.Module):
            raise ProfilerError(
                f"{self.name}: module_factory for {key!r} returned {type(module).__name__}, not a torch.nn.Module"
            )
        return module.eval()

    def _prepare_one(self, key: Hashable, factory: ModuleFactory, shape: tuple[int, ...]) -> Prepared:
        module = self._build(key, factory)
        prepared: Prepared | None = None
        try:
            prepared = self._prepare(module, shape)
            prepared.run(1)  # fail here, naming the op, rather than midway through a chunk
            return prepared
        except Exception as exc:
            if prepared is not None:
                prepared.close()
            if isinstance(exc, ProfilerError):
                raise
            raise ProfilerError(
                f"{self.name}: op {key!r} failed at input shape {shape}: {type(exc).__name__}: {exc}"
            ) from exc

    def layer_times(self, factory: ModuleFactory, input_shape: Sequence[int], layers: Sequence[str], *,
                    runs: int = 50) -> LayerTimes:
        """Per-layer times of one whole network (built, seeded, by ``factory``) over ``runs``
        runs after warm-up, as the backend's own profiler reports them; ``layers`` are
        module paths in the network. A ProfilerError names a backend that reports none."""
        if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
            raise ProfilerError(f"{self.name}: runs must be a positive integer, got {runs!r}")
        shape = check_input_shape(input_shape)
        with self._activated():
            module = self._build("network", factory)
            try:
                return self._layer_times(module, shape, list(layers), runs, warmup=max(3, runs // 5))
            except ProfilerError:
                raise
            except Exception as exc:
                raise ProfilerError(f"{self.name}: per-layer timing failed: {type(exc).__name__}: {exc}") from exc

    def _layer_times(self, module: nn.Module, input_shape: tuple[int, ...], layers: list[str], runs: int,
                     warmup: int) -> LayerTimes:
        """Backends with a per-node or per-module profiler override this: ``warmup`` runs, then
        ``runs`` whose times count."""
        raise ProfilerError(f"{self.name}: this backend reports no per-layer times "
                            "(per-layer diagnostics run on onnxruntime, torch-cpu and tensorrt)")

    def overhead(self) -> Measurement:
        """The fixed cost of one call (a null op on a tiny input), measured like any op,
        so a network prediction can count it once rather than once per op."""
        return self.measure(self._null_module(), NULL_INPUT_SHAPE)

    def example_input(self, input_shape: Sequence[int]) -> torch.Tensor:
        """A seeded standard-normal fp32 CPU tensor: the same input on every backend."""
        import torch

        generator = torch.Generator().manual_seed(self.protocol.seed)
        return torch.randn(tuple(input_shape), generator=generator)

    # --- provenance ----------------------------------------------------------------

    def fingerprint(self) -> dict[str, object]:
        """Everything that affects the numbers, for a LUT's provenance."""
        self.check_available()
        facts: dict[str, object] = {
            "backend": self.name,
            "backend_version": self.backend_version(),
            "device_kind": self.device_kind,
            "device": self.device_name(),
            "threads": self.threads_in_effect(),
            "precision": self.precision,
            "timing_scope": self.timing_scope,
            "protocol": self.protocol.to_dict(),
            "versions": hostinfo.library_versions(),
        }
        facts.update(hostinfo.host_facts())
        facts.update(self._fingerprint_extra())
        return facts

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(threads={self.threads!r}, precision={self.precision!r}, "
            f"device_index={self.device_index!r})"
        )
