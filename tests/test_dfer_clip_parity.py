"""DFER-CLIP parity with the official implementation (fixture ../shared/fixtures/dfer_clip).

The seeded weights are rebuilt per the fixture README (aliases shared with the
``clip_model_`` copy, prompt buffers derived from the token ids), written as an
official ``*-model_best.pth`` -- including a pickled ``__main__.RecorderMeter`` --
read back through our safe reader and loaded strictly; then every recorded
intermediate is compared.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from fixture_utils import family_dir, load_case, load_json, max_abs_diff, seeded

from backends.errors import CheckpointError
from backends.expression import sample_indices
from backends.networks.dfer_clip import (
    DFEW_CLASSES,
    END_TOKEN_ID,
    PLACEHOLDER_TOKEN_ID,
    RecorderMeterStandIn,
    load_dfer_clip_checkpoint,
    read_official_checkpoint,
    tokenize,
)

FAMILY = "dfer_clip"


class RecorderMeter:
    """Shaped like the official training recorder (numpy arrays in its __dict__)."""

    def __init__(self, total_epoch: int):
        self.total_epoch = total_epoch
        self.current_epoch = 2
        self.epoch_losses = np.zeros((total_epoch, 2), dtype=np.float32)
        self.epoch_accuracy = np.full((total_epoch, 2), 0.5, dtype=np.float32)


def _pickle_as_main(monkeypatch: pytest.MonkeyPatch, cls: type) -> type:
    """Make ``cls`` pickle as ``__main__.<name>``, as it does when main.py runs as a script."""
    monkeypatch.setattr(cls, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], cls.__name__, cls, raising=False)
    return cls


def rebuild_official_state_dict(directory: Path, token_ids: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
    """The fixture's 618-key state dict, in manifest order, built as the README says."""
    fixture = seeded()
    manifest = fixture.load_manifest(directory / "manifest.json")
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    # Aliased keys are never drawn: they share the clip_model_ tensor, as in a real file.
    for name, spec in manifest.items():
        if "alias_of" not in spec:
            state[name] = fixture.seeded_tensor(name, spec, base_seed=0)
    for name, spec in manifest.items():
        if "alias_of" in spec:
            state[name] = state[spec["alias_of"]]
        if "derived" in spec:
            start, stop = spec["derived"]["token_positions"]
            state[name] = state[spec["derived"]["from"]][token_ids[:, start:stop]]
    return OrderedDict((name, state[name]) for name in manifest)


@pytest.fixture(scope="module")
def case() -> dict:
    directory = family_dir(FAMILY)
    inputs = load_case(FAMILY, "inputs.npz")
    return {
        "dir": directory,
        "inputs": inputs,
        "outputs": load_case(FAMILY, "outputs.npz"),
        "meta": load_json(directory / "meta.json"),
        "token_ids": torch.from_numpy(inputs["token_ids"].astype(np.int64)),
    }


