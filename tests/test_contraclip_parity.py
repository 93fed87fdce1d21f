"""ContraCLIP support sets: parity with the official module (fixture ../shared/fixtures/contraclip) and invariants.

Both weight variants of the fixture are rebuilt from its manifest, written as the official
``latent_support_sets.pt`` (bare two-tensor state dict) and read back through our strict loader.
Measured noise (README): float32 vs float64 of the official module, directions 1e-8 and codes 5e-7;
our loader against the stored outputs: see the printed max|diff| per case (≈1e-7 here). Tolerances
are absolute and scaled to each array: directions 1e-6 (entries ~0.013), codes and shifts 1e-5
(|code| ≲ 3), φ 1e-6.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backends.errors import CheckpointError, InputError
from backends.networks import contraclip as cc
from backends.networks import stylegan2 as sg
from tests.fixture_utils import family_dir, load_case, max_abs_diff, seeded

FAMILY = "contraclip"
DIR_TOL = 1e-6
CODE_TOL = 1e-5
PHI_TOL = 1e-6


def raw_state() -> dict[str, torch.Tensor]:
    folder = family_dir(FAMILY)
    return seeded().seeded_state_dict(seeded().load_manifest(folder / "manifest.json"), base_seed=0)


def dipole_state(inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The README's recipe: rows (2j, 2j+1) = (v, −v), v = r_k·u/‖u‖ with u the raw row 2j."""
    raw = raw_state()
    k = raw["SUPPORT_SETS"].shape[0]
    s = raw["SUPPORT_SETS"].view(k, -1, 6144)
    radii = torch.from_numpy(inputs["official_init_radii"]).view(k, 1, 1)
    u = s[:, 0::2]
    v = radii * u / u.norm(dim=2, keepdim=True)
    support = torch.stack([v, -v], dim=2).reshape(k, -1)
    return {"SUPPORT_SETS": support, "LOGGAMMA": torch.from_numpy(inputs["official_init_loggamma"])}


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    return load_case(FAMILY, "inputs.npz")


@pytest.fixture(scope="module")
def outputs() -> dict[str, np.ndarray]:
    return load_case(FAMILY, "outputs.npz")


@pytest.fixture(scope="module", params=["raw", "dipole"])
def variant(request, inputs, tmp_path_factory):
    state = raw_state() if request.param == "raw" else dipole_state(inputs)
    # Saved as the official file (the real one holds CUDA tensors; safe_load maps to CPU).
    path = tmp_path_factory.mktemp("lss") / "latent_support_sets.pt"
    torch.save(state, path)
    return request.param, cc.load_support_sets(path)


def check(actual: torch.Tensor | np.ndarray, expected: np.ndarray, tol: float, what: str) -> None:
    actual = np.asarray(actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else actual)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = max_abs_diff(actual, expected)
    print(f"[parity] {what}: max|diff| = {diff:.3g} (tol {tol:g})")
    assert diff <= tol, f"{what}: max abs diff {diff:.3g} > {tol:g}"


def test_case_a_directions(variant, inputs, outputs):
    name, lss = variant
    x = torch.from_numpy(inputs["wplus"])[:, :12].reshape(1, 6144)
    paths = torch.from_numpy(inputs["paths"])
    mask = torch.nn.functional.one_hot(paths, lss.num_paths).float()  # the official call: one-hot masks
    check(lss(mask, x.repeat(2, 1)), outputs[f"{name}_directions"], DIR_TOL, f"{name} a: directions")


def test_case_b_traversal(variant, inputs, outputs):
    name, lss = variant
    wplus = torch.from_numpy(inputs["wplus"])
    eps, steps = float(inputs["eps"]), int(inputs["steps"])
    for row, path in enumerate(inputs["paths"].tolist()):
        walk = cc.traverse(lss, wplus, path, eps, steps)
        check(walk.codes, outputs[f"{name}_traverse_codes"][row], CODE_TOL, f"{name} b: codes, path {path}")
        check(walk.shifts, outputs[f"{name}_traverse_shifts"][row], CODE_TOL, f"{name} b: shifts, path {path}")
        check(np.float64(walk.phi), outputs[f"{name}_phi"][row], PHI_TOL, f"{name} b: phi, path {path}")
        # The official rendering adds the shift a second time.
        check(cc.render_codes(walk, "official"),
              outputs[f"{name}_traverse_codes"][row] + outputs[f"{name}_traverse_shifts"][row],
              CODE_TOL, f"{name} b: official render codes, path {path}")


def test_invariants(variant, inputs):
    name, lss = variant
    wplus = torch.from_numpy(inputs["wplus"])
    eps, path = float(inputs["eps"]), int(inputs["paths"][-1])
    walk = cc.traverse(lss, wplus, path, eps, 5)
    d = lss.direction(cc.moved_part(wplus), path)
    assert abs(float(d.norm()) - 1.0) < 1e-6
    steps = (walk.codes[1:] - walk.codes[:-1])[:, :12].reshape(walk.codes.shape[0] - 1, -1).norm(dim=1)
    assert torch.allclose(steps, torch.full_like(steps, eps), atol=1e-6), steps
    assert torch.equal(walk.codes[:, 12:], wplus[:, 12:].expand(walk.codes.shape[0], -1, -1))  # bit-identical
    # Not a straight line: the direction is recomputed at every step.
    straight = wplus + torch.arange(-5, 6).view(-1, 1, 1) * eps * cc.pad_shift(d)
    assert float((walk.codes - straight).abs().max()) > 1e-6


