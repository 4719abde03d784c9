"""``digits-clutter``: a built-in task hard enough to rank architectures, without download.

The plain digits retrain to about 99% with any network of the tiny space, so they cannot
tell a good architecture from a poor one. This task renders the same real scikit-learn
digits harder, by a fixed procedure:

1. the 1,797 digits are split 80/20 (stratified, by the seed) *before* rendering, so no
   validation image shows a digit instance seen in training (a held-out split);
2. each digit is drawn on a 32x32 canvas (any other size is resampled from it): scale
   1.4-2.6x (11-21 px), rotation within +-35 degrees, a random position keeping the digit
   inside the canvas;
3. ``CLUTTER`` fragments of other digits of the same split (a random 4x4 quarter-window of
   an 8x8 digit, at the same range of scales and rotations, dimmed to 50-90%) are placed
   anywhere, the canvas is the pixel-wise maximum, and Gaussian noise (sigma 0.08) is added.

The validation split is drawn once, ``RENDERS`` times per digit, from one generator seeded
by ``seed``: the same seed gives the same images bit for bit. The training split is drawn
anew for every batch (``densenas.data.datasets.FreshClutter``), ``RENDERS`` drawings per
digit an epoch: with fixed training images a network of the tiny space memorises them
(98% train, 58% val after 10 epochs) and small and large networks end alike; drawn anew,
train and val accuracy stay together and what a network can learn decides. Images are
normalised by the mean and std of the training split's fixed drawing and expanded from
grey to 3 channels.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

NAME = "digits-clutter"
CANVAS = 32
RENDERS = 2  # renderings per digit and split
CLUTTER = 3  # fragments of other digits per image
SCALE = (1.4, 2.6)  # drawn size over the 8 px source: 11-21 px
ROTATION_DEG = 35.0
FRAGMENT_DIM = (0.5, 0.9)
NOISE = 0.08


def _theta(n: int, size_px: torch.Tensor, centre: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Affine matrices for ``grid_sample`` mapping canvas coordinates ([-1, 1]) to source
    coordinates: the source appears ``size_px`` wide, rotated by ``angle``, at ``centre``
    (canvas coordinates)."""
    s = CANVAS / size_px  # canvas units per source unit
    cos, sin = torch.cos(angle) * s, torch.sin(angle) * s
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    theta[:, :, 2] = -(theta[:, :, :2] @ centre[:, :, None])[:, :, 0]
    return theta


def _draw(sources: torch.Tensor, g: torch.Generator, *, anywhere: bool) -> torch.Tensor:
    """Each (8x8) source drawn at a random scale, rotation and position on its own canvas."""
    n = sources.shape[0]
    size = SCALE[0] * 8 + (SCALE[1] - SCALE[0]) * 8 * torch.rand(n, generator=g)
    angle = math.radians(ROTATION_DEG) * (2 * torch.rand(n, generator=g) - 1)
    # keep a digit's rotated box inside the canvas; a fragment may sit anywhere
    half = size * (torch.cos(angle).abs() + torch.sin(angle).abs()) / 2 / (CANVAS / 2)
    room = torch.ones(n) if anywhere else (1 - half).clamp(min=0)
    centre = (2 * torch.rand(n, 2, generator=g) - 1) * room[:, None]
    grid = F.affine_grid(_theta(n, size, centre, angle), [n, 1, CANVAS, CANVAS], align_corners=False)
    return F.grid_sample(sources[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _fragments(sources: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random 4x4 window of each 8x8 source (the rest blanked), dimmed."""
    n = sources.shape[0]
    r0 = torch.randint(0, 5, (n,), generator=g)
    c0 = torch.randint(0, 5, (n,), generator=g)
    ar = torch.arange(8)
    rows = (ar[None] >= r0[:, None]) & (ar[None] < r0[:, None] + 4)
    cols = (ar[None] >= c0[:, None]) & (ar[None] < c0[:, None] + 4)
    dim = FRAGMENT_DIM[0] + (FRAGMENT_DIM[1] - FRAGMENT_DIM[0]) * torch.rand(n, generator=g)
    return sources * (rows[:, :, None] & cols[:, None, :]) * dim[:, None, None]


def draw(sources: torch.Tensor, others: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The cluttered canvases (N, 1, 32, 32) of ``sources`` (N, 8, 8) in [0, 1]: each drawn
    once, with a fragment of ``others[:, j]`` (N, CLUTTER, 8, 8) for each of its clutter
    fragments, and the noise, all from ``g``."""
    canvas = _draw(sources, g, anywhere=False)
    for j in range(CLUTTER):
        canvas = torch.maximum(canvas, _draw(_fragments(others[:, j], g), g, anywhere=True))
    return canvas + NOISE * torch.randn(canvas.shape, generator=g)


def clutter_sources(n: int, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """For each of ``idx`` (digits of a split of ``n``), ``CLUTTER`` other digits of the
    split (never the digit itself) to take fragments from."""
    return (idx[:, None] + torch.randint(1, n, (idx.numel(), CLUTTER), generator=g)) % n


def render(images: np.ndarray, labels: np.ndarray, seed: int, renders: int = RENDERS) -> tuple[torch.Tensor, torch.Tensor]:
    """``renders`` cluttered 32x32 images of every digit in ``images`` (N, 8, 8) in [0, 1];
    clutter comes from the same set of digits. Returns (N * renders, 1, 32, 32), labels."""
    g = torch.Generator()
    g.manual_seed(seed)
    src = torch.from_numpy(images).float()
    idx = torch.arange(src.shape[0]).repeat(renders)
    others = clutter_sources(src.shape[0], idx, g)
    return draw(src[idx], src[others], g), torch.from_numpy(labels)[idx].long()


@functools.lru_cache(maxsize=4)
def clutter_arrays(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train and val images and labels of the task for ``seed`` (cached: rendering takes a
    second or two)."""
    from densenas.data.digits import digits_splits

    train, val = digits_splits(seed)
    # distinct streams for the two splits, both fixed by the seed
    xt, yt = render(*train, seed * 2 + 1)
    xv, yv = render(*val, seed * 2 + 2)
    return xt, yt, xv, yv
