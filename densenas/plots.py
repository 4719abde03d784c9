"""Figures: the architecture drawn as the paper does (one box per layer)."""

from __future__ import annotations

from pathlib import Path

from densenas.arch import Arch
from densenas.fileio import atomic_path

_COLORS = {3: "#8ecae6", 5: "#ffb703", 7: "#fb8500"}


def plot_arch(arch: Arch, path: str | Path) -> None:
    """One box per layer, labelled with op and width, box height growing with width;
    stride-2 layers are marked. Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    layers = arch.layers()
    fig_w = max(6.0, 0.55 * len(layers) + 1)
    fig, ax = plt.subplots(figsize=(fig_w, 3.6))
    max_ch = max(sig.c_out for role, _, sig in layers if role != "classifier")
    for x, (role, _, sig) in enumerate(layers):
        if role == "classifier":
            label, color, height = f"FC {sig.c_out}", "#cccccc", 0.6
        else:
            label = sig.op.replace("mbconv_", "MB").replace("_t", " e").replace("_k", " k")
            color = _COLORS.get(sig.op.kernel, "#b5e48c")  # MBConvs by kernel size, other ops have none
            height = 0.6 + 1.8 * sig.c_out / max_ch
        ax.add_patch(FancyBboxPatch((x - 0.35, -height / 2), 0.7, height, boxstyle="round,pad=0.02",
                                    fc=color, ec="#333333", lw=1.5 if sig.stride == 2 else 0.6))
        ax.text(x, 0, label, rotation=90, ha="center", va="center", fontsize=7)
        ax.text(x, -height / 2 - 0.15, str(sig.c_out), ha="center", va="top", fontsize=7)
        if sig.stride == 2:
            ax.text(x, height / 2 + 0.1, "s2", ha="center", va="bottom", fontsize=7, color="#c1121f")
    ax.set_xlim(-0.8, len(layers) - 0.2)
    ax.set_ylim(-1.9, 1.9)
    ax.axis("off")
    ax.set_title(f"{arch.space}: {len(layers)} layers (box height ~ width; bold edge and s2 = stride 2)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    plt.close(fig)