def test_closed_form_gradient_equals_autograd(variant, inputs):
    _, lss = variant
    x = torch.from_numpy(inputs["wplus"])[:, :12].reshape(1, 6144).double().requires_grad_(True)
    lss64 = cc.SupportSets(lss.num_paths, lss.num_dipoles).double()
    lss64.load_state_dict(lss.state_dict())
    for path in inputs["paths"].tolist():
        (auto,) = torch.autograd.grad(lss64.potential(x, path).sum(), x)
        closed = lss64.gradient(x.detach(), path)
        assert torch.allclose(closed, auto, atol=1e-12 * float(auto.abs().max()) + 1e-30, rtol=1e-9)


def test_dipole_field_is_even(inputs):
    lss = cc.load_support_sets(dipole_state(inputs))
    x = torch.from_numpy(inputs["wplus"])[:, :12].reshape(1, 6144)
    for path in range(lss.num_paths):
        assert float((lss.direction(-x, path) - lss.direction(x, path)).abs().max()) < 1e-7


def test_alphas_are_rebuilt_not_loaded():
    lss = cc.load_support_sets(cc.standin_state(3, num_dipoles=4))
    assert lss.ALPHAS.tolist() == [[1.0, -1.0] * 4] * 3
    assert set(lss.state_dict()) == {"SUPPORT_SETS", "LOGGAMMA"}


def test_standin_follows_the_official_init(inputs):
    k = len(inputs["official_init_radii"])
    state = cc.standin_state(k)
    assert set(state) == {"SUPPORT_SETS", "LOGGAMMA"} and state["SUPPORT_SETS"].shape == (k, 128 * 6144)
    check(state["LOGGAMMA"], inputs["official_init_loggamma"], 1e-5, "stand-in log gamma vs official init")
    norms = state["SUPPORT_SETS"].view(k, 128, 6144).norm(dim=2)
    check(norms[:, 0], inputs["official_init_radii"], 1e-3, "stand-in radii vs official init")
    rows = state["SUPPORT_SETS"].view(k, 128, 6144)
    assert torch.equal(rows[:, 1::2], -rows[:, 0::2])


def test_init_rule_matches_the_fixture_radii(inputs):
    meta = json.loads((family_dir(FAMILY) / "meta.json").read_text())
    radius = cc.jung_radius_ffhq(0.7)
    assert abs(radius - meta["jung_radius"]) < 1e-9
    k = len(inputs["official_init_radii"])
    check(cc.init_radii(radius, k), inputs["official_init_radii"], 1e-4, "init radii")
    check(cc.init_loggamma(cc.init_radii(radius, k)), inputs["official_init_loggamma"], 1e-5, "init log gamma")


def test_training_checkpoint_and_cuda_style_files_load(tmp_path):
    state = cc.standin_state(2, num_dipoles=2)
    torch.save({"iter": 5, "latent_support_sets": state}, tmp_path / "checkpoint.pt")
    lss = cc.load_support_sets(tmp_path / "checkpoint.pt")
    assert lss.num_paths == 2 and lss.num_dipoles == 2


def test_wrong_layouts_are_checkpoint_errors():
    state = cc.standin_state(2, num_dipoles=2)
    with pytest.raises(CheckpointError, match=r"LOGGAMMA; found ALPHAS, LOGGAMMA, SUPPORT_SETS\."):
        cc.load_support_sets({**state, "ALPHAS": torch.ones(2, 4)})
    with pytest.raises(CheckpointError, match=r"SUPPORT_SETS must be \(K, 2D·6144\)"):
        cc.load_support_sets({"SUPPORT_SETS": torch.zeros(2, 100), "LOGGAMMA": torch.zeros(2, 1)})
    with pytest.raises(CheckpointError, match=r"LOGGAMMA must be \(2, 1\)"):
        cc.load_support_sets({"SUPPORT_SETS": state["SUPPORT_SETS"], "LOGGAMMA": torch.zeros(3, 1)})
    with pytest.raises(InputError, match="Path 9 does not exist"):
        cc.load_support_sets(state).direction(torch.zeros(1, 6144), 9)


def test_genforce_and_rosinality_share_the_wplus_rows():
    """ContraCLIP moves genforce W+ rows 0..11; the key map sends genforce layer j to the conv reading row j."""
    G = sg.Generator(1024, channel_multiplier=2)
    convs = {ro.split(".conv.")[0]: gf for gf, ro, _ in sg.genforce_key_map(G) if ro.endswith(".conv.weight")}
    for j in range(G.num_conv_layers):
        rosinality = "conv1" if j == 0 else f"convs.{j - 1}"
        assert convs[rosinality] == f"synthesis.layer{j}.weight"
        assert G.conv_row(j) == j  # genforce layer j reads wp[:, j]
    for k in range(len(G.rgb_layers())):
        rosinality = "to_rgb1" if k == 0 else f"to_rgbs.{k - 1}"
        assert convs[rosinality] == f"synthesis.output{k}.weight"
        assert G.rgb_row(k) == 2 * k + 1  # genforce output k reads wp[:, 2k+1]
