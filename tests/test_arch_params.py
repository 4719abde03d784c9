"""arch_params.json: the soft architecture search writes every epoch and derive reads."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from densenas.arch_params import ARCH_PARAMS_SCHEMA, ArchParams, arch_params_from_dict, load_arch_params
from densenas.errors import DensenasError
from densenas.nets import SuperNet
from densenas.space import SearchSpace


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny() -> SearchSpace:
    return SearchSpace.load("mbv2-tiny")


@pytest.fixture(scope="module")
def mbv2() -> SearchSpace:
    return SearchSpace.load("mbv2")


def random_params(space: SearchSpace, seed: int = 0, scale: float = 1.0) -> ArchParams:
    g = torch.Generator().manual_seed(seed)
    n_head, n_stack = len(space.head_primitives), len(space.stack_primitives)
    return ArchParams(
        space.name,
        [(scale * torch.randn(len(b.out_edges), generator=g)).tolist() for b in space.blocks[:-1]],
        [(scale * torch.randn(len(b.in_edges), n_head, generator=g)).tolist() for b in space.routing_blocks],
        [(scale * torch.randn(b.num_layers, n_stack, generator=g)).tolist() for b in space.routing_blocks],
    )


def test_supernet_round_trip_is_exact(tiny, tmp_path):
    torch.manual_seed(1)
    net = SuperNet(tiny)
    with torch.no_grad():
        for p in net.arch_parameters():
            p.normal_()  # logits far from the 1e-3 init, so a lost digit would show
    path = ArchParams.from_supernet(net).save(tmp_path / "arch_params.json")
    data = json.loads(path.read_text())
    assert data["schema"] == ARCH_PARAMS_SCHEMA and data["space"] == "mbv2-tiny"
    assert [len(b) for b in data["betas"]] == [len(b.out_edges) for b in tiny.blocks[:-1]]
    assert [len(h) for h in data["head_alphas"]] == [len(b.in_edges) for b in tiny.routing_blocks]

    other = SuperNet(tiny)
    load_arch_params(path).load_into(other)
    for a, b in zip(net.arch_parameters(), other.arch_parameters()):
        assert torch.equal(a, b)
    for t, p in zip(sum(load_arch_params(path).to_tensors(), []), net.arch_parameters()):
        assert t.shape == p.shape and torch.equal(t, p.detach())


def test_to_tensors_keeps_blocks_without_layers_shaped(mbv2):
    betas, heads, stacks = random_params(mbv2).to_tensors(dtype=torch.float64)
    assert [tuple(s.shape) for s in stacks][-3:] == [(0, 7), (0, 7), (0, 7)]  # blocks 14-16 stack nothing
    assert tuple(heads[2].shape) == (2, 6) and betas[0].dtype == torch.float64
    assert len(betas) == len(mbv2.blocks) - 1


def test_the_documented_shape_message(mbv2):
    p = random_params(mbv2)
    p.head_alphas[2].append([0.0] * 6)
    with pytest.raises(DensenasError) as e:
        p.validate(mbv2)
    assert str(e.value) == "arch_params.json: field head_alphas[2]: expected 2 branches x 6 ops, got 3 x 6"


def _set(d: dict, path: tuple, value) -> dict:
    d = copy.deepcopy(d)
    target = d
    for k in path[:-1]:
        target = target[k]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


_DELETE = object()

BAD_FILES = [
    (("schema",), "densenas.arch_params/2", "field schema: expected 'densenas.arch_params/1'"),
    (("space",), "mbv2", "field space: written for space 'mbv2', not 'mbv2-tiny'"),
    (("space",), 3, "field space: expected the space's name"),
    (("stack_alphas",), _DELETE, "field stack_alphas is missing"),
    (("betas",), {"0": [1.0]}, "field betas: expected a list, got dict"),
    (("betas", 3), [0.1, 0.2, 0.3], "field betas[3]: expected 2 outgoing edges, got 3"),
    (("betas", 2, 1), "x", "field betas[2][1]: expected a number, got 'x'"),
    (("betas", 2, 1), True, "field betas[2][1]: expected a number, got True"),
    (("head_alphas", 3, 1), [0.0] * 3, "field head_alphas[3]: expected 2 branches x 4 ops, got 2 x 3/4"),
    (("stack_alphas", 5), [[0.0] * 5] * 2, "field stack_alphas[5]: expected 1 layers x 5 ops, got 2 x 5"),
    (("stack_alphas", 6), _DELETE, "field stack_alphas: expected 7 routing blocks, got 6"),
]


@pytest.mark.parametrize("path, value, message", BAD_FILES, ids=[m.split(":")[0] + str(p) for p, _, m in BAD_FILES])
def test_bad_file_is_refused_naming_the_field(tiny, tmp_path, path, value, message):
    good = random_params(tiny).to_dict()
    f = tmp_path / "arch_params.json"
    f.write_text(json.dumps(_set(good, path, value)))
    with pytest.raises(DensenasError) as e:
        load_arch_params(f).validate(tiny)
    assert str(e.value).startswith(f"{f}: {message}")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_logits_are_refused_with_their_index(tiny, tmp_path, literal):
    d = random_params(tiny).to_dict()
    d["stack_alphas"][4][1][2] = "@"
    f = tmp_path / "arch_params.json"
    f.write_text(json.dumps(d).replace('"@"', literal))
    with pytest.raises(DensenasError, match=r"field stack_alphas\[4\]\[1\]\[2\]: logit is -?(nan|inf)"):
        load_arch_params(f)


def test_save_refuses_a_diverged_search_and_keeps_the_last_good_file(tiny, tmp_path):
    f = tmp_path / "arch_params.json"
    good = random_params(tiny)
    good.save(f)
    before = f.read_text()
    bad = random_params(tiny, seed=1)
    bad.betas[1][0] = math.nan
    with pytest.raises(DensenasError, match=r"field betas\[1\]\[0\]: logit is nan"):
        bad.save(f)
    assert f.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["arch_params.json"]  # no temporary left behind


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(DensenasError, match="not found"):
        load_arch_params(tmp_path / "missing.json")
    f = tmp_path / "arch_params.json"
    f.write_text('{"schema": ')
    with pytest.raises(DensenasError, match=rf"{f}: not valid JSON"):
        load_arch_params(f)
    with pytest.raises(DensenasError, match="not a JSON object"):
        arch_params_from_dict([1, 2])


def test_load_into_refuses_another_space(tiny, mbv2):
    with pytest.raises(DensenasError, match="written for space 'mbv2'"):
        random_params(mbv2).load_into(SuperNet(tiny))


def test_written_file_is_plain_json_in_design_order(tiny, tmp_path):
    p = random_params(tiny, seed=3)
    f = p.save(Path(tmp_path) / "sub" / "arch_params.json")
    assert list(json.loads(f.read_text())) == ["schema", "space", "betas", "head_alphas", "stack_alphas"]
    again = load_arch_params(f)
    assert (again.betas, again.head_alphas, again.stack_alphas) == (p.betas, p.head_alphas, p.stack_alphas)
