"""The paper's connection rule, reproduced exactly on the ported spaces."""

import json

from densenas.literal import parse_literal
from densenas.space import SearchSpace
from tests.conftest import run_cli


def _legacy(legacy_dir, name):
    return parse_literal((legacy_dir / name).read_text())


def test_mbv2_connectivity_matches_paper_latency_list(legacy_dir):
    space = SearchSpace.load("mbv2")
    _, blocks, final, _ = _legacy(legacy_dir, "lat_list_densenas_mbv2_xp32")
    assert len(blocks) == len(space.routing_blocks) == 16
    for entry, block in zip(blocks, space.routing_blocks):
        assert len(entry[0]) == len(block.in_edges)  # head branches per block
        assert all(len(br) == 6 for br in entry[0])
    assert len(final) == len(space.final.in_edges) == 3


def test_resnet_connectivity_matches_paper_latency_list(legacy_dir):
    space = SearchSpace.load("resnet")
    _, blocks, final, _ = _legacy(legacy_dir, "lat_list_resv2_32")
    assert len(blocks) == len(space.routing_blocks) == 20
    for entry, block in zip(blocks, space.routing_blocks):
        assert len(entry[0]) == len(block.in_edges)
        assert len(entry[1]) == block.num_layers  # stacked layers per block
    assert len(final) == len(space.final.in_edges)


def test_mbv2_edges_by_hand():
    s = SearchSpace.load("mbv2")
    # block 0 (stage 0) may only reach stage 1: one stride-2 edge
    assert s.blocks[0].out_edges == (1,) and s.blocks[0].out_strides == (2,)
    # block 1 (fm 56) reaches the three fm-28 blocks of stage 2, then stage 3 is too far
    assert s.blocks[1].out_edges == (2, 3, 4) and s.blocks[1].out_strides == (2, 2, 2)
    # incoming branches are ordered nearest preceding block first
    assert s.blocks[4].in_edges == (3, 2, 1)
    assert s.final.in_edges == (16, 15, 14)
    assert [b.num_layers for b in s.routing_blocks] == [3] * 13 + [0] * 3


def test_rule_stops_at_fm_ratio_and_stage_gap():
    s = SearchSpace.load("mbv2-tiny")
    assert s.blocks[1].out_edges == (2, 3)  # block 4 is two stages ahead
    assert s.blocks[5].out_edges == (6, 7)  # the final conv is two stages ahead


def test_unique_signatures_cover_every_instance_once():
    s = SearchSpace.load("mbv2-tiny")
    inst = list(s.op_instances())
    keys = {i.signature.key() for i in inst}
    uniq = s.unique_signatures()
    assert len(uniq) == len(keys) < len(inst)
    assert {u.key() for u in uniq} == keys
    # batch and precision are part of the key
    assert all(u.batch == 8 and u.dtype == "fp16" for u in s.unique_signatures(8, "fp16"))


def test_head_and_stack_signatures_shapes():
    s = SearchSpace.load("mbv2")
    sig = s.head_signature(1, 0, "mbconv_k3_t3")
    assert (sig.c_in, sig.c_out, sig.stride, sig.h) == (16, 24, 2, 112)
    sig = s.stack_signature(1, "skip_connect")
    assert (sig.c_in, sig.c_out, sig.stride, sig.h) == (24, 24, 1, 56)
    assert s.final_signature(16).c_out == 1984


def test_path_count_by_brute_force():
    s = SearchSpace.load("mbv2-tiny")

    def walk(b):
        if b == s.final.id:
            return 1
        return sum(walk(d) for d in s.blocks[b].out_edges)

    assert s.num_paths == walk(0) == 27


def test_space_show_json_cli():
    proc = run_cli("space", "show", "mbv2", "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["unique_ops"] > 0
    assert len(d["blocks"]) == 18
    b3 = d["blocks"][3]
    assert set(b3) >= {"ch", "fm", "stage", "num_layers", "in_edges", "out_edges"}
    assert b3["in_edges"] == [2, 1] and b3["out_edges"] == [4, 5, 6, 7]
