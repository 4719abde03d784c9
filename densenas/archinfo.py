"""Summaries of a derived architecture: per-block widths, ops, MACs and params."""

from __future__ import annotations

from densenas.arch import Arch


def summarize(arch: Arch) -> dict:
    """What ``arch show --json`` prints: params, macs (multiply-adds) and the blocks."""
    from densenas.counting import count_macs, count_params
    from densenas.nets import build_derived

    net = build_derived(arch)
    shape = (1, 3, arch.input_size, arch.input_size)
    blocks = []
    heads = [sig for role, _, sig in arch.layers() if role == "head"]
    for i, (b, mod, head) in enumerate(zip(arch.blocks, net.blocks, heads)):
        macs = count_macs(mod, head.input_shape())
        blocks.append({
            "index": i, "block_id": b.block_id, "in_ch": b.in_ch, "out_ch": b.out_ch, "stride": b.stride,
            "fm": head.h // b.stride, "head_op": b.head_op.name, "stack_ops": [op.name for op in b.stack_ops],
            "params": sum(p.numel() for p in mod.parameters()), "macs": macs,
        })
    return {
        "space": arch.space,
        "input_size": arch.input_size,
        "num_classes": arch.num_classes,
        "params": count_params(net),
        "macs": count_macs(net, shape),
        "layers": len(arch.layers()),
        "blocks": blocks,
        "final_conv": None if arch.final_conv is None else list(arch.final_conv),
        "net_config": arch.to_dict()["net_config"],
    }
