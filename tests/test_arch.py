"""arch.json and the paper's net_config: round trips, fitting a space, refusing code."""

import json

import pytest

from densenas.arch import arch_from_dict, load_arch, parse_net_config, to_net_config
from densenas.errors import DensenasError
from densenas.space import SearchSpace
from tests.conftest import assert_user_error, run_cli

# DenseNAS-style networks written in each space
MBV2 = ("[[16, 16], 'mbconv_k3_t1', [], 0, 1]|[[16, 24], 'mbconv_k3_t6', ['mbconv_k3_t3'], 1, 2]|"
        "[[24, 40], 'mbconv_k5_t3', ['mbconv_k3_t3', 'mbconv_k3_t3'], 2, 2]|"
        "[[40, 56], 'mbconv_k7_t6', ['mbconv_k5_t3'], 1, 2]|[[56, 96], 'mbconv_k3_t6', [], 0, 1]|"
        "[[96, 176], 'mbconv_k5_t6', ['mbconv_k5_t6', 'mbconv_k7_t3'], 2, 2]|"
        "[[176, 384], 'mbconv_k3_t6', [], 0, 1]|[[384, 1984], 'conv1_1']")
RESNET = ("[[32, 48], 'basic_block', [], 0, 2]|[[48, 72], 'basic_block', ['basic_block'], 1, 2]|"
          "[[72, 128], 'basic_block', ['basic_block', 'basic_block'], 2, 2]|"
          "[[128, 208], 'basic_block', [], 0, 1]|[[208, 256], 'basic_block', ['basic_block'], 1, 2]|"
          "[[256, 512], 'basic_block', [], 0, 1]")
TINY = ("[[16, 16], 'mbconv_k3_t1', [], 0, 1]|[[16, 24], 'mbconv_k3_t3', ['mbconv_k3_t3'], 1, 2]|"
        "[[24, 32], 'mbconv_k3_t6', [], 0, 1]|[[32, 48], 'mbconv_k5_t3', ['mbconv_k3_t3'], 1, 2]|"
        "[[48, 80], 'mbconv_k3_t6', [], 0, 2]|[[80, 96], 'mbconv_k3_t6', [], 0, 1]|[[96, 256], 'conv1_1']")


@pytest.mark.parametrize("space,cfg", [("mbv2", MBV2), ("resnet", RESNET), ("mbv2-tiny", TINY)])
def test_net_config_round_trip(space, cfg, tmp_path):
    s = SearchSpace.load(space)
    arch = parse_net_config(cfg, s)
    assert to_net_config(arch) == cfg
    arch.save(tmp_path / "a.json")
    again = load_arch(tmp_path / "a.json")
    assert again == arch and to_net_config(again) == cfg
    assert all(b.block_id is not None for b in arch.blocks)


def test_block_ids_follow_the_space():
    arch = parse_net_config(TINY, SearchSpace.load("mbv2-tiny"))
    assert [b.block_id for b in arch.blocks] == [1, 2, 4, 6, 7]


@pytest.mark.parametrize("bad,needle", [
    ("__import__('os').system('touch /tmp/pwned')", "not a plain literal"),
    ("[[16, 16], 'mbconv_k3_t1', [], 0, 1]|[[16, 24], 'mbconv_k3_t6', [], 0, 1]", "stride"),
    ("[[16, 16], 'mbconv_k3_t1', [], 0, 1]|[[16, 99], 'mbconv_k3_t6', [], 0, 2]", "width 99"),
    ("[[16, 16], 'mbconv_k3_t1', [], 0, 1]|[[16, 24], 'mbconv_k9_t6', [], 0, 2]", "mbconv_k9_t6"),
    ("[[16, 16], 'mbconv_k3_t1', [], 0, 1]|[[20, 24], 'mbconv_k3_t6', [], 0, 2]", "does not chain"),
    ("[[16, 16], 'mbconv_k3_t1', [], 0, 1]|[[16, 24], 'mbconv_k3_t6', ['mbconv_k3_t3'], 2, 2]", "stacked layers"),
])
def test_net_config_that_does_not_fit(bad, needle):
    with pytest.raises(DensenasError, match=needle):
        parse_net_config(bad, SearchSpace.load("mbv2-tiny"))


def test_arch_json_errors(tmp_path):
    arch = parse_net_config(TINY, SearchSpace.load("mbv2-tiny")).to_dict()
    with pytest.raises(DensenasError, match="schema"):
        arch_from_dict({**arch, "schema": "densenas.arch/0"})
    broken = json.loads(json.dumps(arch))
    broken["blocks"][2]["in_ch"] = 33
    with pytest.raises(DensenasError, match=r"blocks\[2\].*does not chain"):
        arch_from_dict(broken)
    broken = json.loads(json.dumps(arch))
    broken["blocks"][0]["head_op"] = "exec_me"
    with pytest.raises(DensenasError, match="exec_me"):
        arch_from_dict(broken)
    p = tmp_path / "t.json"
    p.write_text(json.dumps(arch)[:50])
    with pytest.raises(DensenasError, match="not valid JSON"):
        load_arch(p)


def test_arch_cli_import_export_show(tmp_path):
    out = tmp_path / "arch.json"
    proc = run_cli("arch", "import", TINY, "--space", "mbv2-tiny", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("arch", "export", str(out))
    assert proc.returncode == 0 and proc.stdout.strip() == TINY
    png = tmp_path / "arch.png"
    proc = run_cli("arch", "show", str(out), "--json", "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["params"] > 0 and info["macs"] > 0 and len(info["blocks"]) == 5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_arch_cli_rejects_code(tmp_path):
    marker = tmp_path / "pwned"
    proc = run_cli("arch", "import", f"__import__('os').system('touch {marker}')", "--space", "mbv2-tiny",
                   "--out", str(tmp_path / "a.json"))
    assert_user_error(proc, "net_config")
    assert not marker.exists()


def test_arch_cli_net_config_that_does_not_fit(tmp_path):
    proc = run_cli("arch", "import", MBV2, "--space", "mbv2-tiny", "--out", str(tmp_path / "a.json"))
    assert_user_error(proc, "mbv2-tiny")
