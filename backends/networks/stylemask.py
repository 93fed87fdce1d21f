"""StyleMask's mask network and its style-space mixing (Bounareli et al., FG 2023).

StyleMask reenacts a face inside StyleGAN2's *style space*: the per-channel
modulation vectors of the styled convs (17 of them for the 1024 generator, see
``Generator.style_vectors``). For each of the first ``num_layers_control`` (12)
layers a small MLP looks at the difference between the source's and the
target's style vectors and predicts a mask in (0, 1) per channel:

    m_l = sigmoid(MLP_l(s_src,l - s_tgt,l))
    s_mix,l = m_l * s_tgt,l + (1 - m_l) * s_src,l      for l < 12
    s_mix,l = s_src,l                                  for l >= 12

So m = 1 takes the target's channel (pose and expression) and m = 0 keeps the
source's (identity). The mixed styles are decoded with the source's W+ for the
toRGB layers (``Generator.synthesis_from_styles``).

Checkpoint layout (``mask_network_1024.pt``)::

    {'num_layers_control': 12,
     'mask_net': {'network_{ii}.masknet.{0,2}.{weight,bias}': ...},   # ii = 00..11
     'step': int}                                                    # written by training; ignored

Each MLP is Linear(d, d) -> ReLU -> Linear(d, d) with d the layer's style
width (512 for layers 0-9, 256 for 10-11).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..checkpoints import load_state_dict_strict, safe_load
from ..errors import CheckpointError
from ..standin import Init, seeded_tensor

if TYPE_CHECKING:  # the generator is passed in; no import cycle at run time
    from .stylegan2 import Generator

NUM_LAYERS_CONTROL = 12
# Style widths of the FFHQ-1024 generator's styled convs (conv1, convs[0..15]).
FFHQ1024_STYLE_SECTIONS = (512,) * 10 + (256, 256, 128, 128, 64, 64, 32)


class LayerMaskMLP(nn.Module):
    """One layer's mask predictor: ``masknet`` = Linear(d,d), ReLU, Linear(d,d); sigmoid on top."""

    def __init__(self, width: int):
        super().__init__()
        self.masknet = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, style_difference: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.masknet(style_difference))


def layer_name(index: int) -> str:
    """The official module name of layer ``index``: network_00, network_01, ..."""
    return f"network_{index:02d}"


