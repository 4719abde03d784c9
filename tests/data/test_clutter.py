"""The built-in digits-clutter task: deterministic, held out, harder than the digits."""

import torch

from densenas.data import build_loaders, describe_data
from densenas.data.clutter import clutter_arrays, render
from densenas.data.digits import digits_arrays, digits_split


def test_same_seed_same_images_other_seed_other_images():
    a, b = clutter_arrays(0), clutter_arrays(1)
    images, labels = digits_arrays()
    idx = digits_split(0)[0][:40]
    x1, y1 = render(images[idx], labels[idx], 7)
    x2, y2 = render(images[idx], labels[idx], 7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert a[0].shape == b[0].shape and not torch.equal(a[0], b[0])


def test_validation_digits_are_held_out_from_training():
    train_idx, val_idx = digits_split(0)
    assert not set(train_idx) & set(val_idx)
    xt, yt, xv, yv = clutter_arrays(0)
    # two renderings of every digit of each split, labels in step with the source digits
    _, labels = digits_arrays()
    assert len(yt) == 2 * len(train_idx) and len(yv) == 2 * len(val_idx)
    assert torch.equal(yv[: len(val_idx)], torch.from_numpy(labels[val_idx]))


def test_loaders_serve_normalised_three_channel_batches_at_any_size():
    info = describe_data("digits-clutter", image_size=32, seed=0)
    assert info["kind"] == "digits-clutter" and info["num_classes"] == 10 and info["train"] > info["val"] > 0
    data = build_loaders("digits-clutter", image_size=24, batch_size=16, seed=0)
    x, y = next(iter(data.train))
    assert x.shape == (16, 3, 24, 24) and y.shape == (16,)
    xt = clutter_arrays(0)[0]
    assert abs(float(((xt - xt.mean()) / xt.std()).mean())) < 1e-4


def test_the_task_is_harder_than_the_digits_for_a_linear_model():
    # a nearest-class-mean classifier on raw pixels: near-perfect on the digits, poor here
    def ncm_accuracy(xt, yt, xv, yv):
        xt, xv = xt.flatten(1), xv.flatten(1)
        means = torch.stack([xt[yt == c].mean(0) for c in range(10)])
        return float((torch.cdist(xv, means).argmin(1) == yv).float().mean())

    images, labels = digits_arrays()
    tr, va = digits_split(0)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    plain = ncm_accuracy(x[tr], y[tr], x[va], y[va])
    cluttered = ncm_accuracy(*clutter_arrays(0))
    assert plain > 0.85 and cluttered < 0.5, (plain, cluttered)


def test_training_images_are_drawn_anew_for_each_batch_and_reproducibly():
    data = build_loaders("digits-clutter", image_size=32, batch_size=16, seed=0)
    train = data.train.dataset
    _, labels = digits_arrays()
    train_idx = digits_split(0)[0]
    n = len(train_idx)
    assert len(train) == 2 * n  # an epoch is as long as two renderings of the split
    x1, y1 = train.__getitems__([0, 5, n])
    x2, y2 = train.__getitems__([0, 5, n])
    assert torch.equal(x1, x2) and torch.equal(y1, y2)  # the same batch is the same images (resume)
    assert torch.equal(y1, torch.from_numpy(labels[train_idx[[0, 5, 0]]]))
    assert not torch.equal(x1[0], x1[2])  # digit 0 twice in a batch: two different drawings
    x3, _ = train.__getitems__([0, 6, n])
    assert not torch.equal(x1[0], x3[0])  # in another batch it is drawn anew
    # normalised like the fixed renderings of the split
    xt = clutter_arrays(0)[0]
    big, _ = train.__getitems__(list(range(0, 2 * n, 3)))
    assert abs(float(big.mean())) < 0.05 and abs(float(big.std()) - 1) < 0.05
    assert abs(float(((xt - xt.mean()) / xt.std()).mean())) < 1e-4
