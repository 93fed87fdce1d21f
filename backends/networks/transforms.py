"""Tensor versions of the torchvision transforms the official face methods apply inside their losses.

They work on batched float tensors with autograd, so gradients flow through them
exactly as through torchvision's tensor transforms in the official code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# CLIP's image statistics (openai/CLIP ``_transform``), used by every CLIP-style tower.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_shorter_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision ``Resize(size, antialias=True)`` on a float tensor: bilinear, shorter side to ``size``."""
    h, w = x.shape[-2:]
    short, long = (h, w) if h <= w else (w, h)
    new_short, new_long = size, int(size * long / short)
    out_hw = (new_short, new_long) if h <= w else (new_long, new_short)
    if (h, w) == out_hw:
        return x  # torchvision returns the input untouched when the size already matches
    return F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False, antialias=True)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision ``CenterCrop(size)`` for inputs at least ``size`` on both sides."""
    h, w = x.shape[-2:]
    top = round((h - size) / 2.0)
    left = round((w - size) / 2.0)
    return x[..., top:top + size, left:left + size]


def clip_normalize(x: torch.Tensor) -> torch.Tensor:
    """torchvision ``Normalize(CLIP_MEAN, CLIP_STD)`` on a Bx3xHxW tensor (whatever range it is in)."""
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
