"""Safe checkpoint reading and strict loading into our modules.

Checkpoints are never unpickled with arbitrary code execution: ``.safetensors``
files go through safetensors, everything else through
``torch.load(weights_only=True)``. A checkpoint that pickles a harmless helper
object (DFER-CLIP's training recorder, say) is read by allow-listing a stand-in
class under that exact qualified name; any other object is refused.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError


def safe_load(
    path: str | Path,
    *,
    allow: Sequence[tuple[Any, str]] = (),
    what: str = "checkpoint",
) -> Any:
    """Read a checkpoint file without executing code from it.

    ``allow`` lists ``(stand_in, "module.QualName")`` pairs of extra globals the
    file may reference; nothing else outside torch's tensor types is accepted.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"The {what} file {path.name} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises several private types
            raise CheckpointError(f"The {what} file {path.name} is not a valid safetensors file: {exc}") from exc
    if path.suffix == ".npy":
        import numpy as np

        try:
            return np.load(path, allow_pickle=False)  # plain arrays only, never pickled objects
        except ValueError as exc:
            raise CheckpointError(f"The {what} file {path.name} is not a plain numeric .npy array: {exc}") from exc
    try:
        with torch.serialization.safe_globals(list(allow)):
            # Zip-format files are memory-mapped: tensors are read from the page cache as the model
            # copies them, instead of a whole second copy of the file in RAM first (1.2 GB for e4e).
            # Legacy (pre-1.6, tar) files cannot be mapped and are read whole.
            mmap = zipfile.is_zipfile(path)
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"The {what} file {path.name} holds Python objects that Face Lab refuses to unpickle "
            f"(only tensors and plain containers are allowed): {_first_line(exc)}"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"The {what} file {path.name} is truncated or corrupt ({_first_line(exc)}). "
            "Delete it and download it again."
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str,
                           assign: bool | None = None) -> None:
    """``load_state_dict(strict=True)`` with a readable error listing key mismatches and shape errors.

    One tolerance, shared by every loader: batch-norm ``num_batches_tracked`` counters may be absent
    (files exported with PyTorch 0.4 or stripped of buffers, as some e4e and IR-SE50 copies are). They
    only count training steps and are unused in eval mode, so a zero counter is what the official
    loaders end up with. Every other key must be there.

    ``assign`` takes the checkpoint's tensors over instead of copying them, so the weights exist once in
    memory (with a memory-mapped file, never in anonymous memory at all). ``None`` (the default) does so
    wherever every tensor already has the module's dtype; ``True`` forces it (modules built on the meta
    device); ``False`` always copies.
    """
    expected = module.state_dict()
    state_dict = _with_batch_counters(expected, state_dict)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} (file {tuple(state_dict[k].shape)}, model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong_shape:
        parts = [f"The {what} checkpoint does not match the expected layout."]
        if missing:
            parts.append(f"Missing keys ({len(missing)}): {_short(missing)}.")
        if unexpected:
            parts.append(f"Unexpected keys ({len(unexpected)}): {_short(unexpected)}.")
        if wrong_shape:
            parts.append(f"Wrong shapes ({len(wrong_shape)}): {_short(wrong_shape)}.")
        raise CheckpointError(" ".join(parts))
    # Where the file's tensors already have the module's dtypes they become the parameters
    # (``assign``): with a memory-mapped file no second copy of the weights is ever made, and the
    # module's own (uninitialised, never touched) allocation is released.
    if assign is None:
        assign = all(state_dict[k].dtype == v.dtype for k, v in expected.items())
    tensors = {k: v.contiguous() for k, v in state_dict.items()} if assign else dict(state_dict)
    module.load_state_dict(tensors, strict=True, assign=assign)


def _with_batch_counters(
    expected: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]
) -> Mapping[str, torch.Tensor]:
    """``state_dict`` plus a zero for every ``num_batches_tracked`` the module has and the file lacks."""
    absent = [k for k in expected if k.endswith("num_batches_tracked") and k not in state_dict]
    if not absent:
        return state_dict
    return {**state_dict, **{k: torch.zeros_like(expected[k], device="cpu") for k in absent}}


def _short(items: Iterable[str], limit: int = 8) -> str:
    items = list(items)
    head = ", ".join(items[:limit])
    return head + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state_dict`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
