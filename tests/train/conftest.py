"""A representative mbv2-tiny network for the retraining tests, written as arch.json."""

from pathlib import Path

import pytest

# One thread per training process: the runs are deterministic for a fixed thread count,
# and on a shared 2-core machine one thread is several times faster than two contending.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

TINY = ("[[16, 16], 'mbconv_k3_t1', [], 0, 1]|[[16, 24], 'mbconv_k3_t3', ['mbconv_k3_t3'], 1, 2]|"
        "[[24, 32], 'mbconv_k3_t6', [], 0, 1]|[[32, 48], 'mbconv_k5_t3', ['mbconv_k3_t3'], 1, 2]|"
        "[[48, 80], 'mbconv_k3_t6', [], 0, 2]|[[80, 96], 'mbconv_k3_t6', [], 0, 1]|[[96, 256], 'conv1_1']")
# the same widths with other ops: the same block sequence, different weight shapes
OTHER = TINY.replace("[[16, 24], 'mbconv_k3_t3'", "[[16, 24], 'mbconv_k5_t6'")


def _write(net_config: str, path: Path) -> Path:
    from densenas.arch import parse_net_config
    from densenas.space import SearchSpace

    parse_net_config(net_config, SearchSpace.load("mbv2-tiny")).save(path)
    return path


@pytest.fixture(scope="session")
def arch_path(tmp_path_factory) -> Path:
    return _write(TINY, tmp_path_factory.mktemp("arch") / "arch.json")


@pytest.fixture(scope="session")
def other_arch_path(tmp_path_factory) -> Path:
    return _write(OTHER, tmp_path_factory.mktemp("other") / "arch.json")
