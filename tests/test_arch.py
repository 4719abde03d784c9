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
    """A whole network that is no path of the space is written and said so; one that is
    not a network at all (widths that do not chain) is refused."""
    out = tmp_path / "a.json"
    proc = run_cli("arch", "import", MBV2, "--space", "mbv2-tiny", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["fits_space"] is False and "does not fit space mbv2-tiny" in d["fit_error"]
    assert load_arch(out).input_size == 32 and to_net_config(load_arch(out)) == MBV2
    broken = MBV2.replace("[[24, 40]", "[[20, 40]")
    assert_user_error(run_cli("arch", "import", broken, "--space", "mbv2-tiny", "--out", str(tmp_path / "b.json")),
                      "does not chain")
    assert not (tmp_path / "b.json").exists()


# -- whole networks: the paper's published ones, and any net_config its code builds ------------

# DenseNAS-C, the paper's 75.3% top-1 ImageNet network (its code release's training config)
DENSENAS_C = ("[[16, 16], 'mbconv_k3_t1', [], 0, 1]|[[16, 24], 'mbconv_k3_t6', [], 0, 2]|"
              "[[24, 48], 'mbconv_k7_t6', ['mbconv_k3_t3'], 1, 2]|"
              "[[48, 72], 'mbconv_k5_t6', ['mbconv_k3_t6', 'mbconv_k3_t3'], 2, 2]|"
              "[[72, 128], 'mbconv_k3_t6', ['mbconv_k3_t3', 'mbconv_k3_t3'], 2, 1]|"
              "[[128, 160], 'mbconv_k3_t6', ['mbconv_k7_t3', 'mbconv_k5_t6', 'mbconv_k7_t3'], 3, 2]|"
              "[[160, 176], 'mbconv_k3_t3', ['mbconv_k3_t6', 'mbconv_k3_t6', 'mbconv_k3_t6'], 3, 1]|"
              "[[176, 384], 'mbconv_k7_t6', [], 0, 1]|[[384, 1984], 'conv1_1']")
# MobileNetV2 as the paper's code writes it: 32-wide stem, 1280-wide final conv
MOBILENET_V2 = ("[[32, 16], 'mbconv_k3_t1', [], 0, 1]|[[16, 24], 'mbconv_k3_t6', ['mbconv_k3_t6'], 1, 2]|"
                "[[24, 32], 'mbconv_k3_t6', ['mbconv_k3_t6', 'mbconv_k3_t6'], 2, 2]|"
                "[[32, 64], 'mbconv_k3_t6', ['mbconv_k3_t6', 'mbconv_k3_t6', 'mbconv_k3_t6'], 3, 2]|"
                "[[64, 96], 'mbconv_k3_t6', ['mbconv_k3_t6', 'mbconv_k3_t6'], 2, 1]|"
                "[[96, 160], 'mbconv_k3_t6', ['mbconv_k3_t6', 'mbconv_k3_t6'], 2, 2]|"
                "[[160, 320], 'mbconv_k3_t6', [], 0, 1]|[[320, 1280], 'conv1_1']")


def _params(arch) -> int:
    from densenas.counting import count_params
    from densenas.nets import build_derived

    return count_params(build_derived(arch))


def test_densenas_c_has_the_papers_parameters_at_1000_classes():
    mbv2 = SearchSpace.load("mbv2")
    assert _params(parse_net_config(DENSENAS_C, mbv2)) == 4_347_644  # the space's 100-class search head
    arch = parse_net_config(DENSENAS_C, mbv2, num_classes=1000)
    assert arch.num_classes == 1000 and all(b.block_id is not None for b in arch.blocks)
    assert _params(arch) == 6_134_144


def test_mobilenet_v2_imports_as_a_whole_network_with_torchvisions_parameters():
    from torchvision.models import mobilenet_v2

    from densenas.arch import decode_net_config, try_fit
    from densenas.counting import count_params

    mbv2 = SearchSpace.load("mbv2")
    arch = decode_net_config(MOBILENET_V2, mbv2, num_classes=1000)
    assert (arch.init_dim, arch.head_dim, arch.final_conv) == (32, 16, (320, 1280))
    assert _params(arch) == count_params(mobilenet_v2()) == 3_504_872
    assert to_net_config(arch) == MOBILENET_V2
    same, reason = try_fit(arch, mbv2)
    assert same is arch and "final conv must be [320, 1984]" in reason  # not a path of the space: said, not refused
    with pytest.raises(DensenasError, match="final conv"):
        parse_net_config(MOBILENET_V2, mbv2)  # the space-checking entry point still checks


def test_unfitted_arch_json_round_trips(tmp_path):
    from densenas.arch import decode_net_config

    arch = decode_net_config(MOBILENET_V2, SearchSpace.load("mbv2"), num_classes=1000)
    arch.save(tmp_path / "a.json")
    d = json.loads((tmp_path / "a.json").read_text())
    assert d["schema"] == "densenas.arch/1" and d["num_classes"] == 1000
    assert all(b["block_id"] is None for b in d["blocks"])
    assert load_arch(tmp_path / "a.json") == arch
    with pytest.raises(DensenasError, match="num_classes: must be positive"):
        arch_from_dict({**d, "num_classes": 0})


def test_arch_cli_densenas_c_with_1000_classes(tmp_path):
    out = tmp_path / "c.json"
    proc = run_cli("arch", "import", DENSENAS_C, "--space", "mbv2", "--classes", "1000", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"arch": str(out), "blocks": 7, "num_classes": 1000, "fits_space": True}
    proc = run_cli("arch", "show", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["params"], info["macs"], info["num_classes"]) == (6_134_144, 360_808_256, 1000)  # 361 M MACs
    proc = run_cli("arch", "show", str(out))
    assert "360.81 M MACs, 6,134,144 params" in proc.stdout


def test_arch_cli_mobilenet_v2_imports_exports_and_benches(tmp_path):
    out = tmp_path / "mnv2.json"
    proc = run_cli("arch", "import", MOBILENET_V2, "--space", "mbv2", "--classes", "1000", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "not a path of space mbv2" in proc.stderr and "final conv must be [320, 1984]" in proc.stderr
    assert json.loads(run_cli("arch", "show", str(out), "--json").stdout)["params"] == 3_504_872
    onnx_path = tmp_path / "mnv2.onnx"
    proc = run_cli("export", "--arch", str(out), "--format", "onnx", "--out", str(onnx_path))
    assert proc.returncode == 0, proc.stderr
    import onnx

    model = onnx.load(str(onnx_path))
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 1000]
    proc = run_cli("bench", "--arch", str(out), "--backend", "onnxruntime", "--protocol", "fast", "--threads", "1",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["median_ms"] > 0
