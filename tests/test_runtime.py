"""The runtime plumbing search and training share: seeding and RNG states that resume
exactly, from checkpoints written today and by earlier versions."""

from __future__ import annotations

import random

import numpy as np
import torch

from densenas.fileio import torch_save
from densenas.runtime import capture_rng, read_torch_file, restore_rng, seed_everything


def _draws() -> tuple[torch.Tensor, np.ndarray, list[float]]:
    return torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)]


def _assert_same(a, b) -> None:
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_a_training_checkpoint_of_schema_1_restores_its_rng_lists(tmp_path):
    seed_everything(11)
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    old = {  # the form densenas.checkpoint/1 stored
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
    }
    torch_save(tmp_path / "checkpoint.pt", {"schema": "densenas.checkpoint/1", "rng": old})
    expected = _draws()
    seed_everything(99)
    restore_rng(read_torch_file(tmp_path / "checkpoint.pt")["rng"], torch.device("cpu"))
    _assert_same(_draws(), expected)


def test_captured_states_restore_the_same_draws():
    seed_everything(3)
    state = capture_rng()
    expected = _draws()
    seed_everything(4)
    restore_rng(state)
    _assert_same(_draws(), expected)


def test_seeding_matches_the_plain_seeds_and_takes_seeds_beyond_32_bits():
    seed_everything(2**32 - 1)
    mine = _draws()
    random.seed(2**32 - 1)
    np.random.seed(2**32 - 1)
    torch.manual_seed(2**32 - 1)
    _assert_same(mine, _draws())
    seed_everything(2**32 + 5)  # numpy alone takes 32 bits: it gets 5, the others the whole seed
    assert np.array_equal(np.random.rand(2), np.random.RandomState(5).rand(2))
