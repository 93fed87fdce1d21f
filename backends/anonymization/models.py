"""The networks FALCO needs (generator, ArcFace IR-SE50, FaRL), loaded once per device and variant."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import torch
from torch import nn

from .. import memory
from ..device import get_device
from ..networks import farl as farl_net
from ..networks import irse
from ..networks.stylegan2 import Generator, load_genforce_checkpoint, load_rosinality_checkpoint
from ..standin import standin_enabled
from ..weights import find_local, load_checkpoint
from .optimisation import OFFICIAL, Variant

# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class FalcoModels:
    """The generator (with ``w_avg``), ArcFace IR-SE50 and FaRL, frozen, on one device (float32)."""

    generator: Generator
    arcface: irse.Backbone
    farl: farl_net.FarlVisual
    standin: bool
    device: torch.device
    generator_key: str


def generator_key() -> str:
    """genforce's ``stylegan2_ffhq1024.pth`` (FALCO's own file) when present, else the public rosinality FFHQ file.

    Both are the same NVIDIA FFHQ-1024 network in two layouts and load into one
    :class:`Generator`, so e4e codes mean the same in either.
    """
    if standin_enabled() or find_local("stylegan2_ffhq1024_genforce") is not None:
        return "stylegan2_ffhq1024_genforce"
    return "stylegan2_ffhq1024"


def _frozen(module: nn.Module, device: str) -> nn.Module:
    return module.to(device).eval().requires_grad_(False)


@memory.managed("FALCO: G-1024 (genforce) + ArcFace")
@functools.lru_cache(maxsize=1)
def _generator_and_arcface(standin: bool, device: str, key: str) -> tuple[Generator, irse.Backbone, bool]:
    g = load_checkpoint(key)
    generator = load_genforce_checkpoint(g.obj) if key.endswith("genforce") else load_rosinality_checkpoint(g.obj)
    if generator.w_avg is None:
        generator.w_avg = generator.mean_latent(4096, seed=0)  # the truncation centre of the pool
    a = load_checkpoint("ir_se50")
    arcface = irse.load_arcface_checkpoint(a.obj)
    return _frozen(generator, device), _frozen(arcface, device), g.standin or a.standin


@memory.managed("FALCO: FaRL ViT-B/16")
@functools.lru_cache(maxsize=2)
def _farl(standin: bool, device: str, fp16_rounding: bool) -> tuple[farl_net.FarlVisual, bool]:
    f = load_checkpoint("farl_ep64")
    return _frozen(farl_net.load_farl_checkpoint(f.obj, fp16_rounding=fp16_rounding), device), f.standin


# The background pool build and a visitor's first run may ask at once: one loads, the other waits
# (lru_cache alone would load both, a second gigabyte).
_LOADING = threading.Lock()


def get_models(variant: Variant = OFFICIAL) -> FalcoModels:
    """FALCO's three networks, loaded on first use and kept (FaRL once per rounding choice)."""
    device = str(get_device())
    key = generator_key()
    with _LOADING:
        generator, arcface, standin_ga = _generator_and_arcface(standin_enabled(), device, key)
        farl, standin_f = _farl(standin_enabled(), device, variant.farl_fp16_rounding)
    return FalcoModels(generator, arcface, farl, standin_ga or standin_f, torch.device(device), key)


def weights_on_disk() -> bool:
    """Whether FALCO's three checkpoints load without a download (stand-ins always do)."""
    if standin_enabled():
        return True
    return all(find_local(key) is not None for key in (generator_key(), "ir_se50", "farl_ep64"))


def clear_caches() -> None:
    _generator_and_arcface.cache_clear()
    _farl.cache_clear()
