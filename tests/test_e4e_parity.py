"""Parity of our e4e encoder with omertov/encoder4editing on the e4e_ffhq fixture.

The fixture's seeded weights are written in the official checkpoint structure
``{'state_dict': {encoder.*}, 'latent_avg', 'opts'}``, loaded through our
loader, and the W+ codes and the backbone taps are compared with the official
outputs for the same weights and image. The decoder.* half of the real file is
left out: the loader ignores it (checked separately with a dummy entry).
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backends.errors import CheckpointError, InputError
from backends.networks import e4e
from tests.fixture_utils import family_dir, load_case, load_json, max_abs_diff, seeded

FAMILY = "e4e_ffhq"
ATOL = RTOL = 1e-4  # README: 1 vs 2 threads differ by 4.8e-7 on the codes


@pytest.fixture(scope="module")
def case() -> dict[str, np.ndarray]:
    return load_case(FAMILY, "case_encode.npz")


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory) -> Path:
    """The fixture weights saved as an official-structure ``e4e_ffhq_encode.pt`` (~1.1 GB)."""
    folder = family_dir(FAMILY)
    state = seeded().seeded_state_dict(seeded().load_manifest(folder / "manifest.json"), base_seed=0)
    latent_avg = state.pop("latent_avg")
    ckpt = {"state_dict": state, "latent_avg": latent_avg, "opts": load_json(folder / "opts.json")}
    path = tmp_path_factory.mktemp("e4e") / "e4e_ffhq_encode.pt"
    torch.save(ckpt, path)
    del ckpt, state
    gc.collect()
    return path


@pytest.fixture(scope="module")
def inverter(ckpt_path: Path) -> e4e.E4EInverter:
    return e4e.load_e4e_checkpoint(ckpt_path)


@pytest.fixture(scope="module")
def official_outputs(inverter: e4e.E4EInverter, case) -> dict[str, torch.Tensor]:
    """One forward of our encoder on the fixture image: codes with/without latent_avg and the taps."""
    image = torch.from_numpy(case["image"])
    with torch.no_grad():
        raw, (c1, c2, c3) = inverter.encoder(image, return_features=True)
    return {"codes": inverter.invert(image), "raw": raw, "c1": c1, "c2": c2, "c3": c3}


def _encoder_entries(inverter: e4e.E4EInverter) -> dict[str, torch.Tensor]:
    """The loaded encoder as official ``encoder.*`` entries (shares storage, no copy)."""
    return {"encoder." + k: v for k, v in inverter.encoder.state_dict().items()}


def test_codes_match_official(official_outputs, case) -> None:
    diff = max_abs_diff(official_outputs["codes"], case["codes"])
    raw_diff = max_abs_diff(official_outputs["raw"], case["codes_minus_latent_avg"])
    print(f"e4e codes max|diff| {diff:.3g}, codes - latent_avg {raw_diff:.3g}")
    np.testing.assert_allclose(official_outputs["codes"].numpy(), case["codes"], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(official_outputs["raw"].numpy(), case["codes_minus_latent_avg"], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(("tap", "key"), [("c1", "feat_body06"), ("c2", "feat_body20"), ("c3", "feat_body23")])
def test_debug_features_match_official(official_outputs, case, tap: str, key: str) -> None:
    print(f"e4e {tap} ({key}) max|diff| {max_abs_diff(official_outputs[tap], case[key]):.3g}")
    np.testing.assert_allclose(official_outputs[tap].numpy(), case[key], atol=ATOL, rtol=RTOL)


def test_full_latent_avg_is_added_row_by_row(inverter, official_outputs, case) -> None:
    # The seeded average has 18 different rows; adding only row 0 would be a bug.
    assert torch.equal(inverter.latent_avg, torch.from_numpy(case["latent_avg"]))
    assert not torch.allclose(inverter.latent_avg[0], inverter.latent_avg[1])
    expected = official_outputs["raw"] + inverter.latent_avg
    assert torch.equal(official_outputs["codes"], expected)


@pytest.mark.parametrize("shape", [(512,), (1, 512)])
def test_single_row_latent_avg_broadcasts(inverter, case, shape) -> None:
    row = torch.from_numpy(case["latent_avg"][3])
    loaded = e4e.load_e4e_checkpoint({"state_dict": _encoder_entries(inverter), "latent_avg": row.reshape(shape)})
    # forward() adds this buffer row by row (test above), so every row gets the same average.
    assert loaded.latent_avg.shape == (18, 512)
    assert torch.equal(loaded.latent_avg, row.expand(18, 512))


def test_extra_top_level_keys_and_decoder_are_ignored(inverter, case) -> None:
    state = _encoder_entries(inverter)
    state["decoder.style.1.weight"] = torch.zeros(512, 512)  # the real file carries the whole generator
    ckpt = {
        "state_dict": state,
        "latent_avg": inverter.latent_avg,
        "opts": {"stylegan_size": 1024},
        "global_step": 123,
        "optimizer": {"state": {}, "param_groups": []},
        "best_val_loss": 0.1,
    }
    loaded = e4e.load_e4e_checkpoint(ckpt)
    for key, value in loaded.encoder.state_dict().items():
        assert torch.equal(value, state["encoder." + key]), key


def test_missing_latent_avg_is_a_clear_error(inverter) -> None:
    with pytest.raises(CheckpointError, match="no 'latent_avg'"):
        e4e.load_e4e_checkpoint({"state_dict": _encoder_entries(inverter), "opts": {}})


def test_missing_state_dict_is_a_clear_error() -> None:
    with pytest.raises(CheckpointError, match="no 'state_dict'"):
        e4e.load_e4e_checkpoint({"latent_avg": torch.zeros(18, 512)})


def test_wrong_latent_avg_shape_is_a_clear_error(inverter) -> None:
    with pytest.raises(CheckpointError, match="latent_avg"):
        e4e.load_e4e_checkpoint({"state_dict": _encoder_entries(inverter), "latent_avg": torch.zeros(14, 512)})


def test_encoder_key_mismatch_is_a_clear_error(inverter) -> None:
    state = _encoder_entries(inverter)
    state["encoder.latlayer3.weight"] = state.pop("encoder.latlayer2.weight")
    with pytest.raises(CheckpointError, match=r"Missing keys \(1\): latlayer2\.weight.*Unexpected keys \(1\)"):
        e4e.load_e4e_checkpoint({"state_dict": state, "latent_avg": inverter.latent_avg})


def test_checkpoint_without_encoder_is_a_clear_error() -> None:
    with pytest.raises(CheckpointError, match="encoder"):
        e4e.load_e4e_checkpoint({"state_dict": {"decoder.x": torch.zeros(1)}, "latent_avg": torch.zeros(512)})


def test_standin_equals_fixture_weights_and_loads_strictly(inverter) -> None:
    standin = e4e.standin_checkpoint_e4e_ffhq()
    assert set(standin) == {"state_dict", "latent_avg", "opts"}
    assert torch.equal(standin["latent_avg"], inverter.latent_avg)
    # The fixture weights come from seeded.py independently, so equality also proves determinism.
    reference = _encoder_entries(inverter)
    assert list(standin["state_dict"]) == list(reference) and len(reference) == 621
    for key, value in reference.items():
        assert standin["state_dict"][key].dtype == value.dtype and torch.equal(standin["state_dict"][key], value), key
    n_values = sum(v.numel() for v in standin["state_dict"].values())
    assert n_values == pytest.approx(267e6, rel=0.01)
    loaded = e4e.load_e4e_checkpoint(standin)
    assert loaded.n_styles == 18


def test_invert_rejects_wrong_size(inverter) -> None:
    with pytest.raises(InputError, match="256"):
        inverter.invert(torch.zeros(1, 3, 128, 128))


def test_fourteen_style_layout_for_256_generators() -> None:
    assert e4e.n_styles_for_resolution(1024) == 18 and e4e.n_styles_for_resolution(256) == 14
    with torch.device("meta"):
        encoder = e4e.Encoder4Editing(n_styles=14)
    keys = encoder.state_dict().keys()
    assert "styles.13.convs.10.weight" in keys and "styles.14.linear.weight" not in keys
    assert "styles.2.convs.6.weight" in keys and "styles.2.convs.8.weight" not in keys  # 16x16: 4 convs
    assert "styles.6.convs.8.weight" in keys and "styles.6.convs.10.weight" not in keys  # 32x32: 5 convs


def test_preprocess_matches_torchvision_pipeline() -> None:
    transforms = pytest.importorskip("torchvision.transforms")
    rng = np.random.default_rng(0)
    pil = Image.fromarray(rng.integers(0, 256, size=(300, 280, 3), dtype=np.uint8))
    official = transforms.Compose([
        transforms.Resize((256, 256)),
        transforms.ToTensor(),
        transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
    ])(pil)
    ours = e4e.preprocess_aligned(pil)
    assert ours.shape == (3, 256, 256) and ours.dtype == torch.float32
    assert torch.equal(ours, official)
    assert torch.equal(e4e.preprocess_aligned(pil.convert("RGBA")), official)


def test_loads_file_without_num_batches_tracked(inverter: e4e.E4EInverter, case) -> None:
    """Older e4e exports lack the BatchNorm counters; the loader fills them as the IR-SE50 one does."""
    entries = {k: v for k, v in _encoder_entries(inverter).items() if not k.endswith("num_batches_tracked")}
    dropped = len(_encoder_entries(inverter)) - len(entries)
    assert dropped > 0
    old_style = {"state_dict": entries, "latent_avg": inverter.latent_avg, "opts": {}}
    loaded = e4e.load_e4e_checkpoint(old_style)
    assert all(int(v) == 0 for k, v in loaded.encoder.state_dict().items() if k.endswith("num_batches_tracked"))
    image = torch.from_numpy(case["image"])
    assert torch.equal(loaded.invert(image), inverter.invert(image))


@pytest.mark.parametrize("in_ch,depth,stride", [(64, 64, 1), (64, 64, 2), (64, 128, 2)])
def test_body_unit_fast_path_equals_the_module(in_ch: int, depth: int, stride: int) -> None:
    """The max-pool shortcut read as a (strided) view, channels-last input, in-place sum: same unit output.

    Measured max|diff| 0 for the view shortcuts (identical arithmetic); the conv shortcut is the module
    itself. With autograd on, the result still carries gradients to the input.
    """
    from backends.networks.irse import BottleneckIRSE

    torch.manual_seed(0)
    unit = BottleneckIRSE(in_ch, depth, stride).eval()
    x = torch.randn(2, in_ch, 15, 15)
    with torch.no_grad():
        expected = unit(x)
    with torch.inference_mode():
        fast = e4e._run_unit(unit, x.contiguous(memory_format=torch.channels_last))
    assert fast.shape == expected.shape
    assert torch.allclose(fast, expected, atol=1e-6 * expected.abs().max().item())
    xg = x.clone().requires_grad_(True)
    out = e4e._run_unit(unit, xg)
    assert torch.allclose(out.detach(), expected, atol=1e-6 * expected.abs().max().item())
    out.sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_channels_last_option_gives_the_same_codes(inverter: e4e.E4EInverter, monkeypatch) -> None:
    """Conv weights are channels-last by default; FACELAB_E4E_CHANNELS_LAST=0 keeps NCHW, with the same codes.

    Measured max|diff| 2e-6 on codes of max|x| ~1.1 (another summation order in the convolutions).
    """
    state = {k: v for k, v in inverter.encoder.state_dict().items()}
    # 3x3 convs: a 1x1 weight is contiguous in both layouts.
    convs = [m for m in inverter.encoder.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)  # default
    monkeypatch.setenv(e4e.CHANNELS_LAST_ENV, "0")
    encoder = e4e.encoder_from_state_dict(state)
    assert not any(m.weight.is_contiguous(memory_format=torch.channels_last)
                   for m in encoder.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        expected, actual = inverter.encoder(image), encoder(image)
    print(f"e4e NCHW codes max|diff| {(actual - expected).abs().max().item():.3g} "
          f"(max|x| {expected.abs().max().item():.3g})")
    assert torch.allclose(actual, expected, atol=1e-5 * expected.abs().max().item(), rtol=0)
