"""Parity of the GAN-directions reenactment (BMVC 2022) with the official code (fixture ``gan_directions``).

The A matrix is rebuilt in the official ``A_matrix.pt`` structure, written with ``torch.save`` and read
back through our loader; the generator is the stylegan2_rosinality config-B recipe. The fixture's
synthetic ranges replace the repository's ``ranges_voxceleb.npy``, as its README asks.
Measured noise (1 vs 2 threads, README): Δp, shift and W+ 0; images 1.7e-6.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backends.errors import CheckpointError
from backends.networks import gan_directions as gd
from backends.networks import stylegan2 as sg
from tests.fixture_utils import family_dir, load_case, max_abs_diff, rosinality_g_ema, seeded

FAMILY = "gan_directions"
ANGLE_ATOL = 1e-4  # degrees, recomputed from the axis-angle
SHIFT_VECTOR_ATOL = 1e-5  # from the stored angles
LATENT_ATOL = 1e-5
IMAGE_ATOL = 1e-4


def t(x) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x))


def checkpoint() -> dict:
    folder = family_dir(FAMILY)
    ckpt = json.loads((folder / "checkpoint_scalars.json").read_text())
    ckpt["A_matrix"] = seeded().seeded_state_dict(seeded().load_manifest(folder / "manifest_A_matrix.json"), 0)
    return ckpt


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> gd.DirectionModel:
    path = tmp_path_factory.mktemp("dirs") / "A_matrix.pt"
    torch.save(checkpoint(), path)
    return gd.load_direction_matrix(path)


@pytest.fixture(scope="module")
def case_a() -> dict:
    return load_case(FAMILY, "case_a_shift_vector.npz")


def test_checkpoint_scalars(model):
    assert (model.learned_directions, model.shift_scale, model.num_layers_shift) == (15, 6.0, 8)
    assert model.matrix.linear.weight.shape == (4096, 15)


def test_case_a_angles(case_a):
    for side in ("source", "target"):
        ours = torch.cat([gd.axis_angle_to_euler_degrees(t(p[None, :3])) for p in case_a[f"pose_{side}"]])
        diff = max_abs_diff(ours, case_a[f"angles_{side}"])
        print(f"gan_directions a: angles_{side} max|diff| {diff:.3g} deg")
        assert diff <= ANGLE_ATOL


def test_case_a_shift_vector(case_a):
    scales = gd.ShiftScales.from_ranges(case_a["ranges"], float(case_a["shift_scale"]))
    assert scales.angle == pytest.approx(tuple(float(case_a["shift_scale"]) / s for s in case_a["angle_scales"]))
    rows, recomputed = [], []
    for i in range(len(case_a["shift_vector"])):
        args = (case_a["pose_source"][i], case_a["pose_target"][i], case_a["exp_source"][i], case_a["exp_target"][i])
        rows.append(gd.shift_vector(scales, case_a["angles_source"][i], case_a["angles_target"][i], *args))
        angles = [gd.axis_angle_to_euler_degrees(t(case_a[f"pose_{s}"][i][None, :3]))[0] for s in ("source", "target")]
        recomputed.append(gd.shift_vector(scales, angles[0], angles[1], *args))
    diff = max_abs_diff(torch.cat(rows), case_a["shift_vector"])
    diff_pose = max_abs_diff(torch.cat(recomputed), case_a["shift_vector"])
    print(f"gan_directions a: shift_vector max|diff| {diff:.3g} (stored angles), {diff_pose:.3g} (from pose)")
    assert diff <= SHIFT_VECTOR_ATOL and diff_pose <= 1e-4
    # Pair 2 has target = source: Δp is exactly zero.
    assert torch.count_nonzero(rows[2]) == 0


def test_case_b_shift_and_invariants(model):
    case = load_case(FAMILY, "case_b_shifted_wplus.npz")
    with torch.inference_mode():
        shift = model.matrix(t(case["shift_vector"]))
        shifted = gd.shift_wplus(t(case["wplus"]), shift)
    d_shift, d_w = max_abs_diff(shift, case["shift"]), max_abs_diff(shifted, case["wplus_shifted"])
    print(f"gan_directions b: shift max|diff| {d_shift:.3g}, wplus_shifted {d_w:.3g}")
    assert d_shift <= LATENT_ATOL and d_w <= LATENT_ATOL
    # Invariants: Δp = 0 gives the bias as the shift; rows >= 8 are untouched.
    bias = model.matrix.linear.bias.detach().view(8, 512)
    assert torch.equal(shift[2], bias)
    assert torch.equal(shifted[:, 8:], t(case["wplus"])[:, 8:].expand(5, -1, -1))


def test_case_c_images_shift_before_truncation(model):
    case_b = load_case(FAMILY, "case_b_shifted_wplus.npz")
    case = load_case(FAMILY, "case_c_image.npz")
    G = sg.load_rosinality_checkpoint({"g_ema": rosinality_g_ema("b")}, size=256, channel_multiplier=1)
    psi, center = float(case["truncation"]), t(case["trunc_latent"])
    with torch.inference_mode():
        shifted = gd.shift_wplus(t(case_b["wplus"]), model.matrix(t(case_b["shift_vector"])))
        truncated = G.truncate(shifted, psi, center)
        worst = 0.0
        for i in range(len(shifted)):
            image = G(shifted[i:i + 1], truncation=psi, truncation_latent=center)
            worst = max(worst, max_abs_diff(image, case["image"][i:i + 1]))
        no_shift = G(t(case_b["wplus"]), truncation=psi, truncation_latent=center)
    d_trunc = max_abs_diff(truncated, case["latent_truncated"])
    d_none = max_abs_diff(no_shift, case["image_no_shift"])
    print(f"gan_directions c: latent_truncated {d_trunc:.3g}, images worst {worst:.3g}, no shift {d_none:.3g}")
    assert d_trunc <= LATENT_ATOL and worst <= IMAGE_ATOL and d_none <= IMAGE_ATOL


def test_loader_errors_and_standin():
    ckpt = checkpoint()
    del ckpt["shift_dim"]
    with pytest.raises(CheckpointError, match=r"lacks shift_dim\. The repository's trainer saves no 'shift_dim'"):
        gd.load_direction_matrix(ckpt)
    standin = gd.standin_checkpoint_a_matrix()
    for key, value in checkpoint()["A_matrix"].items():
        assert torch.equal(standin["A_matrix"][key], value)
    assert gd.load_direction_matrix(standin).shift_scale == 6.0
    ranges = gd.standin_ranges()
    assert ranges.shape == (54, 2) and (ranges[:, 1] > ranges[:, 0]).all()


def test_slider_units():
    scales = gd.ShiftScales.from_ranges(gd.standin_ranges(), 6.0)
    dp = gd.delta_p_from_sliders([20.0, 0, 0, 0.1], scales)
    assert dp.shape == (1, 15)
    assert dp[0, 0].item() == pytest.approx(20.0 * 6.0 / 40.0)
    assert dp[0, 3].item() == pytest.approx(0.1 * 12.0 / 0.2)
    assert torch.count_nonzero(dp[0, 4:]) == 0


def test_ranges_file_is_read_as_a_plain_array(tmp_path, case_a):
    from backends.checkpoints import safe_load

    path = tmp_path / "ranges_voxceleb.npy"
    np.save(path, case_a["ranges"])
    assert np.array_equal(safe_load(path), case_a["ranges"])
    pickled = tmp_path / "evil.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError, match=r"is not a plain numeric \.npy array"):
        safe_load(pickled)
