"""Deterministic stand-in weights at the real size of every network.

Stand-in weights let every tab run end to end offline, benchmarks measure real
cost and tests run without downloads. Each tensor is drawn from a generator
seeded by a hash of ``(base_seed, tensor name)``, so the same name always gets
the same values on any machine, independent of the order tensors are built in.

They are *not* results: every output computed with them is flagged as such.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

STANDIN_ENV = "FACELAB_STAND_IN"


def standin_enabled() -> bool:
    """Whether stand-in weights replace every checkpoint in this process."""
    return os.environ.get(STANDIN_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def enable_standin(on: bool = True) -> None:
    """Switch stand-in weights on or off for this process (``app.py --stand-in-weights``)."""
    os.environ[STANDIN_ENV] = "1" if on else "0"


@dataclass(frozen=True)
class Init:
    """How one tensor is filled: ``normal``/``uniform`` draws times ``scale`` plus ``shift``, or ``const``."""

    kind: str = "normal"
    scale: float = 1.0
    shift: float = 0.0


def tensor_seed(name: str, base_seed: int) -> int:
    """A 63-bit seed derived from the tensor's name; stable across machines and Python versions."""
    digest = hashlib.sha256(f"{base_seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**63 - 1)


def seeded_tensor(name: str, shape: tuple[int, ...], init: Init, base_seed: int = 0,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One deterministic tensor (same recipe as the parity fixtures' ``seeded.py``)."""
    if init.kind == "const":
        out = torch.full(shape, init.shift, dtype=torch.float32)
    else:
        gen = torch.Generator().manual_seed(tensor_seed(name, base_seed))
        draw = torch.randn if init.kind == "normal" else torch.rand
        # In place: the same float operations as ``draw * scale + shift`` without two temporary copies
        # (the hypernetwork's w2 alone is 134 M values).
        out = draw(shape, generator=gen).mul_(init.scale).add_(init.shift)
    return out.to(dtype)


InitRule = Callable[[str, torch.Tensor], "Init | None"]


def standin_state_dict(module: nn.Module, rule: InitRule, base_seed: int = 0) -> dict[str, torch.Tensor]:
    """A full state dict for ``module``: ``rule(name, current)`` picks each tensor's init.

    A rule returning ``None`` keeps the module's own value (architecture constants
    such as FIR kernels, or integer counters).
    """
    out: dict[str, torch.Tensor] = {}
    for name, current in module.state_dict().items():
        init = rule(name, current)
        if init is None or not current.is_floating_point():
            out[name] = current.detach().clone()
        else:
            out[name] = seeded_tensor(name, tuple(current.shape), init, base_seed, current.dtype)
    return out


def fill_from(state: Mapping[str, torch.Tensor], module: nn.Module) -> nn.Module:
    """Copy ``state`` into ``module`` strictly and return it."""
    module.load_state_dict(dict(state), strict=True)
    return module
