"""Facts about the host that change latency numbers, gathered for a profiler's fingerprint,
and the other work on the host while something is measured (``HostMonitor``).

Everything here is best effort and never raises: a missing file or tool gives ``None``.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

# distribution names tried, in order, for each library we report
_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "numpy": ("numpy",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12"),
}


def library_version(name: str) -> str | None:
    """Installed version of a library, read from package metadata (imports nothing)."""
    for dist in _DISTRIBUTIONS.get(name, (name,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    versions.update({name: library_version(name) for name in ("torch", "numpy", "onnx", "onnxruntime")})
    return versions


# Reports another CPU name than the host's (to check that nothing depends on which CPU
# ran it, or to label a machine whose name the kernel hides). A fingerprint taken under
# it says so: ``cpu_name_override`` holds the variable and ``cpu_detected`` the real name.
ENV_CPU_NAME = "DENSENAS_CPU_NAME"


def cpu_model() -> str:
    """The CPU's marketing name: $DENSENAS_CPU_NAME when set, else from /proc/cpuinfo
    where there is one."""
    override = os.environ.get(ENV_CPU_NAME, "").strip()
    return override or detected_cpu_model()


def detected_cpu_model() -> str:
    """The CPU's marketing name as the host reports it, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask), which can be fewer than installed."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_governor() -> str | None:
    """The Linux cpufreq governor of CPU 0 ("performance", "powersave"...), if exposed."""
    try:
        return Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    except OSError:
        return None


def host_facts() -> dict[str, object]:
    facts: dict[str, object] = {
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "cpu_governor": cpu_governor(),
    }
    if os.environ.get(ENV_CPU_NAME, "").strip():
        facts["cpu_name_override"] = ENV_CPU_NAME
        facts["cpu_detected"] = detected_cpu_model()
    return facts


def nvidia_smi(index: int) -> dict[str, str]:
    """Driver version and clocks of one GPU from nvidia-smi; empty when it is not there."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    query = ("driver_version", "clocks.sm", "clocks.max.sm", "clocks.mem", "power.limit", "persistence_mode")
    try:
        out = subprocess.run(
            [exe, f"--id={index}", f"--query-gpu={','.join(query)}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    values = [v.strip() for v in out.splitlines()[0].split(",")] if out else []
    return dict(zip(query, values, strict=True)) if len(values) == len(query) else {}


def cuda_device_facts(index: int) -> dict[str, object]:
    """Name, compute capability, memory, CUDA/cuDNN versions, driver and clocks of one GPU."""
    import torch

    props = torch.cuda.get_device_properties(index)
    facts: dict[str, object] = {
        "gpu": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_memory_mib": props.total_memory // (1 << 20),
        "multiprocessors": props.multi_processor_count,
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    smi = nvidia_smi(index)
    facts["driver"] = smi.pop("driver_version", None) or _driver_from_proc()
    facts["gpu_clocks"] = smi or None
    return facts


def _driver_from_proc() -> str | None:
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    for token in text.split():
        if token.count(".") >= 1 and token.replace(".", "").isdigit():
            return token
    return None


def cuda_unavailable_reason() -> str | None:
    """Why torch cannot use a CUDA GPU here, or None when it can."""
    import torch

    if torch.version.cuda is None:
        return "this torch build has no CUDA support (torch.version.cuda is None)"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible (torch.cuda.is_available() is False)"
    return None


# -- other work on the host ---------------------------------------------------------------

# A row measured while other processes kept more than this many CPUs busy is redone by
# ``remeasure_above`` whatever its spread: with several threads per op, a competitor makes
# every call wait for a descheduled thread, consistently, so such rows can look settled.
BUSY_CPUS = 0.25


def host_is_busy(other_cpus: float, threads: int) -> bool:
    """Whether other processes, using ``other_cpus`` CPUs, leave fewer free than the
    ``threads`` a measurement computes with (beyond a ``BUSY_CPUS`` allowance)."""
    return other_cpus + threads > usable_cpus() + BUSY_CPUS


class HostMonitor:
    """CPUs kept busy by other processes between two calls (Linux /proc/stat, best effort):
    the host's busy CPU time less this process's own, over the wall time."""

    def __init__(self) -> None:
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._snapshot()

    def _snapshot(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                fields = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields[:3]) + sum(fields[5:8])  # user nice system irq softirq steal
        own = os.times()
        return time.monotonic(), busy / self._hz, own.user + own.system

    def other_cpus(self) -> float | None:
        now = self._snapshot()
        last, self._last = self._last, now
        if now is None or last is None or now[0] - last[0] <= 0:
            return None
        others = (now[1] - last[1]) - (now[2] - last[2])
        return round(max(0.0, others / (now[0] - last[0])), 2)
