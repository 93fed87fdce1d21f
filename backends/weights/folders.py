"""Checkpoints that are a folder of files (a diffusers pipeline such as SD-Turbo): layout, check, lock record.

A folder entry names its index file (``filename``, ``model_index.json``) and every file it needs
(``folder_files``, relative to the folder, the index last). The download fetches those files one by one
through the hub client (:func:`backends.weights.download._fetch_hub_folder`), so the host's repo is tried
first, progress reaches the same reporter and nothing else is fetched; then :func:`check_folder` reads it
and :func:`folder_record` is what the lock file keeps: the sha256 and size of every file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .entry import Checkpoint, Source
from .lock import _verified_sha, read_lock, sha256_of

WEIGHT_NAMES = {"diffusers": "diffusion_pytorch_model.safetensors", "transformers": "model.safetensors"}
CONFIG_NAMES = ("config.json", "scheduler_config.json", "tokenizer_config.json", "preprocessor_config.json")


def host_path(entry: Checkpoint) -> str:
    """Where ``entry``'s index file lies in the host's own repo (``sd-turbo/model_index.json`` for a folder)."""
    return f"{entry.host_folder}/{entry.filename}" if entry.is_folder and entry.host_folder else entry.filename


def repo_prefix(source: Source) -> str:
    """The folder of a hub source inside its repo ("" at the repo's root), from its index file's path."""
    parent = Path(source.hub_path).parent.as_posix()
    return "" if parent == "." else parent


def repo_path(source: Source, name: str) -> str:
    """The path in the repo of the folder file ``name`` of ``source``."""
    prefix = repo_prefix(source)
    return f"{prefix}/{name}" if prefix else name


def fetch_order(entry: Checkpoint) -> list[str]:
    """The folder's files in download order: everything else first, the index file last."""
    return [n for n in entry.folder_files if n != entry.filename] + [entry.filename]


# --------------------------------------------------------------------------- the check


def check_folder(folder: Path) -> dict[str, int]:
    """Raise CheckpointError unless ``folder`` is a loadable diffusers pipeline; the size of each file.

    The index and every component's config must parse as diffusers and transformers read them; each
    network's weights (one safetensors file, or the shards its ``.index.json`` lists) must be there and
    open with safetensors. The error names the first file that is missing or unreadable.
    """
    index = _read_index(folder)
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or None in spec:
            continue
        library, class_name = spec
        _check_component(folder, name, str(library), str(class_name))
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def _read_index(folder: Path) -> dict[str, Any]:
    """``model_index.json`` as diffusers reads it (``DiffusionPipeline.load_config``)."""
    from diffusers import DiffusionPipeline

    if not (folder / "model_index.json").is_file():
        raise CheckpointError(f"model_index.json is missing from {folder}")
    try:
        return dict(DiffusionPipeline.load_config(str(folder)))
    except Exception as exc:  # EnvironmentError, JSON errors
        raise CheckpointError(f"model_index.json does not load: {_first_line(exc)}") from None


def _check_component(folder: Path, name: str, library: str, class_name: str) -> None:
    """One component: its folder, its config (read by its own class), and its weights when it is a network."""
    sub = folder / name
    if not sub.is_dir():
        raise CheckpointError(f"{name}/ is missing (model_index.json lists a {class_name})")
    kind = _component_class(library, class_name)
    _check_config(sub, name, kind)
    if _is_network(kind):
        for weight in _weight_files(sub, WEIGHT_NAMES.get(library, WEIGHT_NAMES["diffusers"])):
            _check_safetensors(weight, f"{name}/{weight.name}")


def _component_class(library: str, class_name: str) -> Any:
    """The class model_index.json names, or None when its library does not have it."""
    import importlib

    try:
        return getattr(importlib.import_module(library), class_name, None)
    except ImportError:
        return None


def _is_network(kind: Any) -> bool:
    """True for torch networks (diffusers ModelMixin, transformers PreTrainedModel): they have weights."""
    from diffusers import ModelMixin
    from transformers import PreTrainedModel

    return isinstance(kind, type) and issubclass(kind, (ModelMixin, PreTrainedModel))


def _check_config(sub: Path, name: str, kind: Any) -> None:
    """The component's config parses: with its class's own reader where it has one, else as JSON."""
    found = [sub / c for c in CONFIG_NAMES if (sub / c).is_file()]
    if not found:
        raise CheckpointError(f"{name}/ has no config ({' or '.join(CONFIG_NAMES[:3])})")
    try:
        if hasattr(kind, "load_config"):  # diffusers: models and schedulers
            kind.load_config(str(sub))
        elif getattr(kind, "config_class", None) is not None:  # transformers models
            kind.config_class.from_pretrained(str(sub))
        else:
            json.loads(found[0].read_text())
    except Exception as exc:
        raise CheckpointError(f"{name}/{found[0].name} does not load: {_first_line(exc)}") from None


def _weight_files(sub: Path, single: str) -> list[Path]:
    """A network's weight files: the single file, or every shard its safetensors index lists."""
    index = sub / f"{single}.index.json"
    if not (sub / single).is_file() and index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{sub.name}/{index.name} does not load: {_first_line(exc)}") from None
        return [sub / shard for shard in shards]
    return [sub / single]


def _check_safetensors(path: Path, label: str) -> None:
    """``path`` exists and opens with safetensors, holding at least one tensor."""
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"{label} is missing")
    try:
        with safe_open(str(path), framework="pt") as reader:
            if not list(reader.keys()):
                raise CheckpointError(f"{label} holds no tensors")
    except CheckpointError:
        raise
    except Exception as exc:  # SafetensorError: a truncated or foreign file
        raise CheckpointError(f"{label} does not open with safetensors: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# --------------------------------------------------------------------------- the lock record


def folder_record(folder: Path, sizes: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The lock file's ``files`` of a folder: per file, its sha256 and size."""
    return {name: {"sha256": sha256_of(folder / name), "size": size} for name, size in sizes.items()}


def folder_size(key: str, index: Path) -> int:
    """The bytes of a folder entry as its lock record lists them (the index file's own size without one)."""
    record = read_lock().get(key) or {}
    files = record.get("files") if record.get("path") == str(index) else None
    if isinstance(files, dict) and files:
        return sum(int(f.get("size", 0)) for f in files.values())
    return index.stat().st_size


def verify_folder(key: str, index: Path) -> str:
    """"" when every file the lock file lists for the folder of ``index`` still has its sha256, else the first
    difference, in words."""
    record = read_lock().get(key) or {}
    files = record.get("files")
    if not isinstance(files, dict):
        return ""
    folder = index.parent
    for name, info in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if _verified_sha(path) != info.get("sha256"):
            return f"{name} differs from the lock file's sha256"
    return ""
