"""Checkpoint reading: memory-mapped, no second copy of the weights, one shared batch-counter rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from backends.checkpoints import load_state_dict_strict, safe_load
from backends.errors import CheckpointError


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_zip_files_are_memory_mapped_and_legacy_files_still_load(tmp_path: Path, monkeypatch) -> None:
    calls = []
    original = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("mmap")) or original(*a, **k))
    state = _net().state_dict()
    torch.save(state, tmp_path / "new.pt")
    torch.save(state, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    for name in ("new.pt", "old.pt"):
        loaded = safe_load(tmp_path / name)
        assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert calls == [True, False]  # a pre-1.6 file cannot be mapped; it is read whole


def test_matching_tensors_become_the_parameters_without_a_copy() -> None:
    source = _net().state_dict()
    net = _net()
    load_state_dict_strict(net, source, "test net")
    assert net[0].weight.data_ptr() == source["0.weight"].data_ptr()
    assert isinstance(net[0].weight, nn.Parameter) and net[0].weight.requires_grad


def test_other_dtypes_are_copied_into_the_modules_dtype() -> None:
    source = {k: v.half() if v.is_floating_point() else v for k, v in _net().state_dict().items()}
    net = _net()
    load_state_dict_strict(net, source, "test net")
    assert net[0].weight.dtype == torch.float32
    assert torch.equal(net[0].weight, source["0.weight"].float())


def test_absent_batch_counters_are_zero_and_other_keys_are_required() -> None:
    source = {k: v for k, v in _net().state_dict().items() if not k.endswith("num_batches_tracked")}
    net = _net()
    load_state_dict_strict(net, source, "test net")
    assert int(net[1].num_batches_tracked) == 0
    del source["1.running_var"]
    with pytest.raises(CheckpointError, match=r"Missing keys \(1\): 1\.running_var\."):
        load_state_dict_strict(_net(), source, "test net")


def test_missing_file_message_names_the_file_not_the_server_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        safe_load(tmp_path / "deep" / "model.pt", what="e4e")
    assert str(info.value) == "The e4e file model.pt does not exist."
