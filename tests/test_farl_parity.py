"""Parity of our FaRL ViT-B/16 image tower with FALCO's (openai/CLIP model code) outputs.

The fixture's 152 seeded ``visual.*`` tensors are written as the official
``{'state_dict': ...}`` file, loaded through our loader and run on the stored
inputs. Measured noise: fp32 vs fp64 of the official modules 2.9e-6 on the
embedding (|e| <= 3.3) and 1.5e-5 on the tokens (|t| <= 17.8); here we see
about 3e-6 and 1.2e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backends.errors import CheckpointError, InputError
from backends.networks import farl
from tests.fixture_utils import family_dir, load_case, max_abs_diff, seeded

FAMILY = "farl_vitb16"
EMB_ATOL = 1e-4  # README: embedding atol 1e-4 (|e| <= 3.3)
TOKEN_ATOL = 2e-4  # README: tokens atol 2e-4 (|t| <= 17.8)
IMAGE_ATOL = 1e-5  # transformed images


def _fixture_state_dict() -> dict[str, torch.Tensor]:
    return seeded().seeded_state_dict(seeded().load_manifest(family_dir(FAMILY) / "manifest.json"), base_seed=0)


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory) -> Path:
    """The fixture weights in the official file structure, plus text-tower keys FALCO ignores."""
    state = _fixture_state_dict()
    state["token_embedding.weight"] = torch.zeros(8, 4)  # a text-tower key: must be ignored
    state["logit_scale"] = torch.tensor(4.6)
    path = tmp_path_factory.mktemp("farl") / "FaRL-Base-Patch16-LAIONFace20M-ep64.pth"
    torch.save({"state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def model(ckpt_path: Path) -> farl.FarlVisual:
    return farl.load_farl_checkpoint(ckpt_path)


def _run(model: farl.FarlVisual, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        tokens = model.tokens(x)
        return model.embed_tokens(tokens), tokens


def test_case_ab_embedding_and_tokens(model: farl.FarlVisual) -> None:
    case = load_case(FAMILY, "case_ab_raw224.npz")
    x = torch.from_numpy(case["x"])
    emb, tokens = _run(model, x)
    print(f"farl case a embedding {max_abs_diff(emb, case['embedding']):.3g}, "
          f"case b tokens {max_abs_diff(tokens, case['tokens']):.3g}")
    assert tokens.shape == (1, 197, 768)
    np.testing.assert_allclose(emb.numpy(), case["embedding"], atol=EMB_ATOL, rtol=1e-4)
    np.testing.assert_allclose(tokens.numpy(), case["tokens"], atol=TOKEN_ATOL, rtol=1e-4)
    with torch.no_grad():
        assert torch.equal(model.encode_image(x), emb)  # one code path, not normalised
    assert not torch.allclose(emb.norm(dim=1), torch.ones(1), atol=1e-2)


@pytest.mark.parametrize("suffix", ["pm1", "01"])
def test_case_c_falco_preprocessings(model: farl.FarlVisual, suffix: str) -> None:
    case = load_case(FAMILY, "case_c_preprocessing.npz")
    img = torch.from_numpy(case[f"img_{suffix}"])
    pool_in, attr_in = farl.pool_transform(img), farl.attr_transform(img)
    np.testing.assert_allclose(pool_in.numpy(), case[f"pool_transformed_{suffix}"], atol=IMAGE_ATOL, rtol=0)
    np.testing.assert_allclose(attr_in.numpy(), case[f"attr_transformed_{suffix}"], atol=IMAGE_ATOL, rtol=0)
    pool_emb, _ = _run(model, pool_in)
    _, attr_tokens = _run(model, attr_in)
    print(f"farl case c {suffix}: pool embedding {max_abs_diff(pool_emb, case[f'pool_embedding_{suffix}']):.3g}, "
          f"attr tokens {max_abs_diff(attr_tokens, case[f'attr_tokens_{suffix}']):.3g}")
    np.testing.assert_allclose(pool_emb.numpy(), case[f"pool_embedding_{suffix}"], atol=EMB_ATOL, rtol=1e-4)
    np.testing.assert_allclose(attr_tokens.numpy(), case[f"attr_tokens_{suffix}"], atol=TOKEN_ATOL, rtol=1e-4)


def test_case_d_fp16_rounding_of_falcos_cuda_run(ckpt_path: Path) -> None:
    case = load_case(FAMILY, "case_d_cuda_fp16_rounded_weights.npz")
    rounded = farl.load_farl_checkpoint(ckpt_path, fp16_rounding=True)
    emb, tokens = _run(rounded, torch.from_numpy(case["x"]))
    print(f"farl case d (fp16-rounded): embedding {max_abs_diff(emb, case['embedding']):.3g}, "
          f"tokens {max_abs_diff(tokens, case['tokens']):.3g}")
    # The rounding moves the tokens by 0.014 (meta.json): these tolerances tell the two apart.
    np.testing.assert_allclose(emb.numpy(), case["embedding"], atol=EMB_ATOL, rtol=1e-4)
    np.testing.assert_allclose(tokens.numpy(), case["tokens"], atol=TOKEN_ATOL, rtol=1e-4)
    state = rounded.visual.state_dict()
    assert torch.equal(state["proj"], state["proj"].half().float())
    exact = _fixture_state_dict()
    assert torch.equal(state["positional_embedding"], exact["visual.positional_embedding"])  # not rounded
    assert not torch.equal(state["conv1.weight"], exact["visual.conv1.weight"])


def test_standin_equals_fixture_weights_in_official_order() -> None:
    standin = farl.standin_checkpoint_farl()
    reference = _fixture_state_dict()
    assert list(standin) == ["state_dict"]
    assert list(standin["state_dict"]) == list(reference) and len(reference) == farl.NUM_VISUAL_TENSORS
    for key, value in reference.items():
        assert torch.equal(standin["state_dict"][key], value), key


def test_missing_visual_key_is_a_clear_error() -> None:
    state = _fixture_state_dict()
    del state["visual.ln_post.bias"]
    with pytest.raises(CheckpointError, match=r"Missing keys \(1\): ln_post\.bias"):
        farl.load_farl_checkpoint({"state_dict": state})


def test_wrong_layouts_are_refused() -> None:
    with pytest.raises(CheckpointError, match="'state_dict' entry"):
        farl.load_farl_checkpoint(_fixture_state_dict())  # a bare state dict, not the official wrapper
    with pytest.raises(CheckpointError, match="no 'visual"):
        farl.load_farl_checkpoint({"state_dict": {"logit_scale": torch.tensor(1.0)}})


def test_wrong_input_size_is_an_input_error(model: farl.FarlVisual) -> None:
    with pytest.raises(InputError, match="3x224x224"):
        model.tokens(torch.zeros(1, 3, 256, 256))
