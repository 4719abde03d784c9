"""Weights for a derived network taken from the supernet it was searched in (weight
sharing): each op of the derived path gets the weights its candidate had in the supernet.

The supernet's batch norms have no affine parameters (the paper's choice), so the derived
network's get weight 1 and bias 0, which computes the same function. What the supernet
adds on top of the ops, the softmax weights of the sampled ops and of the incoming
branches, is not part of a derived network, so the inherited network is a starting point
close to what the search evaluated, not a trained network: `densenas train` trains it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from densenas.arch import Arch, fit_to_space
from densenas.errors import DensenasError
from densenas.signature import OpSpec
from densenas.space import SearchSpace


def _copy_module(dst: nn.Module, src: nn.Module, where: str) -> None:
    """Copy every tensor of ``src`` into ``dst``; affine batch-norm parameters that ``src``
    (affine=False) lacks become the identity (weight 1, bias 0)."""
    source = src.state_dict()
    filled = {}
    for name, tensor in dst.state_dict().items():
        if name in source:
            if tuple(source[name].shape) != tuple(tensor.shape):
                raise DensenasError(f"{where}: {name!r} has shape {tuple(source[name].shape)} in the supernet, "
                                    f"{tuple(tensor.shape)} in the derived network")
            filled[name] = source[name]
            continue
        owner = dst.get_submodule(name.rsplit(".", 1)[0]) if "." in name else dst
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(owner, nn.modules.batchnorm._BatchNorm) and leaf in ("weight", "bias"):
            filled[name] = torch.ones_like(tensor) if leaf == "weight" else torch.zeros_like(tensor)
        else:
            raise DensenasError(f"{where}: {name!r} of the derived network has no counterpart in the supernet")
    dst.load_state_dict(filled)


def _stack_layers(space: SearchSpace, ops: tuple[OpSpec, ...], searched: tuple[int, ...] | None) -> tuple[list[int], bool]:
    """Which supernet layers of a block the derived stack ops came from: the searched
    choice's non-skip layers when they hold exactly these ops, else the first layers in
    order (an arch.json edited by hand, or derived under a budget). Returns (layers,
    whether the searched choice was used)."""
    if searched is not None:
        prims = space.stack_primitives
        kept = [(layer, prims[i]) for layer, i in enumerate(searched) if not prims[i].skip]
        if tuple(op for _, op in kept) == ops:
            return [layer for layer, _ in kept], True
    return list(range(len(ops))), False


def inherit_from_supernet(net: nn.Module, arch: Arch, space: SearchSpace, supernet_state: dict[str, Any],
                          *, source: str) -> list[str]:
    """Load ``supernet_state`` (a search checkpoint's ``model``) into the derived network
    ``net`` built from ``arch``; returns notes on what could not be taken over as searched."""
    from densenas.nets.supernet import SuperNet

    classifier = supernet_state.get("classifier.fc.weight")
    num_classes = int(classifier.shape[0]) if isinstance(classifier, torch.Tensor) else None
    # the checkpoint says how its candidates hold weights: shared slices leave `.shared.` keys
    weights = "shared" if any(".shared." in k for k in supernet_state) else "independent"
    supernet = SuperNet(space, num_classes=num_classes, weights=weights)
    try:
        supernet.load_state_dict(supernet_state)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:200]
        raise DensenasError(f"{source}: the supernet weights do not fit space {space.name} ({first})") from None
    return copy_path_weights(net, arch, space, supernet, where=f"{source}: supernet weights")


def copy_path_weights(net: nn.Module, arch: Arch, space: SearchSpace, supernet: nn.Module, *, where: str) -> list[str]:
    """Give the derived network ``net`` (built from ``arch``) the weights of its path in the
    live ``supernet``; returns notes on what could not be taken over as searched. The
    search uses it every epoch to evaluate single paths."""
    from densenas.arch_params import ArchParams
    from densenas.derive import viterbi_choice

    fitted = fit_to_space(arch, space)
    choice = viterbi_choice(space, ArchParams.from_supernet(supernet))
    notes: list[str] = []
    _copy_module(net.stem, supernet.stem, where)
    src = 0
    for k, block in enumerate(fitted.blocks):
        dst = block.block_id
        n = dst - 1  # routing blocks are blocks 1..N
        mixed = supernet.heads[n][space.branch_index(dst, src)]
        _copy_module(net.blocks[k].head, mixed.candidate(space.head_primitives.index(block.head_op)), where)
        layers, as_searched = _stack_layers(space, block.stack_ops, choice.stack.get(dst))
        if block.stack_ops and not as_searched:
            notes.append(f"block {k}: its stacked ops are not the searched ones; took the weights of layers "
                         f"{layers} of supernet block {dst}")
        for i, (layer, op) in enumerate(zip(layers, block.stack_ops)):
            candidate = supernet.stacks[n][layer].candidate(space.stack_primitives.index(op))
            _copy_module(net.blocks[k].stack[i], candidate, where)
        src = dst
    if fitted.final_conv is not None:
        _copy_module(net.final_conv, supernet.final[space.final.in_edges.index(src)], where)
    if net.classifier.fc.weight.shape == supernet.classifier.fc.weight.shape:
        _copy_module(net.classifier, supernet.classifier, where)
    else:
        notes.append("the classifier's input width is not the supernet's; it keeps its seeded initialisation")
    return notes
