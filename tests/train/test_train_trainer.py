"""The trainer in-process: divergence stops the run and leaves the last checkpoint intact."""

import math

import pytest
import torch

from densenas.arch import load_arch
from densenas.train.evaluate import load_weights
from densenas.train.recipe import TrainJob, TrainRecipe
from densenas.train.trainer import Trainer, TrainingDiverged


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(arch_path, tmp_path, one_thread):
    recipe = TrainRecipe(epochs=2, batch_size=256, lr=0.05, min_lr=0.0, image_size=None)
    trainer = Trainer(TrainJob(recipe=recipe, arch=load_arch(arch_path), run_dir=tmp_path / "run"))
    first = trainer.run_epoch(0)
    saved = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with torch.no_grad():  # a blown-up weight: every later loss is NaN
        next(trainer.model.parameters()).fill_(math.inf)
    with pytest.raises(TrainingDiverged) as exc:
        trainer.run_epoch(1)
    trainer.close()
    msg = str(exc.value)
    assert "epoch 2" in msg and "NaN or infinite" in msg and "checkpoint.pt (epoch 1) is intact" in msg
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == saved
    assert not (tmp_path / "run" / "weights.pt").exists()
    ckpt = load_weights(tmp_path / "run" / "checkpoint.pt")  # still loads, with epoch 1's finite weights
    assert ckpt.top1 == first["val_top1"]
    assert all(torch.isfinite(v).all() for v in ckpt.state_dict.values() if v.is_floating_point())
