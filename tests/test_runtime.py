"""The runtime plumbing search and training share: seeding and RNG states that resume
exactly, from checkpoints written today and by earlier versions, and the memory format
networks train in."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from densenas.errors import DensenasError
from densenas.fileio import torch_save
from densenas.runtime import (LAYOUT_ENV, capture_rng, images_to, layout, read_torch_file, restore_rng, seed_everything,
                              to_device)


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


def test_networks_train_channels_last_on_cpu_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv(LAYOUT_ENV, raising=False)
    assert layout("cpu") == torch.channels_last
    assert layout("cuda:0") == torch.contiguous_format
    net = to_device(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8)), "cpu")
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert images_to(torch.rand(2, 3, 8, 8), "cpu").is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setenv(LAYOUT_ENV, "contiguous")
    assert layout("cpu") == torch.contiguous_format
    monkeypatch.setenv(LAYOUT_ENV, "nhwc")
    with pytest.raises(DensenasError, match=f"{LAYOUT_ENV}='nhwc'"):
        layout("cpu")


def test_the_layout_changes_no_result_beyond_rounding(monkeypatch):
    """The same weights and images give the same logits and gradients in either layout."""
    from densenas.lut.networks import random_arch
    from densenas.nets import build_derived
    from densenas.space import SearchSpace

    monkeypatch.delenv(LAYOUT_ENV, raising=False)
    space = SearchSpace.load("mbv2-tiny")
    torch.manual_seed(0)
    plain = build_derived(random_arch(space, random.Random(0))).train()
    fast = to_device(copy.deepcopy(plain), "cpu")
    x = torch.rand(4, 3, space.input_size, space.input_size)
    out_plain, out_fast = plain(x), fast(images_to(x, "cpu"))
    torch.testing.assert_close(out_fast, out_plain, rtol=1e-4, atol=1e-5)
    out_plain.square().sum().backward()
    out_fast.square().sum().backward()
    # against the whole gradient: batch norms cancel some entries to rounding noise
    g_plain = torch.cat([p.grad.flatten() for p in plain.parameters()])
    g_fast = torch.cat([p.grad.flatten() for p in fast.parameters()])
    assert float((g_fast - g_plain).norm()) <= 1e-4 * float(g_plain.norm())