class MaskNetwork(nn.ModuleDict):
    """The per-layer mask MLPs, keyed ``network_00`` ... ``network_11`` (the official ``mask_net``).

    Being the ModuleDict itself, its ``state_dict()`` has exactly the official
    keys ``network_ii.masknet.{0,2}.{weight,bias}``.
    """

    def __init__(self, widths: Sequence[int] = FFHQ1024_STYLE_SECTIONS[:NUM_LAYERS_CONTROL]):
        super().__init__({layer_name(i): LayerMaskMLP(int(w)) for i, w in enumerate(widths)})
        self.widths = [int(w) for w in widths]

    @property
    def num_layers_control(self) -> int:
        return len(self.widths)

    def forward(self, s_src: Sequence[torch.Tensor], s_tgt: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return predict_masks(self, s_src, s_tgt)


# --------------------------------------------------------------------------- the mixing maths


def predict_masks(net: MaskNetwork, s_src: Sequence[torch.Tensor], s_tgt: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """m_l = sigmoid(MLP_l(s_src,l - s_tgt,l)) for the controlled layers; each [B, d_l].

    ``s_src`` and ``s_tgt`` are per-layer style lists (at least
    ``num_layers_control`` entries; further layers are ignored).
    """
    n = net.num_layers_control
    if len(s_src) < n or len(s_tgt) < n:
        raise ValueError(
            f"the mask network controls {n} layers; got {len(s_src)} source and {len(s_tgt)} target style vectors"
        )
    masks = []
    for i in range(n):
        mlp = net[layer_name(i)]
        masks.append(mlp(s_src[i] - s_tgt[i]))  # source minus target, as in the paper's code
    return masks


def mix_styles(
    s_src: Sequence[torch.Tensor], s_tgt: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Mixed per-layer styles: m·s_tgt + (1 − m)·s_src where a mask is given, s_src elsewhere.

    ``masks`` covers the first ``len(masks)`` layers; every later layer is the
    source's own vector (the same tensor object, untouched).
    """
    if len(s_src) != len(s_tgt):
        raise ValueError(f"source and target have {len(s_src)} and {len(s_tgt)} style layers")
    if len(masks) > len(s_src):
        raise ValueError(f"{len(masks)} masks for {len(s_src)} style layers")
    mixed = []
    for i, src in enumerate(s_src):
        if i < len(masks):
            m = masks[i]
            mixed.append(m * s_tgt[i] + (1 - m) * src)
        else:
            mixed.append(src)
    return mixed


@dataclass
class StyleMaskForward:
    """Every stage of one StyleMask forward (tensors, batch-first)."""

    w_source: torch.Tensor  # the source W+ after truncation [B, 18, 512]
    w_target: torch.Tensor  # the target W+ after truncation
    s_source: list[torch.Tensor]  # per-layer conv styles of the source (17)
    s_target: list[torch.Tensor]
    masks: list[torch.Tensor]  # one per controlled layer (12)
    s_mixed: list[torch.Tensor]
    image: torch.Tensor | None  # raw decoded image [B, 3, 1024, 1024], unclamped


def stylemask_forward(
    G: Generator,
    net: MaskNetwork,
    w_source: torch.Tensor,
    w_target: torch.Tensor,
    truncation: float = 1.0,
    truncation_latent: torch.Tensor | None = None,
    decode: bool = True,
) -> StyleMaskForward:
    """Truncate both codes, map them to style space, predict masks, mix, and decode.

    Truncation is t + ψ(w − t) on every W+ row (skipped for ψ >= 1). The
    decoder uses the mixed conv styles and the *source's* truncated W+ for
    every toRGB layer, with the generator's constant noise buffers.
    """
    w_src = G.truncate(G.to_wplus(w_source), truncation, truncation_latent)
    w_tgt = G.truncate(G.to_wplus(w_target), truncation, truncation_latent)
    s_src = G.style_vectors(w_src)
    s_tgt = G.style_vectors(w_tgt)
    masks = predict_masks(net, s_src, s_tgt)
    s_mix = mix_styles(s_src, s_tgt, masks)
    image = G.synthesis_from_styles(s_mix, w_src, noise="const") if decode else None
    return StyleMaskForward(w_src, w_tgt, s_src, s_tgt, masks, s_mix, image)


# --------------------------------------------------------------------------- checkpoints


def load_mask_network(
    obj_or_path: str | Path | Mapping[str, Any], style_sections: Sequence[int] = FFHQ1024_STYLE_SECTIONS
) -> MaskNetwork:
    """A :class:`MaskNetwork` from ``mask_network_1024.pt`` (path or loaded dict), loaded strictly.

    Reads ``num_layers_control`` and ``mask_net``; ``step`` and any other
    top-level training entries are ignored. ``style_sections`` are the
    generator's style widths (the first ``num_layers_control`` size the MLPs).
    """
    what = "StyleMask mask network"
    ckpt = safe_load(obj_or_path, what=what) if isinstance(obj_or_path, (str, Path)) else obj_or_path
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(
            f"The {what} checkpoint is a {type(ckpt).__name__}; "
            "expected a dict with 'num_layers_control' and 'mask_net'."
        )
    missing = [k for k in ("num_layers_control", "mask_net") if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"The {what} checkpoint has no {' or '.join(repr(k) for k in missing)} entry "
            f"(top-level keys: {sorted(map(str, ckpt))[:8]}); expected StyleMask's mask_network_1024.pt."
        )
    n = ckpt["num_layers_control"]
    if isinstance(n, torch.Tensor) and n.numel() == 1:
        n = n.item()
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(style_sections):
        raise CheckpointError(
            f"The {what} checkpoint's num_layers_control is {n!r}; expected an int from 1 to {len(style_sections)}."
        )
    state = ckpt["mask_net"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"The {what} checkpoint's 'mask_net' is not a state dict.")
    net = MaskNetwork(list(style_sections)[:n])
    load_state_dict_strict(net, state, what)
    return net.eval()


def standin_checkpoint_mask_network(base_seed: int = 0) -> dict[str, Any]:
    """A deterministic, real-size stand-in ``mask_network_1024.pt`` in the official structure.

    Weights N(0, 1/d), biases N(0, 0.1²), each seeded by its key: with
    ``base_seed=0`` the tensors equal the stylemask parity fixture's. (The
    official init, N(0, 0.01²), would make every mask ≈ 0.5; the wider one
    spreads them over roughly [0.1, 0.9].)
    """
    template = MaskNetwork().state_dict()
    state: dict[str, torch.Tensor] = {}
    for name, value in template.items():
        width = value.shape[-1]
        init = Init("normal", 1.0 / math.sqrt(width)) if name.endswith("weight") else Init("normal", 0.1)
        state[name] = seeded_tensor(name, tuple(value.shape), init, base_seed)
    return {"num_layers_control": NUM_LAYERS_CONTROL, "mask_net": state, "step": 0}


__all__ = [
    "FFHQ1024_STYLE_SECTIONS",
    "NUM_LAYERS_CONTROL",
    "LayerMaskMLP",
    "MaskNetwork",
    "layer_name",
    "load_mask_network",
    "mix_styles",
    "predict_masks",
    "StyleMaskForward",
    "standin_checkpoint_mask_network",
    "stylemask_forward",
]
