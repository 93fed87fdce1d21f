"""Parity of our StyleMask mask network and mixing forward with the official code, plus invariants.

The mask network's weights are rebuilt from the stylemask fixture manifest and
the generator from stylegan2_rosinality config A (base_seed 0), both written
in the official checkpoint structures and loaded through our loaders. The
fixture's thresholds are used as they are: a failing case is a bug.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.errors import CheckpointError
from backends.networks import stylegan2 as sg
from backends.networks import stylemask as sm
from tests.fixture_utils import family_dir, load_case, max_abs_diff, rosinality_g_ema, seeded

SM = "stylemask"
STYLE_TOL = 1e-5  # masks and styles
IMG_TOL = 1e-4  # reenacted image


def assert_close(actual: torch.Tensor, expected: np.ndarray, tol: float, what: str) -> float:
    actual_np = actual.detach().cpu().numpy()
    assert actual_np.shape == expected.shape, f"{what}: shape {actual_np.shape} != {expected.shape}"
    diff = max_abs_diff(actual_np, expected)
    print(f"[parity] {what}: max|diff| = {diff:.3g} (tol {tol:g})")
    assert np.allclose(actual_np, expected, atol=tol, rtol=tol), f"{what}: max abs diff {diff:.3g} > {tol:g}"
    return diff


def t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def fixture_mask_net_state() -> dict[str, torch.Tensor]:
    return seeded().seeded_state_dict(seeded().load_manifest(family_dir(SM) / "manifest.json"), base_seed=0)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[sg.Generator, sm.MaskNetwork]:
    folder = tmp_path_factory.mktemp("stylemask")
    g_path, m_path = folder / "stylegan2-ffhq-config-f_1024.pt", folder / "mask_network_1024.pt"
    torch.save({"g_ema": rosinality_g_ema("a"), "latent_avg": torch.zeros(512)}, g_path)
    # The trainer also writes 'step'; the loader must ignore it.
    torch.save({"num_layers_control": 12, "mask_net": fixture_mask_net_state(), "step": 1234}, m_path)
    G = sg.load_rosinality_checkpoint(g_path, size=1024, channel_multiplier=2)
    return G, sm.load_mask_network(m_path, G.style_sections)


@pytest.fixture(scope="module")
def case() -> dict[str, np.ndarray]:
    return load_case(SM, "case_mix_wplus.npz")


@pytest.fixture(scope="module")
def official_forward(models, case) -> sm.StyleMaskForward:
    G, net = models
    with torch.inference_mode():
        return sm.stylemask_forward(
            G,
            net,
            t(case["source_wplus"]),
            t(case["target_wplus"]),
            truncation=float(case["truncation"]),
            truncation_latent=t(case["trunc_latent"]),
        )


# --------------------------------------------------------------------------- checkpoint layout


def test_mask_net_keys_and_size_match_official(models):
    _, net = models
    state = net.state_dict()
    assert list(state) == list(fixture_mask_net_state())
    assert sum(v.numel() for v in state.values()) == 5_516_288
    assert net.num_layers_control == 12 and net.widths == [512] * 10 + [256, 256]


def test_standin_equals_fixture_weights():
    ckpt = sm.standin_checkpoint_mask_network()
    assert ckpt["num_layers_control"] == 12
    ref = fixture_mask_net_state()
    assert list(ckpt["mask_net"]) == list(ref)
    assert all(torch.equal(ckpt["mask_net"][k], ref[k]) for k in ref)


@pytest.mark.parametrize(
    "ckpt,message",
    [
        ([1, 2], "is a list"),
        ({"mask_net": {}}, "no 'num_layers_control'"),
        ({"num_layers_control": 12}, "no 'mask_net'"),
        ({"num_layers_control": 40, "mask_net": {}}, "num_layers_control is 40"),
        ({"num_layers_control": 12, "mask_net": {"network_00.masknet.0.weight": torch.zeros(2, 2)}}, "Missing keys"),
    ],
)
def test_loader_errors_are_clear(ckpt, message):
    with pytest.raises(CheckpointError, match=message):
        sm.load_mask_network(ckpt)


def test_loader_rejects_wrong_shapes():
    ckpt = sm.standin_checkpoint_mask_network()
    ckpt["mask_net"]["network_11.masknet.2.bias"] = torch.zeros(512)
    with pytest.raises(CheckpointError, match=r"Wrong shapes .*network_11\.masknet\.2\.bias"):
        sm.load_mask_network(ckpt)


# --------------------------------------------------------------------------- parity


def test_parity_truncation_and_styles(models, case, official_forward):
    G, _ = models
    out = official_forward
    assert G.style_sections == case["style_sections"].tolist()
    assert_close(out.w_source, case["w_source_truncated"], STYLE_TOL, "stylemask: w_source_truncated")
    assert_close(G.flatten_styles(out.s_source), case["style_source"], STYLE_TOL, "stylemask: style_source")
    assert_close(G.flatten_styles(out.s_target), case["style_target"], STYLE_TOL, "stylemask: style_target")


def test_parity_mask_and_mixed_styles(models, case, official_forward):
    G, net = models
    assert net.num_layers_control == int(case["num_layers_control"])
    out = official_forward
    assert_close(torch.cat(out.masks, dim=1), case["mask"], STYLE_TOL, "stylemask: mask")
    assert_close(G.flatten_styles(out.s_mixed), case["style_mixed"], STYLE_TOL, "stylemask: style_mixed")


def test_parity_reenacted_image(case, official_forward):
    assert_close(official_forward.image, case["reenacted_image"], IMG_TOL, "stylemask: reenacted_image 1024")


# --------------------------------------------------------------------------- invariants


def test_layers_from_12_on_are_always_the_source(official_forward):
    out = official_forward
    for layer in range(12, 17):
        assert torch.equal(out.s_mixed[layer], out.s_source[layer])
    assert sum(s.shape[1] for s in out.s_mixed[:12]) == 5632


def test_mask_zero_gives_source_and_one_gives_target(official_forward):
    out = official_forward
    zeros = [torch.zeros_like(m) for m in out.masks]
    ones = [torch.ones_like(m) for m in out.masks]
    mixed0 = sm.mix_styles(out.s_source, out.s_target, zeros)
    mixed1 = sm.mix_styles(out.s_source, out.s_target, ones)
    for layer in range(17):
        assert torch.equal(mixed0[layer], out.s_source[layer])
        expected = out.s_target[layer] if layer < 12 else out.s_source[layer]
        assert torch.equal(mixed1[layer], expected)
    assert torch.cat(mixed1[:12], dim=1).shape[1] == 5632


@torch.inference_mode()
def test_source_equal_driving_gives_the_source_back(models, case):
    G, net = models
    w = t(case["source_wplus"])
    center = t(case["trunc_latent"])
    out = sm.stylemask_forward(G, net, w, w.clone(), truncation=0.7, truncation_latent=center)
    for mixed, src in zip(out.s_mixed, out.s_source, strict=True):
        assert torch.allclose(mixed, src, atol=1e-6, rtol=0)
    # The source's own render (truncated the same way) is what comes out.
    source_render = G(w, truncation=0.7, truncation_latent=center)
    diff = max_abs_diff(out.image.numpy(), source_render.numpy())
    print(f"[invariant] source == driving: image max|diff| vs source render = {diff:.3g}")
    assert diff < 1e-4
    pooled = torch.nn.functional.avg_pool2d(source_render, 4)
    assert_close(pooled, case["source_image_256"], IMG_TOL, "stylemask: source_image_256 (sanity)")
