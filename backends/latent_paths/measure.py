"""CLIP ViT-B/32 for measuring a path: the margin cos(img, A) - cos(img, B) of each frame, and its plot."""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import memory
from ..device import get_device, get_dtype
from ..errors import MissingWeightsError
from ..networks.clip import ClipEncoder, load_clip
from ..standin import standin_enabled
from ..weights import load_checkpoint
from .paths import PathPreset


@memory.managed("CLIP ViT-B/32 (latent paths margins)")
@functools.lru_cache(maxsize=1)
def _cached_clip(standin: bool, device: str, dtype: torch.dtype = torch.float32) -> tuple[ClipEncoder, bool]:
    loaded = load_checkpoint("clip_vit_b32")
    # Only the towers take the policy's dtype; the encoder's mean/std and its outputs stay float32.
    encoder = ClipEncoder(load_clip(loaded.obj, device=device).to(dtype=dtype)).to(device)
    return encoder, loaded.standin


def get_clip() -> tuple[ClipEncoder, bool]:
    """CLIP ViT-B/32 for the margin plot (and whether it is a stand-in); raises MissingWeightsError."""
    device = get_device()
    return _cached_clip(standin_enabled(), str(device), get_dtype(device, network="clip"))


# --------------------------------------------------------------------------- CLIP margins

@dataclass
class Margins:
    values: list[float] | None
    note: str
    standin: bool = False


def clip_margins(images: Sequence[Image.Image], preset: PathPreset) -> Margins:
    """cos(img, A) − cos(img, B) for each image, or why there is none."""
    try:
        encoder, standin = get_clip()
    except MissingWeightsError:
        return Margins(None, "CLIP weights (clip_vit_b32) are not available: no margin was computed.")
    device = encoder.mean.device
    size = encoder.image_size
    batch = torch.stack([torch.from_numpy(np.array(im.resize((size, size), Image.Resampling.BICUBIC))).permute(2, 0, 1)
                         for im in images]).float().div(255).to(device)
    with torch.no_grad():
        feats = encoder.encode_images(batch, generator_range=False)
        text = encoder.encode_texts([preset.positive, preset.negative])
    values = (feats @ text[0] - feats @ text[1]).cpu().tolist()
    note = "CLIP ViT-B/32 margin." if not standin else "Stand-in CLIP weights: the margin is NOT meaningful."
    return Margins(values, note, standin)


def margin_plot(strengths: Sequence[float], margins: Margins, preset: PathPreset) -> Image.Image:
    """A small line plot of the CLIP margin along the path, labelled when CLIP is a stand-in or missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    if margins.values is not None:
        ax.plot(list(strengths), margins.values, marker="o")
        ax.axhline(0.0, color="grey", lw=0.8)
    else:
        ax.text(0.5, 0.5, margins.note, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xlabel("strength along the path (− toward B, + toward A)")
    ax.set_ylabel("cos(img, A) − cos(img, B)")
    title = f"A: {preset.positive}\nB: {preset.negative}"
    if margins.standin:
        title = "STAND-IN CLIP WEIGHTS (not a result)\n" + title
    ax.set_title(title, fontsize=8, color="#b00000" if margins.standin or margins.values is None else "black")
    return figure_image(fig)


def figure_image(fig: Any) -> Image.Image:
    """A matplotlib figure as an RGB image (laid out tightly), the figure closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")
