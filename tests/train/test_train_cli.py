"""``densenas train`` and ``densenas eval`` end to end: real digits, real files, real
subprocesses (one killed mid-run), real torch.distributed with gloo."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from densenas.errors import DensenasError
from densenas.train.evaluate import WEIGHTS_SCHEMA, evaluate_weights, load_weights
from tests.conftest import assert_user_error, run_cli
from tests.train.conftest import ONE_THREAD

EPOCHS = "2"
BATCH = "128"  # 11 steps an epoch on the 1437 training digits


def train_argv(arch: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--arch", str(arch), "--epochs", EPOCHS, "--batch-size", BATCH, "--out", str(out), "--json", *extra]


def cli_json(*args: str) -> dict:
    proc = run_cli(*args, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def trained(arch_path, tmp_path_factory) -> tuple[Path, dict]:
    """A short uninterrupted run: the reference for the eval and resume tests."""
    out = tmp_path_factory.mktemp("train") / "run"
    return out, cli_json(*train_argv(arch_path, out))


def test_train_writes_checkpoint_weights_and_tensorboard_events(trained, arch_path):
    out, result = trained
    assert result["run_dir"] == str(out) and result["epochs"] == 2 and result["world_size"] == 1
    for key in ("weights", "best_top1", "top1", "top5", "loss", "epochs"):
        assert key in result
    assert 0 <= result["top1"] <= result["top5"] <= 100 and result["best_top1"] >= result["top1"]
    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100

    weights = torch.load(out / "weights.pt", weights_only=True)
    assert weights["schema"] == WEIGHTS_SCHEMA and weights["num_classes"] == 10
    assert weights["top1"] == result["top1"]
    assert weights["arch"] == json.loads(arch_path.read_text())
    assert all(isinstance(v, torch.Tensor) for v in weights["state_dict"].values())

    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and [h["epoch"] for h in ckpt["history"]] == [1, 2]
    assert torch.load(out / "best.pt", weights_only=True)["top1"] == result["best_top1"]
    assert json.loads((out / "metrics.json").read_text())["history"][-1]["val_top1"] == result["top1"]


def test_eval_reproduces_the_trained_top1_from_weights(trained, arch_path):
    out, result = trained
    ev = cli_json("eval", "--arch", str(arch_path), "--weights", str(out / "weights.pt"), "--json")
    assert ev["images"] == 360  # the digits' 20% validation split
    assert (ev["top1"], ev["top5"]) == (result["top1"], result["top5"])
    assert ev["loss"] == pytest.approx(result["loss"], rel=1e-9)
    assert ev["images_per_sec"] > 0


def test_resume_after_sigkill_matches_an_uninterrupted_run(trained, arch_path, tmp_path):
    ref_dir, ref = trained
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "densenas", *train_argv(arch_path, out)]
    env = {**os.environ, **ONE_THREAD}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (out / "checkpoint.pt").exists():  # written atomically: present means complete
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (out / "weights.pt").exists()

    assert_user_error(run_cli(*train_argv(arch_path, out), env=ONE_THREAD), str(out), "--resume")
    resumed = cli_json(*train_argv(arch_path, out, "--resume"))
    assert resumed["resumed_from_epoch"] == 1
    for key in ("top1", "top5", "loss", "best_top1", "best_epoch", "train_loss", "train_top1"):
        assert resumed[key] == ref[key], key
    mine = torch.load(out / "weights.pt", weights_only=True)["state_dict"]
    theirs = torch.load(ref_dir / "weights.pt", weights_only=True)["state_dict"]
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path, arch_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"schema": WEIGHTS_SCHEMA, "state_dict": Payload()}, protocol=2))
    proc = run_cli("eval", "--arch", str(arch_path), "--weights", str(evil))
    assert_user_error(proc, str(evil), "refused")
    assert not marker.exists()


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path, arch_path):
    junk = tmp_path / "notes.pt"
    junk.write_text("these are not weights\n")
    assert_user_error(run_cli("eval", "--arch", str(arch_path), "--weights", str(junk)), str(junk), "not a PyTorch checkpoint")
    plain = tmp_path / "list.pt"
    torch.save([1, 2, 3], plain)
    with pytest.raises(DensenasError, match="not a densenas weights file"):
        load_weights(plain)


def test_weights_for_another_network_name_the_first_mismatching_key(trained, other_arch_path):
    out, _ = trained
    with pytest.raises(DensenasError) as exc:
        evaluate_weights(out / "weights.pt", arch=other_arch_path)
    msg = str(exc.value)
    assert "first mismatching key 'blocks.0.head." in msg and str(other_arch_path) in msg
    assert "\n" not in msg


def test_a_torchvision_reference_model_trains_under_the_same_recipe(tmp_path):
    out = tmp_path / "resnet"
    result = cli_json("train", "--model", "resnet18", "--epochs", "1", "--batch-size", "256", "--out", str(out), "--json")
    assert result["network"] == "resnet18" and result["image_size"] == 32
    weights = torch.load(out / "weights.pt", weights_only=True)
    assert weights["arch"] == {"model": "resnet18"} and weights["num_classes"] == 10
    assert evaluate_weights(out / "weights.pt")["top1"] == result["top1"]


def test_ddp_on_two_gloo_processes_trains_and_evaluates_exactly(arch_path, tmp_path):
    out = tmp_path / "ddp"
    result = cli_json("train", "--arch", str(arch_path), "--epochs", "1", "--batch-size", BATCH,
                      "--out", str(out), "--nproc", "2", "--json")
    assert result["world_size"] == 2 and result["epochs"] == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "arch.json", "best.pt", "checkpoint.pt", "metrics.json", "recipe.yaml", "tb", "weights.pt"]
    # each rank validated its half; the summed counts are the whole split's
    assert evaluate_weights(out / "weights.pt")["top1"] == result["top1"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_and_eval_on_cuda_agree(arch_path, tmp_path):
    out = tmp_path / "cuda"
    result = cli_json(*train_argv(arch_path, out, "--device", "cuda"))
    assert result["device"].startswith("cuda") and 0 <= result["top1"] <= 100
    ev = cli_json("eval", "--weights", str(out / "weights.pt"), "--device", "cuda", "--json")
    assert ev["device"].startswith("cuda") and ev["top1"] == result["top1"]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert "cuda" in ckpt["rng"]  # the GPU generator is saved for an exact resume
