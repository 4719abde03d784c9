"""Training recipes: the paper's defaults, the schedule, and bad files named precisely."""

import math

import pytest

from densenas.errors import DensenasError
from densenas.train.recipe import TrainRecipe, load_recipe, lr_at, parse_recipe, shipped_recipes
from tests.conftest import assert_user_error, run_cli


def test_default_recipe_is_the_papers_retraining_recipe():
    r = load_recipe("default")
    assert (r.epochs, r.batch_size, r.lr, r.min_lr) == (240, 1024, 0.5, 1e-5)
    assert (r.momentum, r.weight_decay, r.label_smoothing) == (0.9, 4e-5, 0.1)
    assert (r.bn_momentum, r.bn_eps, r.warmup.epochs, r.image_size) == (0.1, 1e-3, 0, 224)


def test_every_shipped_recipe_validates():
    assert {"default", "digits"} <= set(shipped_recipes())
    for name in shipped_recipes():
        assert isinstance(load_recipe(name), TrainRecipe)


def test_lr_warms_up_linearly_then_follows_a_cosine_to_min_lr():
    r = TrainRecipe(epochs=10, lr=0.1, min_lr=1e-4, warmup={"epochs": 2, "init_lr": 0.01})
    spe = 5  # steps per epoch
    assert lr_at(r, 0, spe) == pytest.approx(0.01)
    assert lr_at(r, 5, spe) == pytest.approx(0.01 + 0.09 * 5 / 10)
    assert lr_at(r, 10, spe) == pytest.approx(0.1)  # warm-up done: the cosine starts at lr
    mid = 10 + 20  # half-way through the 40 cosine steps
    assert lr_at(r, mid, spe) == pytest.approx(1e-4 + (0.1 - 1e-4) / 2)
    assert lr_at(r, 50, spe) == pytest.approx(1e-4)
    cosine = [lr_at(r, s, spe) for s in range(10, 50)]
    assert all(a > b for a, b in zip(cosine, cosine[1:]))


def test_a_run_shorter_than_its_warmup_is_all_warmup():
    r = TrainRecipe(epochs=1, lr=0.1, min_lr=0.0, warmup={"epochs": 2, "init_lr": 0.0})
    assert [lr_at(r, s, 4) for s in range(4)] == pytest.approx([0.0, 0.0125, 0.025, 0.0375])
    assert not any(math.isnan(lr_at(r, s, 4)) for s in range(4))


@pytest.mark.parametrize(
    "text,field",
    [
        ("epochs: 0\n", "field epochs"),
        ("epoch: 3\n", "field epoch"),
        ("warmup: {epochs: many}\n", "field warmup.epochs"),
        ("lr: 0.01\nmin_lr: 0.1\n", "min_lr 0.1 is above lr 0.01"),
        ("momentum: [0.9\n", "malformed YAML"),
        ("- 1\n- 2\n", "must be a YAML mapping"),
    ],
)
def test_a_bad_recipe_names_the_file_and_the_field(tmp_path, text, field):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(DensenasError) as exc:
        load_recipe(str(path))
    assert str(path) in str(exc.value) and field in str(exc.value)


def test_a_bad_command_line_value_names_the_option():
    with pytest.raises(DensenasError, match="^--batch-size: "):
        parse_recipe("epochs: 3\n").with_overrides(batch_size=0)
    assert parse_recipe("epochs: 3\n").with_overrides(lr=0.2, epochs=None).lr == 0.2


def test_cli_reports_a_bad_recipe_field_in_one_line(tmp_path, arch_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nmomentum: 1.5\n")
    proc = run_cli("train", "--arch", str(arch_path), "--config", str(bad), "--out", str(tmp_path / "run"))
    assert_user_error(proc, "bad.yaml", "field momentum")
    assert not (tmp_path / "run").exists()
