import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEGACY = ROOT.parent / "shared" / "legacy-luts"


def run_cli(*args: str, cwd: str | os.PathLike | None = None, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "densenas", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, one line on stderr naming what is wrong, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny tensors: on a shared CPU, OpenMP fan-out only adds waiting."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def legacy_dir() -> Path:
    if not LEGACY.is_dir():
        pytest.skip(f"the paper's latency lists are not beside this checkout ({LEGACY})")
    return LEGACY


# Fuzz tests draw the same examples on every run, so CI is reproducible; run with
# HYPOTHESIS_PROFILE=explore to draw new ones.
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("ci", derandomize=True, database=None)
_hyp_settings.register_profile("explore", database=None)
_hyp_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
