"""PoS subspaces: parity with the official decomposition (fixture pos_subspaces) and its invariants.

Measured against the official float32 run (this machine): top-16 projectors ≤ 6.3e-8, projected and
removed queries ≤ 1.2e-7, m / μ / m_t and the eigenvalues 0 (bit-identical). The fixture README puts the
official float32 run ≤ 1.9e-6 from an independent float64 evaluation, so another BLAS may differ by that
much. Tolerances (absolute, on arrays whose entries are at most 1 in size): 2e-5 for projectors and
queries, 1e-6 for means, eigenvalues and objective matrices.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.networks.pos_subspaces import (
    OFFICIAL_CATEGORIES,
    decompose_euclidean,
    decompose_tangent,
    exp_map,
    log_map,
    normalise,
)
from tests.fixture_utils import fixtures_dir, load_case, load_json, max_abs_diff


def _settings() -> tuple[int, float]:
    """top-k and λ of the fixture (meta.json), 16 and 0.5 when it says nothing (or is absent: then the
    fixture tests skip)."""
    path = fixtures_dir() / "pos_subspaces" / "meta.json"
    meta = load_json(path) if path.is_file() else {}
    assert tuple(meta.get("categories", OFFICIAL_CATEGORIES)) == OFFICIAL_CATEGORIES
    return int(meta.get("top_k", 16)), float(meta.get("lam", 0.5))


K, LAM = _settings()


@pytest.fixture(scope="module")
def case():
    inputs = load_case("pos_subspaces", "inputs.npz")
    outputs = load_case("pos_subspaces", "outputs.npz")
    encodings = {c: torch.from_numpy(inputs[f"input_{c}"]) for c in OFFICIAL_CATEGORIES}
    return encodings, torch.from_numpy(inputs["queries"]), outputs


@pytest.fixture(scope="module")
def models(case):
    encodings, _, _ = case
    before = {c: v.clone() for c, v in encodings.items()}
    euclid = decompose_euclidean(encodings, OFFICIAL_CATEGORIES, LAM)
    tangent = decompose_tangent(encodings, OFFICIAL_CATEGORIES, LAM)
    for c in OFFICIAL_CATEGORIES:  # unlike the official code, the inputs are left alone
        assert torch.equal(encodings[c], before[c])
    return euclid, tangent


def _projector(w: np.ndarray, k: int = K) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)[:, :k]
    return w @ w.T


@pytest.mark.parametrize("geometry", ["euclid", "tangent"])
@pytest.mark.parametrize("category", OFFICIAL_CATEGORIES)
def test_projectors_and_spectra_match_official(case, models, geometry, category):
    _, _, out = case
    model = models[0] if geometry == "euclid" else models[1]
    p = model.projector(category, K).numpy()
    assert max_abs_diff(p, _projector(out[f"{geometry}_W_{category}"])) < 2e-5
    assert max_abs_diff(model.eigenvalues[category], out[f"{geometry}_eigvals_{category}"]) < 1e-6
    assert max_abs_diff(model.matrices[category], out[f"{geometry}_matrix_{category}"]) < 1e-6
    if category == "N":
        assert max_abs_diff(p, out[f"{geometry}_P_N_top{K}"]) < 2e-5


def test_means_match_official(case, models):
    encodings, _, out = case
    euclid, tangent = models
    assert max_abs_diff(euclid.mean, out["euclid_m"]) < 1e-6
    assert max_abs_diff(tangent.mu, out["tangent_mu"]) < 1e-6
    assert max_abs_diff(tangent.mean, out["tangent_mt"]) < 1e-6
    assert max_abs_diff(normalise(encodings["N"])[0], out["tangent_mu_init"]) < 1e-7
    assert max_abs_diff(log_map(tangent.mu, encodings["N"]), out["tangent_log_vectors_N"]) < 1e-6


def test_query_projection_and_removal_match_official(case, models):
    _, queries, out = case
    euclid, tangent = models
    assert max_abs_diff(normalise(queries), out["query_normalised"]) < 1e-6
    assert max_abs_diff(log_map(tangent.mu, queries), out["query_log"]) < 2e-5
    for name, model in (("euclid", euclid), ("tangent", tangent)):
        assert max_abs_diff(model.project(queries, "N", K), out[f"{name}_project"]) < 2e-5
        assert max_abs_diff(model.remove(queries, "N", K), out[f"{name}_remove"]) < 2e-5
    assert np.allclose(torch.norm(tangent.remove(queries, "N", K), dim=-1).numpy(), 1.0, atol=1e-6)


# --------------------------------------------------------------------------- invariants

@pytest.mark.parametrize("geometry", ["euclid", "tangent"])
def test_bases_are_orthonormal_and_projectors_idempotent(models, geometry):
    model = models[0] if geometry == "euclid" else models[1]
    eye = torch.eye(model.dim)
    for c in OFFICIAL_CATEGORIES:
        w = model.bases[c]
        assert (w.T @ w - eye).abs().max() < 1e-5
        for k in (1, 5, K):
            p = model.projector(c, k)
            assert (p @ p - p).abs().max() < 1e-5
            assert ((eye - p) @ p).abs().max() < 1e-5
            assert abs(torch.trace(p).item() - k) < 1e-4
        assert bool((model.eigenvalues[c][:-1] >= model.eigenvalues[c][1:]).all())


def test_lambda_zero_is_pca_of_the_category(case):
    encodings, _, _ = case
    model = decompose_euclidean(encodings, OFFICIAL_CATEGORIES, lam=0.0)
    x = normalise(encodings["A"]).double()
    m = torch.cat([normalise(encodings[c]) for c in OFFICIAL_CATEGORIES]).double().mean(dim=0)
    covariance = (x - m).T @ (x - m) / x.shape[0]
    values, vectors = torch.linalg.eigh(covariance)
    pca = vectors[:, -K:]
    assert (model.projector("A", K).double() - pca @ pca.T).abs().max() < 2e-5
    assert (model.eigenvalues["A"].double() - values.flip(0)).abs().max() < 1e-6


def test_exp_inverts_log_and_log_lies_in_the_tangent_space():
    gen = torch.Generator().manual_seed(3)
    mu = normalise(torch.randn(1, 32, generator=gen))[0]
    q = normalise(torch.randn(50, 32, generator=gen))
    v = log_map(mu, q)
    assert (v @ mu).abs().max() < 1e-5
    assert (exp_map(mu, v) - q).abs().max() < 1e-5
    assert (exp_map(mu, torch.zeros(1, 32)) - mu).abs().max() == 0


def test_removal_kills_the_subspace_component_and_save_load_round_trip(case, models, tmp_path):
    _, queries, _ = case
    euclid, tangent = models
    w = euclid.basis("AV", 8)
    removed = euclid.remove(queries, "AV", 8)
    assert ((removed - euclid.mean) @ w).abs().max() < 1e-5
    energy = euclid.energy(queries, 8)
    assert set(energy) == set(OFFICIAL_CATEGORIES)
    assert all(bool(((e >= 0) & (e <= 1 + 1e-6)).all()) for e in energy.values())
    path = tangent.save(tmp_path / "sub.safetensors")
    again = type(tangent).load(path)
    assert again.geometry == "tangent" and again.categories == OFFICIAL_CATEGORIES and again.lam == LAM
    assert torch.equal(again.remove(queries, "N", K), tangent.remove(queries, "N", K))
