"""Parity of our IR-SE50 ArcFace backbone (and FALCO's identity path) with the official outputs.

The fixture's seeded weights are written as a plain ``model_ir_se50.pth``
state dict, loaded through our loader, and the embeddings are compared with
what FALCO's ``lib/id_loss.py`` computed for the same weights and inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backends.errors import CheckpointError, InputError
from backends.networks import irse
from tests.fixture_utils import assert_scaled_close, family_dir, load_case, max_abs_diff, seeded

FAMILY = "arcface_irse50"
EMB_ATOL = 2e-5  # unit embeddings (README: measured fp32 vs fp64 2.8e-7)
# The pre-norm embedding has values up to ~10 and crosses zero. Measured: 1.7e-5 max |diff| across CPUs
# (x86 and ARM, 1 and 2 threads), and the stored reference itself carries ~4e-5 against a float64 run;
# a pure rtol of 1e-4 failed near zero (0.06244 vs 0.06246). So: an absolute bound of 1e-4 x max|x|.
PRENORM_REL = 1e-4
IMAGE_ATOL = 1e-5  # pooled 112 / transformed 256 inputs


def _fixture_state_dict() -> dict[str, torch.Tensor]:
    manifest = seeded().load_manifest(family_dir(FAMILY) / "manifest.json")
    return seeded().seeded_state_dict(manifest, base_seed=0)


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory) -> Path:
    """The fixture weights saved as the official plain state dict ``model_ir_se50.pth``."""
    path = tmp_path_factory.mktemp("arcface") / "model_ir_se50.pth"
    torch.save(_fixture_state_dict(), path)
    return path


@pytest.fixture(scope="module")
def backbone(ckpt_path: Path) -> irse.Backbone:
    return irse.load_arcface_checkpoint(ckpt_path)


def test_case_a_backbone112(backbone: irse.Backbone) -> None:
    case = load_case(FAMILY, "case_a_backbone112.npz")
    x = torch.from_numpy(case["x"])
    with torch.no_grad():
        prenorm = backbone.embed_prenorm(x)
        emb = backbone(x)
    print(f"arcface case a: embedding max|diff| {max_abs_diff(emb, case['embedding']):.3g}, "
          f"prenorm {max_abs_diff(prenorm, case['embedding_prenorm']):.3g}")
    np.testing.assert_allclose(emb.numpy(), case["embedding"], atol=EMB_ATOL, rtol=0)
    assert_scaled_close(prenorm, case["embedding_prenorm"], PRENORM_REL, "arcface case a: prenorm")
    assert torch.allclose(emb.norm(dim=1), torch.ones(1), atol=1e-6)


def test_scaled_tolerance_still_catches_a_wrong_loader(tmp_path: Path) -> None:
    """The array-scaled bound is loose enough for CPU noise, not for a mis-mapped tensor."""
    state = _fixture_state_dict()
    name = next(k for k in state if k.startswith("body.") and k.endswith(".weight") and state[k].ndim == 4)
    state[name] = state[name].flip(0)  # output channels in the wrong order, as a bad key map would give
    path = tmp_path / "model_ir_se50.pth"
    torch.save(state, path)
    case = load_case(FAMILY, "case_a_backbone112.npz")
    with torch.no_grad():
        prenorm = irse.load_arcface_checkpoint(path).embed_prenorm(torch.from_numpy(case["x"]))
    with pytest.raises(AssertionError, match="exceeds"):
        assert_scaled_close(prenorm, case["embedding_prenorm"], PRENORM_REL, "wrong loader")


@pytest.mark.parametrize("suffix", ["01", "pm1"])
def test_case_b_falco_identity_path_256(backbone: irse.Backbone, suffix: str) -> None:
    case = load_case(FAMILY, "case_b_falco_idpath256.npz")
    x = torch.from_numpy(case[f"x_{suffix}"])
    assert bool(case[f"transform_is_identity_{suffix}"])
    assert torch.equal(irse.falco_resize_crop_256(x), x)
    pooled = irse.falco_id_transform(x)
    with torch.no_grad():
        emb = irse.falco_identity_embedding(x, backbone)
    print(f"arcface case b {suffix}: pooled {max_abs_diff(pooled, case[f'pooled112_{suffix}']):.3g}, "
          f"embedding {max_abs_diff(emb, case[f'embedding_{suffix}']):.3g}")
    np.testing.assert_allclose(pooled.numpy(), case[f"pooled112_{suffix}"], atol=IMAGE_ATOL, rtol=0)
    np.testing.assert_allclose(emb.numpy(), case[f"embedding_{suffix}"], atol=EMB_ATOL, rtol=0)


def test_case_c_falco_identity_path_resize(backbone: irse.Backbone) -> None:
    case = load_case(FAMILY, "case_c_falco_idpath_resize.npz")
    x = torch.from_numpy(case["x"])
    transformed = irse.falco_resize_crop_256(x)
    with torch.no_grad():
        emb = irse.falco_identity_embedding(x, backbone)
    print(f"arcface case c: transformed256 {max_abs_diff(transformed, case['transformed256']):.3g}, "
          f"embedding {max_abs_diff(emb, case['embedding']):.3g}")
    np.testing.assert_allclose(transformed.numpy(), case["transformed256"], atol=IMAGE_ATOL, rtol=0)
    np.testing.assert_allclose(emb.numpy(), case["embedding"], atol=EMB_ATOL, rtol=0)


def test_loads_file_without_num_batches_tracked(backbone: irse.Backbone, tmp_path: Path) -> None:
    # PyTorch-0.4-era files (the TreB1eN original) carry no BatchNorm batch counters.
    full = backbone.state_dict()
    old_style = {k: v for k, v in full.items() if not k.endswith("num_batches_tracked")}
    assert len(old_style) == 343
    path = tmp_path / "model_ir_se50.pth"
    torch.save(old_style, path)
    loaded = irse.load_arcface_checkpoint(path).state_dict()
    assert list(loaded) == list(full)
    for key, value in full.items():
        assert torch.equal(loaded[key], value), key


def test_standin_equals_fixture_weights_and_loads() -> None:
    standin = irse.standin_checkpoint_ir_se50()
    reference = _fixture_state_dict()
    assert list(standin) == list(reference) and len(standin) == 397
    for key, value in reference.items():
        assert standin[key].dtype == value.dtype and torch.equal(standin[key], value), key
    net = irse.load_arcface_checkpoint(standin)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(43.8e6, rel=0.01)


def test_key_mismatch_is_a_clear_checkpoint_error() -> None:
    state = irse.standin_checkpoint_ir_se50()
    state["body.0.extra.weight"] = state.pop("body.0.res_layer.1.weight")
    with pytest.raises(CheckpointError, match=r"Missing keys \(1\): body\.0\.res_layer\.1\.weight"):
        irse.load_arcface_checkpoint(state)


def test_wrapped_or_empty_checkpoint_is_refused() -> None:
    with pytest.raises(CheckpointError, match="plain state dict"):
        irse.load_arcface_checkpoint({"state_dict": {}, "epoch": 3})
    with pytest.raises(CheckpointError):
        irse.load_arcface_checkpoint({})


def test_wrong_input_size_is_an_input_error(backbone: irse.Backbone) -> None:
    with pytest.raises(InputError, match="112"):
        backbone(torch.zeros(1, 3, 128, 128))
