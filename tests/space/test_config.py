"""Search-space files are validated on load: one line naming file and field, exit 2."""

from pathlib import Path

import pytest

from densenas.errors import DensenasError
from densenas.paths import CONFIGS_DIR
from densenas.space import SearchSpace, load_space_config
from tests.conftest import assert_user_error, run_cli

TINY = (CONFIGS_DIR / "mbv2-tiny.yaml").read_text()


def test_paper_values_ported_faithfully(legacy_dir):
    import yaml

    paper = yaml.safe_load((legacy_dir / "imagenet_search_cfg_mbv2.yaml").read_text())
    ours = load_space_config("mbv2")
    scale = paper["search_params"]["net_scale"]
    assert ours.blocks.ch == scale["chs"] and ours.blocks.fm == scale["fm_sizes"]
    assert ours.blocks.stage == scale["stage"] and ours.blocks.num_layers == scale["num_layers"]
    assert ours.adjoin_connect_nums == paper["search_params"]["adjoin_connect_nums"]
    assert ours.primitives.head == paper["search_params"]["PRIMITIVES_head"]
    assert ours.primitives.stack == paper["search_params"]["PRIMITIVES_stack"]
    assert (ours.init_dim, ours.head_dim, ours.last_dim) == (16, 16, 1984)
    assert ours.search.cost.log_base == 15.0 and ours.search.cost.sub_loss_factor == 0.15
    paper_r = yaml.safe_load((legacy_dir / "imagenet_search_cfg_resnet.yaml").read_text())
    ours_r = load_space_config("resnet")
    assert ours_r.blocks.ch == paper_r["search_params"]["net_scale"]["chs"]
    assert ours_r.softmax_temp == 0.9 and ours_r.search.arch_update_epoch == 10
    assert ours_r.search.cost.skip_reg is True


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "old,new,needle",
    [
        ("  fm: [16, 8, 8, 4, 4, 4, 2, 2]", "  fm: [16, 8, 8, 4, 4, 4, 2]", "blocks"),
        ("mbconv_k5_t6, skip_connect]", "mbconv_k9_t6, skip_connect]", "mbconv_k9_t6"),
        ("  stage: [0, 1, 2, 2, 3, 3, 4, 4, 5]", "  stage: [0, 1, 2, 2, 3, 3, 4, 2, 5]", "stage ids must not decrease"),
        ("softmax_temp: 1.0", "softmax_temp: -1", "softmax_temp"),
        ("input_size: 32", "input_size: 32\nbogus_field: 1", "bogus_field"),
    ],
)
def test_bad_space_rejected(tmp_path, old, new, needle):
    assert old in TINY
    p = _write(tmp_path, TINY.replace(old, new))
    with pytest.raises(DensenasError) as e:
        SearchSpace.load(str(p))
    assert str(p) in str(e.value) and needle in str(e.value)


def test_fm_ratio_the_rule_cannot_connect(tmp_path):
    p = _write(tmp_path, TINY.replace("  fm: [16, 8, 8, 4, 4, 4, 2, 2]", "  fm: [16, 8, 8, 4, 4, 4, 1, 1]"))
    with pytest.raises(DensenasError, match="no incoming edge|no outgoing edge"):
        SearchSpace.load(str(p))


def test_malformed_yaml_cli(tmp_path):
    p = _write(tmp_path, "name: x\nblocks: [1, 2\n")
    assert_user_error(run_cli("space", "show", str(p)), str(p), "malformed YAML")


def test_unknown_op_cli(tmp_path):
    p = _write(tmp_path, TINY.replace("head: [mbconv_k3_t3,", "head: [conv_k3_magic,"))
    assert_user_error(run_cli("space", "show", str(p)), str(p), "conv_k3_magic")


def test_unknown_space_name_cli():
    assert_user_error(run_cli("space", "show", "no-such-space"), "no-such-space")
