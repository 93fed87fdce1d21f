"""Helpers shared by the parity tests: locate ../shared/fixtures and rebuild seeded weights."""

from __future__ import annotations

import importlib.util
import json
import os
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def fixtures_dir() -> Path:
    """The parity fixtures: $FACELAB_FIXTURES, else ../shared/fixtures beside the checkout."""
    return Path(os.environ.get("FACELAB_FIXTURES", REPO.parent / "shared" / "fixtures"))


def family_dir(family: str) -> Path:
    """One fixture family's folder; skips the test when the fixtures are not present."""
    path = fixtures_dir() / family
    if not path.is_dir():
        pytest.skip(f"parity fixtures not found at {path} (set FACELAB_FIXTURES)")
    return path


@cache
def seeded() -> ModuleType:
    """The fixtures' seeded.py, imported by path."""
    path = fixtures_dir() / "seeded.py"
    if not path.is_file():
        pytest.skip(f"seeded.py not found at {path}")
    spec = importlib.util.spec_from_file_location("facelab_fixture_seeded", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def load_case(family: str, name: str) -> dict[str, np.ndarray]:
    """All arrays of one ``.npz`` case."""
    with np.load(family_dir(family) / name, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def assert_scaled_close(actual, expected, rel: float, what: str) -> float:
    """|actual - expected| <= rel * max|expected| everywhere; returns the max abs diff for the report.

    A pure relative tolerance fails on float32 noise where an array crosses zero (the noise is set by
    the array's scale, not by each element), and that noise differs between CPUs and thread counts.
    An absolute bound scaled to the array passes on any CPU and still fails on a wrong loader, whose
    errors are of the order of the values themselves.
    """
    actual = np.asarray(actual.detach().cpu() if hasattr(actual, "detach") else actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    bound = rel * float(np.max(np.abs(expected)))
    diff = max_abs_diff(actual, expected)
    assert diff <= bound, f"{what}: max abs diff {diff:.3g} exceeds {rel:g} x max|x| = {bound:.3g}"
    return diff


def rosinality_g_ema(config: str) -> dict:
    """The seeded ``g_ema`` of fixture family stylegan2_rosinality, ``config`` "a" (1024) or "b" (vox 256).

    Manifest tensors + exact FIR-kernel buffers, in the official key order (base_seed 0).
    """
    import torch

    folder = family_dir("stylegan2_rosinality")
    sd = seeded().seeded_state_dict(seeded().load_manifest(folder / f"manifest_config_{config}.json"), base_seed=0)
    for name, spec in load_json(folder / f"fixed_buffers_config_{config}.json").items():
        sd[name] = torch.tensor(spec["values"], dtype=torch.float32).reshape(spec["shape"])
    return {k: sd[k] for k in load_json(folder / f"state_dict_keys_config_{config}.json")}


def genforce_generator_state() -> dict:
    """The seeded ``generator_smooth`` of fixture family stylegan2_genforce (165 keys, official order)."""
    import torch

    folder = family_dir("stylegan2_genforce")
    sd = seeded().seeded_state_dict(seeded().load_manifest(folder / "manifest.json"), base_seed=0)
    for name, spec in load_json(folder / "fixed_buffers.json").items():
        sd[name] = torch.tensor(spec["values"], dtype=torch.float32).reshape(spec["shape"])
    return {k: sd[k] for k in load_json(folder / "state_dict_keys.json")}