@pytest.fixture(scope="module")
def official_file(case, tmp_path_factory) -> Path:
    """The seeded checkpoint saved in the official structure, recorder object included."""
    monkeypatch = pytest.MonkeyPatch()
    try:
        recorder_cls = _pickle_as_main(monkeypatch, RecorderMeter)
        state = rebuild_official_state_dict(case["dir"], case["token_ids"])
        assert len(state) == case["meta"]["n_tensors"] == 618
        # Break one alias on purpose: the official load keeps the clip_model_ copy (visited
        # last), so a loader that kept the image_encoder copy would fail the parity below.
        state["module.image_encoder.proj"] = state["module.clip_model_.visual.proj"] + 1.0
        checkpoint = {
            "epoch": 3,
            "state_dict": state,
            "best_acc": torch.tensor(71.25),
            "optimizer": {
                "state": {0: {"momentum_buffer": torch.zeros(7, 8, 512)}},
                "param_groups": [{"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "params": [i]}
                                 for i in range(3)],
            },
            "recorder": recorder_cls(5),
        }
        path = tmp_path_factory.mktemp("dfer_clip") / "DFEW-set1-model_best.pth"
        torch.save(checkpoint, path)
        return path
    finally:
        monkeypatch.undo()


@pytest.fixture(scope="module")
def loaded(official_file):
    obj = read_official_checkpoint(official_file)
    return obj, load_dfer_clip_checkpoint(obj, num_classes=7)


@pytest.fixture(scope="module")
def forward(case, loaded) -> dict[str, np.ndarray]:
    _, model = loaded
    clip = torch.from_numpy(case["inputs"]["clip_uint8"]).float().div(255.0)[None]
    with torch.no_grad():
        return {k: v.numpy() for k, v in model.forward_with_intermediates(clip).items()}


def test_plain_weights_only_refuses_the_official_file(official_file):
    with pytest.raises(Exception, match="RecorderMeter"):
        torch.load(official_file, map_location="cpu", weights_only=True)


def test_recorder_is_read_as_inert_stand_in(loaded):
    obj, _ = loaded
    recorder = obj["recorder"]
    assert type(recorder) is RecorderMeterStandIn
    assert recorder.total_epoch == 5
    np.testing.assert_array_equal(recorder.epoch_accuracy, np.full((5, 2), 0.5, dtype=np.float32))
    assert float(obj["best_acc"]) == pytest.approx(71.25)
    assert len(obj["state_dict"]) == 618


class _Boom:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


class OtherObject:
    def __init__(self):
        self.value = np.ones(3)


def test_any_other_pickled_object_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "recorder": _Boom(marker)}, evil)
    with pytest.raises(CheckpointError):
        read_official_checkpoint(evil)
    with pytest.raises(CheckpointError):
        load_dfer_clip_checkpoint(evil, num_classes=7)
    assert not marker.exists()

    other = tmp_path / "other.pth"
    torch.save({"state_dict": {}, "recorder": _pickle_as_main(monkeypatch, OtherObject)()}, other)
    with pytest.raises(CheckpointError):
        read_official_checkpoint(other)


def test_logits(case, forward):
    expected = case["outputs"]["logits"]
    np.testing.assert_allclose(forward["logits"], expected, atol=3e-5, rtol=1e-5)
    np.testing.assert_allclose(forward["logits"][0], case["meta"]["logits"], atol=3e-5, rtol=1e-5)


@pytest.mark.parametrize("name,atol", [
    ("frame_features", 1e-4),
    ("video_feature", 1e-4),
    ("text_features", 1e-4),
    ("video_feature_normalised", 1e-5),
    ("text_features_normalised", 1e-5),
])
def test_intermediates(case, forward, name, atol):
    expected = case["outputs"][name]
    got = forward[name].reshape(expected.shape)
    assert max_abs_diff(got, expected) <= atol, f"{name}: max abs diff {max_abs_diff(got, expected):.3g}"


def test_cached_text_features_match(case, loaded):
    _, model = loaded
    cached = model.text_features()
    assert cached is model.text_features()
    assert max_abs_diff(cached.numpy(), case["outputs"]["text_features_normalised"]) <= 1e-5


def test_token_ids_recovered_from_prompt_buffers(case, loaded):
    _, model = loaded
    ids = model.prompt_learner.token_ids
    assert torch.equal(ids, case["token_ids"])
    assert (ids[:, 1:9] == PLACEHOLDER_TOKEN_ID).all()
    assert ids.argmax(dim=1).tolist() == case["meta"]["eot_positions"]
    assert (ids.max(dim=1).values == END_TOKEN_ID).all()


def test_our_tokenisation_matches_the_official_ids(case):
    """The descriptors are not stored; decode each official row and re-tokenise it our way."""
    from open_clip.tokenizer import _tokenizer

    rows = case["token_ids"].tolist()
    tails = [_tokenizer.decode([t for t in row[9:] if t not in (0, END_TOKEN_ID)]).strip() for row in rows]
    ours = tokenize(["X X X X X X X X " + tail for tail in tails])
    assert torch.equal(ours, case["token_ids"])
    assert len(rows) == len(DFEW_CLASSES)


def test_sampler_indices_all_lengths(case):
    table = load_json(case["dir"] / "sampler_indices.json")["indices"]
    assert {"5", "16", "37", "100"} <= set(table)
    for n, expected in table.items():
        assert sample_indices(int(n)) == expected, n
    assert sample_indices(37) == case["inputs"]["clip_frame_indices"].tolist()
