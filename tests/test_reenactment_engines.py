"""The HyperReenact and GAN-directions engines end to end on real-size stand-in weights (CPU).

Invariants at the product level: HyperReenact with Δ = 0 renders the source inversion; GAN directions
with the source as its own driver (Δp = 0) renders the source shifted by the map's bias only, the same
image the sliders give at zero. Weights missing offline make an engine unavailable with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends import reenactment as r
from backends.errors import InputError, MissingWeightsError
from backends.media import read_video, write_video
from backends.reenactment import gan_directions, hyperreenact, vox
from backends.standin import enable_standin

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module", autouse=True)
def standin():
    from tests.conftest import SHARED_WEIGHTS

    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"YuNet weights not found at {SHARED_WEIGHTS}")
    enable_standin(True)
    r.clear_caches()
    yield
    enable_standin(False)
    r.clear_caches()
    # The stand-in networks (about 2.5 GB, ~20 s to draw) stay cached for the contract test that runs
    # next in the suite's single process; it releases them when it is done.


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def driving(astronaut) -> np.ndarray:
    return np.ascontiguousarray(astronaut[20:500, ::-1][:, 16:496])


def pixels(img) -> np.ndarray:
    return np.asarray(img, np.int16)


def test_every_engine_is_available_with_standins():
    assert [(s.key, s.available) for s in r.engine_statuses()] == [(k, True) for k in r.ENGINES]


def test_hyperreenact_photo(astronaut, driving):
    res = r.reenact_images(astronaut, driving, engine="hyperreenact")
    assert res.result.size == (256, 256) and res.source_aligned.size == (256, 256)
    assert res.driving_inversion.size == (224, 224) and "DECA" in res.driving_caption
    assert res.standin and "not results of HyperReenact" in res.notices[-1]
    assert res.to_dict()["mean_abs_weight_offset"] > 0.01
    assert np.abs(pixels(res.result) - pixels(res.source_inversion)).max() > 0


def test_hyperreenact_zero_offsets_give_the_source_inversion(astronaut, driving, monkeypatch):
    def zero_deltas(source, drv):
        return [torch.zeros(1, c.conv.out_ch, c.conv.in_ch) for c in vox.get_vox_models().generator.styled_convs()]

    monkeypatch.setattr(hyperreenact, "weight_deltas", zero_deltas)
    res = r.reenact_images(astronaut, driving, engine="hyperreenact")
    assert np.array_equal(pixels(res.result), pixels(res.source_inversion))


def test_gan_directions_self_drive_is_the_bias_shift(astronaut):
    res = r.reenact_images(astronaut, astronaut, engine="gan_directions", truncate=False)
    assert set(res.to_dict()["delta_p"].values()) == {0.0}
    moved = gan_directions.edit_directions(astronaut, [], truncate=False)
    assert np.array_equal(pixels(res.result), pixels(moved.result))
    # The bias alone moves the image (it is part of the learned map).
    assert np.abs(pixels(res.result) - pixels(res.source_inversion)).max() > 0


def test_gan_directions_pair_and_sliders(astronaut, driving):
    res = r.reenact_images(astronaut, driving, engine="gan_directions", paste_back=True)
    assert res.result.size == (256, 256) and res.result_pasted.size == (astronaut.shape[1], astronaut.shape[0])
    assert any(v != 0 for v in res.to_dict()["delta_p"].values())
    yaw = gan_directions.edit_directions(astronaut, [20.0])
    assert yaw.delta_p[0] == pytest.approx(3.0) and not any(yaw.delta_p[1:])
    with pytest.raises(InputError, match="At most 15 direction values"):
        gan_directions.edit_directions(astronaut, [0.0] * 16)


def test_hyperreenact_video(tmp_path, astronaut):
    frames = [np.ascontiguousarray(astronaut[d: d + 448, d: d + 448]) for d in (0, 32)]
    clip = write_video(frames, tmp_path / "drive.mp4", fps=8)
    res = r.reenact_video(astronaut, clip, engine="hyperreenact", out_dir=tmp_path / "out")
    assert res.frames == 2 and len(read_video(res.result_video)) == 2
    assert res.to_dict()["engine"] == "hyperreenact" and res.first_result.size == (256, 256)


def test_missing_weights_make_engines_unavailable(astronaut):
    enable_standin(False)
    try:
        status = r.engine_status("gan_directions")
        assert not status.available
        assert status.reason.startswith("Missing weights: stylegan-voxceleb.pt ")
        assert ("Also missing: e4e-voxceleb.pt, deca_model.tar, 2DFAN4-11f355bf06.pth.tar, A_matrix.pt, "
                "ranges_voxceleb.npy.") in status.reason
        assert "non-commercial scientific research only (MPI-IS, see deca.is.tue.mpg.de)" in status.reason
        with pytest.raises(MissingWeightsError, match=r"^Missing weights: stylegan-voxceleb\.pt .*deca_model\.tar"):
            r.reenact_images(astronaut, astronaut, engine="gan_directions")
        with pytest.raises(MissingWeightsError, match=r"^Missing weights: stylegan-voxceleb\.pt"):
            gan_directions.edit_directions(astronaut, [1.0])
    finally:
        enable_standin(True)
